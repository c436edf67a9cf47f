/**
 * Two bench models' decode speed compared in one process, interleaved round by round, so the
 * drift of a machine (seen on the H200: the same 7B graph at 39.6 then 36.0 ms/token in two jobs)
 * hits both alike: `npm run bench:pair -- --a 7b --b 7b-nolora`.
 *
 *   npm run bench:pair [-- --a MODEL --b MODEL --backend webgpu-node|wasm --precision int4
 *                          --rounds 5 --steps 16 --prompt 111]
 *
 * MODEL is a folder of .bench-cache built by `npm run bench` (e.g. 7b, 7b-nolora, medium). Each
 * round: a fresh prefill of the same random prompt, then `steps` greedy decode steps, for A then
 * B (the order alternates between rounds); prints the median ms/token of each, B ÷ A, and whether
 * both gave the same ids where their weights agree. Both models are open at once (2 × 4.2 GB for
 * the 7B: a real GPU). One backend per process, like the other bench scripts.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { arg } from './hooksPair';
import { setupJobDevice } from './jobDevice';
import type { ModelInfo } from './types';

const REPO = process.env.HARK_BENCH_REPO ?? new URL('../..', import.meta.url).pathname;
const CACHE = join(REPO, '.bench-cache');
const a = arg('a', '7b');
const b = arg('b', '7b-nolora');
const backend = arg('backend', 'webgpu-node') as 'wasm' | 'webgpu-node';
const precision = arg('precision', 'int4') as 'int4' | 'fp32';
const rounds = Number(arg('rounds', '5'));
const steps = Number(arg('steps', '16'));
const promptTokens = Number(arg('prompt', '111'));

const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const device = await setupJobDevice(backend, () => {});
  const { ort } = await import('../../src/engine/ortRuntime');
  const { configureOrtForNodeWebGpu } = await import('./nodeWebgpu');
  if (backend === 'webgpu-node' || process.env.HARK_BENCH_BUNDLE_DIR) configureOrtForNodeWebGpu(ort.env);
  // Our tokenizer imports transformers.js, which picks its ORT and a CDN wasm path on import:
  // hand it ours first and undo the path, as job.ts does.
  const { shareOrtWithTransformers } = await import('./peer');
  shareOrtWithTransformers(ort, async (path) => new Uint8Array(await readFile(path)));
  const wasmPaths = ort.env.wasm.wasmPaths;
  await import('@huggingface/transformers');
  ort.env.wasm.wasmPaths = wasmPaths;
  const { openOurs, runOurs, tokenizerFolder } = await import('./ours');
  const { randomPrompt } = await import('./randomPrompt');
  const read = async (path: string) => new Uint8Array(await readFile(path));
  const engineBackend = backend === 'wasm' ? 'wasm' : 'webgpu';
  const openModel = async (name: string) => {
    const dir = join(CACHE, name);
    const info = JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8')) as ModelInfo;
    const files = info.variants[precision];
    if (!files) throw new Error(`${name} has no ${precision} variant`);
    const ours = await openOurs(read, files.fromRepoRoot ? REPO : dir, files, info, engineBackend, join(REPO, tokenizerFolder(info)));
    return { name, info, ours, ms: [] as number[], ids: [] as number[] };
  };
  // One after the other: ORT refuses to create two WebGPU sessions at once ("another WebGPU EP
  // inference session is being created", seen on the H200).
  const models = [await openModel(a)];
  models.push(await openModel(b));
  const g = models[0]!.info.geometry;
  const prompt = randomPrompt(promptTokens, g.vocabSize);
  for (const m of models) await runOurs(m.ours, prompt.slice(0, 16), 4, m.info.geometry.loraScale, m.info.geometry.maxPositions); // shaders
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? models : [...models].reverse();
    for (const m of order) {
      const run = await runOurs(m.ours, prompt, steps + 1, m.info.geometry.loraScale, m.info.geometry.maxPositions);
      m.ms.push(run.decodeMs / Math.max(1, run.decodeSteps));
      m.ids = run.ids;
    }
  }
  const [ma, mb] = models as [(typeof models)[0], (typeof models)[0]];
  console.log(`Interleaved decode, ${precision} on ${backend} · ${device.label}: ${rounds} rounds of a ${promptTokens}-token prefill + ${steps} steps, median ms/token\n`);
  console.log('| model | ms/token (median) | all rounds | × A |');
  console.log('| --- | --- | --- | --- |');
  for (const m of models) {
    console.log(`| ${m.name} | ${median(m.ms).toFixed(1)} | ${m.ms.map((x) => x.toFixed(1)).join(' / ')} | ${(median(m.ms) / median(ma.ms)).toFixed(3)} |`);
  }
  console.log(`\nsame greedy ids: ${JSON.stringify(ma.ids) === JSON.stringify(mb.ids) ? 'yes' : 'no (expected when the two graphs differ in weights)'}`);
  for (const m of models) await m.ours.release();
  process.exit(0);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:pair failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
