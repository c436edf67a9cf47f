/**
 * Where a decode step's time goes, GPU against wall: `npm run bench:gpu-time -- --model 7b`.
 *
 *   npm run bench:gpu-time [-- --model tiny|medium|7b|qwen3-4b|… --precision int4|fp32
 *                              --prompt 111 --steps 16 --pin --no-capture --feed-every-run]
 *
 * MODEL is a folder of .bench-cache built by `npm run bench` (or `models/build_bench_models.py`).
 * On WebGPU in Node (dawn.node; SwiftShader here, a real GPU in the GPU kit), after a prefill of a
 * random prompt, greedy decode steps run five times: untimed on the GPU (wall only), with ORT's own
 * compute passes timed, with every dispatch in a timed pass of its own, untimed again, and with the
 * CPU time of every WebGPU call timed (`apiTimer.ts`). Prints
 * per token: wall ms, GPU busy ms (the sum of pass durations), GPU span ms (first kernel's start to
 * last kernel's end) and the kernels by pipeline, GPU time and count — so a step is seen to be
 * GPU-bound (busy ≈ wall) or held back by the CPU side (busy ≪ wall). Greedy ids must agree across
 * the five runs (the timing only adds queries and pass boundaries): the script says if they do not.
 * The last table splits the CPU side: time inside WebGPU calls by call, the read-back wait, the rest.
 * Decode steps run as the engine runs them: graph-captured (llm/capturedStep.ts); `--no-capture`
 * runs them as ordinary runs, for the same table before capture; `--feed-every-run` hands every
 * captured run all its inputs (as `session.run` must), for the table before bound runs went feedless.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiTimer } from './apiTimer';
import { pinMainThreadApart, threadSchedNs } from './threadClock';
import { GpuTimer, type GpuTimerMode, type KernelTime } from './gpuTimer';
import { arg } from './hooksPair';
import { setupJobDevice } from './jobDevice';
import { loadOrtForNodeWebGpu } from './nodeOrt';
import type { ModelInfo } from './types';

const REPO = process.env.HARK_BENCH_REPO ?? new URL('../..', import.meta.url).pathname;
const CACHE = join(REPO, '.bench-cache');
const model = arg('model', 'tiny');
const precision = arg('precision', 'int4') as 'int4' | 'fp32';
const promptTokens = Number(arg('prompt', '111'));
const steps = Number(arg('steps', '16'));

interface ModeRun {
  mode: GpuTimerMode | 'api';
  wallMs: number[];
  ids: number[];
  kernels: KernelTime[];
}

const median = (values: number[]) => (values.length ? [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]! : Number.NaN);
const ms = (ns: number) => ns / 1e6;

/** Per step: the sum of kernel (or pass) durations and the span from first start to last end. */
function perStep(kernels: KernelTime[]): { busy: number[]; span: number[] } {
  const byStep = new Map<number, KernelTime[]>();
  for (const k of kernels) if (k.step >= 0) byStep.set(k.step, [...(byStep.get(k.step) ?? []), k]);
  const busy: number[] = [];
  const span: number[] = [];
  for (const list of byStep.values()) {
    busy.push(ms(list.reduce((sum, k) => sum + (k.endNs - k.startNs), 0)));
    span.push(ms(Math.max(...list.map((k) => k.endNs)) - Math.min(...list.map((k) => k.startNs))));
  }
  return { busy, span };
}

/**
 * Dawn rounds timestamps to 2^16 ns by default (a browser's guard against timing attacks): seen
 * here as kernel times in multiples of 65.5 µs, coarser than a real GPU's decode kernels. The
 * bench's own process may see exact ones.
 */
function exactTimestamps(): void {
  const flags = (process.env.HARK_DAWN_FLAGS ?? '').split(',').filter(Boolean);
  if (!flags.some((f) => f.includes('timestamp_quantization'))) flags.push('disable-dawn-features=timestamp_quantization');
  process.env.HARK_DAWN_FLAGS = flags.join(',');
}

/**
 * Per token: the CPU time inside each kind of WebGPU call, the wait for the read-back, and the rest
 * (ORT's own CPU time and the engine's JS). `untimed` are the runs without wrappers timing, for the
 * wrappers' own cost.
 */
