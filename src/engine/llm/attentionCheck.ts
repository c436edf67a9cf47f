/**
 * A numerical self-check of onnxruntime-web's GroupQueryAttention on this device, run once at
 * model load, deciding whether the decoder may take a whole prompt in one run.
 *
 * onnxruntime-web 1.30's WebGPU GroupQueryAttention is wrong for 32 or more new tokens in one run
 * on some adapters (SwiftShader: errors ~0.1–0.4, see WEBGPU_ATTENTION_CHUNK), and exact on others
 * (NVIDIA), where feeding prompts in chunks of 31 costs 2–4× in prefill time. So instead of always
 * chunking on WebGPU, a tiny attention graph with the model's head layout runs here with
 * CHECK_NEW_TOKENS new tokens at once, and its output is compared with the same attention computed
 * in float64 here; the decoder chunks only where they disagree.
 *
 * The one run is compared with that reference rather than with the same graph run in chunks (each
 * chunk's present fed back as the next one's past): the verdict is the same wherever chunks are
 * exact, and on SwiftShader every ORT graph compiles its shaders again per session, which for the
 * chunked runs' two extra attention shapes took 4–7 s of a slow machine's load time (the one run:
 * ~1.3 s). `compareChunks` runs the chunks too, for tests and diagnostics.
 */
import type { Backend } from '../device';
import { buildOnnxModel, TensorType, type InitializerSpec, type ValueSpec } from '../onnxBuilder';
import { ort, sessionOptions } from '../ortRuntime';
import { WEBGPU_ATTENTION_CHUNK } from './decoder';
import { createRng } from './sampling';

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /**
   * Set when the decoder's attention is the packed form (one q|k|v input, the rotary embedding
   * applied inside GroupQueryAttention: `do_rotary`, as models/salmonn/onnx_decoder.py builds it
   * wherever headDim is a multiple of 16): the check then runs that same form, with this base.
   */
  rotaryTheta?: number;
}

/** Whether the converter builds the packed, fused-rotary attention for this head size. */
export function usesFusedRotary(headDim: number): boolean {
  return headDim % 16 === 0; // ORT's fused rotary needs head_size % 16 == 0 (onnx_decoder.py)
}

export interface AttentionCheckResult {
  /** One run of CHECK_NEW_TOKENS new tokens gave the exact attention (within CHECK_TOLERANCE). */
  exact: boolean;
  /**
   * Largest difference of the one-run output from the float64 reference, relative to the largest
   * output magnitude (NaN when the check itself failed).
   */
  maxError: number;
  /** Most new tokens per decoder run: Infinity when exact, else WEBGPU_ATTENTION_CHUNK. */
  chunk: number;
  /** The same for the output computed in chunks of `chunk` (NaN unless `compareChunks`). */
  chunkedError: number;
  newTokens: number;
  ms: number;
  /** Why the check itself could not run (then `chunk` is WEBGPU_ATTENTION_CHUNK, to be safe). */
  failure?: string;
}

/** New tokens in the one-run case: past ORT's 32-token switch to its flash-attention prefill. */
export const CHECK_NEW_TOKENS = 40;
/** Relative difference above which one run counts as wrong (fp32 differences are ~1e-6). */
export const CHECK_TOLERANCE = 1e-3;

/** A GroupQueryAttention node alone, in the decoder graph's form (see AttentionShape.rotaryTheta). */
export function attentionCheckGraph(shape: AttentionShape, maxPositions = CHECK_NEW_TOKENS): Uint8Array {
  return shape.rotaryTheta === undefined ? separateAttentionGraph(shape) : packedRotaryAttentionGraph(shape, shape.rotaryTheta, maxPositions);
}

/** cos/sin caches [positions, headDim/2] in float32, as the converter writes them. */
export function rotaryCaches(headDim: number, theta: number, positions: number): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * Math.fround(1 / theta ** ((2 * i) / headDim)));
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

