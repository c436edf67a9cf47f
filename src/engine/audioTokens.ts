/**
 * Audio → the LLM's audio embeddings, by the model's parts (bundle/parts.ts):
 *
 *   per ≤30 s chunk   each encoder with per-chunk features (whisper-mel or kaldi-fbank) → its graph;
 *                     a chunk-scoped fusion (SALMONN's window Q-Former, 88 tokens per chunk) runs here
 *   per piece         each encoder with features of the whole recording (fused ALARM's w2v-BERT,
 *                     SSLAM, MuQ): computed once, cut into its graph's pieces (featurePieces), each
 *                     piece run while the chunk it starts in is reported as in progress
 *   per recording     each adapter over the concatenation of its encoder's chunk outputs, trimmed to
 *                     the frames of real audio (its convolutions cross chunk boundaries: ALARM);
 *                     then a recording-scoped fusion ("sum" over one encoder: its adapted frames;
 *                     "cross-attention" (ALARM-CA), "perceiver" (ALARM-P): the connector graph
 *                     over every adapter's output)
 *   token count       perChunk, max(min, floor(melFrames / divisor)) (ALARM), max(min, max
 *                     adapter length) (ALARM-CA), or leading + the main adapter length (ALARM-P)
 *                     rows kept, 25 per second (a perceiver's leading rows span the recording)
 *
 * with a start/end time for every embedding (for localisation and the UI).
 */
import { concatFloat32 } from './llm/conversation';
import { yieldToEventLoop } from './llm/generate';
import type { Backend } from './device';
import type { PreparedAudio } from './audio/prepare';
import { tokenTimeMap } from './audio/prepare';
import { isRecordingScoped, type AudioSpec } from './bundle/manifest';
import type { EncoderPart, ModelParts } from './bundle/parts';
import { HarkError } from './errors';
import type { EncoderFeatures } from './features/encoderFeatures';
import { featurePieces, type FeaturePiece, type RecordingFeatureResult } from './features/recordingFeatures';
import { sessionOf, type GraphSessions } from './graphs';
import { ort } from './ortRuntime';

export interface AudioTimings {
  featuresMs: number;
  /** Time in each audio graph, by graph name ("encoder.whisper", "adapter.whisper", "connector", …). */
  graphsMs: Record<string, number>;
  /** Format 1's names for encoder.whisper, encoder.beats and the connector (0 when the model has none). */
  speechEncoderMs: number;
  audioEncoderMs: number;
  connectorMs: number;
}

export interface AudioTokens {
  /** Row-major [numTokens × hidden]. */
  data: Float32Array;
  numTokens: number;
  /** [start, end] seconds per token, flattened. */
  timeMap: Float64Array;
  durationSeconds: number;
  chunks: number;
  timings: AudioTimings;
}

/**
 * How often each audio graph ran (by graph name in `graphs`), with format 1's names for
 * encoder.whisper, encoder.beats and the connector: lets tests prove follow-up questions reuse
 * the encoded audio.
 */
export interface StageCounts {
  graphs: Record<string, number>;
  speechEncoder: number;
  audioEncoder: number;
  connector: number;
}

/**
 * Receives every intermediate, for parity tests and debugging (costs GPU downloads): per chunk
 * the features ('mel', 'fbank'), each encoder's output (by encoder name) and a chunk-scoped
 * fusion's 'tokens'; for an encoder whose features cover the whole recording, those features at
 * chunk -1 ('features.<encoder>') and per piece (chunk = the piece's index) its frame mask when
 * it has one ('mask.<encoder>') and its output (by encoder name); per recording (chunk -1) each adapter's output ('adapter.<encoder>'), a fusion graph's
 * whole output ('connector') and the embeddings the LLM reads ('tokens').
 */
export type StageInspector = (chunk: number, stage: string, data: Float32Array) => void;

