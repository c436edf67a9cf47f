import { describe, expect, it } from 'vitest';
import { chooseBackend, probeDevice, probeWasm, probeWebGpu, type DeviceGlobals } from '../../src/engine/device';

/** A minimal stand-in for GPUAdapter carrying only what describeAdapter reads. */
function adapterLike(opts: { fallback: boolean; f16: boolean }): GPUAdapter {
  const features = new Set(opts.f16 ? ['shader-f16', 'timestamp-query'] : ['timestamp-query']);
  return {
    info: { vendor: 'acme', architecture: 'rdna9', device: 'x1', description: 'Acme X1', isFallbackAdapter: opts.fallback },
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

describe('chooseBackend', () => {
  it('picks wasm with the WebGPU reason when there is no adapter', () => {
    expect(chooseBackend({ available: false, reason: 'because' })).toEqual({ backend: 'wasm', reason: 'because' });
  });

  it('picks webgpu and warns about software adapters', async () => {
    const sw = await probeWebGpu({ navigator: { gpu: gpuReturning(adapterLike({ fallback: true, f16: false })) } });
    const choice = chooseBackend(sw);
    expect(choice.backend).toBe('webgpu');
    expect(choice.reason).toMatch(/software adapter/);
    const hw = await probeWebGpu({ navigator: { gpu: gpuReturning(adapterLike({ fallback: false, f16: false })) } });
    expect(chooseBackend(hw).reason).toBe('WebGPU is available on acme rdna9.');
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
