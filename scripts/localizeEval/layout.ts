/**
 * The evaluation clips, as plans: which three sounds, with which settings, how long the clip should
 * be and how the silence between the sounds is shared — everything random here, drawn from a seed,
 * so that the same --seed gives the same clips on every machine. Rendering (espeak-ng, sox) is in
 * clips.ts; it needs the real length of each sound (speech is only known once spoken), so placing
 * the sounds on the timeline is a separate, pure step (placeEvents).
 */
import { createRng } from '../../src/engine/llm/sampling';

export type EventKind = 'speech' | 'tone' | 'noise' | 'clicks';

export const EVENT_KINDS: readonly EventKind[] = ['speech', 'tone', 'noise', 'clicks'];

/** What each kind of sound is called in the query (the event text the methods are given). */
export const EVENT_QUERIES: Record<EventKind, string> = {
  speech: 'a person speaking',
  tone: 'a beeping tone',
  noise: 'a burst of noise',
  clicks: 'clicking',
};

/** Short sentences for the speech events (≈1.5–4 s at espeak-ng's speeds used here). */
export const SENTENCES: readonly string[] = [
  'Please close the door behind you.',
  'The train to the city leaves at nine.',
  'I think it is going to rain this afternoon.',
  'Could you pass me the salt, please?',
  'We found a small cafe near the river.',
  'Turn left at the second traffic light and keep going.',
  'My brother bought a new bicycle last week.',
  'The meeting has been moved to Thursday morning.',
];

export type EventSpec =
  | { kind: 'speech'; sentence: string; wordsPerMinute: number; pitch: number }
  | { kind: 'tone'; frequencyHz: number; seconds: number }
  | { kind: 'noise'; color: 'white' | 'pink'; seconds: number }
  | { kind: 'clicks'; clicksPerSecond: number; seconds: number };

export interface ClipPlan {
  /** 0-based position in the evaluation set. */
  index: number;
  /** Length aimed at; the clip is longer only when its sounds and the minimum gaps do not fit. */
  targetSeconds: number;
  /** Three different kinds, in the order they are heard. */
  events: [EventSpec, EventSpec, EventSpec];
  /** How the free silence is shared among the 4 gaps (before, between ×2, after); sums to 1. */
  gapShares: [number, number, number, number];
}

/** Shortest silence before, between and after the events, so that no two touch. */
export const MIN_GAP_SECONDS = 0.5;
/** Clip lengths are drawn from this range; the first clip is always longer than one 30 s window. */
export const SHORTEST_CLIP_SECONDS = 8;
export const LONGEST_CLIP_SECONDS = 40;
export const LONG_CLIP_MIN_SECONDS = 34;

/**
 * One seed per clip, from the run's seed and the clip's index, so that clip i is the same whatever
 * --clips is (a bigger run extends a smaller one).
 */
export function clipSeed(seed: number, index: number): number {
  return (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca77)) >>> 0;
}

const round = (value: number, step: number) => Math.round(value / step) * step;

/** The plan of clip `index` of the set drawn from `seed`. */
export function planClip(seed: number, index: number): ClipPlan {
  const random = createRng(clipSeed(seed, index));
  const uniform = (lo: number, hi: number) => lo + (hi - lo) * random();
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

  // Clip 0 spans two 30 s windows, with its last event in the second (see the gaps below), so
  // every run exercises the engine's two-window time map.
  const targetSeconds = round(
    index === 0 ? uniform(LONG_CLIP_MIN_SECONDS, LONGEST_CLIP_SECONDS) : uniform(SHORTEST_CLIP_SECONDS, LONGEST_CLIP_SECONDS),
    0.01,
  );
  // Events grow with the clip (≈1/7 of it, 1.5–6 s at most), so short clips still have room to breathe.
  const longestEvent = Math.min(6, Math.max(1.5, targetSeconds / 7));
  const eventSeconds = () => round(uniform(1, longestEvent), 0.01);

  // Three of the four kinds, in random order (Fisher–Yates, then the first three).
  const kinds = [...EVENT_KINDS];
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
  }
  const spec = (kind: EventKind): EventSpec => {
    switch (kind) {
      case 'speech':
        return { kind, sentence: pick(SENTENCES), wordsPerMinute: Math.round(uniform(140, 175)), pitch: Math.round(uniform(35, 65)) };
      case 'tone':
        return { kind, frequencyHz: Math.round(uniform(300, 2000)), seconds: eventSeconds() };
      case 'noise':
        return { kind, color: random() < 0.5 ? 'white' : 'pink', seconds: eventSeconds() };
      case 'clicks':
        return { kind, clicksPerSecond: Math.round(uniform(4, 12)), seconds: eventSeconds() };
    }
  };
  const events: [EventSpec, EventSpec, EventSpec] = [spec(kinds[0]!), spec(kinds[1]!), spec(kinds[2]!)];

  // +0.05: no gap takes (almost) nothing. Clip 0's last gap takes only that, so its last event
  // ends a few seconds before the end, past the first 30 s window.
  const weights = [random(), random(), random(), index === 0 ? 0 : random()].map((w) => w + 0.05);
  const total = weights.reduce((a, b) => a + b, 0);
  const gapShares = weights.map((w) => w / total) as ClipPlan['gapShares'];
  return { index, targetSeconds, events, gapShares };
}

export interface Placement {
  /** Seconds from the start of the clip, per event in order. */
  starts: number[];
  durationSeconds: number;
}

/**
 * Where the events go: each gap is MIN_GAP_SECONDS plus its share of the silence left over once
 * the events and minimum gaps are taken from the target length (none when they overrun it). Gaps
 * are rounded to whole milliseconds so that, at 16 kHz, every start and end falls on a sample when
 * the event lengths do.
 */
export function placeEvents(eventSeconds: readonly number[], targetSeconds: number, gapShares: readonly number[], minGapSeconds = MIN_GAP_SECONDS): Placement {
  if (gapShares.length !== eventSeconds.length + 1) {
    throw new RangeError(`${eventSeconds.length} events need ${eventSeconds.length + 1} gap shares, not ${gapShares.length}`);
  }
  const busy = eventSeconds.reduce((a, b) => a + b, 0) + minGapSeconds * gapShares.length;
  const spare = Math.max(0, targetSeconds - busy);
  const gaps = gapShares.map((share) => round(minGapSeconds + spare * share, 0.001));
  const starts: number[] = [];
  let t = 0;
  eventSeconds.forEach((seconds, i) => {
    t += gaps[i]!;
    starts.push(t);
    t += seconds;
  });
  return { starts, durationSeconds: t + gaps.at(-1)! };
}