/** Why these parts cannot run in this app yet (null when they can): a sentence for the user. */
export function unsupportedParts(parts: ModelParts): string | null {
  const { fusion, encoders } = parts;
  if (fusion.type === 'window-qformer' && fusion.scope === 'chunk') {
    const whole = encoders.find((e) => isRecordingScoped(e.features));
    // A chunk-scoped fusion pairs the encoders' outputs chunk by chunk, which pieces of another length cannot be.
    return whole ? `its ${whole.type} encoder takes features of the whole recording, which a per-chunk fusion cannot read` : null;
  }
  if (fusion.type === 'sum' && encoders.length === 1) return null;
  if ((fusion.type === 'cross-attention' || fusion.type === 'perceiver') && fusion.scope === 'recording') return null;
  if (fusion.type === 'sum') return `its fusion sums ${encoders.length} encoders, which this Hark cannot do yet`;
  return `its "${fusion.type}" fusion${fusion.scope === 'recording' && fusion.type === 'window-qformer' ? ' over a whole recording' : ''}${fusion.scope === 'chunk' && fusion.type === 'cross-attention' ? ' per chunk' : ''} is not supported by this Hark yet`;
}

/** Whisper's attended mel frames of the chunks: ceil(samples / hop) each (ALARM's whisper_v3.attended_frames). */
export function melFrames(chunks: readonly Float32Array[], hopLength: number): number {
  return chunks.reduce((sum, chunk) => sum + Math.ceil(chunk.length / hopLength), 0);
}

/**
 * Output frames of `encoder` that hold real audio, over all chunks. With a declared rule (fused
 * ALARM, ALARM's calc_length): floor(count / divisor), count = Whisper's attended mel frames or
 * the real length of its per-recording features (`featureLength`: real fbank / stacked frames, or
 * real samples at the encoder's rate). Without one: for whisper-mel features floor(melFrames ×
 * outputFrames / inputFrames) (Whisper: melFrames // 2), otherwise the audio's duration in
 * frames. Chunks are consecutive and only the last is short, so these are the first frames of
 * the chunk outputs' concatenation.
 */
export function realFrames(encoder: EncoderPart, chunks: readonly Float32Array[], sampleRate: number, featureLength: number | null = null): number {
  const { features, inputFrames, outputFrames, realFrames: rule } = encoder;
  if (rule) {
    if (rule.from === 'melFrames') {
      if (features.type !== 'whisper-mel') throw new Error(`encoder "${encoder.name}" counts mel frames without whisper-mel features`);
      return Math.floor(melFrames(chunks, features.hopLength) / rule.divisor);
    }
    if (featureLength === null) throw new Error(`encoder "${encoder.name}" counts ${rule.from} without per-recording features`);
    return Math.floor(featureLength / rule.divisor);
  }
  if (features.type === 'whisper-mel' && inputFrames !== null && outputFrames !== null) {
    return Math.floor((melFrames(chunks, features.hopLength) * outputFrames) / inputFrames);
  }
  const samples = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  return Math.ceil(samples / sampleRate / encoder.frameSeconds - 1e-9);
}

/** The first `rows` rows of `pieces` (each [n × width]) laid end to end. */
function concatRows(pieces: readonly Float32Array[], width: number, rows: number): Float32Array {
  const out = new Float32Array(rows * width);
  let offset = 0;
  for (const piece of pieces) {
    if (offset >= out.length) break;
    const take = piece.subarray(0, Math.min(piece.length, out.length - offset));
    out.set(take, offset);
    offset += take.length;
  }
  return out;
}

/** MuQ's frame mask of one piece: [1, frames], 1 for the first ceil(realSamples / samplesPerFrame) frames. */
export function frameMask(pieceSamples: number, realSamples: number, samplesPerFrame: number): Float32Array {
  const frames = Math.floor(pieceSamples / samplesPerFrame);
  return Float32Array.from({ length: frames }, (_, t) => (t * samplesPerFrame < realSamples ? 1 : 0));
}

/** Features that are not padded to whole pieces (seamless-fbank): their pieces end at the real frames. */
function unpadded(encoder: EncoderPart): boolean {
  return isRecordingScoped(encoder.features) && !('padToMultiple' in encoder.features);
}

/** The first realLength steps of the time axis. */
function realPart(features: RecordingFeatureResult): RecordingFeatureResult {
  const [batch, steps, ...rest] = features.dims;
  if (steps === undefined || features.realLength >= steps) return features;
  const stride = rest.reduce((a, b) => a * b, 1);
  return { data: features.data.subarray(0, features.realLength * stride), dims: [batch!, features.realLength, ...rest], realLength: features.realLength };
}

