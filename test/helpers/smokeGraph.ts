/**
 * The smoke-test graph: Y = Softmax(Tanh(X·W + B)), with seeded weights, plus an independent
 * float64 computation of the same function in plain TypeScript to check any backend against.
 */
import { buildOnnxModel, TensorType } from './onnxBuilder';

export const SMOKE_ROWS = 4;
export const SMOKE_IN = 32;
export const SMOKE_OUT = 64;

/** mulberry32: a tiny seeded PRNG so every run builds the same graph and input. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomArray(n: number, rand: () => number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
}

export interface SmokeCase {
  model: Uint8Array;
  input: Float32Array;
  expected: Float64Array;
}

export function smokeCase(seed = 1234): SmokeCase {
  const rand = seededRandom(seed);
  const weight = randomArray(SMOKE_IN * SMOKE_OUT, rand, 0.5);
  const bias = randomArray(SMOKE_OUT, rand, 0.5);
  const input = randomArray(SMOKE_ROWS * SMOKE_IN, rand, 1);
  const model = buildOnnxModel({
    inputs: [{ name: 'x', type: TensorType.FLOAT, dims: ['rows', SMOKE_IN] }],
    outputs: [{ name: 'y', type: TensorType.FLOAT, dims: ['rows', SMOKE_OUT] }],
    initializers: [
      { name: 'w', dims: [SMOKE_IN, SMOKE_OUT], data: weight },
      { name: 'b', dims: [SMOKE_OUT], data: bias },
    ],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w'], outputs: ['xw'] },
      { op: 'Add', inputs: ['xw', 'b'], outputs: ['h'] },
      { op: 'Tanh', inputs: ['h'], outputs: ['t'] },
      { op: 'Softmax', inputs: ['t'], outputs: ['y'], attributes: { axis: -1 } },
    ],
  });
  return { model, input, expected: referenceSmoke(input, weight, bias) };
}

export function referenceSmoke(x: Float32Array, w: Float32Array, b: Float32Array): Float64Array {
  const out = new Float64Array(SMOKE_ROWS * SMOKE_OUT);
  for (let r = 0; r < SMOKE_ROWS; r++) {
    const row = new Float64Array(SMOKE_OUT);
    for (let o = 0; o < SMOKE_OUT; o++) {
      let acc = b[o]!;
      for (let i = 0; i < SMOKE_IN; i++) acc += x[r * SMOKE_IN + i]! * w[i * SMOKE_OUT + o]!;
      row[o] = Math.tanh(acc);
    }
    const max = Math.max(...row);
    let sum = 0;
    for (let o = 0; o < SMOKE_OUT; o++) sum += (row[o] = Math.exp(row[o]! - max));
    for (let o = 0; o < SMOKE_OUT; o++) out[r * SMOKE_OUT + o] = row[o]! / sum;
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}
