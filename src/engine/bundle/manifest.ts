/**
 * The bundle manifest (`manifest.json`, format versions 1 and 2): TypeScript types mirroring
 * `models/manifest.schema.json` (format 1: SALMONN's fixed architecture) and
 * `models/manifest.v2.schema.json` (format 2: a declared pipeline, docs/bundle-format-2.md),
 * validation against those schemas (no eval, so it runs under a strict CSP and in workers), and
 * the two questions the loader asks of a manifest: which files does a variant need, and which
 * variant suits this device. What the model is made of, whatever the format, is parts.ts's question.
 */
import { Validator, type OutputUnit, type Schema } from '@cfworker/json-schema';
import manifestSchema from '../../../models/manifest.schema.json';
import manifestSchemaV2 from '../../../models/manifest.v2.schema.json';
import type { Backend } from '../device';
import { HarkError, printable } from '../errors';
import type { LocalizationDefaults } from '../localize/types';
import { modelParts, partGraphNames, variantGraphKey } from './parts';
import { pipelineProblems } from './pipelineCheck';

export const MANIFEST_FILE = 'manifest.json';
/** The format versions this app reads. */
export const FORMAT_VERSIONS: readonly number[] = [1, 2];
/** The newest of them (what a newer bundle is compared with). */
export const FORMAT_VERSION = 2;

export type VariantName = 'fp32' | 'fp16' | 'int4' | 'int4f16';
/** Format 1's five graphs. */
export type GraphName = 'speechEncoder' | 'audioEncoder' | 'connector' | 'embedTokens' | 'decoder';
export const GRAPH_NAMES: readonly GraphName[] = ['speechEncoder', 'audioEncoder', 'connector', 'embedTokens', 'decoder'];

export interface GraphSpec {
  /** Path of the .onnx file inside the bundle. */
  path: string;
  /** External-data files the graph references, relative to the graph's folder. */
  externalData: string[];
}

export interface Variant {
  /** False for variants that could not be run where the bundle was made. */
  tested: boolean;
  note?: string;
  /**
   * Format 1: the five graphs, and localization's steering probe in bundles converted with it.
   * Format 2: keyed by the graph names the pipeline uses ("encoder.<name>", "adapter.<encoder>",
   * "connector", "embedTokens", "decoder"; optionally "probe").
   */
  graphs: Record<GraphName, GraphSpec> & { probe?: GraphSpec };
}

/** A format-2 variant: graphs keyed by any pipeline graph name (parts.ts lists which). */
export interface VariantV2 {
  tested: boolean;
  note?: string;
  graphs: Record<string, GraphSpec | undefined> & { embedTokens: GraphSpec; decoder: GraphSpec; probe?: GraphSpec };
}

export interface FileEntry {
  path: string;
  size: number;
  /** Lower-case hex SHA-256 of the file's bytes. */
  sha256: string;
}

export interface SpeechEncoderSpec {
  type: 'whisper';
  numMelBins: number;
  inputFrames: number;
  outputFrames: number;
  width: number;
  layers: number;
  heads: number;
  ffnDim: number;
}

export interface AudioEncoderSpec {
  type: 'beats';
  numMelBins: number;
  patchSize: number;
  width: number;
  layers: number;
  heads: number;
  ffnDim: number;
}

export interface ConnectorSpec {
  type: 'window-qformer';
  hidden: number;
  layers: number;
  heads: number;
  ffnDim: number;
  windowFrames: number;
  strideFrames: number;
  /** Audio embeddings per 30 s chunk (88 for SALMONN). */
  tokensPerChunk: number;
  outputWidth: number;
}

export interface LlmSpec {
  type: 'llama';
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions: number;
  ropeTheta: number;
  rmsNormEps: number;
}

export interface LoraSpec {
  rank: number;
  alpha: number;
  /** alpha / rank: the scale the model was trained with. */
  defaultScale: number;
  targets: string[];
}

export interface Architecture {
  speechEncoder: SpeechEncoderSpec;
  audioEncoder: AudioEncoderSpec;
  connector: ConnectorSpec;
  llm: LlmSpec;
  lora: LoraSpec;
}

export interface AudioSpec {
  sampleRate: number;
  /** Shorter audio is zero-padded to this length. */
  minSeconds: number;
  /** Longer audio is split into chunks of this length, each encoded alone. */
  chunkSeconds: number;
  /** Duration of one speech-encoder output frame (the time map's unit). */
  encoderFrameSeconds: number;
}

