import { describe, expect, it } from 'vitest';
import { createRng } from '../../src/engine/llm/sampling';
import { parseAnswerInterval, parseTimes } from '../../scripts/localizeEval/answerTimes';
import { EVENT_KINDS, LONGEST_CLIP_SECONDS, LONG_CLIP_MIN_SECONDS, SHORTEST_CLIP_SECONDS, placeEvents, planClip } from '../../scripts/localizeEval/layout';
import { centreHit, clampToClip, iou, meanScores, overlapFraction, randomIntervalScores, score } from '../../scripts/localizeEval/metrics';

describe('localize:eval answer parsing (direct prompting)', () => {
  it.each([
    ['2.5 s to 4', 2.5, 4],
    ['from 00:03 to 00:05', 3, 5],
    ['between 3 and 5 seconds', 3, 5],
    ['The beep is heard from 1:05 to 1:10.', 65, 70],
    ['2.5-4.0s', 2.5, 4],
    ['500 ms to 2s', 0.5, 2],
    ['1 min 5 s until 1m7.5s', 65, 67.5],
    ['from 0:01:02.5 to 0:01:04', 62.5, 64],
    ['The mp3 starts at 2 and ends at 3 seconds, then 9.', 2, 3],
    ['It ends at 8 and starts at 6', 8, 6],
  ])('%j → %d, %d', (answer, start, end) => {
    expect(parseAnswerInterval(answer)).toEqual({ start, end });
  });

  it('needs two times', () => {
    expect(parseAnswerInterval('It starts at 3 seconds.')).toBeNull();
    expect(parseAnswerInterval('I cannot tell from this recording.')).toBeNull();
    expect(parseAnswerInterval('')).toBeNull();
  });

  it('reads units and ignores numbers glued to words', () => {
    expect(parseTimes('1.5 min, 250 milliseconds, .5 and 7 seconds')).toEqual([90, 0.25, 0.5, 7]);
    expect(parseTimes('v2 mp3 x4')).toEqual([]);
  });
});

describe('localize:eval metrics', () => {
  const truth = { start: 2, end: 6 };

  it('scores a half-covering prediction by hand', () => {
    const pred = { start: 4, end: 8 };
    // ∩ = [4, 6] = 2 s; |truth| = 4 s; ∪ = 4 + 4 − 2 = 6 s; centre 6 is truth's end (counts).
    expect(overlapFraction(pred, truth)).toBe(0.5);
    expect(iou(pred, truth)).toBeCloseTo(1 / 3, 12);
    expect(centreHit(pred, truth)).toBe(true);
  });

  it('scores a disjoint and a containing prediction', () => {
    expect(score({ start: 7, end: 9 }, truth)).toEqual({ overlap: 0, iou: 0, hit: 0 });
    // [0, 10] ⊃ truth: covers all of it; IoU 4 / 10; centre 5 inside.
    expect(score({ start: 0, end: 10 }, truth)).toEqual({ overlap: 1, iou: 0.4, hit: 1 });
  });

  it('clamps answers to the clip and puts their ends in order', () => {
    expect(clampToClip({ start: 12, end: -1 }, 10)).toEqual({ start: 0, end: 10 });
    expect(clampToClip({ start: 3, end: 2 }, 10)).toEqual({ start: 2, end: 3 });
    expect(score(clampToClip({ start: 11, end: 12 }, 10), truth)).toEqual({ overlap: 0, iou: 0, hit: 0 });
  });

  it('averages scores', () => {
    expect(meanScores([{ overlap: 1, iou: 0.5, hit: 1 }, { overlap: 0, iou: 0, hit: 0 }])).toEqual({ overlap: 0.5, iou: 0.25, hit: 0.5 });
  });

  it('random baseline: exact on fixed draws, and near its expectation on seeded ones', () => {
    const draws = [0, 0.5];
    let i = 0;
    // Truth [5, 7] in a 10 s clip; starts 0·8 = 0 → [0, 2] (miss) and 0.5·8 = 4 → [4, 6]
    // (overlap ½, IoU ⅓, centre 5 inside).
    const fixed = randomIntervalScores({ start: 5, end: 7 }, 10, 2, () => draws[i++]!);
    expect(fixed.overlap).toBeCloseTo(0.25, 12);
    expect(fixed.iou).toBeCloseTo(1 / 6, 12);
    expect(fixed.hit).toBe(0.5);
    // Truth [4, 6], width 2, start uniform on [0, 8]: ∫|∩| ds = 2 (s ∈ [2, 4]) + 2 (s ∈ [4, 6]),
    // so E[overlap] = 4 / 2 / 8 = 0.25; the centre s + 1 ∈ [4, 6] for s ∈ [3, 5]: E[hit] = 2 / 8.
    const seeded = randomIntervalScores({ start: 4, end: 6 }, 10, 20000, createRng(1));
    expect(seeded.overlap).toBeCloseTo(0.25, 2);
    expect(seeded.hit).toBeCloseTo(0.25, 1);
  });
});

describe('localize:eval clip layout', () => {
  it('shares the spare silence among the gaps (by hand)', () => {
    // 6 s of events + 4 × 0.5 s minimum gaps = 8 s; 12 s spare, 3 s per gap → gaps of 3.5 s.
    expect(placeEvents([1, 2, 3], 20, [0.25, 0.25, 0.25, 0.25], 0.5)).toEqual({ starts: [3.5, 8, 13.5], durationSeconds: 20 });
    // Events longer than the target keep the minimum gaps: 15 + 4 × 0.5.
    expect(placeEvents([5, 5, 5], 10, [0.1, 0.2, 0.3, 0.4], 0.5)).toEqual({ starts: [0.5, 6, 11.5], durationSeconds: 17 });
    expect(() => placeEvents([1, 2], 10, [1])).toThrow(/3 gap shares/);
  });

  it('draws the same plans from the same seed, three different kinds each, one long clip first', () => {
    expect(planClip(7, 3)).toEqual(planClip(7, 3));
    expect(planClip(7, 3)).not.toEqual(planClip(8, 3));
    expect(planClip(7, 0).targetSeconds).toBeGreaterThanOrEqual(LONG_CLIP_MIN_SECONDS);
    for (let index = 0; index < 50; index++) {
      const plan = planClip(0, index);
      expect(plan.targetSeconds).toBeGreaterThanOrEqual(SHORTEST_CLIP_SECONDS);
      expect(plan.targetSeconds).toBeLessThanOrEqual(LONGEST_CLIP_SECONDS);
      const kinds = plan.events.map((e) => e.kind);
      expect(new Set(kinds).size).toBe(3);
      expect(kinds.every((k) => EVENT_KINDS.includes(k))).toBe(true);
      expect(plan.gapShares.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    }
  });
});
