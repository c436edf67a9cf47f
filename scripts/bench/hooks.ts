/**
 * What localization's hook costs an answer: `npm run bench:hooks` builds two decoders with the
 * same random weights (models/build_bench_models.py --hooks-pair): one without and one with the
 * `probe_hidden` output that localization reads (the residual entering the first probed layer),
 * and times greedy decode steps of both through the engine's DecoderRunner, interleaved round by
 * round so that the machine's drift hits both alike. On WebGPU it also counts dispatches and
 * GPU→CPU read-backs per token, which do not drift.
 *
 *   npm run bench:hooks [-- --models tiny,medium --backend wasm|webgpu-node --precision int4 --steps 32 --rounds 5]
 *
 * One backend per process (the WebGPU build of ORT is loaded by a module hook before any import).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { arg, ensureHooksPair, openPairBackend, type PairGeometry as Geometry } from './hooksPair';

const models = arg('models', 'tiny,medium').split(',');
const backend = arg('backend', 'wasm') as 'wasm' | 'webgpu-node';
const precision = arg('precision', 'int4');
const rounds = Number(arg('rounds', '5'));
const promptTokens = Number(arg('prompt', '120'));

interface Row {
  model: string;
  plainMs: number[];
  hooksMs: number[];
  plainDispatches?: number;
  hooksDispatches?: number;
  plainReadbacks?: number;
  hooksReadbacks?: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const { deviceLabel, counters, engineBackend, open } = await openPairBackend(backend);
  const { DecoderRunner, decoderOutputLocations, embedOutputLocations } = await import('../../src/engine/llm/decoder');

  const rows: Row[] = [];
  for (const model of models) {
    const folder = ensureHooksPair(model, precision);
    const geometry = JSON.parse(readFileSync(join(folder, 'geometry.json'), 'utf8')) as Geometry;
    const steps = Number(arg('steps', model === 'tiny' ? '64' : backend === 'wasm' ? '24' : '8'));
    const embedTokens = await open(folder, 'embed_tokens', embedOutputLocations(engineBackend));
    const runners = {
      plain: new DecoderRunner(await open(folder, 'decoder_plain', decoderOutputLocations(engineBackend, geometry.numLayers)), geometry, { backend: engineBackend, embedTokens, maxPositions: geometry.maxPositions, maxChunk: 31 }),
      hooks: new DecoderRunner(await open(folder, 'decoder_hooks', decoderOutputLocations(engineBackend, geometry.numLayers)), geometry, { backend: engineBackend, embedTokens, maxPositions: geometry.maxPositions, maxChunk: 31 }),
    };
    if (!runners.hooks.hasProbeHidden || runners.plain.hasProbeHidden) throw new Error('the hooks pair is not what it should be: rebuild .bench-cache/hooks');
    const prompt = Float32Array.from({ length: promptTokens * geometry.hiddenSize }, (_, i) => Math.sin(i * 0.37) * 0.5);
    const row: Row = { model, plainMs: [], hooksMs: [] };
    const timeOne = async (which: 'plain' | 'hooks', counted: boolean) => {
      const runner = runners[which];
      let { cache } = await runner.step(prompt, runner.emptyCache(), 4);
      ({ cache } = await runner.decodeStep(100, cache, 4)); // warm-up of the one-token shapes
      const before = counters?.snapshot();
      const started = performance.now();
      for (let i = 0; i < steps; i++) ({ cache } = await runner.decodeStep(200 + i, cache, 4));
      const ms = (performance.now() - started) / steps;
      if (counted && counters && before) {
        const per = counters.perUnit(before, counters.snapshot(), steps);
        row[`${which}Dispatches`] = per.dispatches;
        row[`${which}Readbacks`] = per.mapAsync;
      }
      cache.dispose();
      return ms;
    };
    await timeOne('plain', false); // compile shaders / warm the wasm tiers for both before timing
    await timeOne('hooks', false);
    for (let r = 0; r < rounds; r++) {
      const order: ('plain' | 'hooks')[] = r % 2 === 0 ? ['plain', 'hooks'] : ['hooks', 'plain'];
      for (const which of order) row[`${which}Ms`].push(await timeOne(which, r === 0));
    }
    rows.push(row);
    process.stderr.write(`${model}: plain ${row.plainMs.map((v) => v.toFixed(2)).join(' ')} | hooks ${row.hooksMs.map((v) => v.toFixed(2)).join(' ')} ms/token\n`);
    await embedTokens.release();
  }

  console.log(`Decode cost of localization's hook (probe_hidden output, not fetched while answering), ${precision}, ${deviceLabel}; ${promptTokens}-token prompt, then greedy steps; median of ${rounds} interleaved rounds:\n`);
  console.log('| model | without hook (tokens/s) | with hook (tokens/s) | cost | dispatches/token (without → with) | GPU→CPU read-backs/token (without → with) |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const plain = median(r.plainMs);
    const hooks = median(r.hooksMs);
    const cost = (1 - plain / hooks) * 100;
    const gpu = r.plainDispatches === undefined ? '–' : `${r.plainDispatches} → ${r.hooksDispatches}`;
    const reads = r.plainReadbacks === undefined ? '–' : `${r.plainReadbacks} → ${r.hooksReadbacks}`;
    console.log(`| ${r.model} | ${(1000 / plain).toFixed(1)} | ${(1000 / hooks).toFixed(1)} | ${cost >= 0 ? '' : '−'}${Math.abs(cost).toFixed(1)} % | ${gpu} | ${reads} |`);
  }
  process.exit(0);
}

await main();