export interface WhisperFeatureSpec {
  /** Path of a transformers.js WhisperFeatureExtractor config inside the bundle. */
  preprocessorConfig: string;
  featureSize: number;
  samplingRate: number;
  nFft: number;
  hopLength: number;
  chunkLength: number;
}

export interface FbankFeatureSpec {
  waveformScale: number;
  numMelBins: number;
  sampleFrequency: number;
  frameLengthMs: number;
  frameShiftMs: number;
  mean: number;
  std: number;
  /** BEATs divides by stdMultiplier * std (2 for BEATs). */
  stdMultiplier: number;
}

export interface PromptSpec {
  /** Chat template with {} for the user text, e.g. 'USER: {}\nASSISTANT:'. */
  template: string;
  /** User text with {} for the question, containing the audio slot. */
  userText: string;
  audioSlot: string;
  bosTokenId: number;
  eosTokenId: number;
}

/**
 * How a follow-up writes the earlier turn back, for a chat template that rewrites it (Qwen3's keeps
 * only the answer of an earlier assistant turn, its thoughts dropped): the previous prompt's
 * `generationPrompt` (the template's tail that opened the assistant turn) and everything generated
 * after it leave the KV cache, then `assistantTurn` around the generated text after its last
 * `thoughtsEnd` (leading line breaks removed; all of it without one) and the next question's
 * template are fed.
 */
export interface PromptHistory {
  generationPrompt: string;
  /** With {} for the earlier answer, e.g. "<|im_start|>assistant\n{}<|im_end|>\n". */
  assistantTurn: string;
  thoughtsEnd: string;
}

/** Format 2's prompt: no BOS possible (Qwen3), and an optional system text before the first turn. */
export interface PromptSpecV2 extends Omit<PromptSpec, 'bosTokenId'> {
  bosTokenId: number | null;
  /** Tokenized on its own and placed once before the first turn. */
  system?: string;
  /** Absent: a follow-up keeps the earlier turn as generated and feeds [eos] + template (Vicuna). */
  history?: PromptHistory;
}

export interface GenerationSpec {
  maxNewTokens: number;
  numBeams?: number;
  doSample: boolean;
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  lengthPenalty?: number;
  stopTokenIds: number[];
}

/**
 * A reasoning LLM's answer format (ALARM's Qwen3-Thinking: "<think> … </think>" then the answer,
 * optionally wrapped in "<answer> … </answer>"), and its thinking budget. With it the engine
 * streams thoughts apart from the answer and, when the budget runs out, feeds `forcedClose`
 * (src/engine/llm/reasoning.ts; models/salmonn/reasoning.py is the reference).
 */
export interface ReasoningSpec {
  /** Text that opens the thoughts, e.g. '<think>'. */
  thinkOpen: string;
  /** Text that ends the thoughts, e.g. '</think>': the first occurrence in the generated text ends thinking. */
  thinkClose: string;
  /**
   * True when `prompt.template` already ends with `thinkOpen` (Qwen3-Thinking's chat template opens
   * `<think>` itself); false: the engine feeds `thinkOpen`'s tokens after each question's prompt.
   */
  promptOpensThinking: boolean;
  /** Optional wrapper of the answer after the thoughts, e.g. '<answer>': stripped when the answer starts with it. */
  answerOpen?: string;
  /** e.g. '</answer>': the answer ends there (text after it is not shown). */
  answerClose?: string;
  /** Most thought tokens before `forcedClose` is fed (ALARM: 1024); 0 skips thinking. The user may change it. */
  defaultThinkingBudget: number;
  /**
   * Text fed (tokenized, not sampled) when the budget is reached without `thinkClose`; it must
   * contain `thinkClose`. ALARM: "\n\nConsidering the limited time by the user, I have to give the
   * solution based on the thinking directly now.\n</think>\n\n".
   */
  forcedClose: string;
}

export interface TokenizerSpec {
  tokenizerJson: string;
  tokenizerConfig: string;
}