function packedRotaryAttentionGraph(shape: AttentionShape, theta: number, positions: number): Uint8Array {
  const { numHeads, numKvHeads, headDim } = shape;
  const { cos, sin } = rotaryCaches(headDim, theta, positions);
  return attentionGraph(shape, {
    qkv: [{ name: 'query', type: TensorType.FLOAT, dims: [1, 'new', (numHeads + 2 * numKvHeads) * headDim] }],
    nodeQkv: ['query', '', ''],
    initializers: [
      { name: 'cos_cache', dims: [positions, headDim / 2], data: cos },
      { name: 'sin_cache', dims: [positions, headDim / 2], data: sin },
    ],
    attributes: { do_rotary: 1, rotary_interleaved: 0 },
  });
}

function separateAttentionGraph(shape: AttentionShape): Uint8Array {
  const { numHeads, numKvHeads, headDim } = shape;
  return attentionGraph(shape, {
    qkv: [
      { name: 'query', type: TensorType.FLOAT, dims: [1, 'new', numHeads * headDim] },
      { name: 'key', type: TensorType.FLOAT, dims: [1, 'new', numKvHeads * headDim] },
      { name: 'value', type: TensorType.FLOAT, dims: [1, 'new', numKvHeads * headDim] },
    ],
    nodeQkv: ['query', 'key', 'value'],
    initializers: [],
    attributes: {},
  });
}

/** One GroupQueryAttention node with the KV cache and length inputs both forms share. */
function attentionGraph(
  shape: AttentionShape,
  form: { qkv: ValueSpec[]; nodeQkv: string[]; initializers: InitializerSpec[]; attributes: Record<string, number> },
): Uint8Array {
  const { numHeads, numKvHeads, headDim } = shape;
  const rotaryCaches = form.initializers.map((init) => init.name);
  return buildOnnxModel({
    name: 'hark_attention_check',
    domains: { 'com.microsoft': 1 },
    inputs: [
      ...form.qkv,
      { name: 'past_key', type: TensorType.FLOAT, dims: [1, numKvHeads, 'past', headDim] },
      { name: 'past_value', type: TensorType.FLOAT, dims: [1, numKvHeads, 'past', headDim] },
      { name: 'seqlens_k', type: TensorType.INT32, dims: [1] },
      { name: 'total_sequence_length', type: TensorType.INT32, dims: [] },
    ],
    outputs: [
      { name: 'output', type: TensorType.FLOAT, dims: [1, 'new', numHeads * headDim] },
      { name: 'present_key', type: TensorType.FLOAT, dims: [1, numKvHeads, 'total', headDim] },
      { name: 'present_value', type: TensorType.FLOAT, dims: [1, numKvHeads, 'total', headDim] },
    ],
    initializers: form.initializers,
    nodes: [
      {
        op: 'GroupQueryAttention',
        domain: 'com.microsoft',
        inputs: [...form.nodeQkv, 'past_key', 'past_value', 'seqlens_k', 'total_sequence_length', ...rotaryCaches],
        outputs: ['output', 'present_key', 'present_value'],
        attributes: { num_heads: numHeads, kv_num_heads: numKvHeads, ...form.attributes },
      },
    ],
  });
}

export interface AttentionCheckInputs {
  /** [n, numHeads·headDim], [n, numKvHeads·headDim] ×2, rows in token order. */
  query: Float32Array;
  key: Float32Array;
  value: Float32Array;
}

/** Seeded inputs in [-1, 1) (mulberry32), so every run checks the same numbers. */
export function attentionCheckInputs(shape: AttentionShape, n: number, seed = 20261): AttentionCheckInputs {
  const rng = createRng(seed);
  const next = () => rng() * 2 - 1;
  const fill = (length: number) => Float32Array.from({ length }, next);
  return {
    query: fill(n * shape.numHeads * shape.headDim),
    key: fill(n * shape.numKvHeads * shape.headDim),
    value: fill(n * shape.numKvHeads * shape.headDim),
  };
}

/** Rows of [n, heads·headDim] with the (non-interleaved, rotate_half) rotary embedding applied, in float64. */
function rotated(rows: Float32Array, heads: number, headDim: number, theta: number, n: number): Float64Array {
  const out = Float64Array.from(rows);
  const half = headDim / 2;
  const { cos, sin } = rotaryCaches(headDim, theta, n);
  for (let p = 0; p < n; p++) {
    for (let h = 0; h < heads; h++) {
      const base = (p * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const x1 = rows[base + i]!;
        const x2 = rows[base + i + half]!;
        out[base + i] = x1 * cos[p * half + i]! - x2 * sin[p * half + i]!;
        out[base + i + half] = x2 * cos[p * half + i]! + x1 * sin[p * half + i]!;
      }
    }
  }
  return out;
}

