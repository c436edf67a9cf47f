/**
 * Audio → the LLM's audio embeddings, by the model's parts (bundle/parts.ts):
 *
 *   per ≤30 s chunk   each encoder: its features (whisper-mel or kaldi-fbank) → its graph;
 *                     a chunk-scoped fusion (SALMONN's window Q-Former, 88 tokens per chunk) runs here
 *   per recording     each adapter over the concatenation of its encoder's chunk outputs, trimmed to
 *                     the frames of real audio (its convolutions cross chunk boundaries: ALARM);
 *                     then a recording-scoped fusion ("sum" over one encoder: its adapted frames)
 *   token count       perChunk, or max(min, floor(melFrames / divisor)) rows kept (ALARM: 25 per s)
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
 * fusion's 'tokens'; per recording (chunk -1) each adapter's output ('adapter.<encoder>') and a
 * recording-scoped fusion's 'tokens'.
 */
export type StageInspector = (chunk: number, stage: string, data: Float32Array) => void;

/** Why these parts cannot run in this app yet (null when they can): a sentence for the user. */
export function unsupportedParts(parts: ModelParts): string | null {
  const { fusion, encoders } = parts;
  const wholeRecording = encoders.find((e) => isRecordingScoped(e.features));
  if (wholeRecording) {
    // The extractors exist (features/encoderFeatures.ts); feeding their pieces to the encoders does not yet.
    return `its ${wholeRecording.type} encoder takes features of the whole recording ("${wholeRecording.features.type}"), which this Hark cannot run yet`;
  }
  if (fusion.type === 'window-qformer' && fusion.scope === 'chunk') return null;
  if (fusion.type === 'sum' && encoders.length === 1) return null;
  if (fusion.type === 'sum') return `its fusion sums ${encoders.length} encoders, which this Hark cannot do yet`;
  return `its "${fusion.type}" fusion${fusion.scope === 'recording' && fusion.type === 'window-qformer' ? ' over a whole recording' : ''} is not supported by this Hark yet`;
}

/** Whisper's attended mel frames of the chunks: ceil(samples / hop) each (ALARM's whisper_v3.attended_frames). */
export function melFrames(chunks: readonly Float32Array[], hopLength: number): number {
  return chunks.reduce((sum, chunk) => sum + Math.ceil(chunk.length / hopLength), 0);
}

/**
 * Output frames of `encoder` that hold real audio, over all chunks: for whisper-mel features
 * floor(melFrames × outputFrames / inputFrames) (Whisper: melFrames // 2), otherwise the audio's
 * duration in frames. Chunks are consecutive and only the last is short, so these are the first
 * frames of the chunk outputs' concatenation.
 */
export function realFrames(encoder: EncoderPart, chunks: readonly Float32Array[], sampleRate: number): number {
  const { features, inputFrames, outputFrames } = encoder;
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
    const run = async (graph: string, feeds: Record<string, ort.Tensor>, output: string): Promise<ort.Tensor> => {
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

    const pieces: Float32Array[] = [];
    /** Recording-scoped fusion: each encoder's chunk outputs, downloaded. */
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
          if (extractor.scope !== 'chunk') {
            throw new HarkError('bundle/unsupported-model', `The ${encoder.name} encoder's features are computed per recording, which this Hark cannot run yet.`);
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
          for (const encoder of encoders) {
            const data = ((await outputs.get(encoder.name)!.getData()) as Float32Array).slice();
            this.inspector?.(index, encoder.name, data);
            frames.get(encoder.name)!.push(data);
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
      // unsupportedParts() let only "sum" over a single encoder through.
      const encoder = encoders[0]!;
      const rows = await this.adapted(encoder, frames.get(encoder.name)!, prepared.chunks, run);
      const width = fusion.width;
      const available = rows.length / width;
      numTokens = this.tokenCount(prepared.chunks, available);
      if (numTokens > available) {
        throw new HarkError('engine/inference-failed', `The audio stages produced ${available} embeddings, but the model reads ${numTokens}: the bundle's graphs do not match its manifest. Convert it again.`);
      }
      data = rows.slice(0, numTokens * width);
      this.inspector?.(-1, 'tokens', data);
      const perSecond = 'perSecond' in fusion.tokens ? fusion.tokens.perSecond : 1 / encoder.frameSeconds;
      timeMap = Float64Array.from({ length: numTokens * 2 }, (_, k) => (Math.floor(k / 2) + (k % 2)) / perSecond);
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

  /** An encoder's real frames over the whole recording, through its adapter when it has one: [T' × width] rows. */
  private async adapted(
    encoder: EncoderPart,
    chunkOutputs: readonly Float32Array[],
    chunks: readonly Float32Array[],
    run: (graph: string, feeds: Record<string, ort.Tensor>, output: string) => Promise<ort.Tensor>,
  ): Promise<Float32Array> {
    const width = encoder.outputWidth;
    const produced = chunkOutputs.reduce((n, p) => n + p.length, 0) / width;
    const real = Math.min(produced, realFrames(encoder, chunks, this.audio.sampleRate));
    if (real < 1) throw new HarkError('audio/no-samples', 'The recording is too short to analyse.');
    const trimmed = concatRows(chunkOutputs, width, real);
    const adapter = this.parts.adapters.find((a) => a.encoder === encoder.name);
    if (!adapter?.graph) return trimmed;
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
      return rows;
    } finally {
      output.dispose();
    }
  }

  /** How many embeddings the LLM reads for a recording-scoped fusion. */
  private tokenCount(chunks: readonly Float32Array[], available: number): number {
    const rule = this.parts.fusion.tokens;
    if ('perChunk' in rule) return available;
    const mel = this.parts.encoders.find((e) => e.features.type === 'whisper-mel')!;
    const hop = mel.features.type === 'whisper-mel' ? mel.features.hopLength : 160;
    return Math.max(rule.min, Math.floor(melFrames(chunks, hop) / rule.divisor));
  }
}
