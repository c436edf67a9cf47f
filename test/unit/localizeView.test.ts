import { describe, expect, it } from 'vitest';
import {
  NO_PROBE_REASON,
  curveWithin,
  describeFound,
  evidencePath,
  findBlockedReason,
  findProgressText,
  formatClockTenths,
  formatConfidence,
  peakTime,
  spanPercent,
  type FindConditions,
} from '../../src/ui/localizeView';

describe('the found span on the waveform', () => {
  it('is placed by its share of the recording, so it lines up with the track at any width', () => {
    expect(spanPercent({ start: 12, end: 14 }, 40)).toEqual({ left: 30, width: 5 });
    // A recording over 30 s: the span in the second window sits past the first boundary.
    const place = spanPercent({ start: 31.5, end: 33.5 }, 35)!;
    expect(place.left).toBeCloseTo(90, 10);
    expect(place.width).toBeCloseTo((2 / 35) * 100, 10);
  });

  it('is clipped to the recording, and absent when nothing of it is inside', () => {
    expect(spanPercent({ start: -1, end: 1 }, 10)).toEqual({ left: 0, width: 10 });
    expect(spanPercent({ start: 9, end: 11 }, 10)).toEqual({ left: 90, width: 10 });
    expect(spanPercent({ start: 11, end: 12 }, 10)).toBeNull();
    expect(spanPercent({ start: 2, end: 2 }, 10)).toBeNull();
    expect(spanPercent({ start: 1, end: 2 }, 0)).toBeNull();
    expect(spanPercent({ start: Number.NaN, end: 2 }, 10)).toBeNull();
  });
});

describe('the words of a result', () => {
  it('gives times to a tenth of a second, rounding once', () => {
    expect(formatClockTenths(0)).toBe('0:00.0');
    expect(formatClockTenths(12)).toBe('0:12.0');
    expect(formatClockTenths(65.34)).toBe('1:05.3');
    expect(formatClockTenths(59.96)).toBe('1:00.0');
    expect(formatClockTenths(3723.45)).toBe('1:02:03.5');
    expect(formatClockTenths(-3)).toBe('0:00.0');
  });

  it('gives the confidence in whole percent within 0–100', () => {
    expect(formatConfidence(0.624)).toBe('62%');
    expect(formatConfidence(1.2)).toBe('100%');
    expect(formatConfidence(Number.NaN)).toBe('0%');
  });

  it('names the event, the span and the confidence for the highlight', () => {
    expect(describeFound({ event: ' a dog barking ', start: 12, end: 14, confidence: 0.62 })).toBe('Found: a dog barking, 0:12.0 to 0:14.0, confidence 62%');
  });

  it('counts the engine’s steps while it works', () => {
    expect(findProgressText(null)).toBe('Finding…');
    expect(findProgressText({ done: 3, total: 5 })).toBe('Finding… 3 of 5');
    expect(findProgressText({ done: 0, total: 0 })).toBe('Finding…');
  });
});

describe('the evidence curve', () => {
  it('uses seconds as x, so it shares the waveform’s time axis, and puts the largest Δ at the top', () => {
    const { d, zero } = evidencePath(
      [
        { time: 0.5, delta: 0 },
        { time: 1.5, delta: 2 },
        { time: 2.5, delta: -2 },
      ],
      3,
      0,
    );
    expect(d).toBe('M0.5 0.5 L1.5 0 L2.5 1');
    expect(zero).toBe(0.5);
  });

  it('spans the whole of a recording over 30 s, in time order, leaving out the padding past its end', () => {
    // Two 30 s windows of 88 tokens for a 35 s recording: the second window is mostly padding.
    const curve = Array.from({ length: 2 * 88 }, (_, i) => ({ time: ((i + 0.5) * 30) / 88, delta: Math.sin(i) }));
    const { d } = evidencePath([...curve].reverse(), 35);
    const xs = d.split(/[ML]/).filter(Boolean).map((pair) => Number(pair.trim().split(' ')[0]));
    const inside = curve.filter((p) => p.time <= 35);
    expect(inside.length).toBeGreaterThan(88);
    expect(xs).toHaveLength(inside.length);
    expect(xs[0]).toBeCloseTo(curve[0]!.time, 3);
    expect(xs.at(-1)).toBeCloseTo(inside.at(-1)!.time, 3);
    expect(xs.at(-1)).toBeGreaterThan(34);
    expect(xs.every((x, i) => i === 0 || x >= xs[i - 1]!)).toBe(true);
    expect(curveWithin(curve, 35)).toEqual(inside);
  });

  it('draws a flat curve through the middle, and nothing for no points', () => {
    expect(evidencePath([{ time: 1, delta: 0.3 }, { time: 2, delta: 0.3 }], 3).d).toBe('M1 0.5 L2 0.5');
    expect(evidencePath([], 3)).toEqual({ d: '', zero: null });
  });

  it('reports where the evidence peaks', () => {
    expect(peakTime([{ time: 1, delta: 0.1 }, { time: 2, delta: 0.5 }, { time: 3, delta: -1 }])).toBe(2);
    expect(peakTime([])).toBeNull();
  });
});

describe('why Find cannot run', () => {
  const ready: FindConditions = { modelStatus: 'ready', modelCanLocalize: true, hasRecording: true, audioStatus: 'ready', answering: false };

  it('runs when the model, the recording and the engine are free', () => {
    expect(findBlockedReason(ready)).toBeNull();
  });

  it('says what to do in each case', () => {
    expect(findBlockedReason({ ...ready, modelCanLocalize: false })).toBe(NO_PROBE_REASON);
    expect(findBlockedReason({ ...ready, modelStatus: 'loading', modelCanLocalize: false })).toMatch(/loading/);
    expect(findBlockedReason({ ...ready, modelStatus: 'paused' })).toMatch(/resume it under Models/);
    expect(findBlockedReason({ ...ready, modelStatus: 'error' })).toMatch(/load one under Models/);
    expect(findBlockedReason({ ...ready, hasRecording: false, audioStatus: 'empty' })).toMatch(/open a file/);
    expect(findBlockedReason({ ...ready, audioStatus: 'encoding' })).toMatch(/still listening/);
    expect(findBlockedReason({ ...ready, audioStatus: 'error' })).toMatch(/open another one/);
    expect(findBlockedReason({ ...ready, answering: true })).toMatch(/answer is being written/);
  });
});