/** What both formats share. */
interface ManifestCommon {
  format: 'hark-bundle';
  name: string;
  /** Short human label shown in the model manager. */
  label: string;
  description: string;
  /** True for test bundles whose weights are random: their answers are meaningless. */
  randomWeights?: boolean;
  source?: Record<string, string>;
  audio: AudioSpec;
  /** Task prompts shipped with the checkpoint. */
  tasks: Record<string, string>;
  generation: GenerationSpec;
  tokenizer: TokenizerSpec;
  /** Defaults of event localization; absent in bundles converted before it existed. */
  localization?: LocalizationDefaults;
  /** A reasoning LLM's thoughts/answer markers and thinking budget; absent for models that answer directly. */
  reasoning?: ReasoningSpec;
  files: FileEntry[];
}

/**
 * Features computed once per RECORDING (ALARM's extractors normalise or pad over the whole
 * recording), not per chunk: the result is [1, T, …] over all the audio, and the encoder then
 * runs on consecutive pieces of `splitFrames` steps of its time axis (ALARM's max_time ×
 * frame_rate), the last piece shorter or padded as the spec says.
 */
export interface RecordingScoped {
  scope: 'recording';
  /** Time steps (rows of the time axis: frames, or samples for a waveform) per encoder run. */
  splitFrames: number;
}

/**
 * w2v-BERT 2.0's input (ALARM): transformers.js' SeamlessM4TFeatureExtractor (Kaldi fbank with a
 * Povey window, 2^15 scale, per-bin mean/variance normalisation over the recording, pairs of
 * frames stacked) on the recording with `edgePadding` zero samples on both sides.
 */
export interface SeamlessFbankSpec extends RecordingScoped {
  /** facebook/w2v-bert-2.0's preprocessor_config.json: num_mel_bins 80, stride 2, padding_value 1. */
  numMelBins: number;
  samplingRate: number;
  stride: number;
  paddingValue: number;
  /** Zero samples added before and after the recording (ALARM: 160). */
  edgePadding: number;
}

/**
 * Kaldi fbank over the whole recording (SSLAM in ALARM): optionally the waveform's mean removed,
 * `edgePadding` zero samples on both sides, torchaudio's fbank with `window` (and format 1's
 * FbankFeatureSpec settings), zero log-mel frames appended up to a multiple of `padToMultiple`
 * frames, then (x − mean) / (stdMultiplier · std) over all of them (so padding frames hold
 * −mean / (stdMultiplier · std), not 0).
 */
export interface RecordingFbankSpec extends FbankFeatureSpec, RecordingScoped {
  window: 'povey' | 'hanning';
  /** Subtract the waveform's mean before padding (SSLAM's extractor does). */
  removeMean: boolean;
  edgePadding: number;
  padToMultiple: number;
}

/**
 * The waveform itself at another rate (MuQ in ALARM): torchaudio's windowed-sinc
 * `Resample(inputRate, outputRate)` (Hann-windowed sinc, `lowpassFilterWidth` zero crossings,
 * `rolloff`), then zeros appended up to a multiple of `padToMultiple` samples.
 */
export interface ResampledWaveformSpec extends RecordingScoped {
  inputRate: number;
  outputRate: number;
  lowpassFilterWidth: number;
  rolloff: number;
  padToMultiple: number;
}

/**
 * How samples become an encoder graph's input (format 2: format 1's per-chunk feature specs plus
 * a type, and the recording-scoped specs of ALARM-CA's other encoders).
 */
export type FeatureSpecV2 =
  | ({ type: 'whisper-mel' } & WhisperFeatureSpec)
  | ({ type: 'kaldi-fbank' } & FbankFeatureSpec)
  | ({ type: 'seamless-fbank' } & SeamlessFbankSpec)
  | ({ type: 'kaldi-fbank-recording' } & RecordingFbankSpec)
  | ({ type: 'resampled-waveform' } & ResampledWaveformSpec);

/** The feature specs computed per recording (the others are computed per chunk). */
export type RecordingFeatureSpec = Extract<FeatureSpecV2, { scope: 'recording' }>;

export function isRecordingScoped(spec: FeatureSpecV2): spec is RecordingFeatureSpec {
  return 'scope' in spec && spec.scope === 'recording';
}

export type EncoderType = 'whisper' | 'beats' | 'w2v-bert' | 'sslam' | 'muq';

