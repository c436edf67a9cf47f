/**
 * w2v-BERT 2.0's input features as ALARM-CA computes them (models/alarm/w2vbert.py
 * `w2vbert_features`): the WHOLE recording, with 160 zero samples added on both sides, through
 * SeamlessM4TFeatureExtractor as configured by facebook/w2v-bert-2.0's preprocessor_config.json
 * (80 mel bins, stride 2, padding_value 1):
 *
 *   Kaldi fbank of waveform · 2^15 (400-sample Povey frames every 160 samples, 512-point FFT,
 *   80 Kaldi-mel bins, log) → each mel bin normalised over ALL the recording's frames (mean,
 *   ddof-1 variance) → an odd frame count padded by one frame of 1 → pairs of frames stacked
 *   → [1, T, 160], T = ⌈N / 2⌉ for N fbank frames; real length = the attention mask's sum = ⌊N / 2⌋.
 *
 * Because the normalisation spans the recording, chunking the audio first would change every
 * value: this is a recording-scoped feature (manifest `scope: "recording"`). ALARM's encoder then
 * runs on pieces of 1500 stacked frames (`splitFrames`; see encoderFeatures.ts `featurePieces`).
 *
 * The maths are @huggingface/transformers' (the same library as WhisperMel), built from the
 * manifest's numbers, so nothing is downloaded or looked up.
 */
import { SeamlessM4TFeatureExtractor } from '@huggingface/transformers';
import type { SeamlessFbankSpec } from '../bundle/manifest';
import { HarkError } from '../errors';
import type { RecordingFeatureResult } from './recordingFeatures';

/** ALARM-CA's values (facebook/w2v-bert-2.0's preprocessor config + ALARM's padding and split). */
export const W2VBERT_SEAMLESS_FBANK: SeamlessFbankSpec = {
  scope: 'recording',
  splitFrames: 1500,
  numMelBins: 80,
  samplingRate: 16000,
  stride: 2,
  paddingValue: 1,
  edgePadding: 160,
};

/** Kaldi frames in the extractor (fixed there: 25 ms at 16 kHz, every 10 ms). */
const FRAME_LENGTH = 400;
const HOP_LENGTH = 160;

export class SeamlessFbank {
  private readonly extractor: SeamlessM4TFeatureExtractor;
  /** Channels of one stacked frame (numMelBins · stride, 160). */
  readonly channels: number;

  constructor(readonly spec: SeamlessFbankSpec = W2VBERT_SEAMLESS_FBANK) {
    if (spec.samplingRate !== 16000) throw new RangeError(`seamless-fbank: the extractor's frames are fixed for 16 kHz (got ${spec.samplingRate})`);
    if (!Number.isInteger(spec.stride) || spec.stride < 1) throw new RangeError(`seamless-fbank: bad stride ${spec.stride}`);
    if (!Number.isInteger(spec.edgePadding) || spec.edgePadding < 0) throw new RangeError(`seamless-fbank: bad edgePadding ${spec.edgePadding}`);
    this.channels = spec.numMelBins * spec.stride;
    this.extractor = new SeamlessM4TFeatureExtractor({
      feature_extractor_type: 'SeamlessM4TFeatureExtractor',
      feature_size: spec.numMelBins,
      num_mel_bins: spec.numMelBins,
      padding_side: 'right',
      padding_value: spec.paddingValue,
      return_attention_mask: true,
      sampling_rate: spec.samplingRate,
      stride: spec.stride,
    });
  }

  /** Fbank frames N of a recording of `samples` samples (after the edge padding), snip_edges. */
  fbankFrames(samples: number): number {
    const n = samples + 2 * this.spec.edgePadding;
    return n < FRAME_LENGTH ? 0 : 1 + Math.floor((n - FRAME_LENGTH) / HOP_LENGTH);
  }

  /** The whole recording (16 kHz mono, [-1, 1]) → [1, T, numMelBins · stride] and the real length. */
  async compute(recording: Float32Array): Promise<RecordingFeatureResult> {
    // The per-bin variance has ddof 1: it needs two frames (the reference refuses fewer too).
    if (this.fbankFrames(recording.length) < 2) throw new HarkError('audio/no-samples', 'The recording is too short to analyse.');
    const padded = new Float32Array(recording.length + 2 * this.spec.edgePadding);
    padded.set(recording, this.spec.edgePadding);
    const { input_features: features, attention_mask: mask } = (await this.extractor(padded)) as {
      input_features: { dims: number[]; data: unknown };
      attention_mask: { dims: number[]; data: unknown };
    };
    const frames = Math.ceil(this.fbankFrames(recording.length) / this.spec.stride);
    const expected = [1, frames, this.channels];
    if (features.dims.join() !== expected.join() || !(features.data instanceof Float32Array) || !(mask.data instanceof BigInt64Array)) {
      throw new Error(`SeamlessFbank: unexpected features ${features.dims.join('×')} (${String(features.data?.constructor?.name)}), expected ${expected.join('×')} float32`);
    }
    let realLength = 0;
    for (const m of mask.data) realLength += Number(m);
    return { data: features.data, dims: expected, realLength };
  }
}
