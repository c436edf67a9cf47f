/**
 * HarkEngine: the whole runtime behind one small API, the same in a browser worker and in Node.
 *
 *   loadModel(source)   bundle → verified, cached files → onnxruntime-web sessions
 *   setAudio(audio)     decode/resample/chunk → features → encoders → connector (once per recording)
 *   ask(question)       prompt → prefill → streamed tokens; follow-ups reuse the KV cache
 *   classify(question, { choices })  the answer picked from a fixed label set, with every label's probability
 *   localize(event)     where in the recording the event happens (instruction steering)
 *   cancel(), newConversation(), unload()
 */
import { decodeWav, type DecodedAudio } from './audio/wav';
import { prepareAudio } from './audio/prepare';
import { AudioTokenizer, unsupportedParts, type AudioTokens, type StageCounts, type StageInspector } from './audioTokens';
import { loadBundle, type LoadedBundle, type ProgressCallback } from './bundle/loader';
import { getVariant, pickVariant, type Manifest, type ReasoningSpec } from './bundle/manifest';
import { modelParts, partGraphNames, variantGraphKey, type ModelParts } from './bundle/parts';
import { parseBundleSource, type BundleSource } from './bundle/source';
import type { BundleStore } from './bundle/store';
import { backendAdvice, probeDevice, type Backend, type DeviceReport } from './device';
import { HarkError } from './errors';
import { encoderFeatures } from './features/encoderFeatures';
import { openCapturedDecoder, releaseCapturedDecoder, type CapturedDecoder } from './decoderCapture';
import { openGraph, openGraphs, releaseGraphs, sessionOf, type GraphFiles, type GraphSessions } from './graphs';
import { localizeEvent, type LocalizeSettings } from './localize/localizer';
import { ProbeRunner } from './localize/probe';
import type { LocalizationDefaults, LocalizationResult, LocalizeRequest } from './localize/types';
import { bestChoice, prepareChoices, scoreChoices } from './llm/choices';
import { concatFloat32, Conversation } from './llm/conversation';
import { audioMarkerOf, promptParts } from './llm/prompt';
import { checkPrefillAttention, describeAttentionCheck, usesFusedRotary, type AttentionCheckResult, type AttentionShape } from './llm/attentionCheck';
import { DecoderRunner, decoderOutputLocations, embedOutputLocations } from './llm/decoder';
import type { GenerationParams, GenerationStats, TokenEvent } from './llm/generate';
import { splitReasoning, validThinkingBudget, type ReasoningRun } from './llm/reasoning';
import { createTokenizer, type TextTokenizer } from './llm/tokenizer';
import { ort } from './ortRuntime';
import { refuseOverWasmHeap, wasmUnpackBudget } from './wasmMemory';
import { Int4Unpacker, type UnpackTotals } from './int4Unpack';

export type BackendPreference = 'auto' | Backend;

export interface EngineOptions {
  store: BundleStore;
  fetchImpl?: typeof fetch;
  /** Longest recording accepted (seconds, default 600). */
  maxAudioSeconds?: number;
  /** Cap the conversation length below the model's maximum (tokens), e.g. to bound KV memory. */
  maxContextTokens?: number;
  /**
   * Called before the engine releases every session of its model (an unload, or a model switch).
   * onnxruntime destroys its WebGPU device with the last session and makes a new one for the
   * next: whoever watches that device for losses must not take this for a lost GPU.
   */
  onReleasingSessions?: () => Promise<void> | void;
  /**
   * Run answer tokens' decoder steps graph-captured on WebGPU (default true; llm/capturedStep.ts).
   * Off: every step is an ordinary run, as before capture existed (tests compare the two).
   */
  captureDecode?: boolean;
  /**
   * On WebAssembly, unpack int4 weights to fp32 once at load (default true; int4Unpack.ts). Off:
   * every int4 product unpacks its weight on each run, as before (tests compare the two).
   */
  unpackInt4?: boolean;
}

