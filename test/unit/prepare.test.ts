import { describe, expect, it } from 'vitest';
import { HarkError } from '../../src/engine/errors';
import { downmixToMono, prepareAudio, splitAudio, tokenTimeMap } from '../../src/engine/audio/prepare';

function ramp(n: number): Float32Array {
  // Distinct, non-zero values so misplaced samples show up.
  return Float32Array.from({ length: n }, (_, i) => ((i % 1000) + 1) / 2000);
}

function expectHarkError(fn: () => unknown, code: string): HarkError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(HarkError);
    expect((e as HarkError).code).toBe(code);
    return e as HarkError;
  }
  throw new Error(`expected HarkError ${code}, nothing was thrown`);
}

describe('prepareAudio: chunking like split_audio in models/salmonn/pipeline.py', () => {
  it.each([
    // seconds, samples at 16 kHz, expected chunk lengths
    [0.1, 1600, [16000]],
    [1, 16000, [16000]],
    [30, 480000, [480000]],
    [30.0001, 480002, [480000, 16000]],
    [35, 560000, [480000, 80000]],
    [61, 976000, [480000, 480000, 16000]],
  ])('%s s (%d samples) → chunks %j', (_seconds, n, lengths) => {
    const samples = ramp(n);
    const prepared = prepareAudio({ sampleRate: 16000, channels: [samples] });
    expect(prepared.samples.length).toBe(n);
    expect(prepared.durationSeconds).toBeCloseTo(n / 16000, 12);
    expect(prepared.chunks.map((c) => c.length)).toEqual(lengths);
    // Content: consecutive slices, zero-padded at the end.
    let offset = 0;
    for (const chunk of prepared.chunks) {
      const real = Math.min(chunk.length, n - offset);
      const firstDifference = chunk.subarray(0, real).findIndex((v, i) => v !== samples[offset + i]);
      expect(firstDifference).toBe(-1);
      expect(chunk.subarray(real).every((v) => v === 0)).toBe(true);
      offset += real;
    }
    expect(offset).toBe(n);
  });

  it('honours the bundle parameters (minSeconds, chunkSeconds)', () => {
    const prepared = prepareAudio({ sampleRate: 16000, channels: [ramp(16000 * 25)] }, { minSeconds: 2, chunkSeconds: 10 });
    expect(prepared.chunks.map((c) => c.length)).toEqual([160000, 160000, 80000]);
    expect(splitAudio(ramp(100), 16000, 2, 10).map((c) => c.length)).toEqual([32000]);
  });

  it('the prepared samples are a copy, not the caller’s array', () => {
    const samples = ramp(16000);
    const prepared = prepareAudio({ sampleRate: 16000, channels: [samples] });
    expect(prepared.samples).not.toBe(samples);
  });

  it('resamples other rates to 16 kHz and averages channels first', () => {
    const n = 48000 * 2;
    const left = new Float32Array(n).fill(0.5);
    const right = new Float32Array(n).fill(0.1);
    const prepared = prepareAudio({ sampleRate: 48000, channels: [left, right] });
    expect(prepared.samples.length).toBe(32000);
    expect(prepared.durationSeconds).toBe(2);
    expect(prepared.samples[16000]).toBeCloseTo(0.3, 6);
    expect(prepared.chunks.map((c) => c.length)).toEqual([32000]);
  });
});

describe('prepareAudio: validation', () => {
  it('NaN / ±Infinity → audio/invalid-samples with the count and the first position', () => {
    const a = ramp(16000 * 3);
    const b = ramp(16000 * 3);
    a[40000] = Number.NaN;
    b[24000] = Number.POSITIVE_INFINITY;
    a[47000] = Number.NEGATIVE_INFINITY;
    const err = expectHarkError(() => prepareAudio({ sampleRate: 16000, channels: [a, b] }), 'audio/invalid-samples');
    expect(err.details).toMatchObject({ count: 3, firstSeconds: 1.5 });
    expect(err.message).toMatch(/3 invalid samples.*1\.500 s/);
  });

  it('longer than maxSeconds → audio/too-long, naming the length and the limit', () => {
    // 601 s at 1 kHz keeps the test small; the limit is on duration, not on sample count.
    const err = expectHarkError(
      () => prepareAudio({ sampleRate: 1000, channels: [new Float32Array(601_000)] }),
      'audio/too-long',
    );
    expect(err.details).toMatchObject({ seconds: 601, maxSeconds: 600 });
    expect(err.message).toMatch(/10 min 1 s.*10 min.*Trim/s);
    expectHarkError(() => prepareAudio({ sampleRate: 16000, channels: [new Float32Array(16000 * 11)] }, { maxSeconds: 10 }), 'audio/too-long');
    // Exactly at the limit is fine.
    expect(prepareAudio({ sampleRate: 16000, channels: [new Float32Array(16000 * 600)] }).chunks).toHaveLength(20);
  });

  it('zero samples → audio/no-samples', () => {
    expectHarkError(() => prepareAudio({ sampleRate: 16000, channels: [new Float32Array(0)] }), 'audio/no-samples');
    expectHarkError(() => prepareAudio({ sampleRate: 16000, channels: [] }), 'audio/no-samples');
  });
});

describe('downmixToMono', () => {
  it('averages the channels', () => {
    const out = downmixToMono([Float32Array.of(1, 0.5, -1), Float32Array.of(0, 0.5, 1), Float32Array.of(0.5, 0.5, 0)]);
    expect(Array.from(out)).toEqual([0.5, 0.5, 0].map((v) => Math.fround(v)));
    expect(Array.from(downmixToMono([Float32Array.of(0.2, 0.4), Float32Array.of(0, 0)]))).toEqual([0.1, 0.2].map(Math.fround));
  });

  it('keeps speech that sits on one channel only (unlike taking channel 0)', () => {
    const silent = new Float32Array(4);
    const speech = Float32Array.of(0.4, -0.4, 0.2, -0.2);
    expect(Array.from(downmixToMono([silent, speech]))).toEqual([0.2, -0.2, 0.1, -0.1].map(Math.fround));
  });

  it('returns a single channel as it is; rejects channels of different lengths', () => {
    const only = Float32Array.of(1, 2, 3);
    expect(downmixToMono([only])).toBe(only);
    expect(() => downmixToMono([new Float32Array(3), new Float32Array(4)])).toThrow(RangeError);
  });
});

describe('tokenTimeMap', () => {
  it('start/end pairs: chunk c, token i → [30c + 17i·0.02, start + 17·0.02]', () => {
    const map = tokenTimeMap(2, 88, 17, 17);
    expect(map.length).toBe(2 * 88 * 2);
    expect(map[0]).toBe(0);
    expect(map[1]).toBeCloseTo(0.34, 12);
    expect(map[2 * 87]).toBeCloseTo(29.58, 12);
    expect(map[2 * 88]).toBe(30);
    expect(map[2 * 88 + 1]).toBeCloseTo(30.34, 12);
    expect(map[map.length - 1]).toBeCloseTo(59.92, 12);
  });
});