/** Which chunk each of `pieces` pieces is run in: spread evenly over `chunks`, in order (progress stays per chunk). */
export function pieceChunks(pieces: number, chunks: number): number[] {
  return Array.from({ length: pieces }, (_, j) => Math.min(chunks - 1, Math.floor((j * chunks) / pieces)));
}

/** An encoder's features of the whole recording and the pieces its graph runs on. */
interface RecordingInput {
  features: RecordingFeatureResult;
  pieces: FeaturePiece[];
  /** The chunk (progress step) each piece runs in. */
  chunkOf: number[];
}

type GraphRun = (graph: string, feeds: Record<string, ort.Tensor>, output: string) => Promise<ort.Tensor>;

/** One encoder's rows after its adapter, with ALARM's length of them. */
interface AdaptedEncoder {
  rows: Float32Array;
  /** Rows the adapter produced (ceil(real / downsample)). */
  frames: number;
  /** ALARM's adapter length: floor(realFrames / downsample), what the fusion and token count read. */
  length: number;
}

export class AudioTokenizer {
  private readonly graphCounts: Record<string, number> = {};
  inspector: StageInspector | null = null;

  constructor(
    private readonly sessions: GraphSessions,
    /** One feature extractor per encoder, in `parts.encoders` order. */
    private readonly features: readonly EncoderFeatures[],
    private readonly parts: ModelParts,
    private readonly audio: AudioSpec,
    private readonly backend: Backend,
  ) {
    if (features.length !== parts.encoders.length) throw new Error(`${features.length} feature extractors for ${parts.encoders.length} encoders`);
  }

  get counts(): StageCounts {
    const graphs = { ...this.graphCounts };
    return {
      graphs,
      speechEncoder: graphs['encoder.whisper'] ?? 0,
      audioEncoder: graphs['encoder.beats'] ?? 0,
      connector: graphs.connector ?? 0,
    };
  }

