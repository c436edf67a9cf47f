/**
 * Counts what a piece of code asks of WebGPU: compute dispatches (kernels), queue submits, buffer
 * creations, buffer writes (CPU→GPU uploads) and mapAsync calls (GPU→CPU read-backs, each one a
 * wait for the GPU). Installed by wrapping the WebGPU prototypes of the running process (dawn.node
 * in Node), so it sees every call onnxruntime-web makes; `snapshot()` before and after a decode
 * loop, divided by the tokens, is the per-token breakdown BENCHMARKS.md reports.
 */

export interface GpuCounts {
  dispatches: number;
  submits: number;
  createBuffer: number;
  writeBuffer: number;
  writeBufferBytes: number;
  mapAsync: number;
  /** Compute pipelines created (each one a shader compile: the driver's, or SwiftShader's LLVM). */
  createPipeline: number;
}

const counts: GpuCounts = { dispatches: 0, submits: 0, createBuffer: 0, writeBuffer: 0, writeBufferBytes: 0, mapAsync: 0, createPipeline: 0 };
let installed = false;

type Method = (...args: never[]) => unknown;

function wrap<T extends object>(proto: T | undefined, name: keyof T & string, count: (args: unknown[]) => void): void {
  if (!proto) return;
  const original = proto[name] as unknown as Method | undefined;
  if (typeof original !== 'function') return;
  (proto as Record<string, unknown>)[name] = function (this: unknown, ...args: unknown[]) {
    count(args);
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  };
}

/** Wraps the WebGPU prototypes once (call after the WebGPU globals exist). */
export function installGpuCounters(): void {
  if (installed) return;
  installed = true;
  const g = globalThis as unknown as Record<string, { prototype: object } | undefined>;
  wrap(g.GPUComputePassEncoder?.prototype as { dispatchWorkgroups?: Method } | undefined, 'dispatchWorkgroups', () => {
    counts.dispatches += 1;
  });
  wrap(g.GPUComputePassEncoder?.prototype as { dispatchWorkgroupsIndirect?: Method } | undefined, 'dispatchWorkgroupsIndirect', () => {
    counts.dispatches += 1;
  });
  wrap(g.GPUQueue?.prototype as { submit?: Method } | undefined, 'submit', () => {
    counts.submits += 1;
  });
  wrap(g.GPUQueue?.prototype as { writeBuffer?: Method } | undefined, 'writeBuffer', (args) => {
    counts.writeBuffer += 1;
    const data = args[2] as ArrayBufferView | ArrayBuffer | undefined;
    const size = args[4] as number | undefined;
    const element = data && ArrayBuffer.isView(data) && 'BYTES_PER_ELEMENT' in data ? (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT : 1;
    counts.writeBufferBytes += size !== undefined ? size * element : (data?.byteLength ?? 0);
  });
  wrap(g.GPUDevice?.prototype as { createBuffer?: Method } | undefined, 'createBuffer', () => {
    counts.createBuffer += 1;
  });
  for (const name of ['createComputePipeline', 'createComputePipelineAsync'] as const) {
    wrap(g.GPUDevice?.prototype as Record<typeof name, Method | undefined> | undefined, name, (args) => {
      counts.createPipeline += 1;
      pipelineListener?.(args[0]);
    });
  }
  wrap(g.GPUBuffer?.prototype as { mapAsync?: Method } | undefined, 'mapAsync', () => {
    counts.mapAsync += 1;
  });
}

let pipelineListener: ((descriptor: unknown) => void) | undefined;
/** Calls `listener` with each compute pipeline descriptor created from now on (undefined: stop). */
export function onPipelineCreated(listener: ((descriptor: unknown) => void) | undefined): void {
  pipelineListener = listener;
}

export function snapshot(): GpuCounts {
  return { ...counts };
}

/** (after − before) / per, field by field. */
export function perUnit(before: GpuCounts, after: GpuCounts, per: number): GpuCounts {
  const out = { ...after };
  for (const key of Object.keys(out) as (keyof GpuCounts)[]) out[key] = (after[key] - before[key]) / Math.max(1, per);
  return out;
}