export interface LoadModelOptions {
  backend?: BackendPreference;
  /** A variant name; default: the best tested variant for the backend (see pickVariant). */
  variant?: string;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

export interface ModelInfo {
  name: string;
  label: string;
  description: string;
  randomWeights: boolean;
  variant: string;
  backend: Backend;
  /** Which backend runs the model and why, in words (Automatic's choice, or the user's). */
  backendReason: string;
  /** Set when the other backend would clearly be faster on this device: what to do about it. */
  backendAdvice: string | null;
  /** How prompts are fed to the decoder on this device (see llm/attentionCheck.ts). */
  prefill: PrefillInfo;
  /** How answer tokens' decoder steps run (graph-captured or not, and why). */
  decode: DecodeInfo;
  tasks: Record<string, string>;
  /**
   * The text that stands for the recording in this model's task prompts: its userText without the
   * question ("<Speech><SpeechHere></Speech>" for SALMONN, "<AudioHere>" for ALARM). The app shows
   * task prompts and sends follow-ups without it.
   */
  audioMarker: string;
  defaults: GenerationParams;
  maxPositions: number;
  /** Event localization's defaults; null when this bundle was converted without its probe. */
  localization: LocalizationDefaults | null;
  /** A reasoning model's markers and default thinking budget (manifest `reasoning`); null: it answers directly. */
  reasoning: ReasoningSpec | null;
  /** What the model has, for the UI to show only the controls that apply. */
  capabilities: ModelCapabilities;
  loadMs: number;
}

export interface ModelCapabilities {
  /** The decoder takes a LoRA scale (SALMONN); false: the scale does nothing and is not shown. */
  hasLora: boolean;
  /** The encoders, by name and type (e.g. whisper/whisper, beats/beats). */
  encoders: { name: string; type: string }[];
  /** How the encoders are combined ("window-qformer", "sum", …). */
  fusion: string;
  /** The LLM's family ("llama", "qwen3"). */
  llm: string;
  /**
   * Event localization applies to this kind of model: SALMONN's LLaMA decoder, for which the
   * converter writes the steering probe (models/salmonn/onnx_decoder.py). False (ALARM's Qwen3:
   * no converter writes a probe for it) hides "Find in recording"; a bundle of a kind that
   * localizes may still lack its probe (ModelInfo.localization null: then Find says so).
   */
  localizes: boolean;
}

export interface DecodeInfo {
  /** Answer tokens' steps are graph-captured runs (WebGPU). */
  captured: boolean;
  /** A captured step takes the token id (the embedding graph runs inside it): one run per token. */
  embeddingInStep: boolean;
  /** One sentence for the device report. */
  summary: string;
  /** On WebAssembly: what of the int4 weights was unpacked to fp32 at load (null: nothing to unpack, or WebGPU). */
  int4Unpacked?: UnpackTotals | null;
}

export interface PrefillInfo {
  /** Most new tokens per decoder run; null: a whole prompt in one run. */
  chunk: number | null;
  /**
   * How that was decided: 'not-needed' (WebAssembly, always exact), 'exact' / 'inexact' (the
   * WebGPU attention self-check's verdict), 'failed' (the check could not run: chunks, to be safe).
   */
  check: 'not-needed' | 'exact' | 'inexact' | 'failed';
  /** The self-check's relative difference between one run and chunks (null when not run or failed). */
  maxError: number | null;
  /** The self-check's duration (null when not run). */
  checkMs: number | null;
  /** One sentence for the device report. */
  summary: string;
}

export interface AudioInfo {
  durationSeconds: number;
  chunks: number;
  numTokens: number;
  timeMap: Float64Array;
  timings: AudioTokens['timings'] & { decodeMs: number };
}

export interface AskOptions extends Partial<GenerationParams> {
  onToken?: (event: TokenEvent) => void;
  signal?: AbortSignal;
  /** Diagnostics: the first step's logits (parity tests). */
  onFirstLogits?: (logits: Float32Array) => void;
}

export interface AnswerResult {
  text: string;
  ids: number[];
  stats: GenerationStats;
  /** 1 for the first question about a recording, 2 for the first follow-up, … */
  turn: number;
  /**
   * Reasoning models only (ModelInfo.reasoning): the thoughts (`text` is then the answer alone),
   * the thought tokens the model generated (forced ones not counted), and whether the thinking
   * budget ran out so the closing text was forced. `ids` hold thoughts, forced tokens and answer.
   */
  thoughts?: string;
  thinkingTokens?: number;
  forcedClose?: boolean;
  /**
   * Where captured steps stopped during this answer (a replay differed from an ordinary run, or
   * the device could not replay): how answer tokens run from now on (ModelInfo.decode's new value).
   */
  decode?: DecodeInfo;
}

export interface ClassifyOptions {
  /** The labels the answer is chosen from, e.g. ['neutral', 'happy', 'sad', 'angry'] (trimmed; at most 64, 30 tokens each). */
  choices: string[];
  /** LoRA scale for this question (default: the bundle's). */
  loraScale?: number;
  signal?: AbortSignal;
}

/** One label of a classify() answer. */
export interface LabelProbability {
  label: string;
  /** Softmax over the given labels of logProb: the probabilities sum to 1. */
  probability: number;
  /** log p(the answer is exactly this label, then </s>) under the model. */
  logProb: number;
  /** The label's answer token ids. */
  tokens: number[];
}

export interface ClassifyStats {
  promptTokens: number;
  prefillMs: number;
  /** Decoder runs that scored the labels: one per label that is not a prefix of another. */
  scoringRuns: number;
  scoringMs: number;
  totalMs: number;
}

export interface ClassifyResult {
  /** The chosen label: the turn's answer text. */
  text: string;
  label: string;
  /** The chosen label's token ids: the turn's answer ids (as AnswerResult.ids). */
  ids: number[];
  /** Every label, in the order given. */
  choices: LabelProbability[];
  stats: ClassifyStats;
  /** 1 for the first question about a recording, 2 for the first follow-up, … */
  turn: number;
}

interface LoadedModel {
  bundle: LoadedBundle;
  manifest: Manifest;
  parts: ModelParts;
  backend: Backend;
  sessions: GraphSessions;
  tokenizer: TextTokenizer;
  decoder: DecoderRunner;
  audio: AudioTokenizer;
  info: ModelInfo;
  /** Localization's probe graph, opened on first use. */
  probe?: Promise<ProbeRunner>;
  /** [2 × hidden]: row 0 goes before the audio embeddings, row 1 after (format 2's audioBoundaries); null: none. */
  boundaries: Float32Array | null;
  /** The decoder opened for captured steps (its session is in `sessions`); null: an ordinary decoder. */
  capture: CapturedDecoder | null;
  /** On WebAssembly, what unpacks int4 weights at load; the probe, opened later, draws on the same budget. */
  unpacker: Int4Unpacker | null;
}

/** An earlier question and its answer, as stored (the answer's token ids when known). */
export interface ResumeTurn {
  question: string;
  answer: string;
  ids?: number[];
}

export interface ResumeResult {
  /** Turns the conversation now holds. */
  turn: number;
  /** Positions in the KV cache. */
  positions: number;
  /** Turns re-read from their exact token ids (the rest from their text). */
  exactTurns: number;
}

export class HarkEngine {
  private model: LoadedModel | null = null;
  private conversation: Conversation | null = null;
  private audioInfo: AudioInfo | null = null;
  private running: AbortController | null = null;
  /** The work running is setAudio's encoding (cancel('answers') leaves it be). */
  private encoding = false;
  private decoderSteps = 0;
  /** The WebGPU attention self-check, once per head layout for this engine's lifetime. */
  private readonly attentionChecks = new Map<string, Promise<AttentionCheckResult>>();

