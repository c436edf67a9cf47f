/**
 * MuQ's input as ALARM's MuQFeatureExtractor makes it (models/alarm/muq.py `muq_features`): the
 * 16 kHz recording through `torchaudio.transforms.Resample(16000, 24000)` with its defaults, then
 * zeros appended up to a multiple of 30 s (720000 samples) → [1, samples] and the real 24 kHz
 * sample count (ALARM's length).
 *
 * The resampler is torchaudio's windowed sinc (functional `_get_sinc_resample_kernel` and
 * `_apply_sinc_resample_kernel`, lowpass_filter_width 6, rolloff 0.99, "sinc_interp_hann"), the
 * float64 formulation of muq.py's `sinc_resample_reference`: with the rates reduced by their gcd
 * to `orig` → `new` (16 → 24 kHz: 2 → 3),
 *
 *   base = min(orig, new) · rolloff,  width = ⌈lowpassFilterWidth · orig / base⌉  (7)
 *   phase j (0…new−1), tap k (0…2·width+orig−1):
 *     t = clamp(((k − width) / orig − j / new) · base, ±lowpassFilterWidth)
 *     kernel[j][k] = sinc(π t) · cos(π t / (2 · lowpassFilterWidth))² · base / orig
 *   input zero-padded by width before and width + orig after; output new·m + j =
 *     Σ_k kernel[j][k] · x[orig·m + k − width]; ⌈new · n / orig⌉ samples kept.
 *
 * Two roundings of torchaudio's are reproduced because they are part of what ALARM computes: the
 * phase j / new is a float32 value there (`torch.arange(0, -new, -1) / new` on an integer tensor
 * gives the default dtype), and the taps are cast to float32 before the convolution. The sums are
 * float64 (torch's float32 convolution differs from them by its own accumulation rounding).
 *
 * Not src/engine/audio/resample.ts (a Kaiser-windowed resampler that brings any input rate to the
 * bundle's 16 kHz): this one must equal torchaudio's numbers, not just resample well.
 */
import type { ResampledWaveformSpec } from '../bundle/manifest';
import { HarkError } from '../errors';
import type { RecordingFeatureResult } from './recordingFeatures';

/** ALARM-CA's MuQ values. */
export const MUQ_RESAMPLE: ResampledWaveformSpec = {
  scope: 'recording',
  splitFrames: 720000,
  inputRate: 16000,
  outputRate: 24000,
  lowpassFilterWidth: 6,
  rolloff: 0.99,
  padToMultiple: 720000,
};

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Polyphase windowed-sinc kernel of torchaudio's resampler: `new` rows of 2·width + orig taps. */
export interface SincKernel {
  orig: number;
  new: number;
  width: number;
  /** Row-major [new, 2·width + orig]. */
  taps: Float64Array;
}

export function sincResampleKernel(inputRate: number, outputRate: number, lowpassFilterWidth = 6, rolloff = 0.99): SincKernel {
  if (!Number.isInteger(inputRate) || !Number.isInteger(outputRate) || inputRate < 1 || outputRate < 1) {
    throw new RangeError(`sinc resample: rates must be positive integers (got ${inputRate} → ${outputRate})`);
  }
  if (!(lowpassFilterWidth > 0)) throw new RangeError(`sinc resample: lowpassFilterWidth must be positive (got ${lowpassFilterWidth})`);
  const g = gcd(inputRate, outputRate);
  const orig = inputRate / g;
  const next = outputRate / g;
  const base = Math.min(orig, next) * rolloff;
  const width = Math.ceil((lowpassFilterWidth * orig) / base);
  const count = 2 * width + orig;
  const taps = new Float64Array(next * count);
  for (let j = 0; j < next; j++) {
    const phase = Math.fround(-j / next); // float32 in torchaudio (see the module note)
    for (let k = 0; k < count; k++) {
      let t = (phase + (k - width) / orig) * base;
      t = Math.min(lowpassFilterWidth, Math.max(-lowpassFilterWidth, t));
      const window = Math.cos((t * Math.PI) / lowpassFilterWidth / 2) ** 2;
      const pt = t * Math.PI;
      const sinc = pt === 0 ? 1 : Math.sin(pt) / pt;
      taps[j * count + k] = Math.fround(sinc * (window * (base / orig)));
    }
  }
  return { orig, new: next, width, taps };
}

/** torchaudio's Resample(inputRate, outputRate) of one waveform: ⌈new · n / orig⌉ samples. */
export function sincResample(wave: Float32Array, kernel: SincKernel): Float32Array {
  const { orig, new: next, width, taps } = kernel;
  const count = 2 * width + orig;
  const n = wave.length;
  const outLength = Math.ceil((next * n) / orig);
  const out = new Float32Array(outLength);
  for (let o = 0; o < outLength; o++) {
    const m = Math.floor(o / next);
    const row = (o - m * next) * count;
    const first = orig * m - width; // input index of tap 0 (zeros outside [0, n))
    const kFrom = Math.max(0, -first);
    const kTo = Math.min(count, n - first);
    let acc = 0;
    for (let k = kFrom; k < kTo; k++) acc += taps[row + k]! * wave[first + k]!;
    out[o] = acc;
  }
  return out;
}

export class ResampledWaveform {
  readonly kernel: SincKernel;

  constructor(readonly spec: ResampledWaveformSpec = MUQ_RESAMPLE) {
    if (!Number.isInteger(spec.padToMultiple) || spec.padToMultiple < 1) throw new RangeError(`resampled-waveform: bad padToMultiple ${spec.padToMultiple}`);
    this.kernel = sincResampleKernel(spec.inputRate, spec.outputRate, spec.lowpassFilterWidth, spec.rolloff);
  }

  /** The whole recording at inputRate → [1, samples at outputRate padded to padToMultiple] and the real samples. */
  compute(recording: Float32Array): RecordingFeatureResult {
    if (recording.length === 0) throw new HarkError('audio/no-samples', 'The recording holds no audio (0 samples).');
    const resampled = sincResample(recording, this.kernel);
    const total = Math.ceil(resampled.length / this.spec.padToMultiple) * this.spec.padToMultiple;
    const data = new Float32Array(total);
    data.set(resampled);
    return { data, dims: [1, total], realLength: resampled.length };
  }
}
