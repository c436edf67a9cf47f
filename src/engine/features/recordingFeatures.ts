/**
 * What a recording-scoped feature extractor (manifest `scope: "recording"`) hands the engine, and
 * how the engine cuts it into the pieces its encoder graph runs on.
 *
 * ALARM computes these features once over the whole recording (a per-recording normalisation,
 * edge padding, resampling), then its BaseAudioEncoder splits them every `splitFrames` steps of
 * the time axis (get_split_lists: max_time × frame_rate) and runs the encoder on each piece:
 * w2v-BERT 1500 stacked frames (the last piece shorter: its graph's T is dynamic and it is cropped
 * to its real frames), SSLAM 1024 fbank frames (the features are already padded to a multiple),
 * MuQ 720000 samples (idem, plus a frame mask from the piece's real samples).
 */

export interface RecordingFeatureResult {
  /** Row-major, `dims` [1, T, C] (or [1, samples] for a waveform). */
  data: Float32Array;
  dims: number[];
  /** ALARM's length: real time steps (the attention mask's sum / real frames / real samples). */
  realLength: number;
}

export interface FeaturePiece {
  /** A view into the recording's data (no copy), `dims` [1, steps, …]. */
  data: Float32Array;
  dims: number[];
  /** Index of the piece's first time step in the recording's features. */
  start: number;
  /** Real time steps in this piece: min(steps, realLength − start), ≥ 0. */
  realLength: number;
}

/** The pieces of `features` the encoder runs on: consecutive `splitFrames` steps of axis 1 (the last may be shorter). */
export function featurePieces(features: RecordingFeatureResult, splitFrames: number): FeaturePiece[] {
  if (!Number.isInteger(splitFrames) || splitFrames < 1) throw new RangeError(`splitFrames must be a positive integer (got ${splitFrames})`);
  const [batch, steps, ...rest] = features.dims;
  if (batch !== 1 || steps === undefined) throw new RangeError(`expected features [1, T, …], got [${features.dims.join(', ')}]`);
  const stride = rest.reduce((a, b) => a * b, 1);
  const pieces: FeaturePiece[] = [];
  for (let start = 0; start < steps; start += splitFrames) {
    const length = Math.min(splitFrames, steps - start);
    pieces.push({
      data: features.data.subarray(start * stride, (start + length) * stride),
      dims: [1, length, ...rest],
      start,
      realLength: Math.max(0, Math.min(length, features.realLength - start)),
    });
  }
  return pieces;
}