  constructor(private readonly options: EngineOptions) {}

  async device(): Promise<DeviceReport> {
    return probeDevice();
  }

  get modelInfo(): ModelInfo | null {
    return this.model?.info ?? null;
  }

  /** How often each audio stage and the decoder ran since the model was loaded. */
  get counters(): StageCounts & { decoderSteps: number; capturedSteps: number; captureFailure: string | null } {
    return {
      ...(this.model?.audio.counts ?? { graphs: {}, speechEncoder: 0, audioEncoder: 0, connector: 0 }),
      decoderSteps: this.decoderSteps,
      capturedSteps: this.model?.decoder.capturedSteps ?? 0,
      captureFailure: this.model?.decoder.captureFailure ?? null,
    };
  }

  async loadModel(source: BundleSource | string, options: LoadModelOptions = {}): Promise<ModelInfo> {
    const started = performance.now();
    const parsed = typeof source === 'string' ? parseBundleSource(source) : source;
    const { backend, reason, device } = await this.resolveBackend(options.backend ?? 'auto');
    const shaderF16 = backend === 'webgpu' && device.webgpu.available && device.webgpu.shaderF16;
    // Both refusals come from the manifest alone, before any model file is downloaded.
    const chooseVariant = (m: Manifest): string => {
      refuseUnsupported(m);
      const variant = options.variant ?? pickVariant(m, { backend, shaderF16 });
      if (backend === 'wasm') refuseOverWasmHeap(m, variant, options.backend ?? 'auto', device.webgpu);
      return variant;
    };
    const bundle = await loadBundle(parsed, {
      store: this.options.store,
      variant: chooseVariant,
      onProgress: options.onProgress,
      signal: options.signal,
      fetchImpl: this.options.fetchImpl,
    });
    await this.unload();
    const manifest = bundle.manifest;
    const parts = modelParts(manifest);
    const variant = getVariant(manifest, bundle.variant);
    const { llm } = parts;
    const graphs = partGraphNames(parts).map((name): [string, GraphFiles] => [name, variant.graphs[variantGraphKey(manifest, name)]!]);
    const captureWanted = backend === 'webgpu' && this.options.captureDecode !== false;
    // With capture, the decoder and the embedding graph are opened together (they share weights).
    const opened = captureWanted ? graphs.filter(([name]) => name !== parts.decoderGraph && name !== parts.embedGraph) : graphs;
    const unpacker = backend === 'wasm' && this.options.unpackInt4 !== false ? new Int4Unpacker(wasmUnpackBudget(manifest, bundle.variant)) : undefined;
    const sessions = await openGraphs({ variant: bundle.variant, graphs: opened, readFile: (path) => bundle.readFile(path) }, backend, llm.numLayers, unpacker);
    const filesOf = (name: string) => graphs.find(([graph]) => graph === name)![1];
    const { capture, decode } = captureWanted
      ? await this.openDecoderForCapture(bundle, sessions, { decoder: [parts.decoderGraph, filesOf(parts.decoderGraph)], embed: [parts.embedGraph, filesOf(parts.embedGraph)] }, llm)
      : {
          capture: null,
          decode: backend === 'webgpu'
            ? { captured: false, embeddingInStep: false, summary: 'Each answer token is an ordinary decoder run (graph capture is turned off).' }
            : wasmDecodeInfo(unpacker?.totals ?? null),
        };
    const tokenizer = createTokenizer(
      await bundle.readJson<object>(manifest.tokenizer.tokenizerJson),
      await bundle.readJson<object>(manifest.tokenizer.tokenizerConfig),
    );
    const features = await Promise.all(parts.encoders.map((e) => encoderFeatures(e.features, (path) => bundle.readJson<Record<string, unknown>>(path))));
    const boundaries = parts.audioBoundaries ? await readBoundaries(bundle, parts.audioBoundaries.path, llm.hiddenSize) : null;
    const maxPositions = Math.min(llm.maxPositions, this.options.maxContextTokens ?? Number.POSITIVE_INFINITY);
    const prefill = await this.prefillFor(backend, {
      numHeads: llm.numHeads,
      numKvHeads: llm.numKvHeads,
      headDim: llm.headDim,
      ...(usesFusedRotary(llm.headDim) ? { rotaryTheta: llm.ropeTheta } : {}),
    });
    const decoder = new DecoderRunner(sessionOf(sessions, parts.decoderGraph), llm, {
      backend,
      embedTokens: sessionOf(sessions, parts.embedGraph),
      maxPositions,
      maxChunk: prefill.chunk ?? Number.POSITIVE_INFINITY,
      ...(capture ? { weights: capture.weights, captured: capture.step, kvBuffers: capture.step, embedWeights: capture.embed?.weights } : {}),
    });
    const generation = manifest.generation;
    const info: ModelInfo = {
      name: manifest.name,
      label: manifest.label,
      description: manifest.description,
      randomWeights: manifest.randomWeights === true,
      variant: bundle.variant,
      backend,
      backendReason: reason,
      backendAdvice: backendAdvice(backend, device.webgpu),
      prefill,
      decode,
      tasks: manifest.tasks,
      audioMarker: audioMarkerOf(manifest.prompt),
      maxPositions,
      defaults: {
        maxNewTokens: generation.maxNewTokens,
        doSample: generation.doSample,
        temperature: generation.temperature,
        topK: generation.topK,
        topP: generation.topP,
        repetitionPenalty: generation.repetitionPenalty,
        stopTokenIds: generation.stopTokenIds,
        // Without LoRA the scale is never fed (the decoder has no lora_scale input).
        loraScale: parts.lora?.defaultScale ?? 0,
        seed: 0,
        numBeams: generation.numBeams ?? 1,
        lengthPenalty: generation.lengthPenalty ?? 1,
        ...(manifest.reasoning ? { thinkingBudget: manifest.reasoning.defaultThinkingBudget } : {}),
      },
      localization: manifest.localization && variant.graphs.probe && decoder.hasProbeHidden ? manifest.localization : null,
      reasoning: manifest.reasoning ?? null,
      capabilities: {
        hasLora: parts.lora !== null,
        encoders: parts.encoders.map((e) => ({ name: e.name, type: e.type })),
        fusion: parts.fusion.type,
        llm: llm.type,
        localizes: llm.type === 'llama',
      },
      loadMs: performance.now() - started,
    };
    this.model = {
      bundle,
      manifest,
      parts,
      backend,
      sessions,
      tokenizer,
      decoder,
      audio: new AudioTokenizer(sessions, features, parts, manifest.audio, backend),
      info,
      boundaries,
      capture,
      unpacker: unpacker ?? null,
    };
    return info;
  }

