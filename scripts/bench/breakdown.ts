/**
 * Where a decode step's time goes, counted: `npm run bench:breakdown` runs the tiny bundle's fp32
 * decoder on WebGPU in Node (dawn.node; SwiftShader here, a real GPU where there is one) through
 * the engine's DecoderRunner, and prints per generated token: graph runs, compute dispatches
 * (kernels), queue submits, GPU buffers created, CPU→GPU writes, GPU→CPU read-backs (mapAsync)
 * and wall time — for the graph with and without the q|k|v fusion and for the fixed-capacity vs
 * the growing KV cache, so each lever of the decode loop is seen on its own; then the floor under a
 * step (scripts/bench/floor.ts: a GPU round trip, one graph run's fixed cost, one more kernel's).
 *
 *   npm run bench:breakdown [-- --steps 8 | --floor-only [--chromium | --pin]]
 *
 * The floor's GPU-resident rows also say how much of a run is inside WebGPU calls and (Node on
 * Linux) the main thread's own CPU time; `--pin` gives the main thread a core of its own first.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { register } from 'node:module';
import { join } from 'node:path';
import { installGpuCounters, onPipelineCreated, perUnit, snapshot, type GpuCounts } from './gpuCounters';
import { setupNodeWebGpu, withSwiftShaderFallback } from './nodeWebgpu';

const root = process.env.HARK_BENCH_REPO ?? new URL('../..', import.meta.url).pathname;
const bundle = join(root, 'models/bundles/salmonn-tiny');
const cache = join(root, '.bench-cache/breakdown');
const stepsArg = process.argv.indexOf('--steps');
const steps = stepsArg > 0 ? Number(process.argv[stepsArg + 1]) : 8;

/** The tiny decoder rebuilt without the q|k|v fusion (the graph before that change). */
function unfusedDecoder(): string {
  const path = join(cache, 'decoder_unfused.onnx');
  if (!existsSync(path)) {
    mkdirSync(cache, { recursive: true });
    execFileSync('/usr/bin/python3', ['models/build_bench_models.py', '--unfused-tiny-decoder', path], { cwd: root, stdio: 'inherit' });
  }
  return path;
}

interface Row {
  graph: string;
  kv: string;
  counts: GpuCounts;
  runs: number;
  msPerToken: number;
}

