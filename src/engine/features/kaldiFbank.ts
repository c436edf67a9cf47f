/**
 * BEATs' input features: Kaldi-style log mel filter bank, as `torchaudio.compliance.kaldi.fbank`
 * computes it, followed by BEATs' normalisation. Mirrors `kaldi_fbank` in models/salmonn/beats.py:
 *
 *   x = waveform · 2^15 (Kaldi expects 16-bit sample values)
 *   frames of 400 samples every 160 (25 ms / 10 ms at 16 kHz), snip_edges: only frames that fit,
 *     T = 1 + ⌊(n − 400) / 160⌋ (0 when n < 400)
 *   per frame, in this order: subtract the frame's mean (remove_dc_offset), pre-emphasis
 *     y[j] = x[j] − 0.97 · x[j − 1] with x[−1] = x[0], multiply by the Povey window
 *     (symmetric Hann to the power 0.85), zero-pad to 512 (next power of two)
 *   power spectrum |FFT|², bins 0..256
 *   128 triangular mel filters, triangles built in mel space (mel = 1127 ln(1 + f/700)) with edges
 *     evenly spaced between mel(20 Hz) and mel(8000 Hz); bin 256 (Nyquist) gets weight 0 as in
 *     torchaudio; no filter normalisation
 *   log(max(energy, float32 epsilon)); no energy column (use_energy false), dither 0
 *   → (fbank − mean) / (stdMultiplier · std)
 *
 * Why our own: no npm package reproduces torchaudio's fbank. The candidates were sherpa-onnx /
 * vosk-browser (whole Kaldi/ASR runtimes in wasm, megabytes, no plain fbank call for a worker) and
 * @huggingface/transformers' generic `spectrogram` (its AST extractor approximates Kaldi with a
 * Hann window instead of Povey, and that helper is not a public export).
 *
 * Precision — why the time-domain part and the FFT are float32, not float64: the reference runs in
 * float32, and its rounding noise is part of its output. In quiet bands of loud frames (the golden
 * clips are pure tones and sweeps: 130 dB between the tone and the empty bands) that noise *is* the
 * band energy. A float64 implementation agrees with torchaudio-in-float64 to 1e-5 but differs from
 * the float32 reference (and its goldens) by up to 1.2e-2 relative-max there. So the framing, DC
 * removal, pre-emphasis, windowing and FFT reproduce torch's float32 arithmetic operation by
 * operation (Math.fround after every step): the FFT follows pocketfft's real FFT (radix 4 passes
 * with one radix 2 pass, FFTPACK half-complex layout, twiddles computed in double then rounded),
 * which torch uses on the CPU; checked bit-exact against torch.fft.rfft on 3000 random frames.
 * A frame's mean (remove_dc_offset) is torch's float32 sum in torch's own summation order
 * (`torchFloat32Sum`): any order is exact for 16-bit input (integer values), but not for other
 * input (resampled audio, SSLAM's unscaled waveform): there a correctly rounded mean differs from
 * torch's by an ulp, and the quiet bands follow (measured on one_second.wav × 0.7 with BEATs'
 * settings: 7.2e-4 absolute with the rounded float64 sum, 6.6e-7 with torch's order).
 * The frame window is Povey's (BEATs, format 1) or the symmetric Hann window (`window: 'hanning'`,
 * SSLAM), each with torch's float32 values.
 * The mel weights follow torchaudio's float32 formula too (a weight near a triangle's edge is a
 * small difference of large mel values, so float64 weights differ by up to 1.4e-5 absolute).
 * From the power spectrum on (mel sums, log, normalisation), where float32 noise would only be
 * relative (~1e-7), we compute in float64. Measured: ≤ 1.4e-6 relative-max against every golden
 * (with float64 everywhere: up to 1.2e-2; float32 but float64 mel weights: up to 9.5e-6).
 * The goldens' quiet bands depend on torch's CPU kernels, so another torch build could differ there.
 */

import type { FbankFeatureSpec } from '../bundle/manifest';

/**
 * Kaldi's frame windows that we reproduce: 'povey' (Kaldi's default, BEATs and w2v-BERT) and
 * 'hanning' (torchaudio's `window_type="hanning"`: the symmetric Hann window, SSLAM).
 */