  /**
   * Opens the decoder and the embedding graph for graph-captured steps; where that cannot be (a
   * graph our converter did not make, or a device that refuses), the ordinary graphs, with the
   * reason for the report. On a failure to open either, every session opened so far is released.
   */
  private async openDecoderForCapture(
    bundle: LoadedBundle,
    sessions: GraphSessions,
    graphs: { decoder: [string, GraphFiles]; embed: [string, GraphFiles] },
    llm: ModelParts['llm'],
  ): Promise<{ capture: CapturedDecoder | null; decode: DecodeInfo }> {
    const readFile = (path: string) => bundle.readFile(path);
    const [decoderName, decoderFiles] = graphs.decoder;
    const [embedName, embedFiles] = graphs.embed;
    let reason: string;
    let capture: CapturedDecoder | null = null;
    try {
      const opened = await openCapturedDecoder({ readFile }, decoderFiles, llm, embedFiles);
      if (opened.ok) capture = opened.decoder;
      else reason = opened.reason;
    } catch (error) {
      reason = error instanceof Error ? error.message : String(error);
    }
    try {
      sessions[decoderName] = capture?.session ?? await openGraph({ readFile }, decoderFiles, 'webgpu', decoderOutputLocations('webgpu', llm.numLayers));
      sessions[embedName] = capture?.embed?.session ?? await openGraph({ readFile }, embedFiles, 'webgpu', embedOutputLocations('webgpu'));
    } catch (error) {
      if (capture) await releaseCapturedDecoder(capture);
      await releaseGraphs(sessions);
      const detail = error instanceof Error ? error.message : String(error);
      throw new HarkError(
        'engine/backend-unavailable',
        `Could not prepare the model's "${bundle.variant}" decoder on WebGPU (${detail}). Try the WebAssembly backend in Settings, or a different model variant.`,
        { backend: 'webgpu', variant: bundle.variant },
      );
    }
    if (!capture) return { capture: null, decode: { captured: false, embeddingInStep: false, summary: `Each answer token is an ordinary decoder run: graph capture could not be set up (${reason!}).` } };
    const { ms, bytes, shared } = capture.upload;
    const weights = `the weights (${(bytes / 2 ** 20).toFixed(1)} MiB) were uploaded once in ${ms.toFixed(0)} ms and are shared with the prompt runs` +
      (shared > 0 ? ` (the embedding table once for the embedding, the step and the tied head)` : '');
    return {
      capture,
      decode: capture.embed
        ? { captured: true, embeddingInStep: true, summary: `Each answer token is one graph-captured GPU run, token id in and logits out: ${weights}.` }
        : { captured: true, embeddingInStep: false, summary: `Each answer token is an embedding run and one graph-captured GPU run (${capture.embedNote ?? 'the embedding graph was not given'}): ${weights}.` },
    };
  }

  /**
   * When captured steps stopped during the last answer (DecoderRunner.captureFailure: a replay that
   * differed from an ordinary run of the same token, or a device that could not replay), the
   * model's decode info says so from then on; returns the new info the first time, else null.
   */
  private noteCaptureStop(model: LoadedModel): DecodeInfo | null {
    const failure = model.decoder.captureFailure;
    if (!failure || !model.info.decode.captured) return null;
    const decode: DecodeInfo = {
      captured: false,
      embeddingInStep: false,
      summary:
        `Answer tokens now run as ordinary decoder runs: graph capture stopped during an answer (${failure}). ` +
        'Answers stay the same, only slower; loading the model again tries capture again.',
    };
    model.info = { ...model.info, decode };
    return decode;
  }

