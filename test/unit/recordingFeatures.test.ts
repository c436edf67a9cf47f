/**
 * The recording-scoped feature extractors' shapes, lengths and refusals (their numbers are
 * checked against the Python reference by models/tests/test_engine_features.py), and the dispatch
 * from a manifest spec.
 */
import { describe, expect, it } from 'vitest';
import { HarkError } from '../../src/engine/errors';
import { encoderFeatures } from '../../src/engine/features/encoderFeatures';
import { RecordingFbank, SSLAM_FBANK } from '../../src/engine/features/recordingFbank';
import { SeamlessFbank, W2VBERT_SEAMLESS_FBANK } from '../../src/engine/features/seamlessFbank';
import { MUQ_RESAMPLE, ResampledWaveform, sincResampleKernel } from '../../src/engine/features/sincResample';
import { torchFloat32Sum } from '../../src/engine/features/kaldiFbank';

const noise = (n: number, seed = 1): Float32Array => {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648 - 0.5) * 0.2;
  });
};

const noConfig = async (): Promise<Record<string, unknown>> => {
  throw new Error('no preprocessor config expected');
};

function refusedAsTooShort(fn: () => unknown): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(HarkError);
    expect((error as HarkError).code).toBe('audio/no-samples');
    return;
  }
  throw new Error('expected a refusal');
}

describe('w2v-BERT features (seamless-fbank)', () => {
  const seamless = new SeamlessFbank(W2VBERT_SEAMLESS_FBANK);

  it('stacks the fbank frames of the edge-padded recording in pairs; an odd count gets a frame of padding_value', async () => {
    // 16161 samples + 2·160 → N = 1 + ⌊(16481 − 400) / 160⌋ = 101 frames → 51 stacked, 50 real
    const odd = await seamless.compute(noise(16161));
    expect(odd.dims).toEqual([1, 51, 160]);
    expect(odd.realLength).toBe(50);
    expect(Array.from(odd.data.subarray(50 * 160 + 80))).toEqual(new Array(80).fill(1));
    const even = await seamless.compute(noise(16000));
    expect(even.dims).toEqual([1, 50, 160]);
    expect(even.realLength).toBe(50);
  });

  it('normalises each mel bin over the whole recording (zero mean, unit ddof-1 variance)', async () => {
    const { data, dims } = await seamless.compute(noise(8000));
    const frames = dims[1]! * 2;
    for (const bin of [0, 40, 79]) {
      const values = Array.from({ length: frames }, (_, f) => data[(f >> 1) * 160 + (f & 1) * 80 + bin]!);
      const mean = values.reduce((a, b) => a + b, 0) / frames;
      const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / (frames - 1);
      expect(Math.abs(mean)).toBeLessThan(1e-5);
      expect(Math.abs(variance - 1)).toBeLessThan(1e-3);
    }
  });

  it('refuses a recording of fewer than two fbank frames', async () => {
    await expect(seamless.compute(noise(239))).rejects.toMatchObject({ code: 'audio/no-samples' });
  });
});

describe('SSLAM features (kaldi-fbank-recording)', () => {
  const fbank = new RecordingFbank(SSLAM_FBANK);

  it('pads the log-mel frames to a multiple of 1024 with the normalised zero, and reports the real frames', () => {
    const { data, dims, realLength } = fbank.compute(noise(16000));
    expect(dims).toEqual([1, 1024, 128]);
    expect(realLength).toBe(100); // 1 + ⌊(16320 − 400) / 160⌋
    expect(data[100 * 128]).toBe(Math.fround(Math.fround(4.268) / Math.fround(9.138)));
    expect(data[1024 * 128 - 1]).toBe(data[100 * 128]);
    expect(data[99 * 128]).not.toBe(data[100 * 128]);
  });

  it('removes the waveform mean first: a constant offset changes nothing', () => {
    const wave = noise(4000);
    const shifted = wave.map((x) => x + 0.25);
    const a = fbank.compute(wave).data;
    const b = fbank.compute(shifted).data;
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    expect(worst).toBeLessThan(1e-3); // only float32 rounding of the shifted samples differs
  });

  it('refuses a recording without a single frame (as torchaudio does)', () => {
    refusedAsTooShort(() => fbank.compute(noise(79)));
    expect(fbank.compute(noise(80)).realLength).toBe(1);
  });
});