export interface EncoderSpecV2 {
  /** Unique; names the graph "encoder.<name>". */
  name: string;
  type: EncoderType;
  features: FeatureSpecV2;
  /** The encoder's numbers (informative, except `patchSize`: the fewest fbank frames it takes). */
  architecture: Record<string, number>;
  /** Which encoder layers the model reads (informative: the graph already combines them). */
  hiddenLayers?: number[];
  input: string;
  /** [1, outputFrames, outputWidth]. */
  output: string;
  outputWidth: number;
  /** Duration of one output frame. */
  frameSeconds: number;
  /** This encoder's chunk length when it differs from audio.chunkSeconds (fused ALARM: SSLAM 10.24 s). */
  chunkSeconds?: number;
  /** The rate its features are computed at when it differs from audio.sampleRate (MuQ: 24000). */
  sampleRate?: number;
  /** Its real output frames over the recording: floor(count / divisor) (ALARM's calc_length); absent: the single-encoder rule. */
  realFrames?: RealFramesSpec;
  /**
   * A second graph input, float32 [1, frames per piece]: 1 for the frames the model attends, 0 for
   * padding (MuQ: frame t of a piece with n real samples is real iff t × realFrames.divisor < n).
   */
  maskInput?: string;
}

/**
 * What an encoder's real output frames are counted from: Whisper's attended mel frames, the
 * real frames of per-recording features (fbank / stacked seamless frames), or real samples at the
 * encoder's rate (MuQ).
 */
export interface RealFramesSpec {
  from: 'melFrames' | 'fbankFrames' | 'featureFrames' | 'samples';
  divisor: number;
}

export interface AdapterSpecV2 {
  encoder: string;
  type: 'conv-downsampler' | 'mlp' | 'identity';
  /** "adapter.<encoder>"; absent for identity. */
  graph?: string;
  input?: string;
  output?: string;
  /** T' = ceil(T / downsample); default 1. */
  downsample?: number;
  width: number;
  details?: Record<string, number | string | boolean>;
}

/**
 * How many embeddings the LLM reads: fixed per chunk (SALMONN); max(min, floor(melFrames / divisor))
 * (ALARM); max(min, max over encoders of floor(realFrames / downsample)) (ALARM-CA); or
 * max(min, leading + floor(main realFrames / main downsample)) (ALARM-P: `leading` rows that
 * summarise the whole recording, then the main encoder's rows).
 */
export type TokenCountSpec =
  | { perChunk: number }
  | { perSecond: number; from: 'melFrames'; divisor: number; min: number }
  | { perSecond: number; from: 'adapterLengths'; min: number }
  | { perSecond: number; from: 'mainLength'; leading: number; min: number };

export interface FusionSpecV2 {
  type: 'window-qformer' | 'sum' | 'cross-attention' | 'perceiver';
  scope: 'chunk' | 'recording';
  /** Absent for "sum" over a single encoder (identity). */
  graph?: 'connector';
  /** Encoder name → the graph's input name; absent for "sum" over a single encoder (no graph). */
  inputs?: Record<string, string>;
  output?: string;
  width: number;
  /** window-qformer: encoder frames per window and between windows (the time map). */
  window?: { frames: number; stride: number };
  details?: Record<string, number | string | boolean>;
  tokens: TokenCountSpec;
  /**
   * cross-attention: the encoder whose rows are the queries and whose adapter length masks both
   * attentions; perceiver: the encoder whose rows follow the latents.
   */
  mainEncoder?: string;
  /** cross-attention: the graph input (int64 [1]) fed with the main encoder's adapter length. */
  lengthInput?: string;
}

export interface LlmSpecV2 extends Omit<LlmSpec, 'type'> {
  type: 'llama' | 'qwen3';
  /** Per-head RMSNorm of q and k before RoPE (Qwen3). */
  qkNorm: boolean;
  tieWordEmbeddings: boolean;
}

export interface PipelineSpec {
  encoders: EncoderSpecV2[];
  adapters?: AdapterSpecV2[];
  fusion: FusionSpecV2;
  /** float32 LE [2, llm.hiddenSize]: row 0 before the audio embeddings, row 1 after. */
  audioBoundaries?: { path: string; shape: number[] };
  llm: LlmSpecV2;
  /** null: no LoRA (no lora_scale input, no slider). */
  lora: LoraSpec | null;
}

/** Format 2 (docs/bundle-format-2.md): a model described by its parts. */
export interface ManifestV2 extends ManifestCommon {
  formatVersion: 2;
  family: 'salmonn' | 'alarm';
  pipeline: PipelineSpec;
  prompt: PromptSpecV2;
  variants: Partial<Record<VariantName, VariantV2>>;
}

