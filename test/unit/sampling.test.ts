import { describe, expect, it } from 'vitest';
import { applyRepetitionPenalty, argmax, createRng, TokenSampler } from '../../src/engine/llm/sampling';

const base = { doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: 7 };

describe('TokenSampler', () => {
  it('greedy picks the argmax', () => {
    expect(new TokenSampler(base).next(Float32Array.from([0.1, 3, -2, 2.9]), [])).toBe(1);
  });

  it('repetition penalty divides positive and multiplies negative logits of seen tokens', () => {
    const row = Float32Array.from([2, -2, 1]);
    applyRepetitionPenalty(row, [0, 1, 1], 2);
    expect(Array.from(row)).toEqual([1, -4, 1]);
    // with the penalty, greedy moves away from the repeated token
    expect(new TokenSampler({ ...base, repetitionPenalty: 3 }).next(Float32Array.from([3, 2]), [0])).toBe(1);
  });

  it('is reproducible for a seed and differs across seeds', () => {
    const logits = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i));
    const draw = (seed: number) => {
      const sampler = new TokenSampler({ ...base, doSample: true, seed });
      return Array.from({ length: 20 }, () => sampler.next(logits.slice(), []));
    };
    expect(draw(1)).toEqual(draw(1));
    expect(draw(1)).not.toEqual(draw(2));
  });

  it('top-k 1 equals greedy, and top-p keeps only the nucleus', () => {
    const logits = Float32Array.from([0, 5, 4.9, -3]);
    const topK = new TokenSampler({ ...base, doSample: true, topK: 1 });
    for (let i = 0; i < 10; i++) expect(topK.next(logits.slice(), [])).toBe(1);
    const topP = new TokenSampler({ ...base, doSample: true, topP: 0.9 });
    const seen = new Set(Array.from({ length: 200 }, () => topP.next(logits.slice(), [])));
    expect([...seen].sort()).toEqual([1, 2]);
  });

  it('follows the softmax distribution at temperature 1', () => {
    const logits = Float32Array.from([Math.log(1), Math.log(3)]);
    const sampler = new TokenSampler({ ...base, doSample: true, seed: 3 });
    let ones = 0;
    const n = 4000;
    for (let i = 0; i < n; i++) ones += sampler.next(logits.slice(), []);
    expect(ones / n).toBeGreaterThan(0.72);
    expect(ones / n).toBeLessThan(0.78);
  });

  it('rejects invalid parameters with a clear error', () => {
    expect(() => new TokenSampler({ ...base, temperature: 0 })).toThrow(/temperature/);
    expect(() => new TokenSampler({ ...base, topP: 0 })).toThrow(/top-p/);
  });

  it('helpers: argmax and rng range', () => {
    expect(argmax([1, 1, 0])).toBe(0);
    const rng = createRng(5);
    for (let i = 0; i < 100; i++) {
      const v = rng();
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThan(1);
    }
  });
});
