/**
 * Time to first token for a 30 s clip, in its own process (spawned by scripts/bench.ts for the
 * `encoders` model):
 *
 *   node --import tsx scripts/bench/encoderJob.ts SPEC.json      (an EncoderJobSpec, types.ts)
 *
 * SALMONN's audio side at real geometry (models/build_bench_encoders.py: Whisper-large-v2 encoder,
 * BEATs iter3+, window Q-Former to 4096) driven by the engine's own code: `prepareAudio`, the
 * Whisper log-mel and kaldi fbank features, `AudioTokenizer.encode` (speech encoder → audio
 * encoder → connector, encoder outputs kept on the GPU on WebGPU), with the session options of
 * graphs.ts. Then, where an LLM of the connector's width can run, the engine's `Conversation`
 * prefills the 30 s prompt ([BOS] + text + 88 audio tokens + text) to its first token.
 * TTFT = features + encoders + connector + prefill of the last encode.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setupJobDevice } from './jobDevice';
import type { AudioGraph, EncoderInfo, EncoderJobResult, EncoderJobSpec, ModelInfo } from './types';

const AUDIO_GRAPHS: AudioGraph[] = ['speechEncoder', 'audioEncoder', 'connector'];

const CLIP_SECONDS = 30;
const QUESTION = 'Please describe the audio in detail.';

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').slice(0, 300);
}

/** A deterministic 30 s, 16 kHz test clip: gliding harmonic tones with a syllable-rate envelope, plus noise. */
function testClip(createRng: (seed: number) => () => number): Float32Array {
  const rate = 16000;
  const clip = new Float32Array(CLIP_SECONDS * rate);
  const next = createRng(7);
  for (let i = 0; i < clip.length; i++) {
    const t = i / rate;
    const f0 = 140 + 40 * Math.sin(2 * Math.PI * 0.3 * t);
    const envelope = 0.5 + 0.5 * Math.sin(2 * Math.PI * 4 * t);
    let tone = 0;
    for (let h = 1; h <= 4; h++) tone += Math.sin(2 * Math.PI * f0 * h * t) / h;
    clip[i] = 0.2 * envelope * tone + 0.02 * (next() * 2 - 1);
  }
  return clip;
}

type Ort = typeof import('../../src/engine/ortRuntime').ort;
type Session = import('../../src/engine/ortRuntime').ort.InferenceSession;

/**
 * A partial build (models/build_bench_encoders.py stopped before Whisper-large): the stages that
 * exist, run as AudioTokenizer runs them; a missing speech encoder's output is fed to the
 * connector as zeros of its real shape [1, 1500, 1280], and its time is left out.
 */
async function encodeByStage(
  ort: Ort,
  sessions: Partial<Record<AudioGraph, Session>>,
  mel: { compute(chunk: Float32Array): Promise<Float32Array> },
  fbank: { compute(chunk: Float32Array): { data: Float32Array; frames: number } },
  chunk: Float32Array,
  info: EncoderInfo,
): Promise<{ timings: EncoderJobResult['encodes'][number]; numTokens: number }> {
  const { speechEncoder: speechSpec } = info.architecture;
  const timings = { featuresMs: 0, speechEncoderMs: Number.NaN, audioEncoderMs: Number.NaN, connectorMs: Number.NaN, totalMs: 0 };
  let t = performance.now();
  const melData = await mel.compute(chunk);
  const fb = fbank.compute(chunk);
  timings.featuresMs = performance.now() - t;
  let speech: import('../../src/engine/ortRuntime').ort.Tensor;
  if (sessions.speechEncoder) {
    t = performance.now();
    speech = (await sessions.speechEncoder.run({ input_features: new ort.Tensor('float32', melData, [1, speechSpec.numMelBins, speechSpec.inputFrames]) })).speech_embeds!;
    timings.speechEncoderMs = performance.now() - t;
  } else {
    speech = new ort.Tensor('float32', new Float32Array(speechSpec.outputFrames * speechSpec.width), [1, speechSpec.outputFrames, speechSpec.width]);
  }
  let numTokens = 0;
  if (sessions.audioEncoder) {
    t = performance.now();
    const audio = (await sessions.audioEncoder.run({ fbank: new ort.Tensor('float32', fb.data, [1, fb.frames, 128]) })).audio_embeds!;
    timings.audioEncoderMs = performance.now() - t;
    if (sessions.connector) {
      t = performance.now();
      const tokens = (await sessions.connector.run({ speech_embeds: speech, audio_embeds: audio })).audio_tokens!;
      await tokens.getData();
      timings.connectorMs = performance.now() - t;
      numTokens = tokens.dims[1]!;
      tokens.dispose();
    }
    audio.dispose();
  }
  speech.dispose();
  return { timings, numTokens };
}