  async encode(prepared: PreparedAudio, onChunk?: (done: number, total: number) => void, signal?: AbortSignal): Promise<AudioTokens> {
    const graphsMs: Record<string, number> = {};
    let featuresMs = 0;
    const { encoders, fusion } = this.parts;
    const run: GraphRun = async (graph, feeds, output) => {
      const t = performance.now();
      let result: ort.InferenceSession.ReturnType;
      try {
        result = await sessionOf(this.sessions, graph).run(feeds);
      } catch (error) {
        throw new HarkError(
          'engine/inference-failed',
          `The ${graph} graph failed on ${this.backend} (${error instanceof Error ? error.message : String(error)}). ` +
            'Try again, or switch the backend to WebAssembly in Settings.',
        );
      }
      graphsMs[graph] = (graphsMs[graph] ?? 0) + performance.now() - t;
      this.graphCounts[graph] = (this.graphCounts[graph] ?? 0) + 1;
      const tensor = result[output];
      if (!tensor) throw new HarkError('engine/inference-failed', `The ${graph} graph has no "${output}" output: the bundle does not match its manifest. Convert it again.`);
      return tensor;
    };

    // Features of the whole recording first (their normalisation spans it), cut into pieces.
    const recordingInputs = new Map<string, RecordingInput>();
    const totalSamples = prepared.chunks.reduce((n, c) => n + c.length, 0);
    const recording = totalSamples === prepared.samples.length ? prepared.samples : concatFloat32(prepared.chunks);
    for (const [e, encoder] of encoders.entries()) {
      const extractor = this.features[e]!;
      if (extractor.scope !== 'recording') continue;
      if (signal?.aborted) throw new HarkError('engine/cancelled', 'Encoding the recording was cancelled.');
      const t = performance.now();
      const features = await extractor.compute(recording);
      featuresMs += performance.now() - t;
      if (features.realLength < 1) throw new HarkError('audio/no-samples', 'The recording is too short to analyse.');
      this.inspector?.(-1, `features.${encoder.name}`, features.data);
      // Unpadded features (w2v-BERT's) run on their real frames only: the last piece is short
      // (its graph's length is dynamic), as ALARM crops it; padded ones keep whole pieces.
      const pieces = featurePieces(unpadded(encoder) ? realPart(features) : features, extractor.splitFrames);
      recordingInputs.set(encoder.name, { features, pieces, chunkOf: pieceChunks(pieces.length, prepared.chunks.length) });
    }

    const pieces: Float32Array[] = [];
    /** Recording-scoped fusion: each encoder's chunk (or piece) outputs, downloaded. */
    const frames = new Map<string, Float32Array[]>(encoders.map((e) => [e.name, []]));
    for (const [index, chunk] of prepared.chunks.entries()) {
      // On WebAssembly a window can be encoded without this thread returning to its event loop:
      // let a waiting cancel message in between windows.
      if (index > 0 && signal) await yieldToEventLoop();
      if (signal?.aborted) throw new HarkError('engine/cancelled', 'Encoding the recording was cancelled.');
      onChunk?.(index, prepared.chunks.length);
      const outputs = new Map<string, ort.Tensor>();
      try {
        for (const [e, encoder] of encoders.entries()) {
          const extractor = this.features[e]!;
          if (extractor.scope === 'recording') {
            const input = recordingInputs.get(encoder.name)!;
            for (const [p, piece] of input.pieces.entries()) {
              if (input.chunkOf[p] !== index) continue;
              const data = await this.runPiece(encoder, piece, p, run);
              this.inspector?.(p, encoder.name, data);
              frames.get(encoder.name)!.push(data);
            }
            continue;
          }
          const t = performance.now();
          const input = await extractor.compute(chunk);
          featuresMs += performance.now() - t;
          this.inspector?.(index, extractor.stage, input.data);
          if (extractor.stage === 'fbank' && input.dims[1]! < encoder.minFeatureFrames) {
            throw new HarkError('audio/no-samples', 'The recording is too short to analyse.');
          }
          outputs.set(encoder.name, await run(encoder.graph, { [encoder.input]: new ort.Tensor('float32', input.data, input.dims) }, encoder.output));
        }
        if (fusion.scope === 'chunk') {
          // On WebGPU the encoder outputs are GPU buffers and go straight into the connector.
          const tokens = fusion.graph
            ? await run(fusion.graph, Object.fromEntries(encoders.map((e) => [fusion.inputs[e.name]!, outputs.get(e.name)!])), fusion.output)
            : outputs.get(encoders[0]!.name)!;
          if (this.inspector) {
            for (const encoder of encoders) this.inspector(index, encoder.name, (await outputs.get(encoder.name)!.getData()) as Float32Array);
          }
          const perChunk = 'perChunk' in fusion.tokens ? fusion.tokens.perChunk : tokens.dims[1]!;
          if (tokens.dims[1] !== perChunk) {
            throw new HarkError('engine/inference-failed', `The connector produced ${tokens.dims[1]} tokens, expected ${perChunk}.`);
          }
          pieces.push(((await tokens.getData()) as Float32Array).slice());
          this.inspector?.(index, 'tokens', pieces[pieces.length - 1]!);
          if (fusion.graph) tokens.dispose();
        } else {
          for (const [name, output] of outputs) {
            const data = ((await output.getData()) as Float32Array).slice();
            this.inspector?.(index, name, data);
            frames.get(name)!.push(data);
          }
        }
      } finally {
        for (const tensor of outputs.values()) tensor.dispose();
      }
    }
    onChunk?.(prepared.chunks.length, prepared.chunks.length);

    let data: Float32Array;
    let numTokens: number;
    let timeMap: Float64Array;
    if (fusion.scope === 'chunk') {
      const perChunk = 'perChunk' in fusion.tokens ? fusion.tokens.perChunk : 0;
      data = concatFloat32(pieces);
      numTokens = prepared.chunks.length * perChunk;
      const windows = fusion.window ?? { frames: 1, stride: 1 };
      timeMap = tokenTimeMap(prepared.chunks.length, perChunk, windows.frames, windows.stride, this.audio.encoderFrameSeconds, this.audio.chunkSeconds);
    } else {
      const adapted = new Map<string, AdaptedEncoder>();
      for (const encoder of encoders) {
        const featureLength = recordingInputs.get(encoder.name)?.features.realLength ?? null;
        adapted.set(encoder.name, await this.adapted(encoder, frames.get(encoder.name)!, prepared.chunks, featureLength, run));
      }
      const width = fusion.width;
      let rows: Float32Array;
      if (fusion.graph) {
        // unsupportedParts() let only a recording-scoped cross-attention or perceiver through with a graph.
        rows = await this.fused(adapted, run);
      } else {
        // unsupportedParts() let only "sum" over a single encoder through without one.
        rows = adapted.get(encoders[0]!.name)!.rows;
      }
      const available = rows.length / width;
      numTokens = this.tokenCount(prepared.chunks, available, adapted);
      if (numTokens > available) {
        throw new HarkError('engine/inference-failed', `The audio stages produced ${available} embeddings, but the model reads ${numTokens}: the bundle's graphs do not match its manifest. Convert it again.`);
      }
      data = rows.slice(0, numTokens * width);
      this.inspector?.(-1, 'tokens', data);
      const perSecond = 'perSecond' in fusion.tokens ? fusion.tokens.perSecond : 1 / encoders[0]!.frameSeconds;
      // A perceiver's leading rows (its latents) summarise the whole recording; the rows after them are timed.
      const leading = 'leading' in fusion.tokens ? Math.min(fusion.tokens.leading, numTokens) : 0;
      timeMap = Float64Array.from({ length: numTokens * 2 }, (_, k) => {
        const row = Math.floor(k / 2);
        if (row < leading) return k % 2 === 0 ? 0 : prepared.durationSeconds;
        return (row - leading + (k % 2)) / perSecond;
      });
    }
    const legacy = (name: string): number => graphsMs[name] ?? 0;
    return {
      data,
      numTokens,
      timeMap,
      durationSeconds: prepared.durationSeconds,
      chunks: prepared.chunks.length,
      timings: {
        featuresMs,
        graphsMs,
        speechEncoderMs: legacy('encoder.whisper'),
        audioEncoderMs: legacy('encoder.beats'),
        connectorMs: legacy('connector'),
      },
    };
  }

