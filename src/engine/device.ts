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
  /** What the adapter itself says: true for fallback (software) adapters such as SwiftShader. */
  isFallbackAdapter: boolean;
  /**
   * A software renderer, not a GPU: the adapter says it is a fallback, or its name is one of the
   * known CPU implementations of WebGPU (SwiftShader, llvmpipe, lavapipe, Microsoft Basic Render
   * Driver, …) even where the browser does not set `isFallbackAdapter`. Correct but slow.
   */
  software: boolean;
  /** Why it counts as software, in words (empty for a hardware adapter). */
  softwareEvidence: string;
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

/**
 * Names of software (CPU) WebGPU/Vulkan/D3D implementations as they appear in adapter info, with
 * the name to show. Matched case-insensitively against vendor, architecture, device and
 * description together.
 */
const SOFTWARE_ADAPTERS: readonly { pattern: RegExp; name: string }[] = [
  { pattern: /swift\s*shader/i, name: 'SwiftShader' },
  { pattern: /llvmpipe/i, name: 'llvmpipe' },
  { pattern: /lavapipe/i, name: 'lavapipe' },
  { pattern: /softpipe/i, name: 'softpipe' },
  { pattern: /microsoft basic render/i, name: 'Microsoft Basic Render Driver' },
  { pattern: /\bsoftware\b/i, name: 'a software renderer' },
];

export interface AdapterNames {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
}

/** The software renderer an adapter's names reveal (e.g. 'SwiftShader'), or null for a GPU. */
export function softwareRendererName(info: AdapterNames): string | null {
  const text = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  return SOFTWARE_ADAPTERS.find((s) => s.pattern.test(text))?.name ?? null;
}

/** Whether an adapter is a software renderer, and how we know, in words ('' for a GPU). */
export function classifyAdapter(info: AdapterNames & { isFallbackAdapter: boolean }): { software: boolean; evidence: string } {
  if (info.isFallbackAdapter) return { software: true, evidence: 'the browser marks it as a fallback adapter' };
  const named = softwareRendererName(info);
  if (named) return { software: true, evidence: `its name identifies ${named === 'a software renderer' ? 'it as software' : named}` };
  return { software: false, evidence: '' };
}

export function describeAdapter(adapter: GPUAdapter): WebGpuAvailable {
  // GPUAdapterInfo exposes getters, not own properties, so copy each field explicitly.
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const legacyFallback = (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter;
  const names = {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
  };
  const isFallbackAdapter = Boolean(info.isFallbackAdapter ?? legacyFallback ?? false);
  const { software, evidence } = classifyAdapter({ ...names, isFallbackAdapter });
  return {
    available: true,
    ...names,
    isFallbackAdapter,
    software,
    softwareEvidence: evidence,
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

/** How to name an adapter in a sentence: "acme rdna9", "a software renderer (SwiftShader)". */
export function adapterLabel(webgpu: WebGpuAvailable): string {
  if (webgpu.software) {
    const name = softwareRendererName(webgpu);
    return name && name !== 'a software renderer' ? `a software renderer (${name})` : 'a software renderer';
  }
  return [webgpu.vendor, webgpu.architecture].filter(Boolean).join(' ') || 'your GPU';
}

/**
 * The backend "Automatic" uses. A software WebGPU adapter is never chosen over WebAssembly:
 * measured here (SwiftShader, tiny model) it answered at 0.4–0.6 tokens/s with a 5–7 s first
 * token where WebAssembly gave 53–142 tokens/s and a 0.1 s first token, since it emulates a GPU
 * on the same CPU that WebAssembly uses directly.
 */
export function chooseBackend(webgpu: WebGpuReport): { backend: Backend; reason: string } {
  if (!webgpu.available) return { backend: 'wasm', reason: webgpu.reason };
  if (webgpu.software) {
    return {
      backend: 'wasm',
      reason:
        `The only WebGPU adapter here is ${adapterLabel(webgpu)}, not a GPU (${webgpu.softwareEvidence}); it runs ` +
        'the model many times slower than WebAssembly on the same CPU, so Automatic chose WebAssembly (CPU). ' +
        'WebGPU can still be picked in Settings.',
    };
  }
  return { backend: 'webgpu', reason: `A hardware GPU is available (${adapterLabel(webgpu)}), so Automatic chose WebGPU.` };
}

/**
 * A hint when the backend in use is clearly the slower one on this device (e.g. WebGPU forced on
 * a software adapter), or null.
 */
export function backendAdvice(backend: Backend, webgpu: WebGpuReport): string | null {
  if (!webgpu.available) return null;
  if (backend === 'webgpu' && webgpu.software) {
    return (
      `WebGPU here is ${adapterLabel(webgpu)}, not a GPU: WebAssembly (CPU) is likely ` +
      'much faster on this device. Choose Automatic or WebAssembly in Settings.'
    );
  }
  if (backend === 'wasm' && !webgpu.software) {
    return (
      `This device has a GPU (${adapterLabel(webgpu)}): WebGPU is usually much faster than WebAssembly for real ` +
      'models. Choose Automatic or WebGPU in Settings.'
    );
  }
  return null;
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
