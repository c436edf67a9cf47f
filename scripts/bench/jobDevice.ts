/**
 * The device a Node bench job (job.ts, encoderJob.ts) runs on, and its measured copy bandwidth.
 * For webgpu-node this also installs dawn.node's `navigator.gpu` and registers the module hook that
 * resolves the engine's plain 'onnxruntime-web' import to the WebGPU build: call it before
 * anything imports ORT.
 */
import { register } from 'node:module';
import { cpus } from 'node:os';
import { measureCpuBandwidth, measureGpuBandwidth } from './bandwidth';
import { setupNodeWebGpu, withSwiftShaderFallback } from './nodeWebgpu';
import type { DeviceInfo } from './types';

export async function setupJobDevice(backend: 'wasm' | 'webgpu-node', progress: (phase: string) => void): Promise<DeviceInfo> {
  if (backend === 'wasm') {
    const bw = measureCpuBandwidth();
    return { label: `CPU (${cpus()[0]?.model.trim() ?? 'unknown'})`, software: false, bandwidthGBs: bw.gbPerSecond, bandwidthMethod: bw.method };
  }
  withSwiftShaderFallback();
  const adapter = await setupNodeWebGpu();
  progress('adapter');
  const bw = await measureGpuBandwidth(navigator.gpu);
  progress('bandwidth');
  const name = [adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' ');
  // The engine imports plain 'onnxruntime-web': give it the WebGPU build, as the app's Vite alias does.
  // Bundled (the GPU kit), the alias was applied at bundle time.
  if (!process.env.HARK_BENCH_BUNDLE_DIR) register('./ortWebgpuAlias.mjs', import.meta.url);
  return {
    label: adapter.isSoftware ? `SwiftShader (software), dawn.node` : `${name}, dawn.node`,
    software: adapter.isSoftware || adapter.isFallbackAdapter,
    bandwidthGBs: bw.gbPerSecond,
    bandwidthMethod: bw.method,
  };
}