  /** One piece of an encoder's per-recording features through its graph (MuQ with its frame mask): [frames × outputWidth]. */
  private async runPiece(encoder: EncoderPart, piece: FeaturePiece, index: number, run: GraphRun): Promise<Float32Array> {
    // A copy: the piece is a view into the recording's features.
    const feeds: Record<string, ort.Tensor> = { [encoder.input]: new ort.Tensor('float32', piece.data.slice(), piece.dims) };
    if (encoder.maskInput !== null) {
      // MuQ (models/alarm/export_muq.py): the piece's padded frames are masked out of attention,
      // as ALARM masks them; a frame spans realFrames.divisor samples (pipelineCheck pins the rule).
      const mask = frameMask(piece.dims[1]!, piece.realLength, encoder.realFrames!.divisor);
      feeds[encoder.maskInput] = new ort.Tensor('float32', mask, [1, mask.length]);
      this.inspector?.(index, `mask.${encoder.name}`, mask);
    }
    const output = await run(encoder.graph, feeds, encoder.output);
    try {
      if (output.dims[2] !== encoder.outputWidth) {
        throw new HarkError('engine/inference-failed', `The ${encoder.graph} graph produced [${output.dims.join(', ')}], expected width ${encoder.outputWidth}: the bundle's graphs do not match its manifest. Convert it again.`);
      }
      return ((await output.getData()) as Float32Array).slice();
    } finally {
      output.dispose();
    }
  }

