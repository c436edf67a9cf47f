/**
 * Band-limited sample-rate conversion (Kaiser-windowed sinc), for turning any input rate into the
 * 16 kHz the models expect.
 *
 * Why hand-written: the engine runs in a Web Worker and in Node, where there is no WebAudio
 * (OfflineAudioContext exists only on a page's main thread, and not in Node at all), and no
 * well-kept JavaScript library does band-limited resampling without it (the npm options are
 * linear/nearest interpolators, unmaintained, or WebAudio/wasm wrappers). SALMONN itself does not
 * resample, and feeding it non-16 kHz audio silently gives garbage, so this step matters.
 *
 * The filter: an ideal low-pass sinc truncated to ±ZERO_CROSSINGS periods of the *lower* of the two
 * rates and shaped by a Kaiser window (β for ~80 dB stop-band). The cut-off is placed so that the
 * transition band ends at the lower rate's Nyquist frequency: everything above the target Nyquist
 * is attenuated by ≥ 80 dB (no aliasing), and the pass-band is flat up to ≈ 0.84 × Nyquist
 * (≈ 6.7 kHz at 16 kHz; Whisper's and BEATs' mel filters above that carry little speech energy).
 *
 * When both rates are integers the conversion is done with an exact polyphase table (one row of
 * taps per output phase, L = to / gcd(from, to) rows; 160 for 44.1 kHz → 16 kHz, 1 for 48 kHz →
 * 16 kHz); otherwise (or when L is huge) each output's taps are computed on the fly. Every row of
 * taps is normalised to sum to 1, so DC passes exactly. Samples outside the input count as zero.
 */

const ZERO_CROSSINGS = 32;
const STOPBAND_DB = 80;
const MAX_TABLE_PHASES = 4096;

/** Kaiser β for a given stop-band attenuation (Kaiser's empirical formula). */
function kaiserBeta(attenuationDb: number): number {
  if (attenuationDb > 50) return 0.1102 * (attenuationDb - 8.7);
  if (attenuationDb >= 21) return 0.5842 * (attenuationDb - 21) ** 0.4 + 0.07886 * (attenuationDb - 21);
  return 0;
}

