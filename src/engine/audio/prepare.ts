/**
 * From decoded audio to what the encoders take: mono, 16 kHz, validated, split into ≤ 30 s chunks.
 * Mirrors `split_audio` and `time_map` in models/salmonn/pipeline.py (the goldens come from there).
 */
import { HarkError } from '../errors';
import { resample } from './resample';
import type { DecodedAudio } from './wav';

export interface PrepareOptions {
  /** Rate the encoders take (the bundle's audio.sampleRate). Default 16000. */
  sampleRate?: number;
  /** A shorter clip (or last chunk) is zero-padded to this length (audio.minSeconds). Default 1. */
  minSeconds?: number;
  /** Longest chunk one encoder pass sees (audio.chunkSeconds). Default 30. */
  chunkSeconds?: number;
  /** Longest recording accepted at all. Default 600 (10 min). */
  maxSeconds?: number;
}

export interface PreparedAudio {
  /** Mono samples at `sampleRate`, not padded. */
  samples: Float32Array;
  /** samples.length / sampleRate. */
  durationSeconds: number;
  /** Consecutive pieces of `samples` of ≤ chunkSeconds each; a short last (or only) one is zero-padded to minSeconds. */
  chunks: Float32Array[];
}

/**
 * Averages the channels into one.
 *
 * The SALMONN reference keeps channel 0 of a stereo file. We average instead: a recording whose
 * speech sits on one channel only (an interview with one microphone per side, a phone call
 * recorder) keeps that speech at half level instead of losing it entirely, and for ordinary stereo
 * the average is what a listener hears. The cost is that out-of-phase content cancels, which is
 * rare in real recordings. A single channel is returned as is (not copied).
 */
export function downmixToMono(channels: readonly Float32Array[]): Float32Array {
  if (channels.length === 0) return new Float32Array(0);
  if (channels.length === 1) return channels[0]!;
  const n = channels[0]!.length;
  for (const ch of channels) {
    if (ch.length !== n) throw new RangeError(`downmixToMono: channel lengths differ (${ch.length} vs ${n})`);
  }
  const out = new Float32Array(n);
  const inv = 1 / channels.length;
  if (channels.length === 2) {
    const [a, b] = channels as [Float32Array, Float32Array];
    for (let i = 0; i < n; i++) out[i] = (a[i]! + b[i]!) * inv;
    return out;
  }
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let c = 0; c < channels.length; c++) sum += channels[c]![i]!;
    out[i] = sum * inv;
  }
  return out;
}

/** Python's round() (half to even), so lengths match `int(round(x))` in the reference. */
function pyRound(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds - m * 60);
  return s === 0 ? `${m} min` : `${m} min ${s} s`;
}

/** `split_audio`: chunks of chunkSeconds (the last may be shorter), each zero-padded to minSeconds. */
export function splitAudio(samples: Float32Array, sampleRate = 16000, minSeconds = 1, chunkSeconds = 30): Float32Array[] {
  const minLen = pyRound(minSeconds * sampleRate);
  const chunkLen = pyRound(chunkSeconds * sampleRate);
  if (!(chunkLen > 0)) throw new RangeError(`splitAudio: chunkSeconds × sampleRate must be ≥ 1 sample (got ${chunkLen})`);
  const chunks: Float32Array[] = [];
  for (let i = 0; i < Math.max(samples.length, 1); i += chunkLen) {
    const piece = samples.subarray(i, i + chunkLen);
    const chunk = new Float32Array(Math.max(piece.length, minLen));
    chunk.set(piece);
    chunks.push(chunk);
  }
  return chunks;
}

/**
 * Validates decoded audio and turns it into mono chunks at the model's rate.
 * Throws HarkError `audio/no-samples`, `audio/invalid-samples` or `audio/too-long`.
 */
export function prepareAudio(decoded: DecodedAudio, opts: PrepareOptions = {}): PreparedAudio {
  const sampleRate = opts.sampleRate ?? 16000;
  const minSeconds = opts.minSeconds ?? 1;
  const chunkSeconds = opts.chunkSeconds ?? 30;
  const maxSeconds = opts.maxSeconds ?? 600;
  const frames = decoded.channels.length === 0 ? 0 : decoded.channels[0]!.length;
  if (frames === 0) {
    throw new HarkError('audio/no-samples', 'The recording holds no audio (0 samples). Choose another file or record again.', {
      channels: decoded.channels.length,
    });
  }
  if (!(decoded.sampleRate > 0) || !Number.isFinite(decoded.sampleRate)) {
    throw new RangeError(`prepareAudio: invalid sample rate ${decoded.sampleRate}`);
  }
  const inputSeconds = frames / decoded.sampleRate;
  if (inputSeconds > maxSeconds) {
    throw new HarkError(
      'audio/too-long',
      `The recording is ${formatDuration(inputSeconds)} long; Hark takes at most ${formatDuration(maxSeconds)} (${maxSeconds} s). ` +
        'Trim it to the part you want to ask about (or split it into shorter files) and try again.',
      { seconds: inputSeconds, maxSeconds },
    );
  }

  let invalid = 0;
  let firstInvalid = Infinity;
  for (const ch of decoded.channels) {
    for (let i = 0; i < ch.length; i++) {
      if (!Number.isFinite(ch[i]!)) {
        invalid++;
        if (i < firstInvalid) firstInvalid = i;
      }
    }
  }
  if (invalid > 0) {
    const at = firstInvalid / decoded.sampleRate;
    throw new HarkError(
      'audio/invalid-samples',
      `The audio contains ${invalid} invalid sample${invalid === 1 ? '' : 's'} (NaN or infinite values); the first is at ${at.toFixed(3)} s. ` +
        'The file is probably damaged or was written by a faulty encoder: re-export or re-record it and try again.',
      { count: invalid, firstSeconds: at },
    );
  }

  const mono = downmixToMono(decoded.channels);
  const samples = decoded.sampleRate === sampleRate ? mono.slice() : resample(mono, decoded.sampleRate, sampleRate);
  return {
    samples,
    durationSeconds: samples.length / sampleRate,
    chunks: splitAudio(samples, sampleRate, minSeconds, chunkSeconds),
  };
}

/**
 * `time_map`: [start, end] seconds of every audio token, flattened as start0, end0, start1, …
 * Token i of chunk c covers [c · chunkSeconds + i · strideFrames · frameSeconds, start + windowFrames · frameSeconds].
 * The arithmetic follows the reference's order of operations, so values are bit-identical.
 */
export function tokenTimeMap(
  numChunks: number,
  tokensPerChunk: number,
  windowFrames: number,
  strideFrames: number,
  frameSeconds = 0.02,
  chunkSeconds = 30,
): Float64Array {
  const out = new Float64Array(numChunks * tokensPerChunk * 2);
  const span = windowFrames * frameSeconds;
  let k = 0;
  for (let c = 0; c < numChunks; c++) {
    for (let i = 0; i < tokensPerChunk; i++) {
      const start = c * chunkSeconds + i * strideFrames * frameSeconds;
      out[k++] = start;
      out[k++] = start + span;
    }
  }
  return out;
}
