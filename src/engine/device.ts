/**
 * What the device can do for inference: the WebGPU adapter (or why there is none) and the
 * WebAssembly fallback. Pure TypeScript over `globalThis`, so it runs the same in a browser
 * worker, a page, and Node (where WebGPU is simply reported as unavailable).
 */

export type Backend = 'webgpu' | 'wasm';

export interface WebGpuAvailable {
  available: true;
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** True for software adapters such as SwiftShader: correct but slow. */
  isFallbackAdapter: boolean;
  /** Needed to run fp16 model variants. */
  shaderF16: boolean;
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  features: string[];
}

export interface WebGpuUnavailable {
  available: false;
  /** A sentence a user can act on. */
  reason: string;
}

export type WebGpuReport = WebGpuAvailable | WebGpuUnavailable;

export interface WasmReport {
  /** COOP/COEP are in force, which SharedArrayBuffer (and so wasm threads) requires. */
  crossOriginIsolated: boolean;
  sharedArrayBuffer: boolean;
  /** Multi-threaded wasm is possible. */
  threads: boolean;
  /** Threads onnxruntime-web should use (1 when threads are impossible). */
  numThreads: number;
  hardwareConcurrency: number;
  simd: boolean;
}

export interface DeviceReport {
  webgpu: WebGpuReport;
  wasm: WasmReport;
  /** The backend `auto` resolves to, and why, in words. */
  recommended: Backend;
  recommendationReason: string;
}

/** The subset of `globalThis` the probe reads; injectable so unit tests can describe any device. */
export interface DeviceGlobals {
  navigator?: { gpu?: GPU; hardwareConcurrency?: number } | undefined;
  crossOriginIsolated?: boolean | undefined;
  SharedArrayBuffer?: unknown;
  WebAssembly?: { validate(bytes: BufferSource): boolean } | undefined;
}

export async function probeWebGpu(globals: DeviceGlobals = globalThis as DeviceGlobals): Promise<WebGpuReport> {
  const gpu = globals.navigator?.gpu;
  if (!gpu) {
    return {
      available: false,
      reason:
        'This browser does not offer WebGPU (navigator.gpu is missing). Use a recent Chrome, Edge or ' +
        'Safari, served over HTTPS or localhost; Hark will run on the CPU (WebAssembly) meanwhile, more slowly.',
    };
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (error) {
    return {
      available: false,
      reason: `Asking the browser for a GPU failed (${errorText(error)}). Hark will run on the CPU (WebAssembly).`,
    };
  }
  if (!adapter) {
    return {
      available: false,
      reason:
        'The browser offers WebGPU but found no usable GPU adapter (the GPU may be blocklisted or ' +
        'hardware acceleration turned off). Hark will run on the CPU (WebAssembly).',
    };
  }
  return describeAdapter(adapter);
}

export function describeAdapter(adapter: GPUAdapter): WebGpuAvailable {
  // GPUAdapterInfo exposes getters, not own properties, so copy each field explicitly.
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const legacyFallback = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
  return {
    available: true,
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    isFallbackAdapter: Boolean(info.isFallbackAdapter ?? legacyFallback ?? false),
    shaderF16: adapter.features.has('shader-f16'),
    maxBufferSize: adapter.limits.maxBufferSize,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    features: [...adapter.features].map(String).sort(),
  };
}

// The smallest module using a v128 instruction: validates only where wasm SIMD is supported.
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11,
]);

export function probeWasm(globals: DeviceGlobals = globalThis as DeviceGlobals): WasmReport {
  const crossOriginIsolated = globals.crossOriginIsolated === true;
  const sharedArrayBuffer = typeof globals.SharedArrayBuffer === 'function';
  const hardwareConcurrency = globals.navigator?.hardwareConcurrency ?? 1;
  // In Node there is no cross-origin isolation concept; SharedArrayBuffer alone decides.
  const isBrowser = globals.crossOriginIsolated !== undefined;
  const threads = sharedArrayBuffer && (!isBrowser || crossOriginIsolated) && hardwareConcurrency > 1;
  let simd = false;
  try {
    simd = globals.WebAssembly?.validate(SIMD_PROBE) ?? false;
  } catch {
    simd = false;
  }
  return {
    crossOriginIsolated,
    sharedArrayBuffer,
    threads,
    numThreads: threads ? Math.min(4, hardwareConcurrency) : 1,
    hardwareConcurrency,
    simd,
  };
}

export function chooseBackend(webgpu: WebGpuReport): { backend: Backend; reason: string } {
  if (!webgpu.available) return { backend: 'wasm', reason: webgpu.reason };
  if (webgpu.isFallbackAdapter) {
    return {
      backend: 'webgpu',
      reason:
        'WebGPU is available through a software adapter (no hardware GPU found): it works, but expect ' +
        'it to be slow.',
    };
  }
  const name = [webgpu.vendor, webgpu.architecture].filter(Boolean).join(' ') || 'your GPU';
  return { backend: 'webgpu', reason: `WebGPU is available on ${name}.` };
}

export async function probeDevice(globals: DeviceGlobals = globalThis as DeviceGlobals): Promise<DeviceReport> {
  const webgpu = await probeWebGpu(globals);
  const wasm = probeWasm(globals);
  const { backend, reason } = chooseBackend(webgpu);
  return { webgpu, wasm, recommended: backend, recommendationReason: reason };
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
