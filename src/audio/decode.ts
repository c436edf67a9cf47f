/**
 * Browser-side audio decoding for what the engine cannot read itself (MP3, Ogg/Opus, FLAC, AAC,
 * WebM…): the browser's decoder gives PCM channels, which the engine resamples and downmixes.
 * WAV files are also decoded here, but only to draw the waveform; the engine gets their bytes.
 */

export interface PcmAudio {
  sampleRate: number;
  channels: Float32Array[];
}

/** A decoding failure with a message a person can act on. */
export class AudioInputError extends Error {
  override readonly name = 'AudioInputError';
  constructor(
    readonly code: 'empty' | 'undecodable' | 'unsupported-browser' | 'too-long',
    message: string,
  ) {
    super(message);
  }
}

export const SUPPORTED_FORMATS = 'WAV, MP3, Ogg/Opus, FLAC, AAC/M4A or WebM audio';

/** Longest recording the engine accepts (seconds). */
export const MAX_AUDIO_SECONDS = 600;

/** RIFF/WAVE (or RF64) header check. */
export function isWavBytes(bytes: Uint8Array): boolean {
  if (bytes.length < 12) return false;
  const tag = String.fromCharCode(bytes[0]!, bytes[1]!, bytes[2]!, bytes[3]!);
  const wave = String.fromCharCode(bytes[8]!, bytes[9]!, bytes[10]!, bytes[11]!);
  return (tag === 'RIFF' || tag === 'RF64') && wave === 'WAVE';
}

/** The sample rate in a WAV header's `fmt ` chunk, if it can be found. */
export function wavSampleRate(bytes: Uint8Array): number | null {
  if (!isWavBytes(bytes)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const id = String.fromCharCode(bytes[offset]!, bytes[offset + 1]!, bytes[offset + 2]!, bytes[offset + 3]!);
    const size = view.getUint32(offset + 4, true);
    if (id === 'fmt ' && offset + 16 <= bytes.length) {
      const rate = view.getUint32(offset + 12, true);
      return rate > 0 ? rate : null;
    }
    offset += 8 + size + (size % 2);
  }
  return null;
}

/**
 * A WAV's duration from its header (`fmt ` block size and rate, `data` size), for files the
 * browser cannot decode; null if the header does not say.
 */
export function wavDurationSeconds(bytes: Uint8Array): number | null {
  if (!isWavBytes(bytes)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let rate = 0;
  let blockAlign = 0;
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const id = String.fromCharCode(bytes[offset]!, bytes[offset + 1]!, bytes[offset + 2]!, bytes[offset + 3]!);
    const size = view.getUint32(offset + 4, true);
    if (id === 'fmt ' && offset + 22 <= bytes.length) {
      rate = view.getUint32(offset + 12, true);
      blockAlign = view.getUint16(offset + 20, true);
    } else if (id === 'data') {
      // A streamed WAV may say 0 or 0xFFFFFFFF here: then the bytes that follow are the data.
      const dataBytes = size === 0 || size === 0xffffffff ? bytes.length - offset - 8 : Math.min(size, bytes.length - offset - 8);
      return rate > 0 && blockAlign > 0 ? dataBytes / blockAlign / rate : null;
    }
    offset += 8 + size + (size % 2);
  }
  return null;
}

/** "12 min 5 s" for messages (the UI has its own formatter). */
function minutesAndSeconds(seconds: number): string {
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m === 0 ? `${s} s` : s === 0 ? `${m} min` : `${m} min ${s} s`;
}

/** Refuses a recording over the limit before it replaces the current one. */
export function checkDuration(seconds: number, name: string): void {
  if (seconds > MAX_AUDIO_SECONDS) {
    throw new AudioInputError(
      'too-long',
      `“${name}” is ${minutesAndSeconds(seconds)} long; Hark listens to at most ${MAX_AUDIO_SECONDS / 60} minutes. ` +
        'Trim it to 10 minutes or less (or split it), then open it again. The current recording stays open.',
    );
  }
}

function fileLabel(file: Blob): string {
  return file instanceof File && file.name ? `“${file.name}”` : 'This file';
}

/** Chromium limits OfflineAudioContext rates to 3 kHz – 768 kHz. */
function clampRate(rate: number): number {
  return Math.min(768_000, Math.max(3000, Math.round(rate)));
}

/**
 * Decodes any audio file the browser understands into PCM channels, at the file's own sample
 * rate for WAV and at 48 kHz otherwise (compressed formats rarely go above it).
 */
export async function decodeAudioFile(file: Blob, bytes?: Uint8Array): Promise<PcmAudio> {
  if (file.size === 0) throw new AudioInputError('empty', `${fileLabel(file)} is empty: choose a recording that has sound in it.`);
  const OfflineCtx = globalThis.OfflineAudioContext ?? (globalThis as { webkitOfflineAudioContext?: typeof OfflineAudioContext }).webkitOfflineAudioContext;
  if (!OfflineCtx) {
    throw new AudioInputError('unsupported-browser', 'This browser cannot decode audio files (no Web Audio API). Use a current Chrome, Edge, Firefox or Safari.');
  }
  const data = bytes ?? new Uint8Array(await file.arrayBuffer());
  const rate = clampRate(wavSampleRate(data) ?? 48_000);
  const context = new OfflineCtx(1, 1, rate);
  let buffer: AudioBuffer;
  try {
    // decodeAudioData detaches the buffer it is given: pass a copy.
    buffer = await context.decodeAudioData(data.slice().buffer);
  } catch {
    throw new AudioInputError(
      'undecodable',
      `${fileLabel(file)} could not be read as audio. Hark opens ${SUPPORTED_FORMATS} — whatever this browser can play.`,
    );
  }
  if (buffer.length === 0 || buffer.numberOfChannels === 0) {
    throw new AudioInputError('empty', `${fileLabel(file)} has no audio samples in it.`);
  }
  const channels = Array.from({ length: buffer.numberOfChannels }, (_, c) => buffer.getChannelData(c).slice());
  return { sampleRate: buffer.sampleRate, channels };
}

/** Mono mix of the channels (for drawing). */
export function mixToMono(audio: PcmAudio): Float32Array {
  const [first, ...rest] = audio.channels;
  if (!first) return new Float32Array(0);
  if (rest.length === 0) return first;
  const out = new Float32Array(first.length);
  const scale = 1 / audio.channels.length;
  for (const channel of audio.channels) for (let i = 0; i < out.length; i++) out[i]! += (channel[i] ?? 0) * scale;
  return out;
}

/** Min/max pairs over `buckets` equal slices: enough to draw a waveform at any width. */
export function computePeaks(samples: Float32Array, buckets = 2048): Float32Array {
  const n = Math.max(1, Math.min(buckets, samples.length));
  const peaks = new Float32Array(n * 2);
  const step = samples.length / n;
  for (let b = 0; b < n; b++) {
    const start = Math.floor(b * step);
    const end = Math.max(start + 1, Math.floor((b + 1) * step));
    let min = 0;
    let max = 0;
    for (let i = start; i < end && i < samples.length; i++) {
      const v = samples[i]!;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    peaks[2 * b] = min;
    peaks[2 * b + 1] = max;
  }
  return peaks;
}
