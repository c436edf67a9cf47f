/**
 * `npm run bench`: decode/prefill speed of our runtime (DecoderRunner + generate) against
 * transformers.js on the same weights, per model variant and backend, and time to first token of
 * a 30 s clip with SALMONN's audio side at real geometry. Prints markdown tables.
 *
 *   npm run bench                      # full: tiny + medium on wasm, webgpu-node and chromium-webgpu;
 *                                      #   7B geometry on webgpu-node (load + one decoder step, then stop);
 *                                      #   encoders (time to first token, 30 s clip) on wasm and webgpu-node
 *   npm run bench -- --quick           # tiny + medium, wasm + webgpu-node, short runs (< 4 min on 2 cores);
 *                                      #   no chromium-webgpu (SwiftShader in Chromium compiles shaders for
 *                                      #   minutes per model) and no encoders: name them to add them
 *   npm run bench -- --models tiny,medium --backends wasm --precisions int4 --out bench.md
 *   npm run bench -- --models tiny --backends chromium-webgpu --precisions int4
 *   npm run bench -- --models encoders --backends wasm   # time to first token only
 *   npm run bench -- --13b             # also Vicuna-13B geometry (8.6 GB of int4 data, webgpu-node)
 *
 * --models: tiny, medium, 7b, 7b-nolora (no LoRA path: a merged LoRA's cost), 13b, qwen3-4b (ALARM's
 *   Qwen3-4B geometry: q/k norm, tied head, no LoRA; big like the 7B, but it also fits wasm's heap; its
 *   transformers.js peer runs on WebGPU only), qwen3-medium (a small Qwen3 with the real vocabulary, int4, with a peer),
 *   encoders (the audio side: Whisper-large-v2 encoder, BEATs and
 *   the window Q-Former at real geometry, built by models/build_bench_encoders.py; int4 unless
 *   --precisions names others: fp32 Whisper-large is 2.5 GB).
 * --backends: wasm, webgpu-node (dawn.node), chromium-webgpu (headless Chromium; decoders only).
 * Other flags: --steps N (decode steps timed), --contexts 128,1024,2048, --no-peer,
 * --no-unpack (wasm: run int4 weights packed, unpacked by MatMulNBits on every run, instead of
 *   unpacked to fp32 once at load as the engine does: the comparison point of src/engine/int4Unpack.ts),
 * --job-limit S (seconds per job; --quick gives webgpu-node jobs 60 s, else 15 min; chromium-webgpu
 * 20 min; 7B/13B and encoders 30 min), --big-prompt N (tokens of the 7B/13B jobs' one decoder step, default 1),
 * --big-measure (time the 7B/13B/Qwen3-4B like the others, prefill + decode per context: for a real GPU,
 *   or qwen3-4b on wasm),
 * --encode-runs N (encodes of the 30 s clip; default 1 on wasm, 2 on WebGPU, the last reported),
 * --ttft-prefill (run the 7B prefill of the 30 s prompt on a software adapter too; by default it
 * runs only on a real GPU: on SwiftShader it takes far longer than a job limit),
 * --encoders-as-built (use .bench-cache/encoders as it is, even a build stopped before Whisper-large,
 * whose missing stages are left out; never rebuild).
 * --quick runs WebGPU for int4 only, tiny at contexts 128/1k, medium at 128.
 * Graphs are built into .bench-cache/ by models/build_bench_models.py (decoders) and
 * models/build_bench_encoders.py (audio side) when missing or when their sources changed. Each
 * (model, precision, backend) runs in its own process (job.ts, encoderJob.ts).
 * See README.md "Benchmarks" and BENCHMARKS.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderEncoderTable, renderLegend, renderTable } from './bench/table';
import type { BenchBackend, EncoderInfo, EncoderJobResult, EncoderJobSpec, JobResult, JobSpec, ModelInfo, Precision } from './bench/types';

// HARK_BENCH_REPO: the repository when this file runs bundled elsewhere (the GPU kit, scripts/bench/gpuKit.ts).
const REPO = process.env.HARK_BENCH_REPO ?? join(dirname(fileURLToPath(import.meta.url)), '..');
/** The GPU kit's folder of bundled job scripts (job.mjs, encoderJob.mjs): jobs run without tsx there. */
const BUNDLED_JOBS = process.env.HARK_BENCH_BUNDLE_DIR;
const CACHE = join(REPO, '.bench-cache');
const PYTHON = process.env.HARK_PYTHON ?? '/usr/bin/python3';
const BUILDER_SOURCES = [
  'models/build_bench_models.py',
  'models/salmonn/onnx_decoder.py',
  'models/salmonn/int4.py',
  'models/salmonn/llama.py',
  'models/alarm/qwen3.py', // Qwen3Config: qwen3-4b's geometry
];
const ENCODER_SOURCES = [
  'models/build_bench_encoders.py',
  'models/salmonn/whisper.py',
  'models/salmonn/beats.py',
  'models/salmonn/connector.py',
  'models/salmonn/export.py',
  'models/salmonn/int4.py',
  'models/salmonn/onnx_decoder.py',
  'models/salmonn/bundle.py',
];
const BIG_MODELS = new Set(['7b', '7b-nolora', '13b', 'qwen3-4b']);
/** Big models that also run on wasm: Qwen3-4B's 2.5 GB of int4 data fits its 4 GB heap (the 7B's 4.2 GB does not). */
const BIG_ON_WASM = new Set(['qwen3-4b']);
/** The pseudo-model of --models for the audio side at real geometry (time to first token, 30 s clip). */
const ENCODERS = 'encoders';