/** Causal grouped-query attention in float64: what GroupQueryAttention computes with no past. */
export function referenceAttention(shape: AttentionShape, inputs: AttentionCheckInputs, n: number): Float64Array {
  const { numHeads, numKvHeads, headDim, rotaryTheta } = shape;
  const query = rotaryTheta === undefined ? inputs.query : rotated(inputs.query, numHeads, headDim, rotaryTheta, n);
  const keys = rotaryTheta === undefined ? inputs.key : rotated(inputs.key, numKvHeads, headDim, rotaryTheta, n);
  const group = numHeads / numKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const out = new Float64Array(n * numHeads * headDim);
  const scores = new Float64Array(n);
  for (let h = 0; h < numHeads; h++) {
    const kv = Math.floor(h / group);
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let j = 0; j <= i; j++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) {
          dot += query[(i * numHeads + h) * headDim + d]! * keys[(j * numKvHeads + kv) * headDim + d]!;
        }
        scores[j] = dot * scale;
        max = Math.max(max, scores[j]!);
      }
      let sum = 0;
      for (let j = 0; j <= i; j++) sum += scores[j] = Math.exp(scores[j]! - max);
      for (let j = 0; j <= i; j++) {
        const weight = scores[j]! / sum;
        for (let d = 0; d < headDim; d++) {
          out[(i * numHeads + h) * headDim + d]! += weight * inputs.value[(j * numKvHeads + kv) * headDim + d]!;
        }
      }
    }
  }
  return out;
}

/** max |a − b| / max |b|: a difference relative to the outputs' magnitude. */
export function relativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let diff = 0;
  let magnitude = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    // NaN must count as a failure, not vanish in Math.max.
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    magnitude = Math.max(magnitude, Math.abs(b[i]!));
  }
  return diff / Math.max(magnitude, 1e-12);
}

export interface AttentionCheckOptions {
  /** New tokens in the one run (default CHECK_NEW_TOKENS). */
  newTokens?: number;
  /** The chunk used where one run is wrong (default WEBGPU_ATTENTION_CHUNK). */
  chunk?: number;
  /** Also run the graph in chunks and report their error (slower: more shaders to compile). */
  compareChunks?: boolean;
}

/**
 * Runs the check on `backend` and decides the prefill chunk. Never throws: if the check itself
 * fails, the result says so and keeps the safe chunk of WEBGPU_ATTENTION_CHUNK.
 */
export async function checkPrefillAttention(backend: Backend, shape: AttentionShape, options: AttentionCheckOptions = {}): Promise<AttentionCheckResult> {
  const { newTokens = CHECK_NEW_TOKENS, chunk = WEBGPU_ATTENTION_CHUNK, compareChunks = false } = options;
  const started = performance.now();
  let session: ort.InferenceSession | undefined;
  try {
    if (shape.numHeads % shape.numKvHeads !== 0) throw new Error(`${shape.numHeads} heads do not group into ${shape.numKvHeads} KV heads`);
    session = await ort.InferenceSession.create(attentionCheckGraph(shape, newTokens), sessionOptions(backend));
    const inputs = attentionCheckInputs(shape, newTokens);
    const reference = referenceAttention(shape, inputs, newTokens);
    const maxError = relativeDifference(await runAttention(session, shape, inputs, newTokens, newTokens), reference);
    const chunkedError = compareChunks ? relativeDifference(await runAttention(session, shape, inputs, newTokens, chunk), reference) : NaN;
    const exact = maxError <= CHECK_TOLERANCE;
    return { exact, maxError, chunk: exact ? Number.POSITIVE_INFINITY : chunk, chunkedError, newTokens, ms: performance.now() - started };
  } catch (error) {
    const failure = error instanceof Error ? error.message : String(error);
    return { exact: false, maxError: NaN, chunk, chunkedError: NaN, newTokens, ms: performance.now() - started, failure };
  } finally {
    await session?.release().catch(() => undefined);
  }
}