/** Modified Bessel function of the first kind, order 0 (power series; converges fast for β ≤ 20). */
function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  const half = x / 2;
  for (let k = 1; k < 200; k++) {
    term *= (half / k) * (half / k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

interface Design {
  /** Cut-off frequency in cycles per *input* sample. */
  cutoff: number;
  /** Half-length of the kernel, in input samples. */
  halfWidth: number;
  beta: number;
  i0Beta: number;
}

function design(fromRate: number, toRate: number): Design {
  // Work in units of the lower rate: the kernel spans ±ZERO_CROSSINGS of its periods.
  const ratio = Math.min(1, toRate / fromRate); // lower rate / input rate
  const taps = 2 * ZERO_CROSSINGS; // kernel length in lower-rate samples
  const transition = (STOPBAND_DB - 7.95) / (14.36 * taps); // Kaiser's length formula, solved for Δf
  const cutoffLower = 0.5 - transition / 2; // cycles per lower-rate sample: stop-band starts at Nyquist
  const beta = kaiserBeta(STOPBAND_DB);
  return { cutoff: cutoffLower * ratio, halfWidth: ZERO_CROSSINGS / ratio, beta, i0Beta: besselI0(beta) };
}

/** Unnormalised kernel value at distance `x` input samples from the output position. */
function kernel(d: Design, x: number): number {
  const r = x / d.halfWidth;
  if (r <= -1 || r >= 1) return 0;
  const w = besselI0(d.beta * Math.sqrt(1 - r * r)) / d.i0Beta;
  const arg = 2 * d.cutoff * x;
  const sinc = arg === 0 ? 1 : Math.sin(Math.PI * arg) / (Math.PI * arg);
  return 2 * d.cutoff * sinc * w;
}

/**
 * Resamples mono audio from `fromRate` to `toRate` Hz with a band-limited (windowed-sinc) filter.
 * The output has round(n · toRate / fromRate) samples; equal rates give a copy.
 */
export function resample(samples: Float32Array, fromRate: number, toRate: number): Float32Array {
  if (!(fromRate > 0) || !(toRate > 0) || !Number.isFinite(fromRate) || !Number.isFinite(toRate)) {
    throw new RangeError(`resample: sample rates must be positive and finite (got ${fromRate} → ${toRate})`);
  }
  if (fromRate === toRate) return samples.slice();
  const outLength = Math.round((samples.length * toRate) / fromRate);
  const out = new Float32Array(outLength);
  if (outLength === 0 || samples.length === 0) return out;
  const d = design(fromRate, toRate);
  const span = Math.ceil(d.halfWidth); // taps j with |p − j| < halfWidth lie in [base − span + 1, base + span]
  const tapCount = 2 * span;

  if (Number.isInteger(fromRate) && Number.isInteger(toRate)) {
    const g = gcd(fromRate, toRate);
    const up = toRate / g; // phases
    const down = fromRate / g;
    if (up <= MAX_TABLE_PHASES) {
      polyphase(samples, out, d, up, down, span, tapCount);
      return out;
    }
  }
  direct(samples, out, d, fromRate / toRate, span, tapCount);
  return out;
}

/** Taps for fractional position `frac` ∈ [0, 1): tap t applies to input base − span + 1 + t. */
function fillTaps(d: Design, frac: number, span: number, taps: Float64Array, at: number, tapCount: number): void {
  let sum = 0;
  for (let t = 0; t < tapCount; t++) {
    const v = kernel(d, frac + span - 1 - t);
    taps[at + t] = v;
    sum += v;
  }
  for (let t = 0; t < tapCount; t++) taps[at + t]! /= sum;
}

function polyphase(x: Float32Array, out: Float32Array, d: Design, up: number, down: number, span: number, tapCount: number): void {
  const table = new Float64Array(up * tapCount);
  for (let phase = 0; phase < up; phase++) fillTaps(d, phase / up, span, table, phase * tapCount, tapCount);
  const n = x.length;
  let base = 0; // floor(k · down / up)
  let phase = 0; // (k · down) mod up
  const baseStep = Math.floor(down / up);
  const phaseStep = down % up;
  for (let k = 0; k < out.length; k++) {
    const first = base - span + 1;
    const row = phase * tapCount;
    let acc = 0;
    if (first >= 0 && first + tapCount <= n) {
      // Four independent partial sums (tapCount is even; a multiple of 4 in the common cases).
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      let t = 0;
      for (; t + 3 < tapCount; t += 4) {
        a0 += x[first + t]! * table[row + t]!;
        a1 += x[first + t + 1]! * table[row + t + 1]!;
        a2 += x[first + t + 2]! * table[row + t + 2]!;
        a3 += x[first + t + 3]! * table[row + t + 3]!;
      }
      for (; t < tapCount; t++) a0 += x[first + t]! * table[row + t]!;
      acc = a0 + a1 + (a2 + a3);
    } else {
      const lo = Math.max(0, -first);
      const hi = Math.min(tapCount, n - first);
      for (let t = lo; t < hi; t++) acc += x[first + t]! * table[row + t]!;
    }
    out[k] = acc;
    base += baseStep;
    phase += phaseStep;
    if (phase >= up) {
      phase -= up;
      base += 1;
    }
  }
}

/**
 * Any other ratio (non-integer rates, or more than MAX_TABLE_PHASES phases): taps come from a table
 * of INTERP_PHASES + 1 evenly spaced fractional positions, linearly interpolated between the two
 * nearest rows (error ≈ 1e-6 of the peak tap, far below the 80 dB stop-band).
 */
const INTERP_PHASES = 1024;

function direct(x: Float32Array, out: Float32Array, d: Design, step: number, span: number, tapCount: number): void {
  const table = new Float64Array((INTERP_PHASES + 1) * tapCount);
  for (let phase = 0; phase <= INTERP_PHASES; phase++) fillTaps(d, phase / INTERP_PHASES, span, table, phase * tapCount, tapCount);
  const n = x.length;
  for (let k = 0; k < out.length; k++) {
    const p = k * step;
    const base = Math.floor(p);
    const pos = (p - base) * INTERP_PHASES;
    const row = Math.min(Math.floor(pos), INTERP_PHASES - 1);
    const w = pos - row;
    const r0 = row * tapCount;
    const r1 = r0 + tapCount;
    const first = base - span + 1;
    const lo = Math.max(0, -first);
    const hi = Math.min(tapCount, n - first);
    let acc0 = 0;
    let acc1 = 0;
    for (let t = lo; t < hi; t++) {
      const v = x[first + t]!;
      acc0 += v * table[r0 + t]!;
      acc1 += v * table[r1 + t]!;
    }
    out[k] = acc0 + w * (acc1 - acc0);
  }
}