  /**
   * Encodes a recording (WAV bytes, or PCM channels decoded by the browser) and starts a fresh
   * conversation about it. The encoders and the connector run here, once per recording.
   */
  async setAudio(input: Uint8Array | DecodedAudio, onChunk?: (done: number, total: number) => void): Promise<AudioInfo> {
    const model = this.requireModel();
    this.ensureIdle();
    let t = performance.now();
    const decoded = input instanceof Uint8Array ? decodeWav(input) : input;
    const prepared = prepareAudio(decoded, {
      sampleRate: model.manifest.audio.sampleRate,
      minSeconds: model.manifest.audio.minSeconds,
      chunkSeconds: model.manifest.audio.chunkSeconds,
      maxSeconds: this.options.maxAudioSeconds ?? 600,
    });
    const decodeMs = performance.now() - t;
    t = performance.now();
    // Busy while encoding (ask() and the like refuse meanwhile); cancel() stops it between windows.
    const controller = new AbortController();
    this.running = controller;
    this.encoding = true;
    let tokens: AudioTokens;
    try {
      tokens = await model.audio.encode(prepared, onChunk, controller.signal);
    } catch (error) {
      if (controller.signal.aborted) {
        throw new HarkError('engine/cancelled', 'Listening to the recording was stopped. Press “Listen again” to have the model hear it, or open another recording.');
      }
      throw error;
    } finally {
      this.running = null;
      this.encoding = false;
    }
    this.conversation?.dispose();
    this.conversation = this.newConversationFor(model, withBoundaries(tokens.data, model.boundaries));
    this.audioInfo = {
      durationSeconds: tokens.durationSeconds,
      chunks: tokens.chunks,
      numTokens: tokens.numTokens,
      timeMap: tokens.timeMap,
      timings: { ...tokens.timings, decodeMs },
    };
    return this.audioInfo;
  }

  get audio(): AudioInfo | null {
    return this.audioInfo;
  }

  /** Diagnostics: receive every audio-stage intermediate (parity tests); null to stop. */
  inspectAudioStages(inspector: StageInspector | null): void {
    this.requireModel().audio.inspector = inspector;
  }

  /** Asks about the current recording; follow-ups continue the same conversation. */
  async ask(question: string, options: AskOptions = {}): Promise<AnswerResult> {
    const model = this.requireModel();
    if (!this.conversation) {
      throw new HarkError('engine/no-audio', 'There is no recording yet: record or open one, then ask about it.');
    }
    if (question.trim().length === 0) {
      throw new HarkError('engine/inference-failed', 'The question is empty: type what you want to know about the recording.');
    }
    this.ensureIdle();
    const { onToken, signal, onFirstLogits, ...overrides } = options;
    const params: GenerationParams = { ...model.info.defaults, ...definedOnly(overrides) };
    const reasoning = this.reasoningRun(model, params);
    // The thinking budget is enforced on one sequence: a reasoning model decodes without beams.
    if (reasoning) params.numBeams = 1;
    const controller = new AbortController();
    const forward = () => controller.abort();
    signal?.addEventListener('abort', forward);
    this.running = controller;
    try {
      const conversation = this.conversation;
      const result = await conversation.ask(question, params, onToken, controller.signal, onFirstLogits, reasoning);
      this.decoderSteps += Math.max(1, result.ids.length);
      const reasoned = reasoning ? { thoughts: result.thoughts ?? '', thinkingTokens: result.thinkingTokens ?? 0, forcedClose: result.forcedClose ?? false } : {};
      const decode = this.noteCaptureStop(model);
      return { text: result.text, ids: result.ids, stats: result.stats, turn: conversation.turns, ...reasoned, ...(decode ? { decode } : {}) };
    } finally {
      signal?.removeEventListener('abort', forward);
      this.running = null;
    }
  }

  /**
   * Answers `question` with one of `options.choices` and the probability of each
   * (models/salmonn/classify.py states the semantics). The question is fed exactly as ask() feeds
   * it, and the chosen label becomes this turn's answer, so a follow-up ask() continues after it.
   * Cancel() stops it between decoder runs; it then fails with engine/cancelled and, as after any
   * failed question, the conversation starts over.
   */
  async classify(question: string, options: ClassifyOptions): Promise<ClassifyResult> {
    const started = performance.now();
    const model = this.requireModel();
    const conversation = this.conversation;
    if (!conversation) {
      throw new HarkError('engine/no-audio', 'There is no recording yet: record or open one, then ask about it.');
    }
    if (question.trim().length === 0) {
      throw new HarkError('engine/inference-failed', 'The question is empty: type what you want to know about the recording.');
    }
    const choices = prepareChoices(options.choices, model.tokenizer);
    this.ensureIdle();
    const loraScale = options.loraScale ?? model.info.defaults.loraScale;
    const controller = new AbortController();
    const forward = () => controller.abort();
    if (options.signal?.aborted) controller.abort();
    options.signal?.addEventListener('abort', forward);
    this.running = controller;
    const longest = Math.max(...choices.map((c) => c.tokens.length));
    try {
      const result = await conversation.chooseAnswer(question, loraScale, longest, async (prompt) => {
        const prefilled = performance.now();
        const { scores, runs } = await scoreChoices(choices, {
          decoder: model.decoder,
          promptLogits: prompt.logits,
          cache: prompt.cache,
          loraScale,
          eosTokenId: model.manifest.prompt.eosTokenId,
          signal: controller.signal,
        });
        this.decoderSteps += 1 + runs;
        const best = scores[bestChoice(scores)]!;
        const finished = performance.now();
        const stats: ClassifyStats = {
          promptTokens: prompt.promptTokens,
          prefillMs: prefilled - started,
          scoringRuns: runs,
          scoringMs: finished - prefilled,
          totalMs: finished - started,
        };
        return {
          answerIds: best.tokens,
          result: {
            text: best.label,
            label: best.label,
            ids: best.tokens,
            choices: scores.map(({ label, probability, logProb, tokens }) => ({ label, probability, logProb, tokens })),
            stats,
          },
        };
      });
      return { ...result, turn: conversation.turns };
    } catch (error) {
      if (controller.signal.aborted) throw new HarkError('engine/cancelled', 'Choosing the answer was stopped; the next question starts a new conversation about the recording.');
      if (error instanceof HarkError) throw error;
      throw new HarkError('engine/inference-failed', `Choosing the answer failed (${error instanceof Error ? error.message : String(error)}). Try again; if it keeps failing, switch the backend to WebAssembly in Settings.`);
    } finally {
      options.signal?.removeEventListener('abort', forward);
      this.running = null;
    }
  }

