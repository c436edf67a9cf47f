/**
 * The tiny bundle's fp16 LLM variants on a GPU with `shader-f16` (issue 9 §4): `fp16` and
 * `int4f16` are what a desktop GPU picks, and this machine's software adapter cannot run them
 * (no `shader-f16`), so their manifests say `tested: false`. This script is the check to run where
 * a GPU has the feature (GPU kit stage `f16parity`, NVIDIA with `vulkan_enable_f16_on_nvidia`):
 *
 *   npm run bench:f16-parity [-- --variants fp16,int4f16 --steps 16]
 *
 * For each variant, a 7-token prompt and `steps` greedy tokens run three ways through the engine's
 * own DecoderRunner: the variant on WebGPU, the same graphs on wasm (the CPU path whose fp16
 * compute the pytest `test_tiny_bundle_fp16_variant_runs_and_tracks_its_base` checks against the
 * weight-exact reference), and the base variant (fp32 / int4) on wasm. The WebGPU run's ids are fed
 * to the other two (teacher forcing), so every step's logits are compared on the same context.
 * Prints the largest logits error of each pair (relative to max(1, max |logit|), as the pytest's
 * tolerance 5e-2 is), whether argmax agrees step by step, and whether any logit overflowed to
 * ±Inf/NaN; exits 1 if a check fails. `--variants fp32,int4` runs the same comparison for the
 * fp32 variants (a dry run on an adapter without `shader-f16`).
 */
import { readFileSync } from 'node:fs';
import { register } from 'node:module';
import { join } from 'node:path';
import type { ort as OrtTypes } from '../../src/engine/ortRuntime';
import { arg } from './hooksPair';
import { setupNodeWebGpu, withSwiftShaderFallback } from './nodeWebgpu';

const REPO = process.env.HARK_BENCH_REPO ?? new URL('../..', import.meta.url).pathname;
const BUNDLE = join(REPO, 'models/bundles/salmonn-tiny');
const variants = arg('variants', 'fp16,int4f16').split(',');
const steps = Number(arg('steps', '16'));
const PROMPT = [1, 3148, 1001, 29901, 278, 4149, 13];
const TOLERANCE = 5e-2; // models/tests/test_onnx_decoder_fp16.py FP16_TOL
const BASE: Record<string, string> = { fp16: 'fp32', int4f16: 'int4', fp32: 'fp32', int4: 'int4' };

interface GraphFile {
  path: string;
  externalData: string[];
}
interface Manifest {
  architecture: { llm: { numLayers: number; numKvHeads: number; headDim: number; hiddenSize: number; vocabSize: number; maxPositions: number }; lora: { defaultScale: number } };
  variants: Record<string, { tested: boolean; graphs: Record<string, GraphFile> }>;
}

/** max |a − b| ÷ max(1, max |b|): the pytest's `close`. */
function relError(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 1;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}

async function main(): Promise<void> {
  withSwiftShaderFallback();
  const adapter = await setupNodeWebGpu();
  if (!process.env.HARK_BENCH_BUNDLE_DIR) register('./ortWebgpuAlias.mjs', import.meta.url);
  const { ort, sessionOptions } = await import('../../src/engine/ortRuntime');
  const { configureOrtForNodeWebGpu } = await import('./nodeWebgpu');
  const { DecoderRunner, decoderOutputLocations, embedOutputLocations } = await import('../../src/engine/llm/decoder');
  const { argmax } = await import('../../src/engine/llm/sampling');
  configureOrtForNodeWebGpu(ort.env);
  const manifest = JSON.parse(readFileSync(join(BUNDLE, 'manifest.json'), 'utf8')) as Manifest;
  const llm = manifest.architecture.llm;
  const scale = manifest.architecture.lora.defaultScale;
  const hasF16 = adapter.features.includes('shader-f16');
  const name = adapter.isSoftware ? 'SwiftShader (software)' : [adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' ');
  console.log(`fp16 LLM variants of the tiny bundle, WebGPU in Node on ${name} (shader-f16: ${hasF16 ? 'yes' : 'no'}), ${PROMPT.length}-token prompt + ${steps} greedy steps\n`);

  const bytes = (path: string) => new Uint8Array(readFileSync(join(BUNDLE, path)));
  const open = (file: GraphFile, backend: 'wasm' | 'webgpu', extra: OrtTypes.InferenceSession.SessionOptions) =>
    ort.InferenceSession.create(
      bytes(file.path),
      sessionOptions(backend, { ...extra, externalData: file.externalData.map((data) => ({ path: data, data: bytes(join(file.path, '..', data)) })) }),
    );

  /** Logits after the prompt and after each of `feed` (or of its own greedy ids when `feed` is absent). */
  async function run(variant: string, backend: 'wasm' | 'webgpu', feed?: number[]): Promise<{ logits: Float32Array[]; ids: number[] }> {
    const graphs = manifest.variants[variant]!.graphs;
    const embed = await open(graphs.embedTokens!, backend, embedOutputLocations(backend));
    const decoderSession = await open(graphs.decoder!, backend, decoderOutputLocations(backend, llm.numLayers));
    try {
      const runner = new DecoderRunner(decoderSession, llm, { backend, embedTokens: embed, maxPositions: llm.maxPositions });
      const { inputs_embeds: rows } = await embed.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(PROMPT, BigInt), [1, PROMPT.length]) });
      const prompt = (await rows!.getData()) as Float32Array;
      rows!.dispose();
      let { logits, cache } = await runner.step(prompt.slice(), runner.emptyCache(), scale);
      const all = [logits];
      const ids = [feed?.[0] ?? argmax(logits)];
      for (let i = 0; i < steps; i++) {
        ({ logits, cache } = await runner.decodeStep(ids.at(-1)!, cache, scale));
        all.push(logits);
        ids.push(feed?.[i + 1] ?? argmax(logits));
      }
      cache.dispose();
      return { logits: all, ids };
    } finally {
      await decoderSession.release();
      await embed.release();
    }
  }

  let failed = false;
  console.log('| variant | compared with | max logits error (prompt / any step) | argmax agrees | all finite | verdict |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const variant of variants) {
    const base = BASE[variant];
    if (!manifest.variants[variant] || !base) throw new Error(`the tiny bundle has no ${variant} variant`);
    if (variant.includes('16') && !hasF16) {
      console.log(`| ${variant} | – | – | – | – | not run: this adapter has no shader-f16 |`);
      continue;
    }
    const gpu = await run(variant, 'webgpu');
    const finite = gpu.logits.every((row) => row.every(Number.isFinite));
    const others: [string, Awaited<ReturnType<typeof run>>][] = [[`${variant} on wasm`, await run(variant, 'wasm', gpu.ids)]];
    if (base !== variant) others.push([`${base} on wasm`, await run(base, 'wasm', gpu.ids)]);
    for (const [label, other] of others) {
      const errors = gpu.logits.map((row, i) => relError(row, other.logits[i]!));
      const agree = gpu.logits.filter((row, i) => argmax(row) === argmax(other.logits[i]!)).length;
      const ok = finite && Math.max(...errors) < TOLERANCE;
      failed ||= !ok;
      console.log(
        `| ${variant} on WebGPU | ${label} | ${errors[0]!.toExponential(2)} / ${Math.max(...errors).toExponential(2)} | ${agree} of ${errors.length} | ${finite ? 'yes' : 'NO'} | ${ok ? 'within 5e-2' : 'FAILED'} |`,
      );
    }
  }
  process.exit(failed ? 1 : 0);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:f16-parity failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
