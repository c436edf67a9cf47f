/**
 * `npm run bench:gpu-kit`: packs what `npm run bench` needs on a GPU machine that has no Node, no
 * npm registry and no network (the lent NVIDIA machine of ../shared/brief/gpu.md), into
 * `.gpukit/` (gitignored), under 64 MiB:
 *
 *   bin/node.xz                     this machine's Node binary (x86-64)
 *   jobs/*.mjs                      bench.ts, job.ts, encoderJob.ts, breakdown.ts, pair.ts, gpuTime.ts,
 *                                   f16Parity.ts, capture.ts, inputCost.ts and boundRun.ts bundled by esbuild
 *                                   with the engine, onnxruntime-web's WebGPU build and transformers.js
 *   jobs/node_modules/webgpu/       dawn.node (xz) and its loader; `sharp` and `onnxruntime-node`
 *                                   as empty stand-ins (transformers.js loads them on import; the
 *                                   bench hands it our onnxruntime-web and never touches images)
 *   jobs/ort-wasm-simd-threaded.asyncify.wasm.xz
 *   repo/                           the repository files the jobs read (tokenizer, the tiny bundle's
 *                                   fp32/int4 graphs, the builder sources whose hash stamps the
 *                                   bench models) and every bench model's small files; Qwen3's
 *                                   tokenizer.json (11 MB, for qwen3-4b) as tokenizer.json.xz (1.4 MB),
 *                                   which run.sh unpacks (so does every large .json of a bench
 *                                   model: the Qwen3 peers' tokenizer.json)
 *   data-plan.json                  every large external-data file of the bench models, tensor by
 *                                   tensor (models/bench_data_plan.py): recreated there with random
 *                                   weights instead of carrying gigabytes (peer/ folders included:
 *                                   qwen3-4b's peer is 2.5 GB in three chunks)
 *   gl/*.deb                        Debian's Vulkan loader and libglvnd (apt-get download)
 *   run.sh                          scripts/bench/gpuRun.sh: unpack, fill, run, tee logs to $OUT
 *
 * Build the models first (`npm run bench -- --models tiny,medium,7b,7b-nolora,qwen3-4b,encoders --backends
 * chromium-webgpu` builds them and skips what chromium cannot run). The kit travels as one carried
 * path of the `device` tool; see README "Benchmarks" → "On a GPU machine".
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '../..');
const KIT = join(REPO, '.gpukit');
const MODELS = ['tiny', 'medium', '7b', '7b-nolora', 'qwen3-4b', 'encoders', 'breakdown'];
/** Qwen3's tokenizer (qwen3-4b's bench.json `tokenizer`): its 11 MB tokenizer.json travels xz-compressed. */
const QWEN3_TOKENIZER = 'models/bundles/alarm-tiny';
const SMALL = 1 << 20; // data files under this travel as they are

/** The engine imports plain 'onnxruntime-web': give it the WebGPU build, as the app's Vite alias does. */
const ortWebGpu: Plugin = {
  name: 'ort-webgpu',
  setup(b) {
    b.onResolve({ filter: /^onnxruntime-web$/ }, () => ({ path: join(REPO, 'node_modules/onnxruntime-web/dist/ort.webgpu.bundle.min.mjs') }));
  },
};

async function bundleJobs(out: string): Promise<void> {
  await build({
    entryPoints: ['scripts/bench.ts', 'scripts/bench/job.ts', 'scripts/bench/encoderJob.ts', 'scripts/bench/breakdown.ts', 'scripts/bench/pair.ts', 'scripts/bench/gpuTime.ts', 'scripts/bench/f16Parity.ts', 'scripts/bench/capture.ts', 'scripts/bench/inputCost.ts', 'scripts/bench/boundRun.ts'].map((p) => join(REPO, p)),
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    outdir: out,
    outExtension: { '.js': '.mjs' },
    entryNames: '[name]',
    chunkNames: 'chunks/[name]-[hash]',
    // vite, playwright and tsx serve the chromium-webgpu jobs only, which the kit does not run.
    external: ['webgpu', 'sharp', 'onnxruntime-node', 'esbuild', 'vite', 'playwright-core', 'tsx', 'tsx/esm/api'],
    plugins: [ortWebGpu],
    minify: true,
    legalComments: 'none',
    logLevel: 'warning',
    // CommonJS dependencies inside an ES module bundle need a `require`.
    banner: { js: "import { createRequire as __hark_cr } from 'node:module'; const require = __hark_cr(import.meta.url);" },
  });
}

function standIn(dir: string, name: string, body: string): void {
  const folder = join(dir, 'node_modules', name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'package.json'), JSON.stringify({ name, version: '0.0.0-stand-in', type: 'module', main: 'index.js' }));
  writeFileSync(join(folder, 'index.js'), body);
}

function xz(from: string, to: string): void {
  execFileSync('sh', ['-c', `xz -9 -T2 -c "${from}" > "${to}"`]);
}

