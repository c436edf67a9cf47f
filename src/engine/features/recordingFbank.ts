/**
 * Kaldi fbank over a whole recording, as ALARM's SSLAMFeatureExtractor computes it
 * (models/alarm/sslam.py `sslam_features`):
 *
 *   x = waveform − mean(waveform)                       (removeMean; float32 like torch)
 *   160 zero samples on both sides                      (edgePadding)
 *   torchaudio.compliance.kaldi.fbank(x, htk_compat, window_type "hanning", 128 bins, 10 ms shift,
 *     dither 0, no energy; no 2^15 scale)               (kaldiFbank.ts with window "hanning",
 *                                                        waveformScale 1)
 *   zero log-mel frames appended up to a multiple of 1024 frames (padToMultiple)
 *   (x − (−4.268)) / (2 · 4.569) over all frames, padding included (so padding frames hold
 *     4.268 / 9.138 ≈ 0.467)
 *   → [1, frames, 128] and the real frame count (ALARM's length).
 *
 * htk_compat only moves the energy column, which use_energy false leaves out: it changes nothing.
 * The frames are kaldiFbank.ts' float32-exact computation (see its precision note), and the
 * waveform's mean is torch's float32 sum in its order (`torchFloat32Sum`, one thread: a torch
 * running the mean on several threads splits the sum differently, by an ulp of the mean at most).
 */
import type { RecordingFbankSpec } from '../bundle/manifest';
import { HarkError } from '../errors';
import { KaldiFbank, torchFloat32Sum } from './kaldiFbank';
import type { RecordingFeatureResult } from './recordingFeatures';

/** ALARM-CA's SSLAM values (src/model/audio/feature_extractor_implementations/sslam.py). */
export const SSLAM_FBANK: RecordingFbankSpec = {
  scope: 'recording',
  splitFrames: 1024,
  waveformScale: 1,
  numMelBins: 128,
  sampleFrequency: 16000,
  frameLengthMs: 25,
  frameShiftMs: 10,
  mean: -4.268,
  std: 4.569,
  stdMultiplier: 2,
  window: 'hanning',
  removeMean: true,
  edgePadding: 160,
  padToMultiple: 1024,
};

const f32 = Math.fround;

export class RecordingFbank {
  private readonly fbank: KaldiFbank;

  constructor(readonly spec: RecordingFbankSpec = SSLAM_FBANK) {
    if (!Number.isInteger(spec.edgePadding) || spec.edgePadding < 0) throw new RangeError(`kaldi-fbank-recording: bad edgePadding ${spec.edgePadding}`);
    if (!Number.isInteger(spec.padToMultiple) || spec.padToMultiple < 1) throw new RangeError(`kaldi-fbank-recording: bad padToMultiple ${spec.padToMultiple}`);
    this.fbank = new KaldiFbank(spec);
  }

  /** Real fbank frames of a recording of `samples` samples (after the edge padding). */
  realFrames(samples: number): number {
    return this.fbank.numFrames(samples + 2 * this.spec.edgePadding);
  }

  /** The whole recording (16 kHz mono, [-1, 1]) → [1, frames padded to padToMultiple, numMelBins] and the real frames. */
  compute(recording: Float32Array): RecordingFeatureResult {
    const { edgePadding, padToMultiple, numMelBins, mean, std, stdMultiplier } = this.spec;
    const real = this.realFrames(recording.length);
    // torchaudio asserts on a waveform shorter than one frame (ALARM fails the same way).
    if (real < 1) throw new HarkError('audio/no-samples', 'The recording is too short to analyse.');
    const padded = new Float32Array(recording.length + 2 * edgePadding);
    let offset = 0;
    if (this.spec.removeMean) {
      offset = f32(torchFloat32Sum(recording, 0, recording.length) / recording.length);
    }
    for (let i = 0; i < recording.length; i++) padded[edgePadding + i] = f32(recording[i]! - offset);
    const { data, frames } = this.fbank.compute(padded);
    const total = Math.ceil(frames / padToMultiple) * padToMultiple;
    const out = new Float32Array(total * numMelBins);
    out.set(data);
    // A zero log-mel frame, normalised as torch does it (float32 ops on float32 scalars).
    out.fill(f32(f32(0 - f32(mean)) / f32(stdMultiplier * std)), data.length);
    return { data: out, dims: [1, total, numMelBins], realLength: frames };
  }
}