  /**
   * Where in the current recording `eventText` happens (models/salmonn/localize.py describes the
   * method): two prompt runs and three probe runs, leaving the conversation as it was. Cancel()
   * stops it between runs (it then fails with engine/cancelled); it is refused while an answer is
   * being generated, as an answer is while it runs.
   */
  async localize(eventText: string, request: LocalizeRequest = {}): Promise<LocalizationResult & { vector?: Float32Array }> {
    const started = performance.now();
    const model = this.requireModel();
    const conversation = this.conversation;
    const audio = this.audioInfo;
    if (!conversation || !audio) {
      throw new HarkError('engine/no-audio', 'There is no recording yet: record or open one, then ask where something happens in it.');
    }
    const defaults = model.info.localization;
    if (!defaults) {
      throw new HarkError('engine/inference-failed', `This model (${model.info.label}) cannot find events in a recording: its files were converted without the localization probe. Convert it again with the current converter.`);
    }
    const event = eventText.trim();
    if (event.length === 0) {
      throw new HarkError('engine/inference-failed', 'Say what to look for, e.g. “a dog barking”.');
    }
    this.ensureIdle();
    const settings: LocalizeSettings = {
      alpha: request.alpha ?? defaults.alpha,
      widthSeconds: request.widthSeconds ?? defaults.widthSeconds,
      smoothTokens: request.smoothTokens ?? defaults.smoothTokens,
      loraScale: request.loraScale ?? model.info.defaults.loraScale,
      focusInstruction: defaults.focusInstruction,
      neutralInstruction: defaults.neutralInstruction,
    };
    if (!(settings.widthSeconds > 0) || !(settings.alpha > 0) || !Number.isInteger(settings.smoothTokens) || settings.smoothTokens < 1 || settings.smoothTokens % 2 === 0) {
      throw new HarkError('engine/inference-failed', 'Localization needs a width above 0 s, a strength above 0 and an odd smoothing width of at least 1.', {
        widthSeconds: settings.widthSeconds, alpha: settings.alpha, smoothTokens: settings.smoothTokens,
      });
    }
    const controller = new AbortController();
    const forward = () => controller.abort();
    request.signal?.addEventListener('abort', forward);
    this.running = controller;
    try {
      const probe = await this.probeFor(model, defaults);
      const embed = this.embedder(model);
      const numAudio = audio.numTokens;
      const outcome = await localizeEvent(
        {
          decoder: model.decoder,
          probe,
          promptEmbeds: async (question) => {
            const parts = promptParts(model.tokenizer, question, model.manifest.prompt);
            // conversation.audioTokens holds the audio boundaries, when the model has them, around the audio.
            const embeds = concatFloat32([await embed(parts.before), conversation.audioTokens, await embed(parts.after)]);
            const boundaryRows = model.boundaries ? 1 : 0;
            const positions = parts.before.length + numAudio + 2 * boundaryRows + parts.after.length;
            if (positions > model.info.maxPositions) {
              throw new HarkError('engine/context-overflow', `This recording is too long to search: the model can attend to ${model.info.maxPositions} tokens and the search prompt needs ${positions}.`, {
                maxPositions: model.info.maxPositions, needed: positions,
              });
            }
            return { embeds, audioStart: parts.before.length + boundaryRows };
          },
          numAudio,
          timeMap: audio.timeMap,
          durationSeconds: audio.durationSeconds,
        },
        event,
        settings,
        controller.signal,
        request.onProgress,
      );
      const { vector, ...found } = outcome;
      return {
        event,
        ...found,
        layers: defaults.layers,
        alpha: settings.alpha,
        widthSeconds: Math.min(settings.widthSeconds, audio.durationSeconds),
        smoothTokens: settings.smoothTokens,
        loraScale: settings.loraScale,
        ms: performance.now() - started,
        ...(request.captureVector ? { vector } : {}),
      };
    } catch (error) {
      if (controller.signal.aborted) throw new HarkError('engine/cancelled', 'Finding the event was stopped.');
      if (error instanceof HarkError) throw error;
      throw new HarkError('engine/inference-failed', `Finding the event failed (${error instanceof Error ? error.message : String(error)}). Try again; if it keeps failing, try the WebAssembly backend in Settings.`);
    } finally {
      request.signal?.removeEventListener('abort', forward);
      this.running = null;
    }
  }

