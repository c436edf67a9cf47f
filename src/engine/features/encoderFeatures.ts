/**
 * One chunk's samples → an encoder graph's input, by the encoder's feature type: Whisper log-mel
 * ([1, bins, frames], through transformers.js, 80 or 128 bins as the preprocessor config says)
 * or kaldi fbank ([1, frames, bins], BEATs-style normalisation).
 */
import type { FeatureSpecV2 } from '../bundle/manifest';
import { KaldiFbank } from './kaldiFbank';
import { WhisperMel } from './whisperMel';

export interface EncoderInput {
  data: Float32Array;
  dims: number[];
}

export interface EncoderFeatures {
  /** The audio-stage inspector's name for these features: 'mel' or 'fbank'. */
  readonly stage: 'mel' | 'fbank';
  compute(chunk: Float32Array): Promise<EncoderInput>;
}

/** The extractor for `spec`; `preprocessorConfig` reads a whisper-mel spec's config from the bundle. */
export async function encoderFeatures(
  spec: FeatureSpecV2,
  preprocessorConfig: (path: string) => Promise<Record<string, unknown>>,
): Promise<EncoderFeatures> {
  if (spec.type === 'whisper-mel') {
    const mel = new WhisperMel(await preprocessorConfig(spec.preprocessorConfig));
    return {
      stage: 'mel',
      compute: async (chunk) => ({ data: await mel.compute(chunk), dims: [1, mel.featureSize, mel.frames] }),
    };
  }
  const fbank = new KaldiFbank(spec);
  return {
    stage: 'fbank',
    compute: async (chunk) => {
      const { data, frames } = fbank.compute(chunk);
      return { data, dims: [1, frames, spec.numMelBins] };
    },
  };
}
