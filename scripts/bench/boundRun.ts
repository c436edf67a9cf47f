/**
 * What handing a captured decode step all its feeds costs per token:
 *
 *   npm run bench:bound-run [-- --model tiny|medium|7b|qwen3-4b --precision int4|fp32 --prompt 24 --steps 12 --pin]
 *
 * The engine's captured step (src/engine/llm/capturedStep.ts) makes a session's runs after its
 * first on the binding ORT made at that first run, without feeds (`sessionHandlerOf`); with its
 * `feedsEveryRun` switch every run gets all its inputs, as `session.run` requires. On one model,
 * prompt and cache (WebGPU in Node), after 4 steps that capture and check, the steps alternate
 * between the two, and the script times the captured session's run call — ORT's CPU work and its
 * WebGPU calls; the GPU's work is not waited for (the outputs stay on the GPU) — and the whole
 * step. A second conversation on the same prompt with every run fed must give the same greedy ids
 * (exit 1 otherwise). MODEL is a `.bench-cache` folder, as for bench:gpu-time.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { arg } from './hooksPair';
import { setupJobDevice } from './jobDevice';
import { loadOrtForNodeWebGpu } from './nodeOrt';
import { pinMainThreadApart } from './threadClock';
import type { ModelInfo } from './types';

const REPO = process.env.HARK_BENCH_REPO ?? new URL('../..', import.meta.url).pathname;
const model = arg('model', 'tiny');
const precision = arg('precision', 'int4') as 'int4' | 'fp32';
const promptTokens = Number(arg('prompt', '24'));
const steps = Number(arg('steps', '12'));
const WARM_STEPS = 4;

const median = (values: number[]) => (values.length ? [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]! : Number.NaN);

async function main(): Promise<void> {
  const device = await setupJobDevice('webgpu-node', () => {});
  await loadOrtForNodeWebGpu();
  const { openOurs, tokenizerFolder } = await import('./ours');
  const { randomPrompt } = await import('./randomPrompt');
  const { argmax } = await import('../../src/engine/llm/sampling');
  const { CapturedDecodeStep } = await import('../../src/engine/llm/capturedStep');

  // The run call, timed: the private method every captured run goes through (a bench may look inside).
  const proto = CapturedDecodeStep.prototype as unknown as Record<string, unknown>;
  const runBound = proto.runBound;
  if (typeof runBound !== 'function') throw new Error('CapturedDecodeStep has no runBound method to time');
  let callMs = 0;
  proto.runBound = async function timed(this: unknown, ...args: unknown[]) {
    const started = performance.now();
    try {
      return await (runBound as (...a: unknown[]) => Promise<void>).apply(this, args);
    } finally {
      callMs += performance.now() - started;
    }
  };

  const dir = join(REPO, '.bench-cache', model);
  const info = JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8')) as ModelInfo;
  const files = info.variants[precision];
  if (!files) throw new Error(`${model} has no ${precision} variant`);
  const read = async (path: string) => new Uint8Array(await readFile(path));
  const ours = await openOurs(read, files.fromRepoRoot ? REPO : dir, files, info, 'webgpu', join(REPO, tokenizerFolder(info)), true, true);
  const step = ours.capturedStep;
  if (!step) throw new Error(`decode steps are not captured: ${ours.capture}`);
  const g = info.geometry;
  const prompt = randomPrompt(promptTokens, g.vocabSize);
  if (process.argv.includes('--pin') && !pinMainThreadApart()) console.log('(--pin: could not pin the main thread)');

  /** A conversation of WARM_STEPS + steps greedy steps; `fed(i)`: whether step i hands all feeds. */
  const converse = async (fed: (i: number) => boolean) => {
    const timings = { fed: { call: [] as number[], wall: [] as number[] }, bound: { call: [] as number[], wall: [] as number[] } };
    let { logits, cache } = await ours.decoder.step(await ours.embed(prompt), ours.decoder.emptyCache(), g.loraScale);
    const ids = [argmax(logits)];
    for (let i = 0; i < WARM_STEPS + steps; i++) {
      step.feedsEveryRun = fed(i);
      callMs = 0;
      const started = performance.now();
      ({ logits, cache } = await ours.decoder.decodeStep(ids.at(-1)!, cache, g.loraScale));
      ids.push(argmax(logits));
      const wall = performance.now() - started;
      if (i >= WARM_STEPS) {
        const into = step.feedsEveryRun ? timings.fed : timings.bound;
        into.call.push(callMs);
        into.wall.push(wall);
      }
    }
    cache.dispose();
    step.feedsEveryRun = false;
    return { ids, timings };
  };

  const alternating = await converse((i) => i >= WARM_STEPS && i % 2 === 0);
  const boundRuns = step.boundRuns;
  const allFed = await converse(() => true);
  const same = JSON.stringify(alternating.ids) === JSON.stringify(allFed.ids);
  const { fed, bound } = alternating.timings;
  const feeds = step.boundFeeds;
  const saved = median(fed.call) - median(bound.call);
  console.log(
    `Captured step, all feeds every run vs later runs without feeds: ${model} ${precision}, webgpu-node · ${device.label}${device.software ? ' (software adapter)' : ''}; ` +
      `${promptTokens}-token prompt, ${WARM_STEPS} steps to capture and check, then ${steps} alternating; medians per token\n`,
  );
  console.log('| inputs per step | run call ms, all feeds | run call ms, without feeds | saved per token | per input | step wall ms, all feeds | without feeds |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  console.log(
    `| ${feeds} | ${median(fed.call).toFixed(3)} | ${median(bound.call).toFixed(3)} | ${saved.toFixed(3)} ms | ${((1000 * saved) / feeds).toFixed(1)} µs | ${median(fed.wall).toFixed(2)} | ${median(bound.wall).toFixed(2)} |`,
  );
  console.log(`\nruns without feeds: ${boundRuns}; capture failure: ${ours.decoder.captureFailure ?? 'none'}`);
  console.log(`same greedy ids as a conversation with every run fed: ${same ? 'yes' : `NO (${alternating.ids.join(',')} / ${allFed.ids.join(',')})`}`);
  await ours.release();
  process.exit(same && !ours.decoder.captureFailure ? 0 : 1);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:bound-run failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
