/**
 * int4 weights unpacked to fp32 at load for WebAssembly (src/engine/int4Unpack.ts), against
 * onnxruntime's own `MatMulNBits` on the same graph and against an independent float64
 * dequantize-and-multiply written here; then the whole engine on the tiny bundle's int4 variant,
 * unpacked and not.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine } from '../../src/engine/engine';
import { Int4Unpacker, int4UnpackPlan, UNPACKED_HEAP_FACTOR, unpackInt4 } from '../../src/engine/int4Unpack';
import { GRAPH, MODEL, NODE, TENSOR } from '../../src/engine/onnxFields';
import { ort, sessionOptions } from '../../src/engine/ortRuntime';
import { readFields, textOf } from '../../src/engine/protobufWire';
import { GOLDEN_DIR, loadGoldenIndex } from '../helpers/golden';
import { buildOnnxModel, TensorType, type InitializerSpec, type NodeSpec } from '../helpers/onnxBuilder';
import { tinyBundleFiles } from '../helpers/tinyBundle';

/** A deterministic generator (mulberry32), so a failure can be rerun. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Int4Matrix {
  k: number;
  n: number;
  blockSize: number;
  quant: Uint8Array;
  scales: Float32Array;
  zeroPoints: Uint8Array | null;
}

function randomInt4(k: number, n: number, blockSize: number, withZeroPoints: boolean, next: () => number): Int4Matrix {
  const blocks = Math.ceil(k / blockSize);
  return {
    k,
    n,
    blockSize,
    quant: Uint8Array.from({ length: n * blocks * (blockSize / 2) }, () => Math.floor(next() * 256)),
    scales: Float32Array.from({ length: n * blocks }, () => 0.01 + next() * 0.1),
    zeroPoints: withZeroPoints ? Uint8Array.from({ length: n * Math.ceil(blocks / 2) }, () => Math.floor(next() * 256)) : null,
  };
}

/** y = a · Wᵀ in float64, W[n][k] dequantized element by element from MatMulNBits' layout as documented by ORT. */
function referenceProduct(a: Float32Array, rows: number, m: Int4Matrix): Float64Array {
  const blocks = Math.ceil(m.k / m.blockSize);
  const weight = (n: number, k: number): number => {
    const block = Math.floor(k / m.blockSize);
    const within = k % m.blockSize;
    const byte = m.quant[(n * blocks + block) * (m.blockSize / 2) + Math.floor(within / 2)]!;
    const q = within % 2 === 0 ? byte % 16 : Math.floor(byte / 16);
    const zpByte = m.zeroPoints ? m.zeroPoints[n * Math.ceil(blocks / 2) + Math.floor(block / 2)]! : 0;
    const zero = m.zeroPoints ? (block % 2 === 0 ? zpByte % 16 : Math.floor(zpByte / 16)) : 8;
    return Math.fround((q - zero) * m.scales[n * blocks + block]!);
  };
  const out = new Float64Array(rows * m.n);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < m.n; n++) {
      let sum = 0;
      for (let k = 0; k < m.k; k++) sum += a[r * m.k + k]! * weight(n, k);
      out[r * m.n + n] = sum;
    }
  }
  return out;
}

function maxRelative(actual: Float32Array, expected: ArrayLike<number>): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]!));
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
  }
  return diff / scale;
}

function matMulNBits(name: string, m: Int4Matrix, input: string, output: string, extra: { bias?: string } = {}): { node: NodeSpec; initializers: InitializerSpec[] } {
  const blocks = Math.ceil(m.k / m.blockSize);
  const initializers: InitializerSpec[] = [
    { name: `${name}.q`, dims: [m.n, blocks, m.blockSize / 2], data: m.quant },
    { name: `${name}.scales`, dims: [m.n * blocks], data: m.scales },
  ];
  if (m.zeroPoints) initializers.push({ name: `${name}.zp`, dims: [m.zeroPoints.length], data: m.zeroPoints });
  const inputs = [input, `${name}.q`, `${name}.scales`];
  if (m.zeroPoints) inputs.push(`${name}.zp`);
  if (extra.bias) inputs.push(...(m.zeroPoints ? [] : ['']), '', extra.bias);
  return {
    node: { op: 'MatMulNBits', domain: 'com.microsoft', inputs, outputs: [output], attributes: { K: m.k, N: m.n, bits: 4, block_size: m.blockSize } },
    initializers,
  };
}

