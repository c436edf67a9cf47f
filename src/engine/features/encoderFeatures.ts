/**
 * Samples → an encoder graph's input, by the encoder's feature type (manifest FeatureSpecV2):
 *
 *   per chunk      whisper-mel ([1, bins, frames], transformers.js, 80 or 128 bins as the
 *                  preprocessor config says), kaldi-fbank ([1, frames, bins], BEATs-style)
 *   per recording  seamless-fbank (w2v-BERT: [1, T, 160]), kaldi-fbank-recording (SSLAM:
 *                  [1, frames, 128]), resampled-waveform (MuQ: [1, samples]); each with ALARM's
 *                  real length, cut into encoder pieces by `featurePieces` (recordingFeatures.ts)
 */
import type { FeatureSpecV2 } from '../bundle/manifest';
import { KaldiFbank } from './kaldiFbank';
import { RecordingFbank } from './recordingFbank';
import type { RecordingFeatureResult } from './recordingFeatures';
import { SeamlessFbank } from './seamlessFbank';
import { ResampledWaveform } from './sincResample';
import { WhisperMel } from './whisperMel';

export interface EncoderInput {
  data: Float32Array;
  dims: number[];
}

/** Features of one chunk at a time (format 1's kinds). */
export interface ChunkFeatures {
  readonly scope: 'chunk';
  /** The audio-stage inspector's name for these features: 'mel' or 'fbank'. */
  readonly stage: 'mel' | 'fbank';
  compute(chunk: Float32Array): Promise<EncoderInput>;
}

/** Features of the whole recording at once (ALARM-CA's w2v-BERT, SSLAM and MuQ). */
export interface RecordingFeatures {
  readonly scope: 'recording';
  /** The audio-stage inspector's name: 'fbank' or 'waveform'. */
  readonly stage: 'fbank' | 'waveform';
  /** Time steps per encoder run (the spec's splitFrames): featurePieces(result, splitFrames). */
  readonly splitFrames: number;
  compute(recording: Float32Array): Promise<RecordingFeatureResult>;
}

export type EncoderFeatures = ChunkFeatures | RecordingFeatures;

/** The extractor for `spec`; `preprocessorConfig` reads a whisper-mel spec's config from the bundle. */
export async function encoderFeatures(
  spec: FeatureSpecV2,
  preprocessorConfig: (path: string) => Promise<Record<string, unknown>>,
): Promise<EncoderFeatures> {
  switch (spec.type) {
    case 'whisper-mel': {
      const mel = new WhisperMel(await preprocessorConfig(spec.preprocessorConfig));
      return {
        scope: 'chunk',
        stage: 'mel',
        compute: async (chunk) => ({ data: await mel.compute(chunk), dims: [1, mel.featureSize, mel.frames] }),
      };
    }
    case 'kaldi-fbank': {
      const fbank = new KaldiFbank(spec);
      return {
        scope: 'chunk',
        stage: 'fbank',
        compute: async (chunk) => {
          const { data, frames } = fbank.compute(chunk);
          return { data, dims: [1, frames, spec.numMelBins] };
        },
      };
    }
    case 'seamless-fbank': {
      const seamless = new SeamlessFbank(spec);
      return { scope: 'recording', stage: 'fbank', splitFrames: spec.splitFrames, compute: (recording) => seamless.compute(recording) };
    }
    case 'kaldi-fbank-recording': {
      const fbank = new RecordingFbank(spec);
      return { scope: 'recording', stage: 'fbank', splitFrames: spec.splitFrames, compute: async (recording) => fbank.compute(recording) };
    }
    case 'resampled-waveform': {
      const resampler = new ResampledWaveform(spec);
      return { scope: 'recording', stage: 'waveform', splitFrames: spec.splitFrames, compute: async (recording) => resampler.compute(recording) };
    }
  }
}
