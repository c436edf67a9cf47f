/**
 * One bench job in its own process: one model variant on one backend (wasm or webgpu-node in this
 * process; chromium-webgpu in a headless Chromium page driven from here, see chromiumJob.ts);
 * our runtime, then (optionally) transformers.js on the same weights (measure.ts). Spawned by
 * scripts/bench.ts:
 *
 *   node --import tsx scripts/bench/job.ts SPEC.json
 *
 * Writes a JobResult (types.ts) to spec.resultPath. A fresh process per job keeps the wasm heap
 * and GPU memory of one model from affecting the next.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setupJobDevice } from './jobDevice';
import type { DeviceInfo, JobResult, JobSpec, ModelInfo } from './types';

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').slice(0, 300);
}

function fileBytes(paths: string[]): number {
  return paths.reduce((sum, path) => sum + statSync(path).size, 0);
}

const T0 = performance.now();
let partial: { path: string; result: JobResult } | undefined;

/** Logs a phase (HARK_BENCH_VERBOSE) and saves the result so far: a job killed at its time limit still reports it. */
function progress(message: string): void {
  if (process.env.HARK_BENCH_VERBOSE) process.stderr.write(`    [${((performance.now() - T0) / 1000).toFixed(1)} s] ${message}\n`);
  if (partial) {
    partial.result.phase = message;
    writeFileSync(partial.path, JSON.stringify(partial.result, null, 1));
  }
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as JobSpec;
  const { resultPath, ...specOut } = spec;
  const info = JSON.parse(readFileSync(join(spec.modelDir, 'bench.json'), 'utf8')) as ModelInfo;
  const files = info.variants[spec.precision];
  if (!files) throw new Error(`${spec.model} has no ${spec.precision} variant`);
  const root = files.fromRepoRoot ? spec.repoRoot : spec.modelDir;
  const g = info.geometry;
  const notes: string[] = info.noPeer ? [info.noPeer] : [];

  const gpuBackend = spec.backend === 'webgpu-node';
  const device: DeviceInfo =
    spec.backend === 'chromium-webgpu'
      ? { label: 'Chromium (adapter not read yet)', software: false, bandwidthGBs: Number.NaN, bandwidthMethod: '' } // set by the page
      : await setupJobDevice(spec.backend, progress);

  const decoderPaths = [join(root, files.decoder), ...files.decoderData.map((f) => join(root, files.decoder, '..', f))];
  const embedPaths = [join(root, files.embed), ...files.embedData.map((f) => join(root, files.embed, '..', f))];
  const decoderBytes = fileBytes(decoderPaths);
  const result: JobResult = {
    spec: specOut,
    device,
    loadMs: 0,
    weightBytes: decoderBytes + fileBytes(embedPaths),
    decoderBytes,
    kvBytesPerToken: 2 * g.numLayers * g.numKvHeads * g.headDim * 4,
    runs: [],
    warmupIds: [],
    ortThreads: 0,
    notes,
  };
  partial = { path: resultPath, result };

  if (spec.backend === 'chromium-webgpu') {
    const { measureInChromium } = await import('./chromiumJob');
    await measureInChromium(spec, result, progress);
  } else {
    // Everything that touches ORT is imported only now (after the alias), and all of it up front.
    // transformers.js picks its ORT when first imported, and our tokenizer imports it: share our
    // ORT with it before anything imports it.
    const { ort } = await import('../../src/engine/ortRuntime');
    const { configureOrtForNodeWebGpu } = await import('./nodeWebgpu');
    const { shareOrtWithTransformers } = await import('./peer');
    // Bundled (the GPU kit) ORT is the WebGPU build on every backend: it needs its binary named.
    if (gpuBackend || process.env.HARK_BENCH_BUNDLE_DIR) configureOrtForNodeWebGpu(ort.env);
    const read = async (path: string) => new Uint8Array(await readFile(path));
    const peerRecord = shareOrtWithTransformers(ort, read);
    const wasmPaths = ort.env.wasm.wasmPaths;
    await import('@huggingface/transformers');
    // On import transformers.js points ORT at a CDN copy of its wasm when none is set: undo
    // (offline, and the same binary as ours).
    ort.env.wasm.wasmPaths = wasmPaths;
    const { measure } = await import('./measure');
    result.ortThreads = ort.env.wasm.numThreads ?? 0;
    await measure(
      {
        ort,
        peerRecord,
        read,
        peerModelDir: spec.modelDir,
        backend: gpuBackend ? 'webgpu' : 'wasm',
        progress,
        log: (line) => process.stderr.write(`${line}\n`),
      },
      specOut,
      info,
      result,
    );
  }
  result.phase = 'done';
  writeFileSync(resultPath, JSON.stringify(result, null, 1));
}

main().then(
  () => process.exit(0), // dawn.node keeps the event loop alive
  (error: unknown) => {
    process.stderr.write(`bench job failed: ${errorText(error)}\n`);
    process.exit(1);
  },
);