/** The op types of a model's nodes and the names of its initializers. */
function contents(model: Uint8Array): { ops: string[]; initializers: string[] } {
  const graph = readFields(readFields(model).find((f) => f.field === MODEL.graph)!.value as Uint8Array);
  const inner = (field: number) => graph.filter((f) => f.field === field).map((f) => readFields(f.value as Uint8Array));
  return {
    ops: inner(GRAPH.node).map((node) => textOf(node, NODE.opType)),
    initializers: inner(GRAPH.initializer).map((t) => textOf(t, TENSOR.name)),
  };
}

describe('int4 weights unpacked for WebAssembly', () => {
  const next = random(7);
  // K = 80 is not a multiple of either block size: the last block is partial.
  const rows = 6;
  const k = 80;
  const withZp = randomInt4(k, 24, 32, true, next);
  const withoutZp = randomInt4(k, 40, 16, false, next);
  const withBias = randomInt4(k, 8, 32, false, next);
  const a = Float32Array.from({ length: rows * k }, () => next() * 2 - 1);
  const first = matMulNBits('w1', withZp, 'x', 'y1');
  const second = matMulNBits('w2', withoutZp, 'x', 'y2');
  const third = matMulNBits('w3', withBias, 'x', 'y3', { bias: 'w3.bias' });
  const model = buildOnnxModel({
    nodes: [
      first.node,
      second.node,
      third.node,
      // Something else reads w1's scales: they must stay.
      { op: 'Identity', inputs: ['w1.scales'], outputs: ['scales_seen'] },
    ],
    inputs: [{ name: 'x', type: TensorType.FLOAT, dims: [2, 3, k] }],
    outputs: [
      { name: 'y1', type: TensorType.FLOAT, dims: [2, 3, withZp.n] },
      { name: 'y2', type: TensorType.FLOAT, dims: [2, 3, withoutZp.n] },
      { name: 'y3', type: TensorType.FLOAT, dims: [2, 3, withBias.n] },
      { name: 'scales_seen', type: TensorType.FLOAT, dims: [withZp.scales.length] },
    ],
    initializers: [
      ...first.initializers,
      ...second.initializers,
      ...third.initializers,
      { name: 'w3.bias', dims: [withBias.n], data: Float32Array.from({ length: withBias.n }, () => next()) },
    ],
    domains: { 'com.microsoft': 1 },
  });

  async function run(bytes: Uint8Array, externalData: { path: string; data: Uint8Array }[] = []): Promise<Record<string, Float32Array>> {
    const session = await ort.InferenceSession.create(bytes, sessionOptions('wasm', { externalData }));
    try {
      const out = await session.run({ x: new ort.Tensor('float32', a, [2, 3, k]) });
      return Object.fromEntries(Object.entries(out).map(([name, t]) => [name, t.data as Float32Array]));
    } finally {
      await session.release();
    }
  }

  it('rewrites the MatMulNBits it can into products over fp32 weights that give onnxruntime’s numbers and the float64 reference’s', async () => {
    expect(int4UnpackPlan(model)).toEqual({ matmuls: 2, fp32Bytes: 4 * k * (withZp.n + withoutZp.n) });
    const unpacked = unpackInt4(model, [])!;
    expect(unpacked.matmuls).toBe(2);
    const { ops, initializers } = contents(unpacked.model);
    // The node with a bias input is left as it was; the others are matrix products now.
    expect(ops.filter((op) => op === 'MatMulNBits')).toHaveLength(1);
    expect(ops.filter((op) => op === 'FusedMatMul')).toHaveLength(2);
    // Weights only the rewritten nodes read are gone; w1's scales, read by the Identity, stay.
    expect(initializers).not.toContain('w1.q');
    expect(initializers).not.toContain('w2.q');
    expect(initializers).not.toContain('w2.scales');
    expect(initializers).not.toContain('w1.zp');
    expect(initializers).toContain('w1.scales');
    expect(initializers).toContain('w3.q');
    expect(unpacked.externalData.map((f) => f.path)).toEqual(['hark_int4_unpacked.bin']);

    const ortOut = await run(model);
    const ours = await run(unpacked.model, unpacked.externalData);
    for (const [name, m] of [['y1', withZp], ['y2', withoutZp]] as const) {
      const reference = referenceProduct(a, rows, m);
      expect(maxRelative(ours[name]!, reference), `${name} vs float64`).toBeLessThan(1e-6);
      expect(maxRelative(ours[name]!, ortOut[name]!), `${name} vs MatMulNBits`).toBeLessThan(1e-6);
      expect(maxRelative(ortOut[name]!, reference), `${name}: MatMulNBits vs float64 (the reference reads the layout right)`).toBeLessThan(1e-6);
    }
    expect(Array.from(ours.y3!)).toEqual(Array.from(ortOut.y3!));
    expect(Array.from(ours.scales_seen!)).toEqual(Array.from(withZp.scales));
  });

  it('reads weights from external data and leaves a graph without int4 weights alone', async () => {
    // The tiny bundle's int4 decoder keeps its weights in an external data file.
    const dir = join(GOLDEN_DIR, '..', 'bundles', 'salmonn-tiny', 'onnx');
    const decoder = new Uint8Array(readFileSync(join(dir, 'decoder_model_merged_q4.onnx')));
    const data = { path: 'decoder_model_merged_q4.onnx_data', data: new Uint8Array(readFileSync(join(dir, 'decoder_model_merged_q4.onnx_data'))) };
    const unpacked = unpackInt4(decoder, [data])!;
    expect(unpacked.matmuls).toBe(11);
    expect(contents(unpacked.model).ops).not.toContain('MatMulNBits');
    expect(unpacked.externalData.map((f) => f.path)).toEqual([data.path, 'hark_int4_unpacked.bin']);
    const fp32 = new Uint8Array(readFileSync(join(dir, 'decoder_model_merged.onnx')));
    expect(unpackInt4(fp32, [])).toBeNull();
  });

  it('keeps a graph packed when its fp32 weights would pass the budget', () => {
    // Less than the heap both graphs' fp32 weights and their prepacked copies take.
    const small = new Int4Unpacker(UNPACKED_HEAP_FACTOR * 4 * k * 64 - 1);
    const kept = small.apply('g', model, []);
    expect(kept.model).toBe(model);
    expect(small.totals).toMatchObject({ graphs: 0, matmuls: 0, overBudget: ['g'] });
    const enough = new Int4Unpacker(UNPACKED_HEAP_FACTOR * 4 * k * 64);
    expect(enough.apply('g', model, []).model).not.toBe(model);
    expect(enough.totals).toMatchObject({ graphs: 1, matmuls: 2, fp32Bytes: 4 * k * 64, overBudget: [] });
  });
});

