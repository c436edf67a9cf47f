import { describe, expect, it } from 'vitest';
import { decodeWav } from '../../src/engine/audio/wav';
import { base64ToBytes, bytesToBase64, encodeWav } from '../../src/audio/wavEncode';

describe('encodeWav (history export)', () => {
  const samples = Float32Array.from({ length: 16000 }, (_, i) => 0.8 * Math.sin((2 * Math.PI * 440 * i) / 16000));

  it('writes a 16-bit mono WAV the engine decodes back within one quantisation step', () => {
    const wav = encodeWav(samples, 16000);
    expect(wav.length).toBe(44 + 2 * samples.length);
    expect(new TextDecoder().decode(wav.subarray(0, 4))).toBe('RIFF');
    const decoded = decodeWav(wav);
    expect(decoded.sampleRate).toBe(16000);
    expect(decoded.channels).toHaveLength(1);
    let maxError = 0;
    for (let i = 0; i < samples.length; i++) maxError = Math.max(maxError, Math.abs(decoded.channels[0]![i]! - samples[i]!));
    expect(maxError).toBeLessThanOrEqual(0.5 / 32768 + 1e-7);
  });

  it('writes a lossless 32-bit float WAV on request and clips 16-bit output', () => {
    const decoded = decodeWav(encodeWav(samples, 22050, { bitDepth: 32 }));
    expect(decoded.sampleRate).toBe(22050);
    expect(decoded.channels[0]).toEqual(samples);
    const clipped = decodeWav(encodeWav(Float32Array.of(2, -2, Number.NaN), 8000)).channels[0]!;
    expect(Array.from(clipped)).toEqual([32767 / 32768, -1, 0]);
  });

  it('round-trips base64 for large inputs', () => {
    const bytes = Uint8Array.from({ length: 200_001 }, (_, i) => (i * 7919) & 0xff);
    const text = bytesToBase64(bytes);
    expect(text).toBe(Buffer.from(bytes).toString('base64'));
    expect(base64ToBytes(text)).toEqual(bytes);
  });
});