export type FbankWindow = 'povey' | 'hanning';

/**
 * The fbank settings are the manifest's `features.fbank` (one definition, not two), plus the frame
 * window (absent: 'povey', which every format-1 bundle means).
 */
export type FbankOptions = FbankFeatureSpec & { window?: FbankWindow };

/** The values SALMONN's BEATs uses (the bundle manifest's features.fbank carries the same). */
export const BEATS_FBANK: FbankOptions = {
  waveformScale: 32768,
  numMelBins: 128,
  sampleFrequency: 16000,
  frameLengthMs: 25,
  frameShiftMs: 10,
  mean: 15.41663,
  std: 6.55582,
  stdMultiplier: 2,
};

export interface FbankResult {
  /** Row-major [frames, numMelBins]. */
  data: Float32Array;
  frames: number;
}

const PREEMPHASIS = 0.97;
const LOW_FREQ = 20;
const FLOAT32_EPSILON = 1.1920928955078125e-7;
const f32 = Math.fround;

function melScale(freq: number): number {
  return 1127 * Math.log(1 + freq / 700);
}

/** c10's CeilLog2: ⌈log2 x⌉, and 1 for x ≤ 2. */
function ceilLog2(x: number): number {
  return x <= 2 ? 1 : 32 - Math.clz32(x - 1);
}

/** Lanes of torch's float32 vectors with AVX2 (the CPU capability of the build that made the goldens). */
const TORCH_LANES = 8;
/** SumKernel.cpp's row_sum splits a row into this many interleaved accumulators (ilp_factor). */
const TORCH_ILP = 4;
const TORCH_LEVELS = 4;

/**
 * torch's float32 sum of `n` contiguous values from `offset` (CPU, one thread), operation for
 * operation as ATen's SumKernel.cpp: cascade_sum → vectorized_inner_sum over 8-lane vectors →
 * row_sum (4 interleaved accumulators, multi_row_sum's 4-level cascade in chunks of ≥ 16), then
 * the scalar tail added to 0 and the 8 lanes added in order. For 16-bit sample values (integers,
 * sums < 2^24) every order gives the same exact sum; for other samples this is what makes a
 * frame's DC offset, and so the rounding noise of the quiet bands, equal torch's.
 */
export function torchFloat32Sum(values: ArrayLike<number>, offset: number, n: number): number {
  const vectors = Math.floor(n / TORCH_LANES);
  if (vectors === 0) {
    // scalar_inner_sum: row_sum over scalars (one lane)
    return cascadeRowSum(values, offset, n, 1)[0]!;
  }
  const lanes = cascadeRowSum(values, offset, vectors, TORCH_LANES);
  let total = 0;
  for (let k = vectors * TORCH_LANES; k < n; k++) total = f32(total + values[offset + k]!);
  for (let l = 0; l < TORCH_LANES; l++) total = f32(total + lanes[l]!);
  return total;
}

/** row_sum over `size` vectors of `lanes` floats starting at `offset`: the per-lane sums. */
function cascadeRowSum(values: ArrayLike<number>, offset: number, size: number, lanes: number): Float64Array {
  const sizeIlp = Math.floor(size / TORCH_ILP);
  // multi_row_sum: row k of the (−1, ILP) view holds vectors i·ILP + k; acc[level][k][lane].
  const levelPower = Math.max(4, Math.floor(ceilLog2(sizeIlp) / TORCH_LEVELS));
  const levelStep = 2 ** levelPower;
  const levelMask = levelStep - 1;
  const width = TORCH_ILP * lanes;
  const acc = new Float64Array(TORCH_LEVELS * width);
  const addVectors = (i: number): void => {
    for (let k = 0; k < TORCH_ILP; k++) {
      const base = offset + (i * TORCH_ILP + k) * lanes;
      for (let l = 0; l < lanes; l++) acc[k * lanes + l] = f32(acc[k * lanes + l]! + values[base + l]!);
    }
  };
  let i = 0;
  while (i + levelStep <= sizeIlp) {
    for (let j = 0; j < levelStep; j++, i++) addVectors(i);
    for (let level = 1; level < TORCH_LEVELS; level++) {
      for (let e = 0; e < width; e++) {
        acc[level * width + e] = f32(acc[level * width + e]! + acc[(level - 1) * width + e]!);
        acc[(level - 1) * width + e] = 0;
      }
      if ((i & (levelMask * 2 ** (level * levelPower))) !== 0) break;
    }
  }
  for (; i < sizeIlp; i++) addVectors(i);
  for (let level = 1; level < TORCH_LEVELS; level++) {
    for (let e = 0; e < width; e++) acc[e] = f32(acc[e]! + acc[level * width + e]!);
  }
  // row_sum: the leftover vectors into accumulator 0, then accumulators 1..3 into it.
  const out = acc.slice(0, lanes);
  for (let v = sizeIlp * TORCH_ILP; v < size; v++) {
    for (let l = 0; l < lanes; l++) out[l] = f32(out[l]! + values[offset + v * lanes + l]!);
  }
  for (let k = 1; k < TORCH_ILP; k++) {
    for (let l = 0; l < lanes; l++) out[l] = f32(out[l]! + acc[k * lanes + l]!);
  }
  return out;
}