const T0 = performance.now();
let partial: { path: string; result: EncoderJobResult } | undefined;

function progress(message: string): void {
  if (process.env.HARK_BENCH_VERBOSE) process.stderr.write(`    [${((performance.now() - T0) / 1000).toFixed(1)} s] ${message}\n`);
  if (partial) {
    partial.result.phase = message;
    writeFileSync(partial.path, JSON.stringify(partial.result, null, 1));
  }
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as EncoderJobSpec;
  const { resultPath, ...specOut } = spec;
  const info = JSON.parse(readFileSync(join(spec.encodersDir, 'bench.json'), 'utf8')) as EncoderInfo;
  const graphs = info.variants[spec.precision];
  if (!graphs) throw new Error(`the encoders have no ${spec.precision} variant (build them with --precisions ${spec.precision})`);
  const built = AUDIO_GRAPHS.filter((name) => graphs[name]);
  const files = (name: AudioGraph) => {
    const g = graphs[name]!;
    return [g.path, ...g.externalData.map((f) => join(g.path, '..', f))];
  };
  const weightBytes = built.flatMap(files).reduce((sum, f) => sum + statSync(join(spec.encodersDir, f)).size, 0);
  const result: EncoderJobResult = {
    spec: specOut,
    device: { label: '?', software: false, bandwidthGBs: Number.NaN, bandwidthMethod: '' },
    loadMs: 0,
    weightBytes,
    encodes: [],
    audioTokens: 0,
  };
  partial = { path: resultPath, result };
  result.device = await setupJobDevice(spec.backend, progress);
  const backend = spec.backend === 'webgpu-node' ? 'webgpu' : 'wasm';

  // ORT first (after the device's module hook); transformers.js (the Whisper features, the
  // tokenizer) only after it has been given our ORT (see peer.ts).
  const { ort, sessionOptions } = await import('../../src/engine/ortRuntime');
  const { configureOrtForNodeWebGpu } = await import('./nodeWebgpu');
  const { shareOrtWithTransformers } = await import('./peer');
  if (backend === 'webgpu') configureOrtForNodeWebGpu(ort.env);
  const read = async (path: string) => new Uint8Array(await readFile(path));
  shareOrtWithTransformers(ort, read);
  const wasmPaths = ort.env.wasm.wasmPaths;
  const { AudioTokenizer } = await import('../../src/engine/audioTokens');
  const { WhisperMel } = await import('../../src/engine/features/whisperMel');
  const { KaldiFbank, BEATS_FBANK } = await import('../../src/engine/features/kaldiFbank');
  const { prepareAudio } = await import('../../src/engine/audio/prepare');
  const { graphOutputOptions } = await import('../../src/engine/graphs');
  const { createRng } = await import('../../src/engine/llm/sampling');
  // On import transformers.js points ORT at a CDN copy of its wasm when none is set: undo.
  ort.env.wasm.wasmPaths = wasmPaths;
  type Manifest = import('../../src/engine/bundle/manifest').Manifest;
  type GraphSessions = import('../../src/engine/graphs').GraphSessions;

  try {
    const started = performance.now();
    const open = async (name: AudioGraph) => {
      const [model, ...data] = files(name).map((f) => join(spec.encodersDir, f));
      const externalData = await Promise.all(graphs[name]!.externalData.map(async (path, i) => ({ path, data: await read(data[i]!) })));
      return ort.InferenceSession.create(await read(model!), sessionOptions(backend, { externalData, ...graphOutputOptions(name, backend, 0) }));
    };
    const sessions: Partial<Record<AudioGraph, Session>> = {};
    for (const name of built) sessions[name] = await open(name);
    result.loadMs = performance.now() - started;
    progress('encoders loaded');

    const mel = new WhisperMel(JSON.parse(readFileSync(join(spec.encodersDir, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>);
    const fbank = new KaldiFbank(BEATS_FBANK);
    const prepared = prepareAudio({ sampleRate: info.audio.sampleRate, channels: [testClip(createRng)] }, info.audio);
    result.missing = AUDIO_GRAPHS.filter((name) => !sessions[name]);
    // The engine's AudioTokenizer when all three graphs exist; it reads only them and the
    // manifest's architecture + audio fields. A partial build is timed stage by stage instead.
    // The engine's graph names for SALMONN's parts (bundle/parts.ts maps format 1 onto them).
    const { modelParts } = await import('../../src/engine/bundle/parts');
    const partsSessions = { 'encoder.whisper': sessions.speechEncoder, 'encoder.beats': sessions.audioEncoder, connector: sessions.connector };
    const features = [
      { scope: 'chunk' as const, stage: 'mel' as const, compute: async (chunk: Float32Array) => ({ data: await mel.compute(chunk), dims: [1, mel.featureSize, mel.frames] }) },
      { scope: 'chunk' as const, stage: 'fbank' as const, compute: async (chunk: Float32Array) => { const f = fbank.compute(chunk); return { data: f.data, dims: [1, f.frames, BEATS_FBANK.numMelBins] }; } },
    ];
    const parts = modelParts({
      formatVersion: 1,
      architecture: { ...info.architecture, llm: {}, lora: null },
      audio: info.audio,
      features: { whisper: { hopLength: 160 }, fbank: BEATS_FBANK },
    } as unknown as Manifest);
    const tokenizer =
      result.missing.length === 0
        ? new AudioTokenizer(partsSessions as unknown as GraphSessions, features, parts, info.audio, backend)
        : undefined;
    const encode = async () => {
      if (tokenizer) return tokenizer.encode(prepared);
      return { ...(await encodeByStage(ort, sessions, mel, fbank, prepared.chunks[0]!, info)), data: undefined };
    };
    let tokens: Awaited<ReturnType<NonNullable<typeof tokenizer>['encode']>> | undefined;
    for (let run = 0; run < spec.encodeRuns; run++) {
      const t = performance.now();
      const encoded = await encode();
      if (encoded.data) tokens = encoded as typeof tokens;
      result.encodes.push({ ...encoded.timings, totalMs: performance.now() - t });
      result.audioTokens = encoded.numTokens;
      progress(`encode ${run + 1}`);
      const last = result.encodes.at(-1)!;
      process.stderr.write(
        `  encoders ${spec.precision} ${spec.backend} encode ${run + 1}: features ${last.featuresMs.toFixed(0)} ms, Whisper ${last.speechEncoderMs.toFixed(0)} ms, ` +
          `BEATs ${last.audioEncoderMs.toFixed(0)} ms, Q-Former ${last.connectorMs.toFixed(0)} ms\n`,
      );
    }
    await Promise.all(Object.values(sessions).map((s) => s.release()));

    if (!tokens) result.prefillSkipped = `graphs not built: ${result.missing.join(', ')}`;
    else if ('skip' in spec.prefill) result.prefillSkipped = spec.prefill.skip;
    else if (result.device.software && !spec.prefill.onSoftware) {
      result.prefillSkipped =
        `software adapter: a ${spec.prefill.model} prefill of the ~111-token prompt takes well over 14 min on SwiftShader here (--ttft-prefill runs it anyway)`;
    } else if (tokens) {
      const { openOurs } = await import('./ours');
      const { Conversation } = await import('../../src/engine/llm/conversation');
      const { promptParts } = await import('../../src/engine/llm/prompt');
      const llmInfo = JSON.parse(readFileSync(join(spec.prefill.modelDir, 'bench.json'), 'utf8')) as ModelInfo;
      const llmFiles = llmInfo.variants.int4;
      if (!llmFiles) throw new Error(`${spec.prefill.model} has no int4 variant`);
      if (llmInfo.geometry.hiddenSize !== info.architecture.connector.outputWidth) {
        throw new Error(`${spec.prefill.model} has hidden ${llmInfo.geometry.hiddenSize}, the connector gives ${info.architecture.connector.outputWidth}`);
      }
      const llmRoot = llmFiles.fromRepoRoot ? spec.repoRoot : spec.prefill.modelDir;
      const llm = await openOurs(read, llmRoot, llmFiles, llmInfo, backend, join(spec.repoRoot, 'models', 'tokenizer'));
      progress('llm loaded');
      const format = (JSON.parse(readFileSync(join(spec.repoRoot, 'models/bundles/salmonn-tiny/manifest.json'), 'utf8')) as Pick<Manifest, 'prompt'>).prompt;
      const parts = promptParts(llm.tokenizer, QUESTION, format);
      const conversation = new Conversation(
        { decoder: llm.decoder, tokenizer: llm.tokenizer, embed: llm.embed, format, maxPositions: llmInfo.geometry.maxPositions },
        tokens.data,
      );
      const t = performance.now();
      await conversation.ask(QUESTION, {
        maxNewTokens: 1, stopTokenIds: [], loraScale: llmInfo.geometry.loraScale, doSample: false,
        temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0, numBeams: 1, lengthPenalty: 1,
      });
      result.prefill = {
        model: spec.prefill.model,
        loadMs: llm.loadMs,
        promptTokens: parts.before.length + tokens.numTokens + parts.after.length,
        ms: performance.now() - t,
      };
      conversation.dispose();
      await llm.release();
    }
  } catch (error) {
    result.error = errorText(error);
  }
  result.phase = 'done';
  writeFileSync(resultPath, JSON.stringify(result, null, 1));
}

main().then(
  () => process.exit(0), // dawn.node keeps the event loop alive
  (error: unknown) => {
    process.stderr.write(`bench encoder job failed: ${errorText(error)}\n`);
    process.exit(1);
  },
);
