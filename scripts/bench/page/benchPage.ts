/**
 * The chromium-webgpu bench job's page (bench.html, served by chromiumJob.ts's Vite dev server):
 * the same measure.ts as the Node jobs, on the browser's WebGPU through the engine's own ORT set-up
 * (the WebGPU build, wasm served from our origin under /ort/, exactly as the app). Model files are
 * fetched from the bench machine through the server's `/bench-fs/<absolute path>` route.
 *
 * Progress goes out as console lines `[hark-bench] {"phase", "measured"}` (chromiumJob.ts saves
 * them, so a job stopped at its time limit still reports what it measured).
 */
import { configureOrt, ort } from '../../../src/engine/ortRuntime';
import { measureGpuBandwidth } from '../bandwidth';
import { ApiTimer } from '../apiTimer';
import { measureFloor, measureGpuResidentRuns, type FloorRow } from '../floor';
import type { Measured } from '../measure';
import { shareOrtWithTransformers } from '../peer';
import type { DeviceInfo, JobSpec, ModelInfo } from '../types';

export const PROGRESS_PREFIX = '[hark-bench] ';

export interface PageResult extends Measured {
  device: DeviceInfo;
  ortThreads: number;
}

declare global {
  interface Window {
    harkBench: {
      ready: boolean;
      run(spec: Omit<JobSpec, 'resultPath'>): Promise<PageResult>;
      /** The floor under a step (floor.ts) on the browser's WebGPU: `bench:breakdown -- --floor-only --chromium`. */
      floor(): Promise<{ device: DeviceInfo; rows: FloorRow[] }>;
    };
  }
}

configureOrt({ wasmBaseUrl: new URL('/ort/', location.origin).href });

const read = async (path: string): Promise<Uint8Array> => {
  const response = await fetch(`/bench-fs${path}`);
  if (!response.ok) throw new Error(`HTTP ${response.status} for ${path}`);
  return new Uint8Array(await response.arrayBuffer());
};

async function describeAdapter(): Promise<DeviceInfo> {
  const adapter = await navigator.gpu?.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('Chromium gave no WebGPU adapter (is --enable-unsafe-webgpu set?)');
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ');
  const software = /swiftshader|llvmpipe|lavapipe/i.test(name) || Boolean(info.isFallbackAdapter);
  const bw = await measureGpuBandwidth(navigator.gpu);
  return {
    label: /swiftshader/i.test(name) ? 'SwiftShader (software)' : name || 'unknown adapter',
    software,
    bandwidthGBs: bw.gbPerSecond,
    bandwidthMethod: bw.method,
  };
}

async function run(spec: Omit<JobSpec, 'resultPath'>): Promise<PageResult> {
  const out: PageResult = {
    device: { label: '?', software: false, bandwidthGBs: Number.NaN, bandwidthMethod: '' },
    ortThreads: ort.env.wasm.numThreads ?? 0,
    loadMs: 0,
    runs: [],
    warmupIds: [],
  };
  const progress = (phase: string) => console.log(PROGRESS_PREFIX + JSON.stringify({ phase, measured: out }));
  out.device = await describeAdapter();
  progress('bandwidth');
  const info = JSON.parse(new TextDecoder().decode(await read(`${spec.modelDir}/bench.json`))) as ModelInfo;
  // transformers.js picks its ORT when first imported (measure.ts imports it): share ours first.
  const peerRecord = shareOrtWithTransformers(ort, read);
  const wasmPaths = ort.env.wasm.wasmPaths;
  const { measure } = await import('../measure');
  ort.env.wasm.wasmPaths = wasmPaths; // transformers.js may point ORT at a CDN on import: keep our own files
  await measure(
    { ort, peerRecord, read, peerModelDir: `/bench-fs${spec.modelDir}/`, backend: 'webgpu', progress, log: (line) => console.log(line) },
    spec,
    info,
    out,
  );
  return out;
}

async function floor(): Promise<{ device: DeviceInfo; rows: FloorRow[] }> {
  const device = await describeAdapter();
  const api = new ApiTimer();
  api.install();
  return { device, rows: [...(await measureFloor(ort)), ...(await measureGpuResidentRuns(ort, { api }))] };
}

window.harkBench = { ready: true, run, floor };