interface Options {
  quick: boolean;
  models: string[];
  backends: BenchBackend[];
  precisions: Precision[];
  steps?: number;
  contexts?: number[];
  peer: boolean;
  out?: string;
  explicitPrecisions: boolean;
  /** Per-job time limit in seconds (--job-limit). */
  jobLimitS?: number;
  /** Measure the 7B/13B geometry like the others (prefill + decode per context) instead of load + one step (--big-measure: a real GPU). */
  bigMeasure: boolean;
  /** Prompt tokens of the 7B/13B jobs' one decoder step (--big-prompt, 1 to 31). */
  bigPrompt: number;
  /** Encodes of the 30 s clip per encoders job (--encode-runs; default 1 on wasm, 2 on WebGPU). */
  encodeRuns?: number;
  /** Run the 7B prefill of the time-to-first-token job even on a software adapter (--ttft-prefill). */
  ttftPrefillOnSoftware: boolean;
  /** Use .bench-cache/encoders as it is, even a partial build, and never rebuild it (--encoders-as-built). */
  encodersAsBuilt: boolean;
  /** wasm: unpack int4 weights to fp32 at load, as the engine does (--no-unpack: false). */
  unpackInt4: boolean;
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    quick: false,
    models: [],
    backends: [],
    precisions: ['fp32', 'int4'],
    peer: true,
    explicitPrecisions: false,
    bigPrompt: 1,
    bigMeasure: false,
    ttftPrefillOnSoftware: false,
    encodersAsBuilt: false,
    unpackInt4: true,
  };
  let models: string[] | undefined;
  let backends: BenchBackend[] | undefined;
  let with13b = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--quick') options.quick = true;
    else if (arg === '--13b') with13b = true;
    else if (arg === '--no-peer') options.peer = false;
    else if (arg === '--no-unpack') options.unpackInt4 = false;
    else if (arg === '--models') models = value().split(',');
    else if (arg === '--backends') backends = value().split(',') as BenchBackend[];
    else if (arg === '--precisions') {
      options.precisions = value().split(',') as Precision[];
      options.explicitPrecisions = true;
    }
    else if (arg === '--steps') options.steps = Number(value());
    else if (arg === '--contexts') options.contexts = value().split(',').map(Number);
    else if (arg === '--out') options.out = value();
    else if (arg === '--job-limit') options.jobLimitS = Number(value());
    else if (arg === '--big-prompt') options.bigPrompt = Number(value());
    else if (arg === '--big-measure') options.bigMeasure = true;
    else if (arg === '--encode-runs') options.encodeRuns = Number(value());
    else if (arg === '--ttft-prefill') options.ttftPrefillOnSoftware = true;
    else if (arg === '--encoders-as-built') options.encodersAsBuilt = true;
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*|^ \* ?/gm, '') + '\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${arg} (see --help)`);
  }
  options.models = models ?? (options.quick ? ['tiny', 'medium'] : ['tiny', 'medium', '7b', ENCODERS]);
  if (with13b && !options.models.includes('13b')) options.models.push('13b');
  if (!Number.isInteger(options.bigPrompt) || options.bigPrompt < 1 || options.bigPrompt > 31) {
    throw new Error('--big-prompt must be 1 to 31 tokens (one decoder run, no chunking)');
  }
  // chromium-webgpu is left out of --quick: SwiftShader in Chromium compiles the first run's
  // shaders for minutes per model, which does not fit the quick run's 4 minutes here.
  options.backends = backends ?? (options.quick ? ['wasm', 'webgpu-node'] : ['wasm', 'webgpu-node', 'chromium-webgpu']);
  for (const b of options.backends) {
    if (!['wasm', 'webgpu-node', 'chromium-webgpu'].includes(b)) throw new Error(`unknown backend ${b}`);
  }
  return options;
}

