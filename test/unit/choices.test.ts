/** The label trie's scoring runs and the float64 softmax (src/engine/llm/choices.ts). */
import { describe, expect, it } from 'vitest';
import { bestChoice, scoringPaths, softmax, type Choice } from '../../src/engine/llm/choices';

const choice = (label: string, tokens: number[]): Choice => ({ label, tokens });

describe('scoringPaths', () => {
  it('runs each label that is no prefix of another, and scores prefixes on a longer label’s run', () => {
    const choices = [choice('speech', [12]), choice('speech and music', [12, 3, 46]), choice('music', [46]), choice('speech and', [12, 3]), choice('1', [29871, 1]), choice('2', [29871, 2])];
    const { paths, onPath } = scoringPaths(choices);
    expect(paths).toEqual([[12, 3, 46], [46], [29871, 1], [29871, 2]]);
    expect(onPath).toEqual([0, 0, 1, 0, 2, 3]);
  });

  it('gives every label its own run when none is a prefix of another', () => {
    const { paths, onPath } = scoringPaths([choice('a', [5, 6]), choice('b', [5, 7]), choice('c', [6])]);
    expect(paths).toEqual([[5, 6], [5, 7], [6]]);
    expect(onPath).toEqual([0, 1, 2]);
  });
});

describe('softmax and the best choice', () => {
  it('normalizes in float64 without overflow and picks the first of equals', () => {
    const p = softmax([-1000, -1000 + Math.log(3), -2000]);
    expect(p[0]! + p[1]! + p[2]!).toBeCloseTo(1, 15);
    expect(p[1]! / p[0]!).toBeCloseTo(3, 12);
    expect(p[2]).toBe(0);
    const scores = [0.25, 0.5, 0.25].map((probability, i) => ({ ...choice(`l${i}`, [i]), probability, logProb: Math.log(probability) }));
    expect(bestChoice(scores)).toBe(1);
    expect(bestChoice([scores[0]!, scores[2]!])).toBe(0);
  });
});