  /** An encoder's real frames over the whole recording, through its adapter when it has one: [T' × width] rows. */
  private async adapted(
    encoder: EncoderPart,
    chunkOutputs: readonly Float32Array[],
    chunks: readonly Float32Array[],
    featureLength: number | null,
    run: GraphRun,
  ): Promise<AdaptedEncoder> {
    const width = encoder.outputWidth;
    const produced = chunkOutputs.reduce((n, p) => n + p.length, 0) / width;
    const counted = realFrames(encoder, chunks, this.audio.sampleRate, featureLength);
    const real = Math.min(produced, counted);
    if (real < 1) throw new HarkError('audio/no-samples', 'The recording is too short to analyse.');
    const trimmed = concatRows(chunkOutputs, width, real);
    const adapter = this.parts.adapters.find((a) => a.encoder === encoder.name);
    const downsample = adapter?.downsample ?? 1;
    const length = Math.floor(counted / downsample);
    if (!adapter?.graph) {
      // An identity adapter (ALARM-P's conditional encoders) passes the real frames on as they are.
      if (adapter) this.inspector?.(-1, `adapter.${encoder.name}`, trimmed);
      return { rows: trimmed, frames: real, length };
    }
    const output = await run(adapter.graph, { [adapter.input]: new ort.Tensor('float32', trimmed, [1, real, width]) }, adapter.output);
    try {
      const expected = Math.ceil(real / adapter.downsample);
      if (output.dims[1] !== expected || output.dims[2] !== adapter.width) {
        throw new HarkError(
          'engine/inference-failed',
          `The ${adapter.graph} graph turned ${real} frames into [${output.dims.slice(1).join(', ')}], expected [${expected}, ${adapter.width}]: the bundle's graphs do not match its manifest. Convert it again.`,
        );
      }
      const rows = ((await output.getData()) as Float32Array).slice();
      this.inspector?.(-1, adapter.graph, rows);
      return { rows, frames: expected, length };
    } finally {
      output.dispose();
    }
  }

  /**
   * The fusion graph over every encoder's adapted rows (cross-attention: with the main encoder's
   * adapter length, which masks the keys): [max T × width] rows.
   */
  private async fused(adapted: ReadonlyMap<string, AdaptedEncoder>, run: GraphRun): Promise<Float32Array> {
    const { fusion, encoders } = this.parts;
    const feeds: Record<string, ort.Tensor> = {};
    for (const encoder of encoders) {
      const { rows, frames } = adapted.get(encoder.name)!;
      feeds[fusion.inputs[encoder.name]!] = new ort.Tensor('float32', rows, [1, frames, rows.length / frames]);
    }
    if (fusion.lengthInput !== null && fusion.mainEncoder !== null) {
      // ALARM's length of the main encoder; the graph clamps 0 to 1 itself (models/alarm/fusion.py).
      feeds[fusion.lengthInput] = new ort.Tensor('int64', BigInt64Array.of(BigInt(adapted.get(fusion.mainEncoder)!.length)), [1]);
    }
    const output = await run(fusion.graph!, feeds, fusion.output);
    try {
      // cross-attention: every input padded to the longest; perceiver: the leading rows, then the main encoder's.
      const expected =
        'leading' in fusion.tokens
          ? fusion.tokens.leading + adapted.get(fusion.mainEncoder!)!.frames
          : Math.max(...[...adapted.values()].map((a) => a.frames));
      if (output.dims[1] !== expected || output.dims[2] !== fusion.width) {
        throw new HarkError(
          'engine/inference-failed',
          `The ${fusion.graph} graph produced [${output.dims.slice(1).join(', ')}], expected [${expected}, ${fusion.width}]: the bundle's graphs do not match its manifest. Convert it again.`,
        );
      }
      const rows = ((await output.getData()) as Float32Array).slice();
      this.inspector?.(-1, fusion.graph!, rows);
      return rows;
    } finally {
      output.dispose();
    }
  }

  /** How many embeddings the LLM reads for a recording-scoped fusion. */
  private tokenCount(chunks: readonly Float32Array[], available: number, adapted: ReadonlyMap<string, AdaptedEncoder>): number {
    const rule = this.parts.fusion.tokens;
    if ('perChunk' in rule) return available;
    if (rule.from === 'adapterLengths') return Math.max(rule.min, ...[...adapted.values()].map((a) => a.length));
    if (rule.from === 'mainLength') return Math.max(rule.min, rule.leading + adapted.get(this.parts.fusion.mainEncoder!)!.length);
    const mel = this.parts.encoders.find((e) => e.features.type === 'whisper-mel')!;
    const hop = mel.features.type === 'whisper-mel' ? mel.features.hopLength : 160;
    return Math.max(rule.min, Math.floor(melFrames(chunks, hop) / rule.divisor));
  }
}