function builderKey(model: string): string {
  const hash = createHash('sha256');
  for (const file of BUILDER_SOURCES) hash.update(readFileSync(join(REPO, file)));
  if (model === 'tiny') hash.update(readFileSync(join(REPO, 'models/bundles/salmonn-tiny/manifest.json')));
  hash.update(model);
  return hash.digest('hex').slice(0, 16);
}

function ensureModel(model: string): ModelInfo {
  const folder = join(CACHE, model);
  const key = builderKey(model);
  const stamp = join(folder, 'stamp');
  const stale = !existsSync(stamp) || readFileSync(stamp, 'utf8').trim() !== key;
  if (stale && process.env.HARK_BENCH_NO_BUILD && existsSync(join(folder, 'bench.json'))) {
    // The GPU kit: graphs were built where the kit was packed; there is no builder here.
    process.stderr.write(`${model}: graphs older than the builder's sources, used as they are (HARK_BENCH_NO_BUILD)\n`);
  } else if (stale) {
    process.stderr.write(`building ${model} graphs into ${folder} (models/build_bench_models.py) ...\n`);
    const built = spawnSync(PYTHON, ['models/build_bench_models.py', '--out', CACHE, '--model', model, '--key', key], {
      cwd: REPO,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (built.status !== 0) throw new Error(`building ${model} failed (exit ${built.status})`);
  }
  return JSON.parse(readFileSync(join(folder, 'bench.json'), 'utf8')) as ModelInfo;
}

function encodersKey(): string {
  const hash = createHash('sha256');
  for (const file of ENCODER_SOURCES) hash.update(readFileSync(join(REPO, file)));
  return hash.digest('hex').slice(0, 16);
}

/**
 * Builds the audio side at real geometry (models/build_bench_encoders.py) when missing, stale or
 * lacking a requested precision. Whisper-large's trace needs a fast BLAS: see that script's docstring.
 */
function ensureEncoders(precisions: Precision[]): EncoderInfo {
  const folder = join(CACHE, ENCODERS);
  const key = encodersKey();
  const stamp = join(folder, 'stamp');
  const current = existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === key;
  const built = current ? (JSON.parse(readFileSync(join(folder, 'bench.json'), 'utf8')) as EncoderInfo) : undefined;
  if (!built || precisions.some((p) => !built.variants[p])) {
    const wanted = [...new Set([...precisions, ...Object.keys(built?.variants ?? {})])];
    process.stderr.write(`building the encoders (${wanted.join(', ')}) into ${folder} (models/build_bench_encoders.py; Whisper-large takes minutes) ...\n`);
    const result = spawnSync(PYTHON, ['models/build_bench_encoders.py', '--out', CACHE, '--precisions', wanted.join(','), '--key', key], {
      cwd: REPO,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (result.status !== 0) throw new Error(`building the encoders failed (exit ${result.status})`);
  }
  return JSON.parse(readFileSync(join(folder, 'bench.json'), 'utf8')) as EncoderInfo;
}

/** Contexts and decode steps per model: --quick keeps medium short so the run fits in minutes. */
function plan(options: Options, model: string, info: ModelInfo, backend: BenchBackend): { contexts: number[]; steps: number } {
  const steps = options.steps ?? (options.quick ? (model === 'tiny' ? 16 : 8) : 16);
  const wanted = options.contexts ?? (options.quick ? (model === 'tiny' ? [128, 1024] : [128]) : [128, 1024, 2048, 4096]);
  const slow = backend !== 'wasm' && model === 'medium' && !options.contexts; // SwiftShader: prefill is slow
  const contexts = wanted.filter((c) => c <= info.geometry.maxPositions && !(slow && options.quick && c > 128));
  return { contexts, steps };
}

/** Time limit of one job; --quick bounds WebGPU jobs (SwiftShader compiles shaders for minutes). */
function jobLimitMs(options: Options, big: boolean, backend: BenchBackend): number {
  if (options.jobLimitS !== undefined) return options.jobLimitS * 1000;
  if (big) return 30 * 60_000;
  // A tiny-model chromium-webgpu job took ~15 min on SwiftShader here (shader compilation, ours and the peer's).
  if (backend === 'chromium-webgpu') return 20 * 60_000;
  if (options.quick && backend !== 'wasm') return 60_000;
  return 15 * 60_000;
}

/** Runs a job script on a spec in its own process; resolves with its result file, or `onMissing`'s if it wrote none. */
function runProcess<R>(script: string, spec: { resultPath: string }, timeoutMs: number, onMissing: (why: string) => R): Promise<R> {
  const specPath = `${spec.resultPath}.spec.json`;
  writeFileSync(specPath, JSON.stringify(spec));
  return new Promise((resolve) => {
    const args = BUNDLED_JOBS ? [join(BUNDLED_JOBS, script.split('/').at(-1)!.replace(/\.ts$/, '.mjs')), specPath] : ['--import', 'tsx', script, specPath];
    const child = spawn(process.execPath, args, {
      cwd: REPO,
      env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let tail = '';
    child.stderr.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) {
        // ORT's "VerifyEachNodeIsAssignedToAnEp" notices are expected (shape ops on the CPU).
        if (!line.trim() || line.includes('onnxruntime:')) continue;
        tail = (tail + line + '\n').slice(-2000);
        process.stderr.write(`${line.slice(0, 300)}\n`);
      }
    });
    // SIGTERM first (a chromium-webgpu job closes its browser on it), SIGKILL 15 s later.
    let killer: ReturnType<typeof setTimeout> | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killer);
      if (existsSync(spec.resultPath)) {
        const result = JSON.parse(readFileSync(spec.resultPath, 'utf8')) as R & { phase?: string; error?: string };
        if (result.phase !== 'done' && !result.error) {
          result.error = `stopped at the ${timeoutMs / 1000} s job limit after phase "${result.phase ?? '?'}"`;
        }
        resolve(result);
        return;
      }
      resolve(onMissing(`job exited (${signal ?? code}) without a result${signal ? ' (timeout?)' : ''}: ${tail.trim().split('\n').at(-1) ?? ''}`));
    });
  });
}

