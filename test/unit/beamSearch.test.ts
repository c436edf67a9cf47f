/** Beam search's pure parts: binding beams to cache rows, and choosing candidates. */
import { describe, expect, it } from 'vitest';
import { assignSlots, topCandidates } from '../../src/engine/llm/beamSearch';
import { checkRowMoves } from '../../src/engine/llm/kvCache';

describe('assignSlots', () => {
  it('keeps every beam in its parent row when each parent has one child (no copies)', () => {
    expect(assignSlots([2, 0, 3, 1], 4)).toEqual({ slots: [2, 0, 3, 1], moves: [] });
  });

  it('copies a parent with several children into the rows of parents that died, and nothing else', () => {
    const { slots, moves } = assignSlots([1, 1, 3, 1], 4);
    expect(slots).toEqual([1, 0, 3, 2]);
    expect(moves).toEqual([[1, 0], [1, 2]]);
    expect(() => checkRowMoves(moves, 4)).not.toThrow();
  });

  it('expands one row to all when every beam has the same parent', () => {
    const { slots, moves } = assignSlots([0, 0, 0, 0], 4);
    expect(slots).toEqual([0, 1, 2, 3]);
    expect(moves).toEqual([[0, 1], [0, 2], [0, 3]]);
  });
});

describe('checkRowMoves', () => {
  it('refuses a row that is read and written, written twice, or outside the batch', () => {
    expect(() => checkRowMoves([[0, 1], [1, 2]], 4)).toThrow(/written twice or also read/);
    expect(() => checkRowMoves([[0, 1], [2, 1]], 4)).toThrow(/written twice/);
    expect(() => checkRowMoves([[0, 4]], 4)).toThrow(/outside a batch of 4/);
  });
});

describe('topCandidates', () => {
  const vocab = 6;
  const logSoftmax = (row: number[]) => {
    const max = Math.max(...row);
    const norm = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    return row.map((v) => v - norm);
  };
  const rows = [
    [0.1, 2.0, -1.0, 0.5, 1.5, 0.0],
    [1.0, 0.2, 3.0, -0.5, 0.0, 0.7],
  ];

  it('equals sorting every (beam, token) by cumulative log-probability', () => {
    const beams = [{ tokens: [7], sumLogProbs: -1.0, slot: 1 }, { tokens: [8], sumLogProbs: -2.5, slot: 0 }];
    const all = rows.flatMap((row, b) => logSoftmax(row).map((lp, token) => ({ score: beams[b]!.sumLogProbs + lp, beam: b, token })));
    all.sort((a, b) => b.score - a.score);
    const got = topCandidates(Float32Array.from(rows.flat()), beams, vocab, 4, null);
    expect(got.map(({ beam, token }) => [beam, token])).toEqual(all.slice(0, 4).map(({ beam, token }) => [beam, token]));
    for (const [i, c] of got.entries()) expect(c.score).toBeCloseTo(all[i]!.score, 5);
  });

  it('leaves banned ids out and normalizes without them (stop ids at the first step)', () => {
    const got = topCandidates(Float32Array.from(rows[0]!), [{ tokens: [], sumLogProbs: 0, slot: 0 }], vocab, 6, new Set([1]));
    expect(got.map((c) => c.token)).toEqual([4, 3, 0, 5, 2]);
    const kept = rows[0]!.filter((_, i) => i !== 1);
    expect(got[0]!.score).toBeCloseTo(logSoftmax(kept)[3]!, 6);
  });
});