function copyRel(path: string): void {
  const to = join(KIT, 'repo', path);
  mkdirSync(dirname(to), { recursive: true });
  cpSync(join(REPO, path), to, { recursive: true });
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

async function main(): Promise<void> {
  const skipNode = process.argv.includes('--reuse-binaries') && existsSync(join(KIT, 'bin/node.xz'));
  for (const sub of ['jobs', 'repo']) rmSync(join(KIT, sub), { recursive: true, force: true });
  mkdirSync(join(KIT, 'bin'), { recursive: true });
  const jobs = join(KIT, 'jobs');
  await bundleJobs(jobs);
  const webgpu = join(REPO, 'node_modules/webgpu');
  mkdirSync(join(jobs, 'node_modules/webgpu/dist/linux-x64'), { recursive: true });
  for (const f of ['index.js', 'package.json']) copyFileSync(join(webgpu, f), join(jobs, 'node_modules/webgpu', f));
  standIn(jobs, 'sharp', 'export default function sharp() { throw new Error("sharp is not in the GPU kit"); }\n');
  standIn(jobs, 'onnxruntime-node', 'export default {};\n');
  if (!skipNode) {
    xz(process.execPath, join(KIT, 'bin/node.xz'));
    xz(join(webgpu, 'dist/linux-x64/dawn.node'), join(KIT, 'bin/dawn.node.xz'));
    xz(join(REPO, 'node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.asyncify.wasm'), join(KIT, 'bin/ort-wasm-simd-threaded.asyncify.wasm.xz'));
  }
  // What the jobs read from the repository.
  // models/alarm: qwen3.py is one of the builder sources whose hash stamps the bench models.
  for (const path of ['models/tokenizer', 'models/bench_data_plan.py', 'models/build_bench_models.py', 'models/build_bench_encoders.py', 'models/salmonn', 'models/alarm']) copyRel(path);
  copyRel(join(QWEN3_TOKENIZER, 'tokenizer_config.json'));
  xz(join(REPO, QWEN3_TOKENIZER, 'tokenizer.json'), join(KIT, 'repo', QWEN3_TOKENIZER, 'tokenizer.json.xz'));
  copyFileSync(join(REPO, 'scripts/bench/gpuRun.sh'), join(KIT, 'run.sh'));
  // The Vulkan loader and libglvnd (the NVIDIA machine has the driver's ICD, not the loader).
  const gl = join(KIT, 'gl');
  if (!existsSync(gl) || readdirSync(gl).length < 7) {
    mkdirSync(gl, { recursive: true });
    execFileSync('apt-get', ['download', 'libvulkan1', 'libegl1', 'libglvnd0', 'libopengl0', 'libgl1', 'libglx0', 'libgles2'], { cwd: gl, stdio: 'inherit' });
  }
  const tiny = 'models/bundles/salmonn-tiny';
  for (const f of readdirSync(join(REPO, tiny))) if (statSync(join(REPO, tiny, f)).isFile()) copyRel(join(tiny, f));
  // Every variant, fp16 too (4.3 MB): the f16parity stage runs them where the GPU has shader-f16.
  for (const f of readdirSync(join(REPO, tiny, 'onnx'))) copyRel(join(tiny, 'onnx', f));
  // The bench models: small files as they are, large data files by plan.
  if (existsSync(join(REPO, '.bench-cache/encoders/bench.json'))) {
    execFileSync('/usr/bin/python3', ['models/bench_data_plan.py', 'externalize', '.bench-cache/encoders'], { cwd: REPO, stdio: 'inherit' });
  }
  const dirs = MODELS.map((m) => join('.bench-cache', m)).filter((d) => existsSync(join(REPO, d)));
  execFileSync('/usr/bin/python3', ['models/bench_data_plan.py', 'plan', '--out', join(KIT, 'data-plan.json'), '--min-bytes', String(SMALL), ...dirs], { cwd: REPO, stdio: 'inherit' });
  for (const dir of dirs) {
    for (const file of walk(join(REPO, dir))) {
      const size = statSync(file).size;
      // A large .json is a Qwen3 peer's tokenizer.json (11 MB): xz-compressed, run.sh unpacks it.
      if (file.endsWith('.json') && size >= SMALL) xz(file, join(KIT, 'repo', `${relative(REPO, file)}.xz`));
      else if (size < SMALL || file.endsWith('.onnx') || file.endsWith('.json')) copyRel(relative(REPO, file));
    }
  }
  // The capturable decoder graphs (models/capture_decoder.py --bench-cache): graphs only, their
  // weights are the bench models' own data files. Not the tiny model's: the kit's capture stages
  // run medium and the 7B, and tiny's graphs hold their weights inline (4 MB with the embedding).
  const capture = join(REPO, '.bench-cache/capture');
  if (existsSync(capture)) for (const f of readdirSync(capture)) if (!f.startsWith('tiny_')) copyRel(join('.bench-cache/capture', f));
  const bytes = walk(KIT).reduce((sum, f) => sum + statSync(f).size, 0);
  process.stdout.write(`GPU kit in ${relative(REPO, KIT)}/: ${(bytes / 2 ** 20).toFixed(1)} MiB (the device tool carries at most 64 MiB with the working tree)\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`gpu kit failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