/** Smallest power of two ≥ x, as Kaldi's round_to_power_of_two. */
function nextPowerOfTwo(x: number): number {
  let p = 1;
  while (p < x) p *= 2;
  return p;
}

/**
 * Entries of torch's float32 `hann_window(400, periodic=False).pow(0.85)` (torch 1.13, x86-64 CPU,
 * the build that made the goldens) that differ from the correctly rounded formula: torch's
 * vectorised cos and pow are accurate to about 1 ulp, not correctly rounded. One ulp in the window
 * changes the rounding noise of quiet bands (see the precision note above), so we use torch's values.
 */
const TORCH_POVEY_400: ReadonlyMap<number, number> = new Map([
  [19, 0.03932110592722893],
  [68, 0.31852883100509644],
  [70, 0.33296772837638855],
  [150, 0.8758813142776489],
  [155, 0.8989230394363403],
  [235, 0.9349216222763062],
  [267, 0.776989758014679],
  [282, 0.6789957880973816],
  [329, 0.3329678177833557],
  [337, 0.27606201171875],
  [358, 0.1420251578092575],
]);

/**
 * Entries of torch's float32 `hann_window(400, periodic=False)` (same torch build as above) that
 * differ from the correctly rounded formula (its vectorised cos; the same indices as the Povey
 * table but for 70 and 282, where only the pow rounded differently). The 'hanning' window of SSLAM's features.
 */
const TORCH_HANN_400: ReadonlyMap<number, number> = new Map([
  [19, 0.02221357822418213],
  [68, 0.2602969706058502],
  [150, 0.8556349873542786],
  [155, 0.8821773529052734],
  [235, 0.923884928226471],
  [267, 0.7431505918502808],
  [329, 0.2742333710193634],
  [337, 0.21996864676475525],
  [358, 0.10064280033111572],
]);

/** Symmetric Hann window in float32, computed as torch does: 0.5 − 0.5·cos(j · f32(2π/(n−1))). */
function hannWindow(n: number): Float64Array {
  const out = new Float64Array(n);
  const step = f32((2 * Math.PI) / (n - 1));
  for (let j = 0; j < n; j++) out[j] = f32(f32(f32(Math.cos(f32(j * step))) * -0.5) + 0.5);
  if (n === 400) for (const [j, v] of TORCH_HANN_400) out[j] = v;
  return out;
}

/** Povey window in float32, computed as torch does: ((0.5 − 0.5·cos(j · f32(2π/(n−1)))))^f32(0.85). */
function poveyWindow(n: number): Float64Array {
  const out = new Float64Array(n);
  const step = f32((2 * Math.PI) / (n - 1));
  const exponent = f32(0.85);
  for (let j = 0; j < n; j++) {
    const hann = f32(f32(f32(Math.cos(f32(j * step))) * -0.5) + 0.5);
    out[j] = f32(Math.pow(hann, exponent));
  }
  if (n === 400) for (const [j, v] of TORCH_POVEY_400) out[j] = v;
  return out;
}

/**
 * pocketfft's `sincos_2pibyn`: cos/sin(2π·idx/n) from two small tables (angles reduced to the
 * first octant), combined in double precision, then rounded to float32.
 */
