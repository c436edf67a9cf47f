/**
 * Random-weight decoder graphs for benchmarks that run the engine's DecoderRunner directly
 * (bench:hooks, bench:beams): models/build_bench_models.py --hooks-pair writes one model's
 * `embed_tokens` and its decoder without (`decoder_plain`) and with (`decoder_hooks`)
 * localization's probe output into .bench-cache/hooks/<model>-<precision>/, rebuilt when the
 * builders change.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;

export interface PairGeometry {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  hiddenSize: number;
  vocabSize: number;
  maxPositions: number;
  probeLayer: number;
}

/** The folder holding `model`'s pair at `precision` (built first if missing or stale). */
export function ensureHooksPair(model: string, precision: string): string {
  const folder = join(root, '.bench-cache/hooks', `${model}-${precision}`);
  // Rebuilt when the builder changed since (a stamp of the two builder files).
  const stamp = join(folder, 'geometry.json');
  const hash = createHash('sha256');
  for (const file of ['models/build_bench_models.py', 'models/salmonn/onnx_decoder.py']) hash.update(readFileSync(join(root, file)));
  const key = hash.digest('hex').slice(0, 16);
  const keyFile = join(folder, 'key');
  if (!existsSync(stamp) || !existsSync(keyFile) || readFileSync(keyFile, 'utf8') !== key) {
    process.stderr.write(`building the ${model} ${precision} decoders with and without the hook into ${folder} ...\n`);
    execFileSync('/usr/bin/python3', ['models/build_bench_models.py', '--hooks-pair', folder, '--model', model, '--precision', precision], { cwd: root, stdio: 'inherit' });
    writeFileSync(keyFile, key);
  }
  return folder;
}

/** `--name value` from the command line, or `fallback`. */
export function arg(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && process.argv[at + 1] ? process.argv[at + 1]! : fallback;
}

export type PairBackend = 'wasm' | 'webgpu-node';

/**
 * onnxruntime set up for `backend` in this process (one per process: on WebGPU the WebGPU build
 * of ORT is loaded by a module hook before the engine's modules are imported), with WebGPU call
 * counters installed there, and `open(folder, graph)` for a pair folder's graphs.
 */
export async function openPairBackend(backend: PairBackend) {
  let deviceLabel = 'CPU, onnxruntime-web wasm in Node';
  let counters: typeof import('./gpuCounters') | undefined;
  if (backend === 'webgpu-node') {
    const { setupNodeWebGpu, withSwiftShaderFallback } = await import('./nodeWebgpu');
    withSwiftShaderFallback();
    const adapter = await setupNodeWebGpu();
    counters = await import('./gpuCounters');
    counters.installGpuCounters();
    const { register } = await import('node:module');
    register('./ortWebgpuAlias.mjs', import.meta.url);
    deviceLabel = adapter.isSoftware || adapter.isFallbackAdapter ? 'SwiftShader (software: no GPU claim), dawn.node' : [adapter.vendor, adapter.architecture].join(' ');
  }
  const { ort, sessionOptions } = await import('../../src/engine/ortRuntime');
  if (backend === 'webgpu-node') (await import('./nodeWebgpu')).configureOrtForNodeWebGpu(ort.env);
  const engineBackend = backend === 'wasm' ? ('wasm' as const) : ('webgpu' as const);
  const bytes = (path: string) => new Uint8Array(readFileSync(path));
  const open = (folder: string, name: string, options: object) =>
    ort.InferenceSession.create(
      bytes(join(folder, `${name}.onnx`)),
      sessionOptions(engineBackend, { ...options, externalData: [{ path: `${name}.onnx_data`, data: bytes(join(folder, `${name}.onnx_data`)) }] }),
    );
  return { deviceLabel, counters, engineBackend, open };
}