  /**
   * Continues an earlier conversation about the current recording (e.g. restored from history
   * after a reload): the engine reads the questions and answers into a fresh conversation, so the
   * next ask() is a follow-up that knows them. An answer's `ids` are used when they decode to its
   * text with this model's tokenizer (exactly what was generated); otherwise its text is encoded.
   * A reasoning model's ids hold thoughts, forced tokens and answer: they are used when the answer
   * split from them is the turn's answer, after thinkOpen's tokens where ask() feeds those.
   */
  async resumeConversation(turns: ResumeTurn[], options: { loraScale?: number } = {}): Promise<ResumeResult> {
    const model = this.requireModel();
    if (!this.conversation) {
      throw new HarkError('engine/no-audio', 'There is no recording yet: record or open one, then ask about it.');
    }
    this.ensureIdle();
    const stops = new Set(model.info.defaults.stopTokenIds);
    const reasoning = model.manifest.reasoning;
    const answerText = (ids: number[]) => (reasoning ? splitReasoning(model.tokenizer.decode(ids), reasoning).answer : model.tokenizer.decode(ids));
    const prefix = reasoning && !reasoning.promptOpensThinking ? model.tokenizer.encode(reasoning.thinkOpen) : [];
    let exactTurns = 0;
    const replay = turns.map((turn) => {
      const ids = turn.ids?.filter((id) => !stops.has(id));
      const exact = ids !== undefined && ids.length > 0 && answerText(ids) === turn.answer;
      if (exact) exactTurns += 1;
      return { question: turn.question, answerIds: exact ? [...prefix, ...ids] : model.tokenizer.encode(turn.answer) };
    });
    const conversation = this.restartConversation(model, this.conversation);
    // Busy while re-reading (ask() and setAudio() refuse meanwhile); there is nothing to cancel.
    this.running = new AbortController();
    try {
      await conversation.replay(replay, options.loraScale ?? model.info.defaults.loraScale);
    } catch (error) {
      this.restartConversation(model, conversation);
      throw error;
    } finally {
      this.running = null;
    }
    return { turn: conversation.turns, positions: conversation.positions, exactTurns };
  }

  /**
   * Stops the answer being generated (within one decode step; the conversation stays usable), a
   * search, or the recording being encoded (between 30 s windows). 'answers': not the encoding.
   */
  cancel(scope: 'all' | 'answers' = 'all'): void {
    if (scope === 'answers' && this.encoding) return;
    this.running?.abort();
  }

  /** Forgets the questions and answers but keeps the encoded recording. */
  newConversation(): void {
    const model = this.requireModel();
    this.ensureIdle();
    if (this.conversation) this.restartConversation(model, this.conversation);
  }

  async unload(): Promise<void> {
    this.conversation?.dispose();
    this.conversation = null;
    this.audioInfo = null;
    if (this.model) {
      await this.options.onReleasingSessions?.();
      // The captured step and its buffers first: the conversation's cache lived in them.
      if (this.model.capture) await releaseCapturedDecoder(this.model.capture);
      await releaseGraphs(this.model.sessions);
    }
    const probe = this.model?.probe;
    if (probe) await probe.then((runner) => runner.release(), () => undefined);
    this.model = null;
    this.decoderSteps = 0;
  }

  /** Replaces a conversation with an empty one about the same (already encoded) recording. */
  private restartConversation(model: LoadedModel, old: Conversation): Conversation {
    old.dispose();
    this.conversation = this.newConversationFor(model, old.audioTokens);
    return this.conversation;
  }

  private newConversationFor(model: LoadedModel, audioTokens: Float32Array): Conversation {
    const reasoning = model.manifest.reasoning;
    const answerPrefixIds = reasoning && !reasoning.promptOpensThinking ? model.tokenizer.encode(reasoning.thinkOpen) : undefined;
    return new Conversation(
      { decoder: model.decoder, tokenizer: model.tokenizer, embed: this.embedder(model), format: model.manifest.prompt, maxPositions: model.info.maxPositions, answerPrefixIds },
      audioTokens,
    );
  }

  /** A reasoning model's budget for this question (checked), with the tokens of its forced closing text. */
  private reasoningRun(model: LoadedModel, params: GenerationParams): ReasoningRun | undefined {
    const spec = model.manifest.reasoning;
    if (!spec) return undefined;
    const budget = params.thinkingBudget ?? spec.defaultThinkingBudget;
    if (!validThinkingBudget(budget)) {
      throw new HarkError('engine/inference-failed', `The thinking budget must be a whole number of tokens, 0 or more (got ${budget}): change it in Settings.`, { thinkingBudget: budget });
    }
    return { markers: spec, budget, forcedIds: model.tokenizer.encode(spec.forcedClose) };
  }