function twiddles(n: number): (idx: number) => [number, number] {
  const ang = (0.25 * Math.PI) / n;
  const calc = (x0: number): [number, number] => {
    let x = x0 * 8;
    if (x < 4 * n) {
      if (x < 2 * n) {
        if (x < n) return [Math.cos(x * ang), Math.sin(x * ang)];
        return [Math.sin((2 * n - x) * ang), Math.cos((2 * n - x) * ang)];
      }
      x -= 2 * n;
      if (x < n) return [-Math.sin(x * ang), Math.cos(x * ang)];
      return [-Math.cos((2 * n - x) * ang), Math.sin((2 * n - x) * ang)];
    }
    x = 8 * n - x;
    if (x < 2 * n) {
      if (x < n) return [Math.cos(x * ang), -Math.sin(x * ang)];
      return [Math.sin((2 * n - x) * ang), -Math.cos((2 * n - x) * ang)];
    }
    x -= 2 * n;
    if (x < n) return [-Math.sin(x * ang), -Math.cos(x * ang)];
    return [-Math.cos((2 * n - x) * ang), -Math.sin((2 * n - x) * ang)];
  };
  const nval = Math.floor((n + 2) / 2);
  let shift = 1;
  while ((1 << shift) * (1 << shift) < nval) ++shift;
  const mask = (1 << shift) - 1;
  const v1: [number, number][] = [[1, 0]];
  for (let i = 1; i <= mask; i++) v1.push(calc(i));
  const v2: [number, number][] = [[1, 0]];
  const v2Count = Math.floor((nval + mask) / (mask + 1));
  for (let i = 1; i < v2Count; i++) v2.push(calc(i * (mask + 1)));
  return (idx0: number) => {
    const conj = 2 * idx0 > n;
    const idx = conj ? n - idx0 : idx0;
    const [ar, ai] = v1[idx & mask]!;
    const [br, bi] = v2[idx >> shift]!;
    const re = f32(ar * br - ai * bi);
    const im = f32(ar * bi + ai * br);
    return [re, conj ? -im : im];
  };
}

/**
 * Real FFT of a power-of-two length in float32 arithmetic, operation for operation as pocketfft's
 * `rfftp` (FFTPACK radf4/radf2 passes; factors 4,4,…,4 with a single 2 moved to the front).
 * Output is FFTPACK half-complex: r0, r1, i1, r2, i2, …, r(n/2).
 *
 * A small FFT of our own: only a fixed 512-point real transform is needed (no dependency is worth
 * it), and it has to round exactly like the reference.
 */
class Float32RealFft {
  private readonly factors: number[];
  private readonly tw: Float64Array[];
  private readonly scratch: Float64Array;

  constructor(readonly n: number) {
    if (n < 2 || (n & (n - 1)) !== 0) throw new RangeError(`FFT size must be a power of two (got ${n})`);
    const fact: number[] = [];
    let len = n;
    while (len % 4 === 0) {
      fact.push(4);
      len /= 4;
    }
    if (len === 2) {
      fact.push(2);
      [fact[0], fact[fact.length - 1]] = [fact[fact.length - 1]!, fact[0]!];
    }
    this.factors = fact;
    const twid = twiddles(n);
    this.tw = [];
    let l1 = 1;
    for (let k = 0; k < fact.length; k++) {
      const ip = fact[k]!;
      const ido = n / (l1 * ip);
      const tw = new Float64Array(Math.max(0, (ip - 1) * (ido - 1)));
      if (k < fact.length - 1) {
        for (let j = 1; j < ip; j++) {
          for (let i = 1; i <= (ido - 1) >> 1; i++) {
            const [re, im] = twid(j * l1 * i);
            tw[(j - 1) * (ido - 1) + 2 * i - 2] = re;
            tw[(j - 1) * (ido - 1) + 2 * i - 1] = im;
          }
        }
      }
      this.tw.push(tw);
      l1 *= ip;
    }
    this.scratch = new Float64Array(n);
  }

