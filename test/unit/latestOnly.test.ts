import { describe, expect, it } from 'vitest';
import { latestOnly } from '../../src/stores/latestOnly';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('latestOnly: a fast stream drawn at most once per interval', () => {
  it('applies the first value at once, then only the latest of those that came within the interval', async () => {
    const applied: number[] = [];
    const stream = latestOnly((v: number) => applied.push(v), 40);
    stream.push(1);
    expect(applied).toEqual([1]);
    stream.push(2);
    stream.push(3);
    expect(applied).toEqual([1]);
    await sleep(80);
    expect(applied).toEqual([1, 3]);
    // Long after the last one: at once again.
    stream.push(4);
    expect(applied).toEqual([1, 3, 4]);
  });

  it('a value pushed `now` is drawn at once, over a waiting one, and the interval restarts from it', async () => {
    const applied: string[] = [];
    const stream = latestOnly((v: string) => applied.push(v), 40);
    stream.push('thought 1');
    stream.push('thought 2');
    expect(applied).toEqual(['thought 1']);
    stream.push('answer 1', true);
    expect(applied).toEqual(['thought 1', 'answer 1']);
    stream.push('answer 2');
    stream.push('answer 3');
    expect(applied).toEqual(['thought 1', 'answer 1']);
    await sleep(80);
    // The waiting thought was dropped (the newer value was drawn); only the latest answer follows.
    expect(applied).toEqual(['thought 1', 'answer 1', 'answer 3']);
  });

  it('cancel drops a value still waiting, and nothing comes later', async () => {
    const applied: string[] = [];
    const stream = latestOnly((v: string) => applied.push(v), 40);
    stream.push('a');
    stream.push('b');
    stream.cancel();
    await sleep(80);
    expect(applied).toEqual(['a']);
  });
});
