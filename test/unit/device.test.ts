import { describe, expect, it } from 'vitest';
import {
  backendAdvice,
  chooseBackend,
  classifyAdapter,
  probeDevice,
  probeWasm,
  probeWebGpu,
  softwareRendererName,
  type DeviceGlobals,
} from '../../src/engine/device';

interface AdapterNamesLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
}

/** A minimal stand-in for GPUAdapter carrying only what describeAdapter reads. */
function adapterLike(opts: { fallback?: boolean; f16: boolean; names?: AdapterNamesLike }): GPUAdapter {
  const features = new Set(opts.f16 ? ['shader-f16', 'timestamp-query'] : ['timestamp-query']);
  const names = opts.names ?? { vendor: 'acme', architecture: 'rdna9', device: 'x1', description: 'Acme X1' };
  return {
    // isFallbackAdapter undefined: a browser that does not expose it.
    info: { ...names, ...(opts.fallback === undefined ? {} : { isFallbackAdapter: opts.fallback }) },
    features,
    limits: { maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 2 ** 30 },
  } as unknown as GPUAdapter;
}

function gpuReturning(adapter: GPUAdapter | null | Error): GPU {
  return {
    requestAdapter: async () => {
      if (adapter instanceof Error) throw adapter;
      return adapter;
    },
  } as unknown as GPU;
}

describe('probeWebGpu', () => {
  it('explains a browser without navigator.gpu', async () => {
    const report = await probeWebGpu({ navigator: {} });
    expect(report.available).toBe(false);
    if (!report.available) expect(report.reason).toMatch(/navigator\.gpu is missing/);
  });

  it('explains a missing adapter', async () => {
    const report = await probeWebGpu({ navigator: { gpu: gpuReturning(null) } });
    expect(report.available).toBe(false);
    if (!report.available) expect(report.reason).toMatch(/no usable GPU adapter/);
  });

  it('explains a failing requestAdapter', async () => {
    const report = await probeWebGpu({ navigator: { gpu: gpuReturning(new Error('device lost')) } });
    expect(report.available).toBe(false);
    if (!report.available) expect(report.reason).toContain('device lost');
  });

  it('copies adapter info, f16 support and limits', async () => {
    const report = await probeWebGpu({ navigator: { gpu: gpuReturning(adapterLike({ fallback: false, f16: true })) } });
    expect(report).toMatchObject({
      available: true,
      vendor: 'acme',
      architecture: 'rdna9',
      shaderF16: true,
      isFallbackAdapter: false,
      maxBufferSize: 2 ** 31,
      maxStorageBufferBindingSize: 2 ** 30,
      features: ['shader-f16', 'timestamp-query'],
    });
  });
});