describe('the engine on WebAssembly, int4 unpacked at load or not', () => {
  const golden = loadGoldenIndex();
  const speech = golden.inputs.speech!;
  const wav = new Uint8Array(readFileSync(join(GOLDEN_DIR, speech.audio)));

  async function answer(unpackInt4: boolean) {
    const engine = new HarkEngine({ store: new MemoryBundleStore(), unpackInt4 });
    try {
      const info = await engine.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: 'int4' });
      await engine.setAudio(wav);
      let logits: Float32Array | undefined;
      const result = await engine.ask(speech.prompt, { maxNewTokens: 12, doSample: false, onFirstLogits: (l) => (logits = l) });
      return { info, ids: result.ids, logits: logits! };
    } finally {
      await engine.unload();
    }
  }

  it('gives the same tokens, logits within 1e-5, and says what it unpacked', async () => {
    const packed = await answer(false);
    const unpacked = await answer(true);
    expect(unpacked.ids).toEqual(packed.ids);
    expect(maxRelative(unpacked.logits, packed.logits)).toBeLessThan(1e-5);
    expect(packed.info.decode.int4Unpacked).toBeNull();
    // Encoders, connector and decoder: every MatMulNBits of the variant.
    expect(unpacked.info.decode.int4Unpacked).toMatchObject({ graphs: 4, matmuls: 59, overBudget: [] });
    expect(unpacked.info.decode.summary).toMatch(/int4 weights were unpacked to full precision once, at load \(59 matrices, \d+ MiB/);
  });
});