/** The attention outputs for `n` tokens fed `step` at a time, each run's present as the next past. */
async function runAttention(session: ort.InferenceSession, shape: AttentionShape, inputs: AttentionCheckInputs, n: number, step: number): Promise<Float32Array> {
  const { numHeads, numKvHeads, headDim } = shape;
  const qWidth = numHeads * headDim;
  const kvWidth = numKvHeads * headDim;
  const out = new Float32Array(n * qWidth);
  let pastKey: ort.Tensor = new ort.Tensor('float32', new Float32Array(0), [1, numKvHeads, 0, headDim]);
  let pastValue: ort.Tensor = new ort.Tensor('float32', new Float32Array(0), [1, numKvHeads, 0, headDim]);
  let past = 0;
  try {
    for (let start = 0; start < n; start += step) {
      const end = Math.min(n, start + step);
      const rows = end - start;
      const total = past + rows;
      const slice = (data: Float32Array, width: number) => data.slice(start * width, end * width);
      const qkv: Record<string, ort.Tensor> =
        shape.rotaryTheta === undefined
          ? {
              query: new ort.Tensor('float32', slice(inputs.query, qWidth), [1, rows, qWidth]),
              key: new ort.Tensor('float32', slice(inputs.key, kvWidth), [1, rows, kvWidth]),
              value: new ort.Tensor('float32', slice(inputs.value, kvWidth), [1, rows, kvWidth]),
            }
          : { query: new ort.Tensor('float32', packRows(inputs, shape, start, end), [1, rows, qWidth + 2 * kvWidth]) };
      const outputs = await session.run({
        ...qkv,
        past_key: pastKey,
        past_value: pastValue,
        seqlens_k: new ort.Tensor('int32', Int32Array.of(total - 1), [1]),
        total_sequence_length: new ort.Tensor('int32', Int32Array.of(total), []),
      });
      const output = outputs.output;
      const presentKey = outputs.present_key;
      const presentValue = outputs.present_value;
      if (!output || !presentKey || !presentValue) throw new Error('the attention check graph returned no output');
      out.set((await output.getData()) as Float32Array, start * qWidth);
      output.dispose();
      pastKey.dispose();
      pastValue.dispose();
      pastKey = presentKey;
      pastValue = presentValue;
      past = total;
    }
  } finally {
    pastKey.dispose();
    pastValue.dispose();
  }
  return out;
}

/** Rows start..end of q, k and v side by side ([q | k | v] per token), as the packed form takes them. */
function packRows(inputs: AttentionCheckInputs, shape: AttentionShape, start: number, end: number): Float32Array {
  const qWidth = shape.numHeads * shape.headDim;
  const kvWidth = shape.numKvHeads * shape.headDim;
  const width = qWidth + 2 * kvWidth;
  const out = new Float32Array((end - start) * width);
  for (let row = start; row < end; row++) {
    const at = (row - start) * width;
    out.set(inputs.query.subarray(row * qWidth, (row + 1) * qWidth), at);
    out.set(inputs.key.subarray(row * kvWidth, (row + 1) * kvWidth), at + qWidth);
    out.set(inputs.value.subarray(row * kvWidth, (row + 1) * kvWidth), at + qWidth + kvWidth);
  }
  return out;
}

/** One sentence for the device report: how prompts are fed to the decoder, and why. */
export function describeAttentionCheck(result: AttentionCheckResult): string {
  const error = Number.isFinite(result.maxError) ? result.maxError.toExponential(1) : String(result.maxError);
  if (result.failure !== undefined) {
    return (
      `The attention self-check could not run (${result.failure}), so prompts are fed in chunks of ${result.chunk} ` +
      'tokens, which is exact on every WebGPU device tested but slower to start an answer.'
    );
  }
  if (result.exact) {
    return (
      `Prompts are processed in one run: in the attention self-check (${Math.round(result.ms)} ms), ` +
      `${result.newTokens} new tokens at once matched the exact result within ${error}.`
    );
  }
  return (
    `Prompts are fed in chunks of ${result.chunk} tokens, which is exact but starts answers a little later: in the ` +
    `attention self-check, WebGPU attention over ${result.newTokens} new tokens at once was off by ${error} on this device.`
  );
}