describe('software adapters', () => {
  it.each([
    [{ vendor: 'google', architecture: 'swiftshader', description: '' }, 'SwiftShader'],
    [{ vendor: 'Google Inc.', description: 'SwiftShader Device (Subzero)' }, 'SwiftShader'],
    [{ vendor: 'mesa', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' }, 'llvmpipe'],
    [{ vendor: 'mesa', architecture: '', description: 'Vulkan lavapipe' }, 'lavapipe'],
    [{ vendor: 'microsoft', description: 'Microsoft Basic Render Driver' }, 'Microsoft Basic Render Driver'],
    [{ vendor: 'unknown', description: 'Generic Software Rasterizer' }, 'a software renderer'],
  ])('names %o as %s', (names, expected) => {
    expect(softwareRendererName(names)).toBe(expected);
    expect(classifyAdapter({ ...names, isFallbackAdapter: false }).software).toBe(true);
  });

  it.each([
    { vendor: 'nvidia', architecture: 'ada', description: 'NVIDIA GeForce RTX 4090' },
    { vendor: 'apple', architecture: 'metal-3', description: '' },
    { vendor: 'intel', architecture: 'gen-12lp', description: 'Intel(R) UHD Graphics 770' },
    { vendor: 'amd', architecture: 'rdna-3', description: 'AMD Radeon RX 7900 XTX (softwareless)' },
    {},
  ])('does not take the GPU %o for software', (names) => {
    expect(softwareRendererName(names)).toBeNull();
    expect(classifyAdapter({ ...names, isFallbackAdapter: false })).toEqual({ software: false, evidence: '' });
  });

  it('believes the adapter when it says it is a fallback, whatever its name', () => {
    expect(classifyAdapter({ vendor: 'acme', isFallbackAdapter: true })).toEqual({ software: true, evidence: 'the browser marks it as a fallback adapter' });
  });

  it('probeWebGpu marks SwiftShader as software even without isFallbackAdapter', async () => {
    const report = await probeWebGpu({
      navigator: { gpu: gpuReturning(adapterLike({ f16: false, names: { vendor: 'google', architecture: 'swiftshader', device: '', description: '' } })) },
    });
    expect(report).toMatchObject({ available: true, isFallbackAdapter: false, software: true, softwareEvidence: 'its name identifies SwiftShader' });
  });
});

describe('chooseBackend', () => {
  it('picks wasm with the WebGPU reason when there is no adapter', () => {
    expect(chooseBackend({ available: false, reason: 'because' })).toEqual({ backend: 'wasm', reason: 'because' });
  });

  it('picks wasm over a software adapter, and says why in words', async () => {
    const swiftshader = { vendor: 'google', architecture: 'swiftshader', device: '', description: '' };
    const sw = await probeWebGpu({ navigator: { gpu: gpuReturning(adapterLike({ fallback: true, f16: false, names: swiftshader })) } });
    expect(chooseBackend(sw)).toEqual({
      backend: 'wasm',
      reason:
        'The only WebGPU adapter here is a software renderer (SwiftShader), not a GPU (the browser marks it as a fallback ' +
        'adapter); it runs the model many times slower than WebAssembly on the same CPU, so Automatic chose WebAssembly ' +
        '(CPU). WebGPU can still be picked in Settings.',
    });
    const unnamed = await probeWebGpu({ navigator: { gpu: gpuReturning(adapterLike({ fallback: true, f16: false })) } });
    expect(chooseBackend(unnamed).backend).toBe('wasm');
    expect(chooseBackend(unnamed).reason).toMatch(/^The only WebGPU adapter here is a software renderer, not a GPU/);
    const byName = await probeWebGpu({ navigator: { gpu: gpuReturning(adapterLike({ f16: false, names: { vendor: 'mesa', description: 'llvmpipe (LLVM 15)' } })) } });
    expect(chooseBackend(byName)).toMatchObject({ backend: 'wasm', reason: expect.stringMatching(/software renderer \(llvmpipe\), not a GPU \(its name identifies llvmpipe\)/) });
  });

  it('picks webgpu on a hardware GPU', async () => {
    const hw = await probeWebGpu({ navigator: { gpu: gpuReturning(adapterLike({ fallback: false, f16: false })) } });
    expect(chooseBackend(hw)).toEqual({ backend: 'webgpu', reason: 'A hardware GPU is available (acme rdna9), so Automatic chose WebGPU.' });
  });
});

describe('backendAdvice', () => {
  it('says when the backend in use is clearly the slower one here, and what to do', async () => {
    const sw = await probeWebGpu({ navigator: { gpu: gpuReturning(adapterLike({ fallback: true, f16: false, names: { vendor: 'google', architecture: 'swiftshader' } })) } });
    const hw = await probeWebGpu({ navigator: { gpu: gpuReturning(adapterLike({ fallback: false, f16: true })) } });
    expect(backendAdvice('webgpu', sw)).toBe(
      'WebGPU here is a software renderer (SwiftShader), not a GPU: WebAssembly (CPU) is likely much faster on this device. Choose Automatic or WebAssembly in Settings.',
    );
    expect(backendAdvice('wasm', sw)).toBeNull();
    expect(backendAdvice('webgpu', hw)).toBeNull();
    expect(backendAdvice('wasm', hw)).toMatch(/^This device has a GPU \(acme rdna9\): WebGPU is usually much faster/);
    expect(backendAdvice('wasm', { available: false, reason: 'none' })).toBeNull();
  });
});

describe('probeWasm', () => {
  it('needs cross-origin isolation for threads in a browser', () => {
    const base: DeviceGlobals = { navigator: { hardwareConcurrency: 8 }, SharedArrayBuffer, WebAssembly };
    expect(probeWasm({ ...base, crossOriginIsolated: false }).threads).toBe(false);
    expect(probeWasm({ ...base, crossOriginIsolated: false }).numThreads).toBe(1);
    expect(probeWasm({ ...base, crossOriginIsolated: true })).toMatchObject({ threads: true, numThreads: 4 });
  });

  it('detects SIMD with a real WebAssembly.validate in Node', () => {
    expect(probeWasm(globalThis as DeviceGlobals).simd).toBe(true);
  });

  it('reports no threads on a single core', () => {
    expect(probeWasm({ navigator: { hardwareConcurrency: 1 }, SharedArrayBuffer, crossOriginIsolated: true, WebAssembly }).threads).toBe(false);
  });
});

describe('probeDevice in Node', () => {
  it('reports WebGPU unavailable and recommends wasm', async () => {
    const report = await probeDevice({ navigator: undefined, SharedArrayBuffer, WebAssembly });
    expect(report.webgpu.available).toBe(false);
    expect(report.recommended).toBe('wasm');
  });
});
