/**
 * One bench job in its own process: one model variant on one Node backend (wasm or webgpu-node);
 * our runtime, then (optionally) transformers.js on the same weights. Spawned by scripts/bench.ts:
 *
 *   node --import tsx scripts/bench/job.ts SPEC.json
 *
 * Writes a JobResult (types.ts) to spec.resultPath. A fresh process per job keeps the wasm heap
 * and GPU memory of one model from affecting the next.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { register } from 'node:module';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { measureCpuBandwidth, measureGpuBandwidth, type Bandwidth } from './bandwidth';
import { setupNodeWebGpu, withSwiftShaderFallback } from './nodeWebgpu';
import { createRng } from '../../src/engine/llm/sampling'; // imports nothing from ORT (the alias below must come first)
import type { DeviceInfo, JobResult, JobSpec, ModelInfo, PeerResult, RunTiming } from './types';

export const SHORT_PROMPT = 16;
export const SHORT_NEW_TOKENS = 4;

/** Prompt length for a decode context: 111 / 1000 (the prefill sizes reported), else fill up. */
export function promptLength(context: number, steps: number): number {
  if (context === 128) return 111;
  if (context === 1024) return 1000;
  return context - steps - 1;
}

/** Fixed pseudo-random token ids (mulberry32, seed 1234), avoiding the special ids 0-2. */
export function randomPrompt(length: number, vocab: number, seed = 1234): number[] {
  const next = createRng(seed);
  return Array.from({ length }, () => 3 + Math.floor(next() * (vocab - 3)));
}

function fileBytes(paths: string[]): number {
  return paths.reduce((sum, path) => sum + readFileSync(path).byteLength, 0);
}