function printApiTable(api: ApiTimer, run: ModeRun, untimed: ModeRun[]): void {
  const wall = run.wallMs.reduce((a, b) => a + b, 0) / steps;
  const untimedWall = untimed.map((r) => r.wallMs.reduce((a, b) => a + b, 0) / steps);
  const dispatches = (api.byCall.get('GPUComputePassEncoder.dispatchWorkgroups')?.calls ?? 0) / steps;
  const inApi = ms(api.totalNs()) / steps;
  const wait = ms(api.waitNs) / steps;
  const rest = wall - inApi - wait;
  const onCpu = api.thread.known ? ms(api.thread.onCpu) / steps : Number.NaN;
  const runnable = api.thread.known ? ms(api.thread.waiting) / steps : Number.NaN;
  console.log(`\nCPU time per token inside WebGPU calls (means over ${steps} steps; wall ${wall.toFixed(2)} ms with the wrappers timing, ${untimedWall.map((w) => w.toFixed(2)).join(' / ')} ms untimed; ${dispatches.toFixed(0)} dispatches):\n`);
  console.log('| call | calls per token | ms per token | µs each | share of wall |');
  console.log('| --- | --- | --- | --- | --- |');
  const row = (name: string, calls: string, msPerToken: number, each: string) =>
    console.log(`| ${name} | ${calls} | ${msPerToken.toFixed(3)} | ${each} | ${((100 * msPerToken) / wall).toFixed(1)} % |`);
  for (const [key, e] of [...api.byCall].sort((a, b) => b[1].ns - a[1].ns)) {
    row(key, (e.calls / steps).toFixed(1), ms(e.ns) / steps, (e.ns / e.calls / 1e3).toFixed(1));
  }
  row('**all WebGPU calls**', '', inApi, dispatches ? `${((1e3 * inApi) / dispatches).toFixed(1)} per dispatch` : '–');
  row('wait for the read-back (mapAsync → settled)', '', wait, '–');
  row('**the rest: ORT (wasm + JS) and the engine**', '', rest, dispatches ? `${((1e3 * rest) / dispatches).toFixed(1)} per dispatch` : '–');
  if (!api.thread.known) return;
  // The thread's own clock: what it cost on a CPU, with time runnable but descheduled apart.
  row("main thread on a CPU (Linux schedstat)", '', onCpu, dispatches ? `${((1e3 * onCpu) / dispatches).toFixed(1)} per dispatch` : '–');
  row('main thread runnable, waiting for a CPU', '', runnable, '–');
  row('main thread on a CPU outside WebGPU calls (ORT, engine)', '', onCpu - inApi, dispatches ? `${((1e3 * (onCpu - inApi)) / dispatches).toFixed(1)} per dispatch` : '–');
}

