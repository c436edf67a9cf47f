/**
 * How a predicted interval is scored against the true one (all in seconds):
 *
 * - overlap = |pred ∩ truth| / |truth|: the share of the true event the prediction covers. This is
 *   the number the steering paper reports; it rewards a wide prediction, which is why every method
 *   here predicts an interval as wide as the truth (ours and random by construction) and IoU is
 *   reported beside it.
 * - IoU = |pred ∩ truth| / |pred ∪ truth|: penalizes a prediction wider or narrower than the truth.
 * - hit: the prediction's centre lies inside [truth.start, truth.end] (both ends count).
 *
 * An unparseable answer (direct prompting) scores 0 on all three.
 */

export interface Span {
  start: number;
  end: number;
}

export interface Scores {
  overlap: number;
  iou: number;
  /** 1 or 0 for one prediction; a rate once averaged. */
  hit: number;
}

export const MISS: Scores = { overlap: 0, iou: 0, hit: 0 };

const length = (span: Span): number => Math.max(0, span.end - span.start);

export function intersection(a: Span, b: Span): number {
  return Math.max(0, Math.min(a.end, b.end) - Math.max(a.start, b.start));
}

/** |pred ∩ truth| / |truth|; 0 for an empty truth (there is nothing to cover). */
export function overlapFraction(pred: Span, truth: Span): number {
  const truthLength = length(truth);
  return truthLength > 0 ? intersection(pred, truth) / truthLength : 0;
}

export function iou(pred: Span, truth: Span): number {
  const inter = intersection(pred, truth);
  const union = length(pred) + length(truth) - inter;
  return union > 0 ? inter / union : 0;
}

export function centreHit(pred: Span, truth: Span): boolean {
  const centre = (pred.start + pred.end) / 2;
  return centre >= truth.start && centre <= truth.end;
}

export function score(pred: Span, truth: Span): Scores {
  return { overlap: overlapFraction(pred, truth), iou: iou(pred, truth), hit: centreHit(pred, truth) ? 1 : 0 };
}

/**
 * A model's answer as an interval inside the recording: ends in the wrong order are swapped (the
 * model named both times, just backwards) and both are clipped to [0, duration], so a time past the
 * end covers nothing rather than inflating IoU's union.
 */
export function clampToClip(span: Span, durationSeconds: number): Span {
  const clip = (t: number) => Math.min(Math.max(t, 0), durationSeconds);
  const [a, b] = span.start <= span.end ? [span.start, span.end] : [span.end, span.start];
  return { start: clip(a), end: clip(b) };
}

export function meanScores(all: readonly Scores[]): Scores {
  if (all.length === 0) return { overlap: Number.NaN, iou: Number.NaN, hit: Number.NaN };
  const sum = (key: keyof Scores) => all.reduce((total, s) => total + s[key], 0) / all.length;
  return { overlap: sum('overlap'), iou: sum('iou'), hit: sum('hit') };
}

/**
 * Baseline "random": an interval as wide as the truth, placed uniformly inside the clip, scored
 * over `draws` placements and averaged (the expected score of guessing, estimated). `random`
 * returns numbers in [0, 1), e.g. createRng(seed).
 */
export function randomIntervalScores(truth: Span, durationSeconds: number, draws: number, random: () => number): Scores {
  const width = Math.min(length(truth), durationSeconds);
  const all: Scores[] = [];
  for (let i = 0; i < draws; i++) {
    const start = random() * (durationSeconds - width);
    all.push(score({ start, end: start + width }, truth));
  }
  return meanScores(all);
}
