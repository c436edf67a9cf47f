/**
 * Ask a question about a WAV file from the command line, with the same engine the app runs
 * (onnxruntime-web's wasm backend in Node):
 *
 *   npm run ask -- recording.wav "What is happening here?"
 *   npm run ask -- recording.wav "Tell a story" --lora-scale 2 --max-new-tokens 120 --bundle owner/repo
 *
 * Streams the answer to stdout and prints timings to stderr.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { FsBundleStore, MemoryBundleStore } from '../src/engine/bundle/store';
import type { BundleSource } from '../src/engine/bundle/source';
import { HarkEngine } from '../src/engine/engine';
import { isHarkError } from '../src/engine/errors';

const DEFAULT_BUNDLE = resolve(import.meta.dirname, '..', 'models', 'bundles', 'salmonn-tiny');
const USAGE = `usage: npm run ask -- <audio.wav> "<question>" [options]
  --bundle DIR|URL|owner/repo   model bundle (default: the bundled tiny test model)
  --variant NAME                fp32 | int4 | fp16 | int4f16 (default: best for the CPU)
  --lora-scale X                LoRA scale (default: the bundle's alpha/rank)
  --max-new-tokens N            (default: the bundle's, 200 for SALMONN)
  --sample                      sample instead of greedy decoding
  --temperature X --top-p X --top-k N --repetition-penalty X --seed N
  --cache DIR                   where downloaded bundles are kept (default ~/.cache/hark)`;

function folderSource(dir: string): BundleSource {
  const walk = (d: string): string[] =>
    readdirSync(d).flatMap((name) => (statSync(join(d, name)).isDirectory() ? walk(join(d, name)) : [join(d, name)]));
  return { kind: 'files', files: new Map(walk(dir).map((p) => [relative(dir, p).split('\\').join('/'), new Blob([readFileSync(p)])])) };
}

const ms = (value: number) => `${value.toFixed(0)} ms`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      bundle: { type: 'string' },
      variant: { type: 'string' },
      'lora-scale': { type: 'string' },
      'max-new-tokens': { type: 'string' },
      sample: { type: 'boolean' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      'repetition-penalty': { type: 'string' },
      seed: { type: 'string' },
      cache: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length !== 2) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const [audioPath, question] = positionals as [string, string];
  if (!existsSync(audioPath)) {
    console.error(`ask: ${audioPath}: no such file`);
    return 2;
  }
  const bundleArg = values.bundle ?? DEFAULT_BUNDLE;
  const isFolder = existsSync(bundleArg) && statSync(bundleArg).isDirectory();
  const store = isFolder ? new MemoryBundleStore() : new FsBundleStore(values.cache ?? join(homedir(), '.cache', 'hark'));
  const engine = new HarkEngine({ store });
  const number = (key: keyof typeof values) => (values[key] === undefined ? undefined : Number(values[key]));

  const t0 = performance.now();
  const model = await engine.loadModel(isFolder ? folderSource(bundleArg) : bundleArg, {
    backend: 'wasm',
    variant: values.variant,
    onProgress: (e) => {
      if (e.status === 'progress_total' && !isFolder) process.stderr.write(`\rdownloading ${e.progress.toFixed(0)}%`);
    },
  });
  const loadMs = performance.now() - t0;
  console.error(`model: ${model.label} (${model.variant}, ${model.backend})${model.randomWeights ? ' — random weights: answers are meaningless' : ''}`);
  console.error(`prompts: ${model.prefill.summary}`);

  const audio = await engine.setAudio(new Uint8Array(readFileSync(audioPath)));
  const answer = await engine.ask(question, {
    loraScale: number('lora-scale'),
    maxNewTokens: number('max-new-tokens'),
    doSample: values.sample ? true : undefined,
    temperature: number('temperature'),
    topP: number('top-p'),
    topK: number('top-k'),
    repetitionPenalty: number('repetition-penalty'),
    seed: number('seed'),
    onToken: (event) => process.stdout.write(event.delta),
  });
  process.stdout.write('\n');
  const s = answer.stats;
  const t = audio.timings;
  console.error(
    [
      `load ${ms(loadMs)}`,
      `audio ${audio.durationSeconds.toFixed(2)} s in ${audio.chunks} chunk(s), decode ${ms(t.decodeMs)}`,
      `features ${ms(t.featuresMs)}`,
      // every audio graph the model's parts ran (encoder.whisper, adapter.whisper, connector, …)
      ...Object.entries(t.graphsMs).map(([graph, time]) => `${graph} ${ms(time)}`),
      `prefill ${s.promptTokens} tokens ${ms(s.prefillMs)}`,
      `time to first token ${ms(s.timeToFirstTokenMs)}`,
      `decode ${s.generatedTokens} tokens, ${s.decodeTokensPerSecond.toFixed(1)} tok/s (${s.stopReason})`,
    ].join('\n'),
  );
  await engine.unload();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(isHarkError(error) ? `ask: ${error.message}` : error);
    process.exit(1);
  },
);