export type Manifest = ManifestV1 | ManifestV2;

/** Format 1: Whisper + BEATs → window Q-Former → LLaMA with LoRA. */
export interface ManifestV1 {
  format: 'hark-bundle';
  formatVersion: 1;
  name: string;
  family: 'salmonn';
  /** Short human label shown in the model manager. */
  label: string;
  description: string;
  /** True for test bundles whose weights are random: their answers are meaningless. */
  randomWeights?: boolean;
  source?: Record<string, string>;
  architecture: Architecture;
  audio: AudioSpec;
  features: { whisper: WhisperFeatureSpec; fbank: FbankFeatureSpec };
  prompt: PromptSpec;
  /** Task prompts shipped with the checkpoint. */
  tasks: Record<string, string>;
  generation: GenerationSpec;
  tokenizer: TokenizerSpec;
  /** Defaults of event localization; absent in bundles converted before it existed. */
  localization?: LocalizationDefaults;
  /** A reasoning LLM's thoughts/answer markers and thinking budget; absent for models that answer directly. */
  reasoning?: ReasoningSpec;
  /** Graph sets by precision; every variant has the same five graphs (and the probe, with localization). */
  variants: Partial<Record<VariantName, Variant>>;
  files: FileEntry[];
}

const validators = new Map<number, Validator>();
/** Format 2's schema for a format-2 manifest; format 1's for anything else (its errors are the familiar ones). */
function schemaValidator(version: unknown): Validator {
  const v = version === 2 ? 2 : 1;
  let validator = validators.get(v);
  if (!validator) {
    // shortCircuit=false: collect every error, so the message can name the most specific ones.
    validator = new Validator((v === 2 ? manifestSchemaV2 : manifestSchema) as unknown as Schema, '2020-12', false);
    validators.set(v, validator);
  }
  return validator;
}

/** How many schema errors a `bundle/manifest-invalid` message lists. */
const MAX_LISTED_ERRORS = 5;