  /** Transforms `data` (float32 values, length n); returns the array now holding the result. */
  forward(data: Float64Array): Float64Array {
    let p1 = data;
    let p2 = this.scratch;
    let l1 = this.n;
    for (let k = this.factors.length - 1; k >= 0; k--) {
      const ip = this.factors[k]!;
      const ido = this.n / l1;
      l1 /= ip;
      if (ip === 4) radf4(ido, l1, p1, p2, this.tw[k]!);
      else radf2(ido, l1, p1, p2, this.tw[k]!);
      [p1, p2] = [p2, p1];
    }
    return p1;
  }
}

const HSQT2 = f32(Math.SQRT1_2);

/** pocketfft radf4: CC(a,b,c) = cc[a + ido·(b + l1·c)], CH(a,b,c) = ch[a + ido·(b + 4·c)]. */
function radf4(ido: number, l1: number, cc: Float64Array, ch: Float64Array, wa: Float64Array): void {
  const cs = ido * l1; // CC stride of c
  for (let k = 0; k < l1; k++) {
    const c0 = cc[ido * k]!;
    const c1 = cc[ido * k + cs]!;
    const c2 = cc[ido * k + 2 * cs]!;
    const c3 = cc[ido * k + 3 * cs]!;
    const tr1 = f32(c3 + c1);
    ch[ido * (2 + 4 * k)] = f32(c3 - c1);
    const tr2 = f32(c0 + c2);
    ch[ido - 1 + ido * (1 + 4 * k)] = f32(c0 - c2);
    ch[ido * 4 * k] = f32(tr2 + tr1);
    ch[ido - 1 + ido * (3 + 4 * k)] = f32(tr2 - tr1);
  }
  if ((ido & 1) === 0) {
    for (let k = 0; k < l1; k++) {
      const a = ido - 1 + ido * k;
      const ti1 = f32(-HSQT2 * f32(cc[a + cs]! + cc[a + 3 * cs]!));
      const tr1 = f32(HSQT2 * f32(cc[a + cs]! - cc[a + 3 * cs]!));
      ch[ido - 1 + ido * 4 * k] = f32(cc[a]! + tr1);
      ch[ido - 1 + ido * (2 + 4 * k)] = f32(cc[a]! - tr1);
      ch[ido * (3 + 4 * k)] = f32(ti1 + cc[a + 2 * cs]!);
      ch[ido * (1 + 4 * k)] = f32(ti1 - cc[a + 2 * cs]!);
    }
  }
  if (ido <= 2) return;
  const w1 = 0;
  const w2 = ido - 1;
  const w3 = 2 * (ido - 1);
  for (let k = 0; k < l1; k++) {
    for (let i = 2; i < ido; i += 2) {
      const ic = ido - i;
      const b = ido * k;
      // MULPM(a, b, c, d, e, f): a = c·e + d·f, b = c·f − d·e  (conj(twiddle) · value)
      const e1 = cc[i - 1 + b + cs]!;
      const g1 = cc[i + b + cs]!;
      const cr2 = f32(f32(wa[w1 + i - 2]! * e1) + f32(wa[w1 + i - 1]! * g1));
      const ci2 = f32(f32(wa[w1 + i - 2]! * g1) - f32(wa[w1 + i - 1]! * e1));
      const e2 = cc[i - 1 + b + 2 * cs]!;
      const g2 = cc[i + b + 2 * cs]!;
      const cr3 = f32(f32(wa[w2 + i - 2]! * e2) + f32(wa[w2 + i - 1]! * g2));
      const ci3 = f32(f32(wa[w2 + i - 2]! * g2) - f32(wa[w2 + i - 1]! * e2));
      const e3 = cc[i - 1 + b + 3 * cs]!;
      const g3 = cc[i + b + 3 * cs]!;
      const cr4 = f32(f32(wa[w3 + i - 2]! * e3) + f32(wa[w3 + i - 1]! * g3));
      const ci4 = f32(f32(wa[w3 + i - 2]! * g3) - f32(wa[w3 + i - 1]! * e3));
      const tr1 = f32(cr4 + cr2);
      const tr4 = f32(cr4 - cr2);
      const ti1 = f32(ci2 + ci4);
      const ti4 = f32(ci2 - ci4);
      const tr2 = f32(cc[i - 1 + b]! + cr3);
      const tr3 = f32(cc[i - 1 + b]! - cr3);
      const ti2 = f32(cc[i + b]! + ci3);
      const ti3 = f32(cc[i + b]! - ci3);
      const o = ido * 4 * k;
      ch[i - 1 + o] = f32(tr2 + tr1);
      ch[ic - 1 + o + 3 * ido] = f32(tr2 - tr1);
      ch[i + o] = f32(ti1 + ti2);
      ch[ic + o + 3 * ido] = f32(ti1 - ti2);
      ch[i - 1 + o + 2 * ido] = f32(tr3 + ti4);
      ch[ic - 1 + o + ido] = f32(tr3 - ti4);
      ch[i + o + 2 * ido] = f32(tr4 + ti3);
      ch[ic + o + ido] = f32(tr4 - ti3);
    }
  }
}

