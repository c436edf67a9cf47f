/**
 * What unpacking int4 weights at load (src/engine/int4Unpack.ts) gives the whole engine on
 * WebAssembly, as a user of a bundle meets it:
 *
 *   npm run bench:wasm-unpack [-- --bundle models/bundles/salmonn-tiny --rounds 3 --tokens 400]
 *
 * Loads the bundle's int4 variant with the engine (`HarkEngine`, wasm) with its weights unpacked
 * and packed, alternating A B A B… in one process, and per load: the load time, listening to the
 * golden speech clip, and a greedy answer of up to `--tokens` tokens (its ms per token). Prints a
 * table of medians; exits 1 unless both ways answer with the same tokens.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine } from '../../src/engine/engine';
import { tinyBundleFiles } from '../../test/helpers/tinyBundle';
import { arg } from './hooksPair';

const REPO = new URL('../..', import.meta.url).pathname;
const bundle = arg('bundle', 'models/bundles/salmonn-tiny');
const rounds = Number(arg('rounds', '3'));
const tokens = Number(arg('tokens', '400'));
const QUESTION = 'Tell me a long story.';
const wav = new Uint8Array(readFileSync(join(REPO, 'models/golden/audio/speech.wav')));

interface Sample {
  loadMs: number;
  listenMs: number;
  msPerToken: number;
  tokens: number;
  ids: number[];
  unpacked: string;
}

async function once(unpackInt4: boolean): Promise<Sample> {
  const engine = new HarkEngine({ store: new MemoryBundleStore(), unpackInt4 });
  try {
    const info = await engine.loadModel(tinyBundleFiles(join(REPO, bundle)), { backend: 'wasm', variant: 'int4' });
    let started = performance.now();
    await engine.setAudio(wav);
    const listenMs = performance.now() - started;
    started = performance.now();
    const answer = await engine.ask(QUESTION, { maxNewTokens: tokens, doSample: false });
    const u = info.decode.int4Unpacked;
    return {
      loadMs: info.loadMs,
      listenMs,
      msPerToken: answer.stats.decodeTokensPerSecond > 0 ? 1000 / answer.stats.decodeTokensPerSecond : Number.NaN,
      tokens: answer.ids.length,
      ids: answer.ids,
      unpacked: u ? `${u.matmuls} matrices, ${(u.fp32Bytes / 2 ** 20).toFixed(1)} MiB in ${u.ms.toFixed(0)} ms` : 'nothing',
    };
  } finally {
    await engine.unload();
  }
}

const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const samples: Record<'unpacked' | 'packed', Sample[]> = { unpacked: [], packed: [] };
  await once(true); // warm-up: ORT's wasm compiled, files read once
  for (let round = 0; round < rounds; round++) {
    for (const way of ['unpacked', 'packed'] as const) samples[way].push(await once(way === 'unpacked'));
  }
  console.log(`${bundle}, int4 on wasm, ${rounds} rounds (A B alternating), “${QUESTION}” up to ${tokens} tokens; medians\n`);
  console.log('| int4 weights | load ms | listen ms (speech clip) | decode ms/token | tokens | unpacked at load |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const [way, list] of Object.entries(samples)) {
    console.log(`| ${way} | ${median(list.map((s) => s.loadMs)).toFixed(0)} | ${median(list.map((s) => s.listenMs)).toFixed(0)} | ${median(list.map((s) => s.msPerToken)).toFixed(2)} | ${list[0]!.tokens} | ${list[0]!.unpacked} |`);
  }
  const reference = samples.packed[0]!.ids.join();
  const same = [...samples.unpacked, ...samples.packed].every((s) => s.ids.join() === reference);
  console.log(`\nsame tokens both ways: ${same ? 'yes' : 'NO'}`);
  process.exit(same ? 0 : 1);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:wasm-unpack failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
