/**
 * Whisper's log-mel input features, computed by @huggingface/transformers' WhisperFeatureExtractor
 * (the same maths as `log_mel_spectrogram` in models/salmonn/whisper.py: zero-pad to 30 s, 400-point
 * periodic-Hann STFT every 160 samples with reflect padding, Slaney mel filters, log10 with a 1e-10
 * floor, 8-unit dynamic range below the maximum, (x + 4) / 4; 3000 frames).
 *
 * The extractor is built directly from the bundle's preprocessor_config.json object, so nothing is
 * downloaded or looked up (no `from_pretrained`): this works offline in a worker and in Node.
 */
import { WhisperFeatureExtractor } from '@huggingface/transformers';

export class WhisperMel {
  private readonly extractor: WhisperFeatureExtractor;
  /** Mel bins (feature_size, 80 for Whisper large-v2). */
  readonly featureSize: number;
  /** Frames per chunk (nb_max_frames, 3000). */
  readonly frames: number;
  /** Samples per chunk (n_samples, 480000 = 30 s at 16 kHz). */
  readonly maxSamples: number;

  constructor(preprocessorConfig: Record<string, unknown>) {
    const num = (key: string): number => {
      const v = preprocessorConfig[key];
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
        throw new TypeError(`preprocessor_config.json: "${key}" must be a positive number (got ${JSON.stringify(v)})`);
      }
      return v;
    };
    this.featureSize = num('feature_size');
    this.frames = num('nb_max_frames');
    this.maxSamples = num('n_samples');
    num('n_fft');
    num('hop_length');
    num('sampling_rate');
    // The extractor keeps (and may extend) its config object: give it a copy.
    this.extractor = new WhisperFeatureExtractor({ ...preprocessorConfig });
  }

  /**
   * Log-mel of one chunk (≤ 30 s of 16 kHz mono; shorter is zero-padded to 30 s):
   * Float32Array [featureSize · frames], row-major [mel][frame], like the golden `*.mel.npy`.
   */
  async compute(chunk: Float32Array): Promise<Float32Array> {
    if (chunk.length > this.maxSamples) {
      throw new RangeError(`WhisperMel: a chunk holds at most ${this.maxSamples} samples (got ${chunk.length}); split the audio first`);
    }
    const { input_features: features } = (await this.extractor(chunk)) as { input_features: { dims: number[]; data: unknown } };
    const expected = [1, this.featureSize, this.frames];
    if (features.dims.join() !== expected.join() || !(features.data instanceof Float32Array)) {
      throw new Error(`WhisperMel: unexpected features ${features.dims.join('×')} (${String(features.data?.constructor?.name)}), expected ${expected.join('×')} float32`);
    }
    return features.data;
  }
}