function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s+/g, ' ').slice(0, 300);
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
  const notes: string[] = [];

  const gpuBackend = spec.backend === 'webgpu-node';
  let device: DeviceInfo;
  if (gpuBackend) {
    withSwiftShaderFallback();
    const adapter = await setupNodeWebGpu();
    progress('adapter');
    const bw: Bandwidth = await measureGpuBandwidth(navigator.gpu);
    progress('bandwidth');
    const name = [adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' ');
    device = {
      label: adapter.isSoftware ? `SwiftShader (software), dawn.node` : `${name}, dawn.node`,
      software: adapter.isSoftware || adapter.isFallbackAdapter,
      bandwidthGBs: bw.gbPerSecond,
      bandwidthMethod: bw.method,
    };
    // The engine imports plain 'onnxruntime-web': give it the WebGPU build, as the app's Vite alias does.
    register('./ortWebgpuAlias.mjs', import.meta.url);
  } else {
    const bw = measureCpuBandwidth();
    device = { label: `CPU (${cpus()[0]?.model.trim() ?? 'unknown'})`, software: false, bandwidthGBs: bw.gbPerSecond, bandwidthMethod: bw.method };
  }

  // Everything that touches ORT is imported only now (after the alias), and all of it up front.
  // transformers.js picks its ORT when first imported, and our tokenizer imports it: share our
  // ORT with it before anything imports it.
  const { ort } = await import('../../src/engine/ortRuntime');
  const { configureOrtForNodeWebGpu } = await import('./nodeWebgpu');
  const { shareOrtWithTransformers, openPeer } = await import('./peer');
  if (gpuBackend) configureOrtForNodeWebGpu(ort.env);
  const peerRecord = shareOrtWithTransformers(ort);
  const wasmPaths = ort.env.wasm.wasmPaths;
  const tjs = await import('@huggingface/transformers');
  // On import transformers.js points ORT at a CDN copy of its wasm when none is set: undo
  // (offline, and the same binary as ours).
  ort.env.wasm.wasmPaths = wasmPaths;
  const { openOurs, runOurs } = await import('./ours');
  const backend = gpuBackend ? 'webgpu' : 'wasm';

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
    ortThreads: ort.env.wasm.numThreads ?? 0,
    notes,
  };
  partial = { path: resultPath, result };

  try {
    const ours = await openOurs(root, files, info, backend, join(spec.repoRoot, 'models', 'tokenizer'));
    result.loadMs = ours.loadMs;
    progress('ours loaded');
    const longest = Math.max(SHORT_PROMPT, spec.loadOnlyPrompt ?? 0, ...spec.contexts.map((c) => promptLength(c, spec.steps)));
    const prompt = randomPrompt(longest, g.vocabSize);
    if (spec.loadOnly) {
      const n = spec.loadOnlyPrompt ?? SHORT_PROMPT;
      const run = await runOurs(ours, prompt.slice(0, n), 2, g.loraScale, g.maxPositions);
      result.runs.push({ context: n + 2, promptTokens: n, prefillMs: run.prefillMs, decodeSteps: run.decodeSteps, decodeMsPerToken: run.decodeMs / Math.max(1, run.decodeSteps), ids: run.ids });
      progress('ours one step');
    } else {
      // Warm-up (shader compilation on WebGPU); its ids are also the short-prompt parity check.
      const warmStart = performance.now();
      result.warmupIds = (await runOurs(ours, prompt.slice(0, SHORT_PROMPT), SHORT_NEW_TOKENS, g.loraScale, g.maxPositions)).ids;
      result.warmupMs = performance.now() - warmStart;
      progress('ours warm');
      for (const context of spec.contexts) {
        const n = promptLength(context, spec.steps);
        const run = await runOurs(ours, prompt.slice(0, n), spec.steps + 1, g.loraScale, g.maxPositions);
        const timing: RunTiming = {
          context,
          promptTokens: n,
          prefillMs: run.prefillMs,
          decodeSteps: run.decodeSteps,
          decodeMsPerToken: run.decodeMs / Math.max(1, run.decodeSteps),
          ids: run.ids,
        };
        result.runs.push(timing);
        progress(`ours context ${context}`);
        process.stderr.write(`  ${spec.model} ${spec.precision} ${spec.backend} ctx ${context}: prefill ${n} in ${run.prefillMs.toFixed(0)} ms, ${timing.decodeMsPerToken.toFixed(1)} ms/token\n`);
      }
    }
    await ours.release();

    if (spec.peer && info.peer && result.runs[0]) {
      const first = result.runs[0];
      const peer = await openPeer(ort, tjs, spec.modelDir, info.peer, spec.precision, backend, g.numLayers);
      progress('peer loaded');
      const warm = await peer.generate(prompt.slice(0, SHORT_PROMPT), SHORT_NEW_TOKENS);
      progress('peer warm');
      const timed = await peer.generate(prompt.slice(0, first.promptTokens), spec.steps + 1);
      await peer.release();
      const peerResult: PeerResult = {
        loadMs: peer.loadMs,
        prefillMs: timed.prefillMs,
        promptTokens: first.promptTokens,
        decodeSteps: timed.decodeSteps,
        decodeMsPerToken: timed.decodeMs / Math.max(1, timed.decodeSteps),
        ids: timed.ids,
        executionProviders: [...new Set(peerRecord.executionProviders)],
        presentLocation: [...peerRecord.presentLocations].join('+'),
        sameIdsShort: JSON.stringify(warm.ids) === JSON.stringify(result.warmupIds),
        sameIds: JSON.stringify(timed.ids) === JSON.stringify(first.ids),
      };
      const expected = backend === 'webgpu' ? 'gpu-buffer' : 'cpu';
      if (peerResult.executionProviders.join() !== backend || peerResult.presentLocation !== expected) {
        throw new Error(`transformers.js did not run on ${backend}: providers ${peerResult.executionProviders.join()}, presents on ${peerResult.presentLocation}`);
      }
      result.peer = peerResult;
    }
  } catch (error) {
    result.error = errorText(error);
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