async function main(): Promise<void> {
  exactTimestamps();
  const device = await setupJobDevice('webgpu-node', () => {});
  const timer = new GpuTimer();
  timer.install();
  const api = new ApiTimer(threadSchedNs);
  api.install();
  await loadOrtForNodeWebGpu();
  const { openOurs, runOurs, tokenizerFolder } = await import('./ours');
  const { randomPrompt } = await import('./randomPrompt');
  const { argmax } = await import('../../src/engine/llm/sampling');

  const dir = join(CACHE, model);
  const info = JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8')) as ModelInfo;
  const files = info.variants[precision];
  if (!files) throw new Error(`${model} has no ${precision} variant`);
  const read = async (path: string) => new Uint8Array(await readFile(path));
  const capture = !process.argv.includes('--no-capture');
  const ours = await openOurs(read, files.fromRepoRoot ? REPO : dir, files, info, 'webgpu', join(REPO, tokenizerFolder(info)), true, capture);
  // --feed-every-run: every captured run gets all its feeds, as before runs went to the bound session without them.
  if (ours.capturedStep && process.argv.includes('--feed-every-run')) ours.capturedStep.feedsEveryRun = true;
  console.log(`decode steps graph-captured: ${ours.capture}${ours.capturedStep?.feedsEveryRun ? ', every run fed all its inputs (--feed-every-run)' : ''}`);
  const g = info.geometry;
  const prompt = randomPrompt(promptTokens, g.vocabSize);
  // Shaders for every shape the timed runs use: a short run, then the prompt itself.
  await runOurs(ours, prompt.slice(0, 16), 4, g.loraScale, g.maxPositions);
  await runOurs(ours, prompt, 3, g.loraScale, g.maxPositions);

  // With --pin the main thread gets a core of its own (SwiftShader's threads move to the others).
  if (process.argv.includes('--pin') && !pinMainThreadApart()) console.log('(--pin: could not pin the main thread)');
  const runs: ModeRun[] = [];
  for (const mode of ['off', 'pass', 'dispatch', 'off', 'api'] as const) {
    timer.mode = mode === 'api' ? 'off' : mode;
    const timing = mode === 'api';
    timer.step = -1;
    const embeds = await ours.embed(prompt);
    let { logits, cache } = await ours.decoder.step(embeds, ours.decoder.emptyCache(), g.loraScale);
    const ids = [argmax(logits)];
    const wallMs: number[] = [];
    api.reset();
    for (let i = 0; i < steps; i++) {
      timer.step = i;
      if (timing) api.begin();
      const started = performance.now();
      ({ logits, cache } = await ours.decoder.decodeStep(ids.at(-1)!, cache, g.loraScale));
      ids.push(argmax(logits));
      wallMs.push(performance.now() - started);
      if (timing) api.end();
    }
    cache.dispose();
    timer.mode = 'off';
    runs.push({ mode, wallMs, ids, kernels: await timer.collect() });
  }
  // A replay the engine found to differ from an ordinary run stops capture: say so, the times below are then ordinary steps.
  console.log(
    `captured decode steps: ${ours.decoder.capturedSteps} (${ours.capturedStep?.boundRuns ?? 0} run without feeds on the session's binding); capture failure: ${ours.decoder.captureFailure ?? 'none'}`,
  );
  await ours.release();

  const software = device.software ? ' (software: GPU times are SwiftShader on the CPU, no GPU claim)' : '';
  console.log(`GPU time per decode step, ${model} ${precision}, webgpu-node · ${device.label}${software}: ${promptTokens}-token prefill, then ${steps} greedy steps; medians per token\n`);
  console.log('| run | wall ms | GPU busy ms | GPU span ms | busy ÷ wall | timed passes |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const run of runs.filter((r) => r.mode !== 'api')) {
    const { busy, span } = perStep(run.kernels);
    const wall = median(run.wallMs);
    const timed = run.kernels.filter((k) => k.step >= 0).length / steps;
    const name = run.mode === 'off' ? 'untimed' : run.mode === 'pass' ? "ORT's passes timed" : 'one pass per dispatch';
    const cells = run.mode === 'off' ? ['–', '–', '–', '–'] : [median(busy).toFixed(2), median(span).toFixed(2), `${((100 * median(busy)) / wall).toFixed(0)} %`, String(timed)];
    console.log(`| ${name} | ${wall.toFixed(2)} | ${cells.join(' | ')} |`);
  }

  const split = runs.find((r) => r.mode === 'dispatch')!;
  const byLabel = new Map<string, { count: number; ns: number }>();
  for (const k of split.kernels) {
    if (k.step < 0) continue;
    const entry = byLabel.get(k.label) ?? { count: 0, ns: 0 };
    entry.count += 1;
    entry.ns += k.endNs - k.startNs;
    byLabel.set(k.label, entry);
  }
  const total = [...byLabel.values()].reduce((sum, e) => sum + e.ns, 0);
  console.log(`\nKernels per token (one pass per dispatch), by pipeline:\n`);
  console.log('| pipeline | dispatches | GPU ms | share | µs each |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const [label, e] of [...byLabel].sort((a, b) => b[1].ns - a[1].ns)) {
    console.log(`| ${label} | ${(e.count / steps).toFixed(1)} | ${ms(e.ns / steps).toFixed(3)} | ${((100 * e.ns) / total).toFixed(1)} % | ${(e.ns / e.count / 1e3).toFixed(1)} |`);
  }
  printApiTable(api, runs.find((r) => r.mode === 'api')!, runs.filter((r) => r.mode === 'off'));
  const same = runs.every((r) => JSON.stringify(r.ids) === JSON.stringify(runs[0]!.ids));
  console.log(`\nsame greedy ids in all five runs: ${same ? 'yes' : `NO (${runs.map((r) => r.ids.join(',')).join(' / ')})`}`);
  process.exit(same ? 0 : 1);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:gpu-time failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
