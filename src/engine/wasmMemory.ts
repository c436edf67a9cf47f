/**
 * Will a variant fit WebAssembly's memory? Asked before anything is downloaded, so that a model too
 * large for the CPU backend is refused with what to do instead of failing minutes later, after
 * gigabytes, with onnxruntime's `std::bad_alloc`.
 *
 * Why by hand: onnxruntime-web says nothing before a run fails. The facts this estimate rests on
 * were measured here (BENCHMARKS.md, "Qwen3-4B geometry"): onnxruntime-web's wasm build is 32-bit,
 * so one page's wasm heap ends at 4 GiB; every session copies its weights into that heap (two
 * sessions reading one data file hold it twice); and the wasm `MatMulNBits` kernel dequantizes its
 * whole weight to fp32 on each call, so an int4 model needs its largest matrix again in fp32 for a
 * moment (Qwen3-4B's tied head: +1.49 GB, after 2.76 GB of sessions: `bad_alloc`).
 */

import { externalDataPath, getVariant, type GraphSpec, type Manifest } from './bundle/manifest';
import { modelParts, partGraphNames, variantGraphKey, type LlmPart } from './bundle/parts';
import type { Backend, WebGpuReport } from './device';
import { HarkError } from './errors';

/** The most a wasm32 heap can address (onnxruntime-web's wasm build). */
export const WASM_HEAP_LIMIT_BYTES = 4 * 1024 ** 3;

/** The context the estimate reserves a KV cache for: a short recording and a question or two. */
export const WASM_ESTIMATE_CONTEXT = 1024;

export interface WasmMemoryEstimate {
  /** Bytes the graphs' sessions hold: every graph's files, a file read by two graphs counted twice. */
  sessions: number;
  /** The largest int4 matrix in fp32, which wasm's MatMulNBits materializes on a call (0: no int4). */
  dequantized: number;
  /** An fp32 KV cache for `WASM_ESTIMATE_CONTEXT` tokens. */
  kvCache: number;
  total: number;
}

/** What a variant needs of the wasm heap at least (the audio stages' activations come on top). */
export function wasmMemoryEstimate(manifest: Manifest, variant: string): WasmMemoryEstimate {
  const spec = getVariant(manifest, variant);
  const parts = modelParts(manifest);
  const sizes = new Map(manifest.files.map((f) => [f.path, f.size]));
  const graphBytes = (graph: GraphSpec): number =>
    [graph.path, ...graph.externalData.map((ref) => externalDataPath(graph.path, ref))].reduce((sum, path) => sum + (sizes.get(path) ?? 0), 0);
  const sessions = partGraphNames(parts).reduce((sum, name) => {
    const graph = spec.graphs[variantGraphKey(manifest, name)];
    return sum + (graph ? graphBytes(graph) : 0);
  }, 0);
  const dequantized = variant.startsWith('int4') ? largestMatrix(parts.llm) * 4 : 0;
  const { numLayers, numKvHeads, headDim } = parts.llm;
  const kvCache = 2 * numLayers * numKvHeads * headDim * WASM_ESTIMATE_CONTEXT * 4;
  return { sessions, dequantized, kvCache, total: sessions + dequantized + kvCache };
}

/** Elements of the decoder's largest weight matrix: the vocabulary head or an MLP projection. */
function largestMatrix(llm: LlmPart): number {
  return Math.max(llm.vocabSize * llm.hiddenSize, llm.intermediateSize * llm.hiddenSize);
}

/**
 * On WebAssembly a model's int4 weights are unpacked to fp32 at load (int4Unpack.ts) while the
 * estimate plus what the unpacked weights cost the heap stays under this: half the heap, the rest
 * left to the audio stages' activations and a long conversation's cache.
 */
export const WASM_UNPACK_CEILING_BYTES = 2 * 1024 ** 3;

/** Bytes of fp32 weights a load of `variant` on WebAssembly may unpack. */
export function wasmUnpackBudget(manifest: Manifest, variant: string): number {
  return Math.max(0, WASM_UNPACK_CEILING_BYTES - wasmMemoryEstimate(manifest, variant).total);
}

/** "4.6 GB": decimal gigabytes, as download sizes are shown elsewhere in the app. */
export function gigabytes(bytes: number): string {
  return `${(bytes / 1e9).toFixed(1)} GB`;
}

/**
 * Throws `engine/backend-unavailable` when `variant` would not fit the wasm heap, with what to do:
 * depends on whether WebAssembly was the user's choice or Automatic's, and why Automatic chose it.
 */
export function refuseOverWasmHeap(manifest: Manifest, variant: string, preference: 'auto' | Backend, webgpu: WebGpuReport): void {
  const need = wasmMemoryEstimate(manifest, variant);
  if (need.total <= WASM_HEAP_LIMIT_BYTES) return;
  const transient = need.dequantized > 0 ? ` and ${gigabytes(need.dequantized)} more while it runs (WebAssembly unpacks each int4 matrix to full precision)` : '';
  const what = `“${manifest.label}” (${variant}) needs about ${gigabytes(need.total)} of memory on WebAssembly (CPU): ${gigabytes(need.sessions)} of weights${transient}. A browser gives WebAssembly at most ${gigabytes(WASM_HEAP_LIMIT_BYTES)}, so this model needs WebGPU on a GPU.`;
  const todo =
    preference === 'wasm'
      ? webgpu.available && !webgpu.software
        ? 'Choose Automatic or WebGPU in Settings, or choose a smaller model.'
        : 'Choose WebGPU in Settings on a device with a GPU, or choose a smaller model.'
      : !webgpu.available
        ? `This browser offers no WebGPU here (${webgpu.reason.replace(/\.$/, '')}): open Hark in a browser with WebGPU on a device with a GPU, or choose a smaller model.`
        : 'The only WebGPU here is a software renderer, far too slow for a model of this size: use a device with a GPU, or choose a smaller model.';
  throw new HarkError('engine/backend-unavailable', `${what} ${todo}`, {
    needBytes: need.total,
    weightBytes: need.sessions,
    limitBytes: WASM_HEAP_LIMIT_BYTES,
    variant,
  });
}