/** '#/architecture/llm' → '/architecture/llm' (a JSON pointer); the root is shown as '(root)'. */
function pointer(location: string): string {
  const p = location.replace(/^#/, '');
  return p === '' ? '(root)' : p;
}

/**
 * cfworker reports every level of a failure ("property architecture does not match", then
 * "property llm does not match", …, then the leaf). Keep only the leaves: an error is dropped when
 * another error's keyword location lies below its own. `false` boolean-schema errors duplicate
 * the `additionalProperties` error that produced them, which is reworded instead.
 */
function leafErrors(errors: readonly OutputUnit[]): string[] {
  const relevant = errors.filter((e) => e.keyword !== 'false');
  const leaves = relevant.filter(
    (e) => !relevant.some((f) => f !== e && f.keywordLocation.startsWith(`${e.keywordLocation}/`)),
  );
  return leaves.map((e) => {
    const extra = /^Property "(.*)" does not match additional properties schema\.$/.exec(e.error);
    if (e.keyword === 'additionalProperties' && extra) {
      return `${printable(pointer(`${e.instanceLocation}/${extra[1]}`))}: unknown property "${printable(extra[1]!)}"`;
    }
    return `${printable(pointer(e.instanceLocation))}: ${printable(e.error.replace(/\.$/, ''), 300)}`;
  });
}

function invalid(problems: string[], name?: string): HarkError {
  const shown = problems.slice(0, MAX_LISTED_ERRORS);
  const more = problems.length > shown.length ? ` (and ${problems.length - shown.length} more)` : '';
  const what = name ? `The manifest of bundle "${name}"` : 'The bundle manifest';
  return new HarkError(
    'bundle/manifest-invalid',
    `${what} is not valid: ${shown.join('; ')}${more}. The bundle is damaged or was not made by Hark's ` +
      `converter: rebuild it (models/convert.py) or choose another bundle.`,
    { errors: shown.join('\n'), errorCount: problems.length },
  );
}

/**
 * Validates a parsed `manifest.json`. Throws `bundle/unsupported-version` for another format
 * version and `bundle/manifest-invalid` (listing the first few problems with their JSON
 * pointers) for anything else the schema rejects or for file references missing from `files`.
 */
export function parseManifest(json: unknown): Manifest {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw invalid(['(root): expected a JSON object']);
  }
  const record = json as Record<string, unknown>;
  const version = record.formatVersion;
  if (record.format === 'hark-bundle' && typeof version === 'number' && !FORMAT_VERSIONS.includes(version)) {
    const newer = version > FORMAT_VERSION;
    const reads = `versions ${FORMAT_VERSIONS.join(' and ')}`;
    throw new HarkError(
      'bundle/unsupported-version',
      newer
        ? `This model bundle uses format version ${version}, made for a newer Hark (this app reads ${reads}): update the app, then load the bundle again.`
        : `This model bundle uses format version ${version}, which this Hark no longer reads (it reads ${reads}): convert the model again with the current models/convert.py.`,
      { formatVersion: version, supported: FORMAT_VERSIONS.join(',') },
    );
  }
  let result: ReturnType<Validator['validate']>;
  try {
    result = schemaValidator(version).validate(json);
  } catch (error) {
    // cfworker's validator throws on some JSON.parse output, e.g. a property name holding a lone
    // surrogate ("\ud800", which it cannot URI-encode into an error location).
    throw invalid([`(root): the validator could not read it (${printable(error instanceof Error ? error.message : String(error))})`]);
  }
  // Quoted in messages only when it is a valid bundle name (anything else may be hostile text).
  const name = typeof record.name === 'string' && /^[a-z0-9][a-z0-9._-]{0,99}$/.test(record.name) ? record.name : undefined;
  if (!result.valid) throw invalid(leafErrors(result.errors), name);

  const manifest = json as Manifest;
  const problems: string[] = [];
  const listed = new Set<string>();
  manifest.files.forEach((file, i) => {
    // The schema's pattern keeps paths relative, without '..', '%', '\\' or ':'; the store also
    // needs every '/'-separated segment to be a real name (no empty or '.' segment).
    if (file.path.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      problems.push(`/files/${i}/path: "${file.path}" is not a plain relative path (empty or "." segment)`);
    }
    if (listed.has(file.path)) problems.push(`/files/${i}/path: "${file.path}" is listed twice`);
    listed.add(file.path);
  });
  if (manifest.formatVersion === 2) problems.push(...pipelineProblems(manifest));
  // variantFiles reads the parts, which a format-2 manifest with pipeline problems may not have.
  if (problems.length > 0) throw invalid(problems, manifest.name);
  for (const [variant] of variantEntries(manifest)) {
    for (const path of variantFiles(manifest, variant)) {
      if (!listed.has(path)) problems.push(`/variants/${variant}: needs "${printable(path)}", which is not in /files`);
    }
  }
  if (manifest.reasoning && !manifest.reasoning.forcedClose.includes(manifest.reasoning.thinkClose)) {
    problems.push('/reasoning/forcedClose: must contain thinkClose (the forced text ends the thoughts)');
  }
  if (problems.length > 0) throw invalid(problems, manifest.name);
  return manifest;
}

function variantEntries(manifest: Manifest): [VariantName, VariantV2][] {
  return Object.entries(manifest.variants).filter((e): e is [VariantName, VariantV2] => e[1] !== undefined);
}

/** Resolves a graph's external-data reference (relative to the graph's folder) to a bundle path. */
export function externalDataPath(graphPath: string, reference: string): string {
  const slash = graphPath.lastIndexOf('/');
  const parts = [...(slash >= 0 ? graphPath.slice(0, slash).split('/') : []), ...reference.split('/')];
  const out: string[] = [];
  for (const part of parts) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out.join('/');
}

export function getVariant(manifest: Manifest, variant: string): VariantV2 {
  const spec = (manifest.variants as Record<string, VariantV2 | undefined>)[variant];
  if (!spec) {
    throw new HarkError(
      'bundle/missing-file',
      `Bundle "${manifest.name}" has no "${variant}" variant (it has: ${Object.keys(manifest.variants).join(', ')}). Choose one of those.`,
      { variant, available: Object.keys(manifest.variants).join(',') },
    );
  }
  return spec;
}

/**
 * Every file a variant needs, without duplicates: the graphs its parts name (encoders, adapters,
 * connector, embedTokens, decoder: format 1's five in their order), each followed by its external
 * data, then the localization probe where the bundle has one (downloaded with the rest, so that
 * finding an event works offline too), then the tokenizer files, the Whisper preprocessor configs
 * and the audio boundaries.
 */
