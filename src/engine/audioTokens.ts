/**
 * Audio → the LLM's audio tokens: per ≤30 s chunk, Whisper log-mel → speech encoder and kaldi
 * fbank → BEATs, then the window Q-Former connector (88 tokens per chunk); chunks concatenated in
 * order, with a start/end time for every token (for localisation features and the UI).
 */
import { yieldToEventLoop } from './llm/generate';
import type { Backend } from './device';
import type { PreparedAudio } from './audio/prepare';
import { tokenTimeMap } from './audio/prepare';
import type { Manifest } from './bundle/manifest';
import { HarkError } from './errors';
import type { KaldiFbank } from './features/kaldiFbank';
import type { WhisperMel } from './features/whisperMel';
import type { GraphSessions } from './graphs';
import { ort } from './ortRuntime';

export interface AudioTokens {
  /** Row-major [numTokens × hidden]. */
  data: Float32Array;
  numTokens: number;
  /** [start, end] seconds per token, flattened. */
  timeMap: Float64Array;
  durationSeconds: number;
  chunks: number;
  timings: { featuresMs: number; speechEncoderMs: number; audioEncoderMs: number; connectorMs: number };
}

/** How often each stage ran: lets tests prove follow-up questions reuse the encoded audio. */
export interface StageCounts {
  speechEncoder: number;
  audioEncoder: number;
  connector: number;
}

/** Receives every intermediate of a chunk, for parity tests and debugging (costs GPU downloads). */
export type StageInspector = (chunk: number, stage: 'mel' | 'fbank' | 'speech' | 'audio' | 'tokens', data: Float32Array) => void;

export class AudioTokenizer {
  readonly counts: StageCounts = { speechEncoder: 0, audioEncoder: 0, connector: 0 };
  inspector: StageInspector | null = null;

  constructor(
    private readonly sessions: GraphSessions,
    private readonly mel: WhisperMel,
    private readonly fbank: KaldiFbank,
    private readonly manifest: Manifest,
    private readonly backend: Backend,
  ) {}

  async encode(prepared: PreparedAudio, onChunk?: (done: number, total: number) => void, signal?: AbortSignal): Promise<AudioTokens> {
    const timings = { featuresMs: 0, speechEncoderMs: 0, audioEncoderMs: 0, connectorMs: 0 };
    const pieces: Float32Array[] = [];
    const { connector: spec, speechEncoder } = this.manifest.architecture;
    for (const [index, chunk] of prepared.chunks.entries()) {
      // On WebAssembly a window can be encoded without this thread returning to its event loop:
      // let a waiting cancel message in between windows.
      if (index > 0 && signal) await yieldToEventLoop();
      if (signal?.aborted) throw new HarkError('engine/cancelled', 'Encoding the recording was cancelled.');
      onChunk?.(index, prepared.chunks.length);
      let t = performance.now();
      const mel = await this.mel.compute(chunk);
      const fbank = this.fbank.compute(chunk);
      timings.featuresMs += performance.now() - t;
      this.inspector?.(index, 'mel', mel);
      this.inspector?.(index, 'fbank', fbank.data);
      if (fbank.frames < this.manifest.architecture.audioEncoder.patchSize) {
        throw new HarkError('audio/no-samples', 'The recording is too short to analyse.');
      }
      const run = async (name: keyof GraphSessions, feeds: Record<string, ort.Tensor>) => {
        try {
          return await this.sessions[name].run(feeds);
        } catch (error) {
          throw new HarkError(
            'engine/inference-failed',
            `The ${name} failed on ${this.backend} (${error instanceof Error ? error.message : String(error)}). ` +
              'Try again, or switch the backend to WebAssembly in Settings.',
          );
        }
      };
      t = performance.now();
      const speech = (await run('speechEncoder', {
        input_features: new ort.Tensor('float32', mel, [1, speechEncoder.numMelBins, speechEncoder.inputFrames]),
      })).speech_embeds!;
      this.counts.speechEncoder += 1;
      timings.speechEncoderMs += performance.now() - t;
      t = performance.now();
      const audio = (await run('audioEncoder', {
        fbank: new ort.Tensor('float32', fbank.data, [1, fbank.frames, this.fbank.opts.numMelBins]),
      })).audio_embeds!;
      this.counts.audioEncoder += 1;
      timings.audioEncoderMs += performance.now() - t;
      t = performance.now();
      // On WebGPU both encoder outputs are GPU buffers and go straight into the connector.
      const tokens = (await run('connector', { speech_embeds: speech, audio_embeds: audio })).audio_tokens!;
      this.counts.connector += 1;
      timings.connectorMs += performance.now() - t;
      if (this.inspector) {
        this.inspector(index, 'speech', (await speech.getData()) as Float32Array);
        this.inspector(index, 'audio', (await audio.getData()) as Float32Array);
      }
      speech.dispose();
      audio.dispose();
      if (tokens.dims[1] !== spec.tokensPerChunk) {
        throw new HarkError('engine/inference-failed', `The connector produced ${tokens.dims[1]} tokens, expected ${spec.tokensPerChunk}.`);
      }
      pieces.push((await tokens.getData()) as Float32Array);
      this.inspector?.(index, 'tokens', pieces[pieces.length - 1]!);
      tokens.dispose();
    }
    onChunk?.(prepared.chunks.length, prepared.chunks.length);
    const data = new Float32Array(pieces.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const piece of pieces) {
      data.set(piece, offset);
      offset += piece.length;
    }
    return {
      data,
      numTokens: prepared.chunks.length * spec.tokensPerChunk,
      timeMap: tokenTimeMap(
        prepared.chunks.length,
        spec.tokensPerChunk,
        spec.windowFrames,
        spec.strideFrames,
        this.manifest.audio.encoderFrameSeconds,
        this.manifest.audio.chunkSeconds,
      ),
      durationSeconds: prepared.durationSeconds,
      chunks: prepared.chunks.length,
      timings,
    };
  }
}
