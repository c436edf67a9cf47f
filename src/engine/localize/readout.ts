/**
 * The read-out of event localization by instruction steering: from the steering-induced change in
 * attention on each audio token (Δ) to a time interval. Mirrors `models/salmonn/localize.py`
 * (smooth, best_interval), which documents the method and why a fixed-width best interval is
 * used rather than a threshold (Δ's scale varies with model, layer and steering strength).
 * Written by hand: no library does this read-out.
 */

export interface Interval {
  /** Seconds. */
  start: number;
  end: number;
  /** Share of the positive Δ mass inside the interval, 0..1. */
  confidence: number;
}

/** Centre time of each audio token from the engine's flattened [start, end] time map. */
export function tokenCentres(timeMap: Float64Array): Float64Array {
  const centres = new Float64Array(timeMap.length / 2);
  for (let i = 0; i < centres.length; i++) centres[i] = (timeMap[2 * i]! + timeMap[2 * i + 1]!) / 2;
  return centres;
}

/** Centred moving average over `tokens` (odd) neighbours; at the ends, the mean of those that exist. */
export function smoothCentred(values: ArrayLike<number>, tokens: number): Float64Array {
  if (tokens > 1 && tokens % 2 === 0) throw new RangeError(`the smoothing width must be odd, not ${tokens}`);
  const half = Math.floor(Math.max(tokens, 1) / 2);
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    let sum = 0;
    let count = 0;
    for (let j = Math.max(0, i - half); j <= Math.min(values.length - 1, i + half); j++) {
      sum += values[j]!;
      count++;
    }
    out[i] = sum / count;
  }
  return out;
}

/**
 * The interval of `widthSeconds` (clipped to the recording) whose token centres carry the largest
 * summed Δ. Candidates begin or end at a token centre; where several hold the same largest sum,
 * the interval is centred between the first and the last of them, so a short bump sits in its
 * middle.
 */
export function bestInterval(delta: ArrayLike<number>, centres: Float64Array, widthSeconds: number, durationSeconds: number): Interval {
  if (delta.length !== centres.length) throw new RangeError(`Δ has ${delta.length} values for ${centres.length} audio tokens`);
  const width = Math.min(widthSeconds, durationSeconds);
  const latest = Math.max(durationSeconds - width, 0);
  const clip = (start: number) => Math.min(Math.max(start, 0), latest);
  const windowSum = (start: number) => {
    let sum = 0;
    for (let i = 0; i < centres.length; i++) if (centres[i]! >= start && centres[i]! <= start + width) sum += delta[i]!;
    return sum;
  };
  const candidates = [...new Set([...centres].flatMap((c) => [clip(c), clip(c - width)]))].sort((a, b) => a - b);
  const sums = candidates.map(windowSum);
  const best = Math.max(...sums);
  const tied = candidates.filter((_, i) => sums[i]! >= best - 1e-12);
  const middle = (tied[0]! + tied.at(-1)!) / 2;
  const start = windowSum(middle) >= best - 1e-12 ? middle : tied[0]!;
  let inside = 0;
  let mass = 0;
  for (let i = 0; i < centres.length; i++) {
    const positive = Math.max(delta[i]!, 0);
    mass += positive;
    if (centres[i]! >= start && centres[i]! <= start + width) inside += positive;
  }
  return { start, end: start + width, confidence: mass > 0 ? inside / mass : 0 };
}