  /** Token ids → their embedding rows ([n × hidden]) through the model's embedding graph. */
  private embedder(model: LoadedModel): (ids: number[]) => Promise<Float32Array> {
    const embedTokens = sessionOf(model.sessions, model.parts.embedGraph);
    const weights = model.capture?.embed?.weights;
    return async (ids) => {
      if (ids.length === 0) return new Float32Array(0);
      const input = new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]);
      const { inputs_embeds } = await embedTokens.run({ input_ids: input, ...weights });
      const data = (await inputs_embeds!.getData()) as Float32Array;
      inputs_embeds!.dispose();
      return data;
    };
  }

  /**
   * Localization's probe session, opened once per model on first use. It runs on the model's
   * backend, except where WebGPU attention over 32+ new tokens failed the self-check and the probe
   * has a layer whose attention output it needs (more than one probed layer): there on
   * WebAssembly, which is exact. A one-layer probe has no GroupQueryAttention (onnx_probe.py).
   */
  private probeFor(model: LoadedModel, defaults: LocalizationDefaults): Promise<ProbeRunner> {
    const files = getVariant(model.manifest, model.info.variant).graphs.probe!;
    const backend: Backend = model.backend === 'webgpu' && defaults.layers.length > 1 && model.info.prefill.chunk !== null ? 'wasm' : model.backend;
    // On WebAssembly the probe's int4 weights are unpacked within what the load left of the budget
    // (a fresh one where the model runs on WebGPU and only the probe falls back to WebAssembly).
    const unpacker =
      backend !== 'wasm' || this.options.unpackInt4 === false
        ? undefined
        : model.unpacker ?? new Int4Unpacker(wasmUnpackBudget(model.manifest, model.info.variant));
    model.probe ??= openGraph({ readFile: (path) => model.bundle.readFile(path) }, files, backend, {}, unpacker).then(
      (session) => new ProbeRunner(session, { layers: defaults.layers.length, hiddenSize: model.parts.llm.hiddenSize, numHeads: model.parts.llm.numHeads }),
    );
    const pending = model.probe;
    pending.catch(() => {
      if (model.probe === pending) model.probe = undefined; // a failed open is tried again next time
    });
    return pending;
  }

  private requireModel(): LoadedModel {
    if (!this.model) throw new HarkError('engine/not-ready', 'No model is loaded yet: pick a model and wait for it to load.');
    return this.model;
  }

  private ensureIdle(): void {
    if (this.running) {
      throw new HarkError('engine/busy', 'An answer is still being generated: wait for it or press Stop first.');
    }
  }

  private async resolveBackend(preference: BackendPreference): Promise<{ backend: Backend; reason: string; device: DeviceReport }> {
    const device = await probeDevice();
    if (preference === 'wasm') return { backend: 'wasm', reason: 'WebAssembly (CPU) was chosen in Settings.', device };
    if (preference === 'webgpu') {
      if (!device.webgpu.available) {
        throw new HarkError('engine/backend-unavailable', `WebGPU was chosen, but ${device.webgpu.reason}`);
      }
      return { backend: 'webgpu', reason: 'WebGPU was chosen in Settings.', device };
    }
    return { backend: device.recommended, reason: device.recommendationReason, device };
  }

  /**
   * How prompts are fed to the decoder: WebAssembly takes them whole; WebGPU only where the
   * attention self-check (run once per head layout, then remembered) finds one run exact.
   */
  private async prefillFor(backend: Backend, shape: AttentionShape): Promise<PrefillInfo> {
    if (backend !== 'webgpu') {
      return { chunk: null, check: 'not-needed', maxError: null, checkMs: null, summary: 'Prompts are processed in one run (WebAssembly attention is exact).' };
    }
    const key = `${shape.numHeads}/${shape.numKvHeads}/${shape.headDim}/${shape.rotaryTheta ?? 'separate'}`;
    let pending = this.attentionChecks.get(key);
    if (!pending) {
      pending = checkPrefillAttention('webgpu', shape);
      this.attentionChecks.set(key, pending);
    }
    const result = await pending;
    // A check that could not run is not remembered: the next load tries again.
    if (result.failure !== undefined) this.attentionChecks.delete(key);
    return {
      chunk: Number.isFinite(result.chunk) ? result.chunk : null,
      check: result.failure !== undefined ? 'failed' : result.exact ? 'exact' : 'inexact',
      maxError: Number.isFinite(result.maxError) ? result.maxError : null,
      checkMs: result.ms,
      summary: describeAttentionCheck(result),
    };
  }
}

/** The audio embeddings between the model's boundary rows (as they are fed), or as they are without them. */
function withBoundaries(audio: Float32Array, boundaries: Float32Array | null): Float32Array {
  if (!boundaries) return audio;
  const hidden = boundaries.length / 2;
  return concatFloat32([boundaries.subarray(0, hidden), audio, boundaries.subarray(hidden)]);
}

/** Format 2's audioBoundaries file: float32 little-endian [2, hidden]. */
async function readBoundaries(bundle: LoadedBundle, path: string, hidden: number): Promise<Float32Array> {
  const bytes = await bundle.readFile(path);
  if (bytes.byteLength !== 2 * hidden * 4) {
    throw new HarkError('bundle/hash-mismatch', `${path} has ${bytes.byteLength} bytes, expected ${2 * hidden * 4} (float32 [2, ${hidden}]): the bundle is damaged. Delete the model and load it again.`, { file: path });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Float32Array.from({ length: 2 * hidden }, (_, i) => view.getFloat32(i * 4, true));
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A valid manifest whose parts this app cannot run yet (e.g. an unknown fusion): refused by name. */
function refuseUnsupported(manifest: Manifest): void {
  const parts = modelParts(manifest);
  const unsupported = unsupportedParts(parts);
  if (unsupported) {
    throw new HarkError('bundle/unsupported-model', `This Hark cannot run the model "${manifest.label}" yet: ${unsupported}. Update the app, or choose another model.`, {
      fusion: parts.fusion.type,
    });
  }
}

/** The device report's decode line on WebAssembly, with what was unpacked at load. */
export function wasmDecodeInfo(unpacked: UnpackTotals | null): DecodeInfo {
  let summary = 'Each answer token is an ordinary decoder run on WebAssembly (graph capture is a WebGPU feature).';
  if (unpacked && unpacked.matmuls > 0) {
    summary += ` The model's int4 weights were unpacked to full precision once, at load (${unpacked.matmuls} matrices, ${(unpacked.fp32Bytes / 2 ** 20).toFixed(0)} MiB, ${(unpacked.ms / 1000).toFixed(1)} s): WebAssembly's int4 kernel would unpack them again on every run.`;
  }
  if (unpacked && unpacked.overBudget.length > 0) {
    summary += ` ${unpacked.overBudget.length} graph${unpacked.overBudget.length === 1 ? ' keeps its' : 's keep their'} int4 weights packed (unpacked they would not fit the memory set aside), so ${unpacked.overBudget.length === 1 ? 'it unpacks them' : 'they unpack them'} on every run: slower, but the same answers.`;
  }
  // A copy: the unpacker goes on counting (the probe, opened later, draws on the same budget).
  const snapshot = unpacked && unpacked.matmuls + unpacked.overBudget.length > 0 ? { ...unpacked, overBudget: [...unpacked.overBudget] } : null;
  return { captured: false, embeddingInStep: false, summary, int4Unpacked: snapshot };
}
