/** Shapes shared by the bench's parent process (scripts/bench.ts) and its jobs (job.ts). */

export type BenchBackend = 'wasm' | 'webgpu-node' | 'chromium-webgpu';
export type Precision = 'fp32' | 'int4';

/** What build_bench_models.py writes to `<cache>/<model>/bench.json`. */
export interface ModelInfo {
  model: string;
  geometry: {
    numLayers: number;
    hiddenSize: number;
    numHeads: number;
    numKvHeads: number;
    headDim: number;
    vocabSize: number;
    intermediateSize: number;
    maxPositions: number;
    loraScale: number;
    /** Rotary base (absent in bench.json files written before it was recorded: 10000, LLaMA's). */
    ropeTheta?: number;
  };
  variants: Partial<Record<Precision, VariantFiles>>;
  /** Folder (relative to the model folder) of the transformers.js layout, or null. */
  peer: string | null;
  /** The LLM's family: 'qwen3' (per-head q/k norm, tied head, no lora_scale input) or 'llama' (absent before it was recorded). */
  llm?: 'llama' | 'qwen3';
  /** Tokenizer folder relative to the repository (absent before it was recorded: models/tokenizer, LLaMA's). */
  tokenizer?: string;
  /** Why the model has no transformers.js twin, when the builder says (shown in the table's notes). */
  noPeer?: string;
}

export interface VariantFiles {
  decoder: string;
  decoderData: string[];
  embed: string;
  embedData: string[];
  /** Paths are relative to the repository root instead of the model folder (the tiny bundle). */
  fromRepoRoot?: boolean;
}

/** One measurement job: one model variant on one backend, in its own process. */
export interface JobSpec {
  model: string;
  precision: Precision;
  backend: BenchBackend;
  /** Absolute path of the model's cache folder (holds bench.json). */
  modelDir: string;
  repoRoot: string;
  /** Decode contexts to measure (final KV length after the decode steps, roughly). */
  contexts: number[];
  /** Decode steps timed after each prefill. */
  steps: number;
  /** Also run transformers.js on the same weights (at the first context). */
  peer: boolean;
  /** Only open the sessions and time one decoder run of `loadOnlyPrompt` tokens (default 1) on an empty cache, then stop. */
  loadOnly?: boolean;
  loadOnlyPrompt?: number;
  /** wasm: int4 weights unpacked to fp32 at load, as the engine does (default true). */
  unpackInt4?: boolean;
  /** Where the job writes its JobResult as JSON. */
  resultPath: string;
}

export interface RunTiming {
  context: number;
  promptTokens: number;
  /** Embedding + decoder prefill + choosing the first token. */
  prefillMs: number;
  decodeSteps: number;
  decodeMsPerToken: number;
  ids: number[];
}

export interface PeerResult {
  loadMs: number;
  prefillMs: number;
  promptTokens: number;
  decodeSteps: number;
  decodeMsPerToken: number;
  ids: number[];
  /** Execution providers transformers.js' sessions were created with, and where presents lived. */
  executionProviders: string[];
  presentLocation: string;
  /** Same greedy ids as ours for the same prompt (short warm-up prompt / timed prompt). */
  sameIdsShort: boolean;
  sameIds: boolean;
}

export interface DeviceInfo {
  /** Human label, e.g. "SwiftShader (software)" or "nvidia ampere". */
  label: string;
  software: boolean;
  /** Measured copy bandwidth (bytes read + written per second), GB/s. */
  bandwidthGBs: number;
  bandwidthMethod: string;
}

export interface JobResult {
  spec: Omit<JobSpec, 'resultPath'>;
  device: DeviceInfo;
  loadMs: number;
  /** Decoder + embed graph bytes on disk (what the session uploads). */
  weightBytes: number;
  /** Decoder initializer bytes read per decode step (all decoder weights). */
  decoderBytes: number;
  kvBytesPerToken: number;
  runs: RunTiming[];
  warmupIds: number[];
  peer?: PeerResult;
  ortThreads: number;
  /** First (warm-up) generation: 16-token prompt, 4 tokens; on WebGPU mostly shader compilation. */
  warmupMs?: number;
  /** Last phase reached ('done' when complete). */
  phase?: string;
  error?: string;
  /** Shown in the table's notes column (e.g. why there is no transformers.js peer). */
  notes: string[];
}

/** What models/build_bench_encoders.py writes to `<cache>/encoders/bench.json`. */
export interface EncoderInfo {
  model: 'encoders';
  /** False while (or if) a build is under way or was stopped: some graphs may be missing. */
  complete?: boolean;
  variants: Partial<Record<Precision, Partial<Record<AudioGraph, EncoderGraphFiles>>>>;
  /** The manifest fields the engine's AudioTokenizer reads (bundle.architecture's keys). */
  architecture: {
    speechEncoder: { numMelBins: number; inputFrames: number; outputFrames: number; width: number; layers: number; heads: number };
    audioEncoder: { numMelBins: number; patchSize: number; width: number; layers: number };
    connector: { windowFrames: number; strideFrames: number; tokensPerChunk: number; outputWidth: number; layers: number; hidden: number };
  };
  audio: { sampleRate: number; minSeconds: number; chunkSeconds: number; encoderFrameSeconds: number };
}

export type AudioGraph = 'speechEncoder' | 'audioEncoder' | 'connector';

export interface EncoderGraphFiles {
  /** Relative to the encoders folder. */
  path: string;
  externalData: string[];
  params: number;
  weightBytes: number;
}

/** The time-to-first-token job for a 30 s clip (encoderJob.ts). */
export interface EncoderJobSpec {
  kind: 'encoders';
  precision: Precision;
  backend: 'wasm' | 'webgpu-node';
  /** Absolute path of `<cache>/encoders`. */
  encodersDir: string;
  repoRoot: string;
  /** Encodes of the clip; the last one is reported (the first includes shader compilation on WebGPU). */
  encodeRuns: number;
  /** The LLM whose prefill of the 30 s prompt completes the time to first token, or why none runs. */
  prefill: { modelDir: string; model: string; onSoftware: boolean } | { skip: string };
  resultPath: string;
}

export interface EncoderJobResult {
  spec: Omit<EncoderJobSpec, 'resultPath'>;
  device: DeviceInfo;
  /** Creating the three sessions (speech encoder, audio encoder, connector), reading files included. */
  loadMs: number;
  weightBytes: number;
  /** Per encode of the 30 s clip, in order. */
  encodes: { featuresMs: number; speechEncoderMs: number; audioEncoderMs: number; connectorMs: number; totalMs: number }[];
  audioTokens: number;
  /** Prefill of the 30 s prompt (text + audio tokens) to its first token, when it ran. */
  prefill?: { model: string; loadMs: number; promptTokens: number; ms: number };
  prefillSkipped?: string;
  /** Graphs not built (yet): their stages are left out; a missing speech encoder's output is fed as zeros. */
  missing?: AudioGraph[];
  phase?: string;
  error?: string;
}