async function main(): Promise<void> {
  if (process.argv.includes('--floor-only')) return floorOnly();
  withSwiftShaderFallback();
  const adapter = await setupNodeWebGpu();
  installGpuCounters();
  // Bundled (the GPU kit), the alias was applied at bundle time.
  if (!process.env.HARK_BENCH_BUNDLE_DIR) register('./ortWebgpuAlias.mjs', import.meta.url);
  const { ort, sessionOptions } = await import('../../src/engine/ortRuntime');
  const { configureOrtForNodeWebGpu } = await import('./nodeWebgpu');
  const { DecoderRunner, decoderOutputLocations, embedOutputLocations } = await import('../../src/engine/llm/decoder');
  configureOrtForNodeWebGpu(ort.env);
  const manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8')) as { architecture: { llm: { numLayers: number; numKvHeads: number; headDim: number; hiddenSize: number; vocabSize: number; maxPositions: number } } };
  const llm = manifest.architecture.llm;
  const bytes = (path: string) => new Uint8Array(readFileSync(path));
  const embedTokens = await ort.InferenceSession.create(bytes(join(bundle, 'onnx/embed_tokens.onnx')), sessionOptions('webgpu', embedOutputLocations('webgpu')));
  const graphs = { fused: join(bundle, 'onnx/decoder_model_merged.onnx'), unfused: unfusedDecoder() };
  const rows: Row[] = [];
  const prompt = Float32Array.from({ length: 24 * llm.hiddenSize }, (_, i) => Math.sin(i) * 0.5);
  for (const [graph, path] of Object.entries(graphs)) {
    const dataName = path.endsWith('decoder_unfused.onnx') ? 'decoder_unfused.onnx_data' : 'decoder_model_merged.onnx_data';
    const session = await ort.InferenceSession.create(
      bytes(path),
      sessionOptions('webgpu', { ...decoderOutputLocations('webgpu', llm.numLayers), externalData: [{ path: dataName, data: bytes(join(path, '..', dataName)) }] }),
    );
    for (const kv of ['fixed', 'growing'] as const) {
      const runner = new DecoderRunner(session, llm, { backend: 'webgpu', embedTokens, maxPositions: llm.maxPositions, kvLayout: kv });
      // Warm-up (shader compilation) with the same shapes, then the counted steps.
      let { cache } = await runner.step(prompt, runner.emptyCache(), 4);
      for (let i = 0; i < 2; i++) ({ cache } = await runner.decodeStep(100 + i, cache, 4));
      const runsBefore = runner.runs;
      const before = snapshot();
      const newPipelines = new Map<string, number>();
      onPipelineCreated((descriptor) => {
        const label = (descriptor as { label?: string } | undefined)?.label || '(no label)';
        newPipelines.set(label, (newPipelines.get(label) ?? 0) + 1);
      });
      const started = performance.now();
      for (let i = 0; i < steps; i++) ({ cache } = await runner.decodeStep(200 + i, cache, 4));
      onPipelineCreated(undefined);
      if (newPipelines.size > 0) console.error(`${graph} q|k|v, ${kv} KV: pipelines compiled during the counted steps: ${[...newPipelines].map(([l, n]) => `${l} ×${n}`).join(', ')}`);
      const msPerToken = (performance.now() - started) / steps;
      rows.push({ graph, kv, counts: perUnit(before, snapshot(), steps), runs: (runner.runs - runsBefore) / steps, msPerToken });
      cache.dispose();
    }
    await session.release();
  }
  await embedTokens.release();
  const software = adapter.isSoftware || adapter.isFallbackAdapter;
  console.log(`Per generated token, tiny bundle fp32 decoder (${llm.numLayers} layers), WebGPU in Node on ${software ? 'SwiftShader (software: wall times are no GPU claim)' : [adapter.vendor, adapter.architecture].join(' ')}, ${steps} steps after a 24-token prompt:\n`);
  console.log('| graph | KV cache | graph runs | dispatches | submits | buffers created | CPU→GPU writes (bytes) | GPU→CPU read-backs | pipelines compiled | ms/token |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const c = r.counts;
    console.log(`| ${r.graph} q|k|v | ${r.kv} | ${r.runs} | ${c.dispatches} | ${c.submits} | ${c.createBuffer} | ${c.writeBuffer} (${Math.round(c.writeBufferBytes)}) | ${c.mapAsync} | ${c.createPipeline} | ${r.msPerToken.toFixed(1)} |`);
  }
  const { measureFloor, measureGpuResidentRuns, renderFloor } = await import('./floor');
  const floor = [...(await measureFloor(ort)), ...(await measureGpuResidentRuns(ort, await residentRunOptions()))];
  console.log(`\nThe floor under a step (scripts/bench/floor.ts), same device:\n\n${renderFloor(floor)}`);
  process.exit(0);
}

/** The floor tables alone (`--floor-only`): no model, seconds even on a software adapter. */
async function floorOnly(): Promise<void> {
  if (process.argv.includes('--chromium')) {
    const { floorInChromium } = await import('./chromiumJob');
    const { renderFloor } = await import('./floor');
    const { device, rows } = await floorInChromium(root);
    console.log(`Headless Chromium, WebGPU on ${device}:\n\n${renderFloor(rows)}`);
    process.exit(0);
  }
  withSwiftShaderFallback();
  await setupNodeWebGpu();
  if (!process.env.HARK_BENCH_BUNDLE_DIR) register('./ortWebgpuAlias.mjs', import.meta.url);
  const { ort } = await import('../../src/engine/ortRuntime');
  const { configureOrtForNodeWebGpu } = await import('./nodeWebgpu');
  configureOrtForNodeWebGpu(ort.env);
  const { measureFloor, measureGpuResidentRuns, renderFloor } = await import('./floor');
  console.log(renderFloor([...(await measureFloor(ort)), ...(await measureGpuResidentRuns(ort, await residentRunOptions()))]));
  process.exit(0);
}

/**
 * The GPU-resident floor runs with their WebGPU calls timed and the main thread's own clock; with
 * `--pin`, the main thread gets CPU 0 to itself (SwiftShader's threads move to the others).
 */
async function residentRunOptions(): Promise<import('./floor').ResidentRunOptions> {
  const { ApiTimer } = await import('./apiTimer');
  const { pinMainThreadApart, threadSchedNs } = await import('./threadClock');
  const api = new ApiTimer(threadSchedNs);
  api.install();
  const pin = process.argv.includes('--pin');
  return { api, ...(pin ? { beforeTiming: () => void pinMainThreadApart() } : {}) };
}

await main();