/** pocketfft radf2: CC(a,b,c) = cc[a + ido·(b + l1·c)], CH(a,b,c) = ch[a + ido·(b + 2·c)]. */
function radf2(ido: number, l1: number, cc: Float64Array, ch: Float64Array, wa: Float64Array): void {
  const cs = ido * l1;
  for (let k = 0; k < l1; k++) {
    ch[ido * 2 * k] = f32(cc[ido * k]! + cc[ido * k + cs]!);
    ch[ido - 1 + ido * (1 + 2 * k)] = f32(cc[ido * k]! - cc[ido * k + cs]!);
  }
  if ((ido & 1) === 0) {
    for (let k = 0; k < l1; k++) {
      ch[ido * (1 + 2 * k)] = -cc[ido - 1 + ido * k + cs]!;
      ch[ido - 1 + ido * 2 * k] = cc[ido - 1 + ido * k]!;
    }
  }
  if (ido <= 2) return;
  for (let k = 0; k < l1; k++) {
    for (let i = 2; i < ido; i += 2) {
      const ic = ido - i;
      const b = ido * k;
      const e = cc[i - 1 + b + cs]!;
      const g = cc[i + b + cs]!;
      const tr2 = f32(f32(wa[i - 2]! * e) + f32(wa[i - 1]! * g));
      const ti2 = f32(f32(wa[i - 2]! * g) - f32(wa[i - 1]! * e));
      const o = ido * 2 * k;
      ch[i - 1 + o] = f32(cc[i - 1 + b]! + tr2);
      ch[ic - 1 + o + ido] = f32(cc[i - 1 + b]! - tr2);
      ch[i + o] = f32(ti2 + cc[i + b]!);
      ch[ic + o + ido] = f32(ti2 - cc[i + b]!);
    }
  }
}

/** Precomputed tables for one set of options; `compute` can be called for any number of chunks. */
export class KaldiFbank {
  readonly frameLength: number;
  readonly frameShift: number;
  readonly fftSize: number;
  /** The frame window (Povey or Hann), float32 values. */
  private readonly frameWindow: Float64Array;
  private readonly fft: Float32RealFft;
  /** Per mel bin: first FFT bin with a non-zero weight, and the weights from there. */
  private readonly melStart: Int32Array;
  private readonly melWeights: Float64Array[];

