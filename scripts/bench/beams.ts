/**
 * What beam search costs against greedy decoding: `npm run bench:beams` runs the engine's own
 * generation loop (generate() → beamSearch.ts for more than one beam) on random-weight decoders
 * (the `decoder_plain` graphs of models/build_bench_models.py --hooks-pair), after the same
 * prompt, for 1, 2 and 4 beams, interleaved round by round so that the machine's drift hits all
 * alike. Stop ids are off, so every run makes the same number of steps. On WebGPU it also counts
 * dispatches, GPU→CPU read-backs and KV row copies per step (those do not drift).
 *
 *   npm run bench:beams [-- --models tiny,medium --backend wasm|webgpu-node --precision int4 --tokens 24 --rounds 3 --beams 1,2,4]
 *
 * One backend per process (the WebGPU build of ORT is loaded by a module hook before any import).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { arg, ensureHooksPair, openPairBackend, type PairGeometry } from './hooksPair';

const root = new URL('../..', import.meta.url).pathname;

const models = arg('models', 'tiny,medium').split(',');
const backend = arg('backend', 'wasm') as 'wasm' | 'webgpu-node';
const precision = arg('precision', 'int4');
const rounds = Number(arg('rounds', '3'));
const promptTokens = Number(arg('prompt', '120'));
const beamCounts = arg('beams', '1,2,4').split(',').map(Number);

interface Cell {
  msPerStep: number[];
  msPerAnswer: number[];
  dispatches?: number;
  readbacks?: number;
  copies?: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const { deviceLabel, counters, engineBackend, open } = await openPairBackend(backend);
  // KV row copies (beam reordering) are queue copies, not dispatches: counted apart.
  let copies = 0;
  const encoder = (globalThis as unknown as { GPUCommandEncoder?: { prototype: { copyBufferToBuffer: (...a: unknown[]) => unknown } } }).GPUCommandEncoder?.prototype;
  if (encoder) {
    const original = encoder.copyBufferToBuffer;
    encoder.copyBufferToBuffer = function (this: unknown, ...a: unknown[]) {
      copies += 1;
      return original.apply(this, a);
    };
  }
  const copyCount = () => copies;
  const { DecoderRunner, decoderOutputLocations, embedOutputLocations } = await import('../../src/engine/llm/decoder');
  const { generate } = await import('../../src/engine/llm/generate');
  const { createTokenizer } = await import('../../src/engine/llm/tokenizer');
  const tokenizerDir = join(root, 'models/bundles/salmonn-tiny');
  const json = (name: string) => JSON.parse(readFileSync(join(tokenizerDir, name), 'utf8')) as object;
  const tokenizer = createTokenizer(json('tokenizer.json'), json('tokenizer_config.json'));

  const table: { model: string; tokens: number; cells: Map<number, Cell> }[] = [];
  for (const model of models) {
    const folder = ensureHooksPair(model, precision);
    const geometry = JSON.parse(readFileSync(join(folder, 'geometry.json'), 'utf8')) as PairGeometry;
    const tokens = Number(arg('tokens', model === 'tiny' ? '32' : backend === 'wasm' ? '12' : '8'));
    const embedTokens = await open(folder, 'embed_tokens', embedOutputLocations(engineBackend));
    const decoder = new DecoderRunner(await open(folder, 'decoder_plain', decoderOutputLocations(engineBackend, geometry.numLayers)), geometry, {
      backend: engineBackend, embedTokens, maxPositions: geometry.maxPositions, maxChunk: 31,
    });
    const prompt = Float32Array.from({ length: promptTokens * geometry.hiddenSize }, (_, i) => Math.sin(i * 0.37) * 0.5);
    const cells = new Map<number, Cell>(beamCounts.map((b) => [b, { msPerStep: [], msPerAnswer: [] }]));
    const runOnce = async (beams: number, counted: boolean) => {
      // Counted from the first token on: the prompt's runs are the same for every beam count.
      let before: ReturnType<NonNullable<typeof counters>['snapshot']> | undefined;
      let copiesBefore = 0;
      const result = await generate({
        decoder, tokenizer, prefill: prompt, cache: decoder.emptyCache(), maxPositions: geometry.maxPositions,
        onToken: () => {
          if (before || !counters) return;
          before = counters.snapshot();
          copiesBefore = copyCount();
        },
        params: { maxNewTokens: tokens, stopTokenIds: [], loraScale: 4, doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0, numBeams: beams, lengthPenalty: 1 },
      });
      result.cache.dispose();
      const steps = Math.max(1, tokens - 1);
      const cell = cells.get(beams)!;
      if (counted && counters && before) {
        const per = counters.perUnit(before, counters.snapshot(), steps);
        cell.dispatches = per.dispatches;
        cell.readbacks = per.mapAsync;
        cell.copies = (copyCount() - copiesBefore) / steps;
      }
      return { step: result.stats.decodeMs / steps, answer: result.stats.totalMs };
    };
    for (const beams of beamCounts) await runOnce(beams, false); // compile shaders / warm the wasm tiers
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? beamCounts : [...beamCounts].reverse();
      for (const beams of order) {
        const { step, answer } = await runOnce(beams, r === 0);
        cells.get(beams)!.msPerStep.push(step);
        cells.get(beams)!.msPerAnswer.push(answer);
      }
    }
    process.stderr.write(`${model}: ${[...cells].map(([b, c]) => `${b} beams ${c.msPerStep.map((v) => v.toFixed(1)).join(' ')} ms/step`).join(' | ')}\n`);
    table.push({ model, tokens, cells });
    await embedTokens.release();
  }

  console.log(`Beam search against greedy decoding (generate() of the engine), ${precision}, ${deviceLabel}; ${promptTokens}-token prompt, then N new tokens with stop ids off; median of ${rounds} interleaved rounds:\n`);
  console.log('| model | beams | N | ms per step | × greedy per step | ms per answer (prompt included) | dispatches/step | read-backs/step | KV row copies/step |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const { model, tokens, cells } of table) {
    const greedy = median(cells.get(beamCounts[0]!)!.msPerStep);
    for (const [beams, cell] of cells) {
      const step = median(cell.msPerStep);
      const fmt = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(1));
      console.log(`| ${model} | ${beams} | ${tokens} | ${step.toFixed(2)} | ${(step / greedy).toFixed(2)} | ${median(cell.msPerAnswer).toFixed(0)} | ${fmt(cell.dispatches)} | ${fmt(cell.readbacks)} | ${fmt(cell.copies)} |`);
    }
  }
  process.exit(0);
}

await main();
