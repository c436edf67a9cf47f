import { describe, expect, it } from 'vitest';
import { ort, sessionOptions } from '../../src/engine/ortRuntime';
import { maxAbsDiff, SMOKE_IN, SMOKE_OUT, SMOKE_ROWS, smokeCase } from '../helpers/smokeGraph';

describe('onnxruntime-web in Node (wasm backend)', () => {
  it('runs a generated graph and matches an independent float64 computation', async () => {
    const { model, input, expected } = smokeCase();
    const session = await ort.InferenceSession.create(model, sessionOptions('wasm'));
    try {
      const x = new ort.Tensor('float32', input, [SMOKE_ROWS, SMOKE_IN]);
      const { y } = await session.run({ x });
      expect(y?.dims).toEqual([SMOKE_ROWS, SMOKE_OUT]);
      const data = y!.data as Float32Array;
      expect(maxAbsDiff(data, expected)).toBeLessThan(1e-6);
      // Each softmax row sums to one: a sanity check independent of the reference.
      for (let r = 0; r < SMOKE_ROWS; r++) {
        const row = data.subarray(r * SMOKE_OUT, (r + 1) * SMOKE_OUT);
        expect(row.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
      }
    } finally {
      await session.release();
    }
  });

  it('rejects a corrupted model with an error instead of producing numbers', async () => {
    const { model } = smokeCase();
    const broken = model.slice(0, Math.floor(model.length / 2));
    await expect(ort.InferenceSession.create(broken, sessionOptions('wasm'))).rejects.toThrow();
  });
});
