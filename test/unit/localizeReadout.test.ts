/**
 * The localization read-out against numbers from the PyTorch reference (models/salmonn/localize.py:
 * smooth, best_interval, token_time_map), computed there for the same inputs.
 */
import { describe, expect, it } from 'vitest';
import { tokenTimeMap } from '../../src/engine/audio/prepare';
import { bestInterval, smoothCentred, tokenCentres } from '../../src/engine/localize/readout';

describe('localization read-out', () => {
  it('finds a planted bump in the middle of the interval, with full confidence (reference: 13.62–15.62 s)', () => {
    const centres = tokenCentres(tokenTimeMap(1, 88, 17, 17));
    const delta = new Float64Array(88);
    delta.fill(1, 40, 46);
    delta.fill(-0.5, 0, 5);
    const found = bestInterval(delta, centres, 2, 30);
    expect(found.start).toBeCloseTo(13.62, 10);
    expect(found.end).toBeCloseTo(15.62, 10);
    expect(found.confidence).toBe(1);
  });

  it('smooths and picks the same interval as the reference on a two-window curve', () => {
    const raw = Array.from({ length: 176 }, (_, i) => Math.sin(i * 0.37) + 0.5 * Math.cos(i * 1.3));
    const smoothed = smoothCentred(raw, 5);
    expect(smoothed[0]).toBeCloseTo(0.4137361270736424, 12);
    expect(smoothed[1]).toBeCloseTo(0.4434852287002262, 12);
    expect(smoothed[100]).toBeCloseTo(-0.5522295487923458, 12);
    expect(smoothed[175]).toBeCloseTo(1.21046929219001, 12);
    const centres = tokenCentres(tokenTimeMap(2, 88, 17, 17));
    const found = bestInterval(smoothed, centres, 3, 45);
    expect(found.start).toBeCloseTo(0.085, 10);
    expect(found.end).toBeCloseTo(3.085, 10);
    expect(found.confidence).toBeCloseTo(0.10191007870384443, 12);
    // Wider than the recording: the whole recording (tokens past its end are outside).
    const whole = bestInterval(smoothed, centres, 60, 45);
    expect([whole.start, whole.end]).toEqual([0, 45]);
    expect(whole.confidence).toBeCloseTo(0.7388397633061875, 12);
  });

  it('refuses an even smoothing width and a Δ that does not match the tokens', () => {
    expect(() => smoothCentred([1, 2, 3], 4)).toThrow(/odd/);
    expect(() => bestInterval([1, 2], new Float64Array(3), 1, 2)).toThrow(/3 audio tokens/);
  });
});