export function variantFiles(manifest: Manifest, variant: string): string[] {
  const spec = getVariant(manifest, variant);
  const parts = modelParts(manifest);
  const files: string[] = [];
  const add = (graph: GraphSpec): void => {
    files.push(graph.path, ...graph.externalData.map((ref) => externalDataPath(graph.path, ref)));
  };
  for (const name of partGraphNames(parts)) {
    const graph = spec.graphs[variantGraphKey(manifest, name)];
    if (!graph) {
      throw invalid([`/variants/${variant}/graphs: has no "${printable(name)}" graph, which the model's parts need`], manifest.name);
    }
    add(graph);
  }
  if (spec.graphs.probe) add(spec.graphs.probe);
  files.push(manifest.tokenizer.tokenizerJson, manifest.tokenizer.tokenizerConfig);
  for (const encoder of parts.encoders) {
    if (encoder.features.type === 'whisper-mel') files.push(encoder.features.preprocessorConfig);
  }
  if (parts.audioBoundaries) files.push(parts.audioBoundaries.path);
  return [...new Set(files)];
}

/** The manifest entries (size, SHA-256) of `variantFiles`, in the same order. */
export function variantFileEntries(manifest: Manifest, variant: string): FileEntry[] {
  const byPath = new Map(manifest.files.map((f) => [f.path, f]));
  return variantFiles(manifest, variant).map((path) => {
    const entry = byPath.get(path);
    if (!entry) throw invalid([`/variants/${variant}: needs "${printable(path)}", which is not in /files`], manifest.name);
    return entry;
  });
}

/** Total bytes of a variant's files. */
export function variantBytes(manifest: Manifest, variant: string): number {
  return variantFileEntries(manifest, variant).reduce((sum, f) => sum + f.size, 0);
}

/** Variants whose graphs compute in fp16 and so need WebGPU's `shader-f16`. */
export const FP16_COMPUTE_VARIANTS: ReadonlySet<string> = new Set<VariantName>(['fp16', 'int4f16']);

export interface PickVariantOptions {
  /** The backend the model will run on (default 'wasm', the choice that runs everywhere). */
  backend?: Backend;
  /** The WebGPU adapter has `shader-f16` (ignored on wasm). */
  shaderF16?: boolean;
  /** Also consider variants the bundle marks `tested: false`. */
  allowUntested?: boolean;
}

/**
 * The variant to load on a device. The rule:
 * 1. Only `tested` variants, unless `allowUntested` (an untested variant may give garbage, e.g. an
 *    fp16 audio encoder that overflows; the bundle maker could not run it).
 * 2. fp16-compute variants (`fp16`, `int4f16`) only on WebGPU with `shader-f16`; wasm has no fast
 *    fp16 kernels and WebGPU without `shader-f16` cannot run them at all.
 * 3. Smallest and fastest first. Decoding is memory-bandwidth-bound on GPUs and CPUs alike and
 *    `MatMulNBits` has WebGPU and wasm kernels, so int4 beats fp32 on both backends and is a ~4x
 *    smaller download: with f16 `int4f16 > int4 > fp16 > fp32`, otherwise `int4 > fp32`.
 * Throws `engine/backend-unavailable` when no variant qualifies.
 */
export function pickVariant(manifest: Manifest, options: PickVariantOptions = {}): VariantName {
  const backend = options.backend ?? 'wasm';
  const f16 = backend === 'webgpu' && options.shaderF16 === true;
  const order: VariantName[] = f16 ? ['int4f16', 'int4', 'fp16', 'fp32'] : ['int4', 'fp32'];
  const variants = manifest.variants;
  const choice = order.find((name) => {
    const spec = variants[name];
    return spec !== undefined && (spec.tested || options.allowUntested === true);
  });
  if (choice) return choice;
  const available = variantEntries(manifest)
    .map(([name, spec]) => `${name}${spec.tested ? '' : ' (untested)'}`)
    .join(', ');
  const needsF16 = variantEntries(manifest).some(([name]) => FP16_COMPUTE_VARIANTS.has(name));
  throw new HarkError(
    'engine/backend-unavailable',
    `Bundle "${manifest.name}" has no variant this device can run on ${backend} (it has: ${available}).` +
      (needsF16 && !f16 ? ' Its fp16 variants need WebGPU with shader-f16: try a browser/GPU that supports it,' : '') +
      ' or choose another bundle.',
    { backend, shaderF16: f16, available },
  );
}