  constructor(readonly opts: FbankOptions = BEATS_FBANK) {
    // Same expressions (and so the same rounding) as torchaudio's int(sample_frequency * frame_length * 0.001).
    this.frameLength = Math.trunc(opts.sampleFrequency * opts.frameLengthMs * 0.001);
    this.frameShift = Math.trunc(opts.sampleFrequency * opts.frameShiftMs * 0.001);
    if (this.frameLength < 2 || this.frameShift < 1) throw new RangeError(`fbank: bad frame length/shift ${this.frameLength}/${this.frameShift}`);
    this.fftSize = nextPowerOfTwo(this.frameLength);
    this.fft = new Float32RealFft(this.fftSize);
    const windowType = opts.window ?? 'povey';
    if (windowType !== 'povey' && windowType !== 'hanning') throw new RangeError(`fbank: unknown window "${String(windowType)}"`);
    this.frameWindow = windowType === 'hanning' ? hannWindow(this.frameLength) : poveyWindow(this.frameLength);

    // Mel filters, triangles in mel space (torchaudio get_mel_banks, no VTLN, high_freq = Nyquist),
    // in float32 like torchaudio (the edges are Python doubles rounded to float32 on the way in).
    const numBins = opts.numMelBins;
    const nyquist = 0.5 * opts.sampleFrequency;
    const melLow = melScale(LOW_FREQ);
    const melHigh = melScale(nyquist);
    const delta = f32((melHigh - melLow) / (numBins + 1));
    const low32 = f32(melLow);
    const binWidth = f32(opts.sampleFrequency / this.fftSize);
    const fftBins = this.fftSize / 2; // torchaudio leaves the Nyquist bin out of every filter
    const mels = Array.from({ length: fftBins }, (_, k) => f32(f32(1127) * f32(Math.log(f32(1 + f32(f32(binWidth * k) / 700))))));
    this.melStart = new Int32Array(numBins);
    this.melWeights = [];
    for (let m = 0; m < numBins; m++) {
      const left = f32(f32(m * delta) + low32);
      const center = f32(f32((m + 1) * delta) + low32);
      const right = f32(f32((m + 2) * delta) + low32);
      const weights: number[] = [];
      let start = -1;
      for (let k = 0; k < fftBins; k++) {
        const up = f32(f32(mels[k]! - left) / f32(center - left));
        const down = f32(f32(right - mels[k]!) / f32(right - center));
        const w = Math.max(0, Math.min(up, down));
        if (w > 0) {
          if (start < 0) start = k;
          weights[k - start] = w;
        } else if (start >= 0) break;
      }
      this.melStart[m] = Math.max(start, 0);
      this.melWeights.push(Float64Array.from(weights));
    }
  }

  /** Number of frames for `numSamples` samples (snip_edges): 1 + ⌊(n − frameLength) / frameShift⌋, or 0. */
  numFrames(numSamples: number): number {
    return numSamples < this.frameLength ? 0 : 1 + Math.floor((numSamples - this.frameLength) / this.frameShift);
  }

  /** Normalised log mel features of a mono waveform in [-1, 1]: [frames, numMelBins] row-major. */
  compute(wave: Float32Array): FbankResult {
    const { waveformScale, numMelBins, mean, std, stdMultiplier } = this.opts;
    const frames = this.numFrames(wave.length);
    const out = new Float32Array(frames * numMelBins);
    const n = this.frameLength;
    const size = this.fftSize;
    const scale = f32(waveformScale);
    const preemph = f32(PREEMPHASIS);
    const frame = new Float64Array(n);
    const buf = new Float64Array(size);
    const power = new Float64Array(size / 2 + 1);
    const denom = stdMultiplier * std;
    for (let f = 0; f < frames; f++) {
      const offset = f * this.frameShift;
      for (let j = 0; j < n; j++) frame[j] = f32(wave[offset + j]! * scale);
      // torch.mean: its float32 sum (summation order included), divided in float32.
      const dc = f32(torchFloat32Sum(frame, 0, n) / n);
      for (let j = 0; j < n; j++) frame[j] = f32(frame[j]! - dc);
      // Pre-emphasis, then the window; x[−1] = x[0].
      buf[0] = f32(f32(frame[0]! - f32(preemph * frame[0]!)) * this.frameWindow[0]!);
      for (let j = 1; j < n; j++) buf[j] = f32(f32(frame[j]! - f32(preemph * frame[j - 1]!)) * this.frameWindow[j]!);
      buf.fill(0, n);
      const spec = this.fft.forward(buf);
      power[0] = spec[0]! * spec[0]!;
      for (let k = 1; k < size / 2; k++) power[k] = spec[2 * k - 1]! * spec[2 * k - 1]! + spec[2 * k]! * spec[2 * k]!;
      power[size / 2] = spec[size - 1]! * spec[size - 1]!;
      const row = f * numMelBins;
      for (let m = 0; m < numMelBins; m++) {
        const weights = this.melWeights[m]!;
        const start = this.melStart[m]!;
        let e = 0;
        for (let i = 0; i < weights.length; i++) e += weights[i]! * power[start + i]!;
        out[row + m] = (Math.log(Math.max(e, FLOAT32_EPSILON)) - mean) / denom;
      }
    }
    return { data: out, frames };
  }
}

/** One-shot convenience: `new KaldiFbank(opts).compute(wave)`. */
export function kaldiFbank(wave: Float32Array, opts: FbankOptions = BEATS_FBANK): FbankResult {
  return new KaldiFbank(opts).compute(wave);
}
