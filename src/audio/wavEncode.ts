/**
 * Mono PCM → WAV bytes (RIFF/WAVE), and base64 for binary data. Pure TypeScript (no DOM), so it
 * runs and is tested in Node; used for recordings' playback files and the history export.
 */

export interface WavEncodeOptions {
  /** 16 = signed 16-bit PCM (default; plays everywhere), 32 = IEEE float (lossless). */
  bitDepth?: 16 | 32;
}

/** Encodes mono samples (nominally in [-1, 1]; 16-bit output clips) at `sampleRate` as a WAV file. */
export function encodeWav(samples: Float32Array, sampleRate: number, options: WavEncodeOptions = {}): Uint8Array<ArrayBuffer> {
  const bitDepth = options.bitDepth ?? 16;
  if (!Number.isInteger(sampleRate) || sampleRate <= 0) throw new RangeError(`invalid sample rate: ${sampleRate}`);
  const bytesPerSample = bitDepth / 8;
  const dataBytes = samples.length * bytesPerSample;
  const out = new Uint8Array(44 + dataBytes);
  const view = new DataView(out.buffer);
  const ascii = (offset: number, text: string): void => {
    for (let i = 0; i < text.length; i++) out[offset + i] = text.charCodeAt(i);
  };
  ascii(0, 'RIFF');
  view.setUint32(4, 36 + dataBytes, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  view.setUint32(16, 16, true);
  view.setUint16(20, bitDepth === 32 ? 3 : 1, true); // 3 = IEEE float, 1 = PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * bytesPerSample, true);
  view.setUint16(32, bytesPerSample, true);
  view.setUint16(34, bitDepth, true);
  ascii(36, 'data');
  view.setUint32(40, dataBytes, true);
  if (bitDepth === 32) {
    for (let i = 0; i < samples.length; i++) view.setFloat32(44 + i * 4, samples[i]!, true);
  } else {
    for (let i = 0; i < samples.length; i++) {
      // x·32768, rounded and clipped: the inverse of the usual int16 / 32768 decoding.
      const s = Math.round((samples[i]! || 0) * 0x8000);
      view.setInt16(44 + i * 2, Math.max(-0x8000, Math.min(0x7fff, s)), true);
    }
  }
  return out;
}

/** Standard base64 (with padding) of arbitrary bytes, in chunks so large inputs do not overflow the stack. */
export function bytesToBase64(bytes: Uint8Array): string {
  let binary = '';
  const CHUNK = 0x8000;
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(binary);
}

/** The inverse of bytesToBase64. */
export function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}