function runJob(spec: JobSpec, timeoutMs: number): Promise<JobResult> {
  const { resultPath: _unused, ...rest } = spec;
  return runProcess(join(REPO, 'scripts/bench/job.ts'), spec, timeoutMs, (why): JobResult => ({
    spec: rest,
    device: { label: '?', software: false, bandwidthGBs: Number.NaN, bandwidthMethod: '' },
    loadMs: 0,
    weightBytes: 0,
    decoderBytes: 0,
    kvBytesPerToken: 0,
    runs: [],
    warmupIds: [],
    ortThreads: 0,
    notes: [],
    error: why,
  }));
}

function runEncoderJob(spec: EncoderJobSpec, timeoutMs: number): Promise<EncoderJobResult> {
  const { resultPath: _unused, ...rest } = spec;
  return runProcess(join(REPO, 'scripts/bench/encoderJob.ts'), spec, timeoutMs, (why): EncoderJobResult => ({
    spec: rest,
    device: { label: '?', software: false, bandwidthGBs: Number.NaN, bandwidthMethod: '' },
    loadMs: 0,
    weightBytes: 0,
    encodes: [],
    audioTokens: 0,
    error: why,
  }));
}

/** The time-to-first-token jobs: audio side at real geometry per precision and Node backend, + the 7B prefill where it can run. */
async function runEncoderJobs(options: Options, log: (line: string) => void): Promise<EncoderJobResult[]> {
  // Whisper-large in fp32 is 2.5 GB: int4 unless precisions were named.
  const precisions: Precision[] = options.explicitPrecisions ? options.precisions : ['int4'];
  const info = options.encodersAsBuilt
    ? (JSON.parse(readFileSync(join(CACHE, ENCODERS, 'bench.json'), 'utf8')) as EncoderInfo)
    : ensureEncoders(precisions);
  const results: EncoderJobResult[] = [];
  for (const precision of precisions) {
    if (!info.variants[precision]) continue;
    for (const backend of options.backends) {
      if (backend === 'chromium-webgpu') {
        log(`encoders on chromium-webgpu: not implemented (the time-to-first-token job runs on wasm and webgpu-node)`);
        continue;
      }
      let prefill: EncoderJobSpec['prefill'];
      if (backend === 'wasm') prefill = { skip: "the 7B decoder (4.2 GB of int4 data) does not fit wasm's 4 GB heap" };
      else {
        ensureModel('7b');
        prefill = { model: '7b', modelDir: join(CACHE, '7b'), onSoftware: options.ttftPrefillOnSoftware };
      }
      const spec: EncoderJobSpec = {
        kind: 'encoders',
        precision,
        backend,
        encodersDir: join(CACHE, ENCODERS),
        repoRoot: REPO,
        encodeRuns: options.encodeRuns ?? (backend === 'wasm' ? 1 : 2),
        prefill,
        resultPath: join(CACHE, 'results', `encoders-${precision}-${backend}-${process.pid}.json`),
      };
      log(`encoders ${precision} on ${backend} (time to first token, 30 s clip) ...`);
      results.push(await runEncoderJob(spec, options.jobLimitS !== undefined ? options.jobLimitS * 1000 : 30 * 60_000));
    }
  }
  return results;
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const started = performance.now();
  mkdirSync(join(CACHE, 'results'), { recursive: true });
  const results: JobResult[] = [];
  const allContexts = new Set<number>();
  const stamp = () => `[${((performance.now() - started) / 1000).toFixed(0)} s]`;
  let encoderResults: EncoderJobResult[] = [];
  for (const model of options.models) {
    if (model === ENCODERS) {
      encoderResults = await runEncoderJobs(options, (line) => process.stderr.write(`${stamp()} ${line}\n`));
      continue;
    }
    const info = ensureModel(model);
    const big = BIG_MODELS.has(model);
    const loadOnly = big && !options.bigMeasure;
    for (const precision of options.precisions) {
      if (!info.variants[precision]) continue;
      for (const backend of options.backends) {
        // 4 GB wasm heap (all but Qwen3-4B); Chromium's 1 GiB SwiftShader buffers
        if (big && backend !== 'webgpu-node' && !(backend === 'wasm' && BIG_ON_WASM.has(model))) continue;
        // --quick: WebGPU for int4 only (a software adapter spends minutes compiling shaders per variant).
        if (options.quick && backend !== 'wasm' && precision !== 'int4' && !options.explicitPrecisions) continue;
        const { contexts, steps } = plan(options, model, info, backend);
        const spec: JobSpec = {
          model,
          precision,
          backend,
          modelDir: join(CACHE, model),
          repoRoot: REPO,
          contexts: loadOnly ? [] : contexts,
          steps,
          // A big model's peer runs on a GPU only: on wasm both sessions would not fit the 4 GB heap.
          peer: options.peer && info.peer !== null && !(big && backend === 'wasm'),
          loadOnly,
          loadOnlyPrompt: loadOnly ? options.bigPrompt : undefined,
          unpackInt4: options.unpackInt4,
          resultPath: join(CACHE, 'results', `${model}-${precision}-${backend}-${process.pid}.json`),
        };
        if (!loadOnly) contexts.forEach((c) => allContexts.add(c));
        process.stderr.write(`${stamp()} ${model} ${precision} on ${backend} ...\n`);
        results.push(await runJob(spec, jobLimitMs(options, big, backend)));
      }
    }
  }
  const contexts = [...allContexts].sort((a, b) => a - b);
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  const text = [
    `Hark bench — ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC — \`npm run bench -- ${process.argv.slice(2).join(' ')}\``.replace(/ -- $/, ''),
    `Machine: ${cpus().length} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM; bench took ${seconds.toFixed(0)} s.`,
    '',
    ...(results.length ? [renderTable(results, contexts.length ? contexts : [128]), '', renderLegend(results), ''] : []),
    ...(encoderResults.length ? [renderEncoderTable(encoderResults), ''] : []),
  ].join('\n');
  process.stdout.write(text);
  if (options.out) writeFileSync(options.out, text);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
