/**
 * GrowingKvCache.truncate (the wasm backend's cache): a follow-up of a history format (Qwen3) cuts
 * the cache back to the previous turn's generation prompt. The fixed WebGPU layout only shortens
 * its length (test/engine/alarmTiny.test.ts and the browser tests run both through real follow-ups).
 */
import { describe, expect, it } from 'vitest';
import { GrowingKvCache, pastName, presentName } from '../../src/engine/llm/kvCache';
import { ort } from '../../src/engine/ortRuntime';

const geometry = { numLayers: 2, numKvHeads: 3, headDim: 4 };

/** A cache of `positions` positions whose value at [b, h, p, d] encodes its coordinates. */
function filled(positions: number, batch = 1) {
  const outputs: Record<string, ort.Tensor> = {};
  for (let layer = 0; layer < geometry.numLayers; layer++) {
    for (const kind of ['key', 'value'] as const) {
      const data = new Float32Array(batch * geometry.numKvHeads * positions * geometry.headDim);
      for (let i = 0; i < data.length; i++) {
        const d = i % geometry.headDim;
        const p = Math.floor(i / geometry.headDim) % positions;
        const h = Math.floor(i / (geometry.headDim * positions)) % geometry.numKvHeads;
        const b = Math.floor(i / (geometry.headDim * positions * geometry.numKvHeads));
        data[i] = layer * 1e4 + (kind === 'key' ? 0 : 5e3) + b * 1e3 + h * 100 + p * 10 + d;
      }
      outputs[presentName(layer, kind)] = new ort.Tensor('float32', data, [batch, geometry.numKvHeads, positions, geometry.headDim]);
    }
  }
  return GrowingKvCache.empty(geometry, 'float32').advance(outputs, positions);
}

describe('GrowingKvCache.truncate', () => {
  it('keeps the first n positions of every (sequence, head) block and consumes the old handle', async () => {
    const cache = filled(7);
    const cut = await cache.truncate(3);
    expect(cut.length).toBe(3);
    const feeds = await cut.pastFeeds(1);
    for (let layer = 0; layer < geometry.numLayers; layer++) {
      for (const kind of ['key', 'value'] as const) {
        const tensor = feeds[pastName(layer, kind)]!;
        expect(tensor.dims).toEqual([1, 3, 3, 4]);
        const data = tensor.data as Float32Array;
        for (let h = 0; h < 3; h++) {
          for (let p = 0; p < 3; p++) {
            for (let d = 0; d < 4; d++) {
              expect(data[(h * 3 + p) * 4 + d]).toBe(layer * 1e4 + (kind === 'key' ? 0 : 5e3) + h * 100 + p * 10 + d);
            }
          }
        }
      }
    }
    await expect(cache.pastFeeds(1)).rejects.toThrow(/consumed/);
  });

  it('keeps beams apart, allows cutting to 0 and to its own length, and refuses a longer or fractional length', async () => {
    const beams = await filled(5, 2).truncate(2);
    const key = (await beams.pastFeeds(1))[pastName(0, 'key')]!;
    expect(key.dims).toEqual([2, 3, 2, 4]);
    expect((key.data as Float32Array)[3 * 2 * 4]).toBe(1e3); // sequence 1, head 0, position 0
    expect((await filled(4).truncate(0)).length).toBe(0);
    expect((await filled(4).truncate(4)).length).toBe(4);
    await expect(filled(4).truncate(5)).rejects.toThrow(/cannot be cut to 5/);
    await expect(filled(4).truncate(1.5)).rejects.toThrow(/cannot be cut/);
  });
});