describe('MuQ input (resampled-waveform)', () => {
  it("builds torchaudio's 16 → 24 kHz kernel: 3 phases of 16 taps, width 7", () => {
    const kernel = sincResampleKernel(16000, 24000, 6, 0.99);
    expect([kernel.orig, kernel.new, kernel.width, kernel.taps.length]).toEqual([2, 3, 7, 48]);
    // phase 0, tap k = width: t = 0 → sinc 1, window 1, times base / orig = 0.99
    expect(kernel.taps[7]).toBe(Math.fround(0.99));
  });

  it('resamples to ⌈3n / 2⌉ samples, then pads with zeros to whole 30 s pieces', () => {
    const resampler = new ResampledWaveform(MUQ_RESAMPLE);
    const { data, dims, realLength } = resampler.compute(noise(4001));
    expect(realLength).toBe(6002);
    expect(dims).toEqual([1, 720000]);
    expect(data.subarray(6002).every((x) => x === 0)).toBe(true);
    // a 1 kHz tone stays a 1 kHz tone (away from the edges)
    const tone = Float32Array.from({ length: 1600 }, (_, i) => Math.sin((2 * Math.PI * 1000 * i) / 16000));
    const out = resampler.compute(tone).data;
    for (let i = 200; i < 2200; i += 37) expect(Math.abs(out[i]! - Math.sin((2 * Math.PI * 1000 * i) / 24000))).toBeLessThan(2e-3);
    refusedAsTooShort(() => resampler.compute(new Float32Array(0)));
  });
});

describe('torchFloat32Sum', () => {
  it('is exact for 16-bit sample values and close to the float64 sum otherwise', () => {
    const ints = Float64Array.from({ length: 400 }, (_, i) => ((i * 7919) % 65536) - 32768);
    expect(torchFloat32Sum(ints, 0, 400)).toBe(ints.reduce((a, b) => a + b, 0));
    const values = Float64Array.from(noise(70001), Math.fround);
    const exact = values.reduce((a, b) => a + b, 0);
    expect(Math.abs(torchFloat32Sum(values, 0, values.length) - exact)).toBeLessThan(1e-4);
    // fewer than 8 values: row_sum over scalars, 4 interleaved accumulators, the 5th value into
    // the first, then the others in order: (((v0 + v4) + v1) + v2) + v3
    const v = values.subarray(3, 8);
    const f = Math.fround;
    expect(torchFloat32Sum(values, 3, 5)).toBe(f(f(f(f(v[0]! + v[4]!) + v[1]!) + v[2]!) + v[3]!));
  });
});

describe('encoderFeatures dispatch', () => {
  it('gives recording-scoped extractors for the three ALARM-CA specs, with their split', async () => {
    const specs = [
      { type: 'seamless-fbank' as const, ...W2VBERT_SEAMLESS_FBANK },
      { type: 'kaldi-fbank-recording' as const, ...SSLAM_FBANK },
      { type: 'resampled-waveform' as const, ...MUQ_RESAMPLE },
    ];
    const extractors = await Promise.all(specs.map((spec) => encoderFeatures(spec, noConfig)));
    expect(extractors.map((e) => [e.scope, e.stage, e.scope === 'recording' ? e.splitFrames : 0])).toEqual([
      ['recording', 'fbank', 1500],
      ['recording', 'fbank', 1024],
      ['recording', 'waveform', 720000],
    ]);
    const sslam = extractors[1]!;
    if (sslam.scope !== 'recording') throw new Error('unreachable');
    expect((await sslam.compute(noise(16000))).dims).toEqual([1, 1024, 128]);
  });
});
