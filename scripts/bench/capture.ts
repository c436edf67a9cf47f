/**
 * A graph-captured decode step against ordinary ones, same weights, same device:
 * `npm run bench:capture -- --model tiny|medium|7b --precision int4|fp32 --prompt 24 --steps 16 --pin`.
 *
 * The experiment before the engine changed (BENCHMARKS.md, sessions 11 and 12); since session 13
 * the engine runs the `weights-in` path itself (llm/capturedStep.ts, its graphs rewritten at load
 * by llm/decoderGraphEdit.ts), and the reference here is the engine with capture off. ORT's graph capture
 * replays a run's kernels without their CPU code, ~90 % of a kernel's CPU cost on the floor. The
 * decoder is rewritten by `models/capture_decoder.py` (its `.bench-cache/capture/` output: no CPU
 * node, `seqlens_k` and `total_seq_len` as inputs) and run with `enableGraphCapture`, every input
 * and output a fixed GPU buffer that onnxruntime-web allocated (`src/engine/ortOwnedBuffers.ts`:
 * KV cache of fixed capacity, past and present the same buffer), three ways (`--paths`):
 * - `initializers`: the weights inside the graph; the prompt fed token by token through the
 *   captured session (onnxruntime-web 1.30 binds a captured session's tensors at its first run
 *   for good, so a prompt of another shape cannot share it) and each step's embedding row written
 *   into the step's input by the uncaptured embedding graph;
 * - `weights-in`: the weights as graph inputs, uploaded once, bound by two sessions of the graph:
 *   an uncaptured one reads the prompt in one run, the captured one takes the steps;
 * - `ids`: as `weights-in`, but the step graph has the embedding in front and takes the token id,
 *   so a step is one captured run.
 * The engine's DecoderRunner on the original graph runs the same prompt: the script prints each
 * path's prompt ms, ms per token and what it asks of WebGPU per token, and the largest logit
 * difference; it exits 1 unless the greedy ids agree and every step's logits are within 1e-4.
 * `HARK_CAPTURE_OFF=1` runs the same graphs and buffers without capture (the control).
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiTimer } from './apiTimer';
import { arg } from './hooksPair';
import { setupJobDevice } from './jobDevice';
import { loadOrtForNodeWebGpu } from './nodeOrt';
import { pinMainThreadApart, threadSchedNs } from './threadClock';
import type { ModelInfo } from './types';

const REPO = process.env.HARK_BENCH_REPO ?? new URL('../..', import.meta.url).pathname;
const CACHE = join(REPO, '.bench-cache');
const model = arg('model', 'tiny');
const precision = arg('precision', 'int4') as 'int4' | 'fp32';
const promptTokens = Number(arg('prompt', '24'));
const steps = Number(arg('steps', '16'));
const TOLERANCE = 1e-4;

interface CallsPerToken {
  dispatches: number;
  bindGroups: number;
  inWebGpuMs: number;
  mainThreadMs: number | undefined;
}

/** What the timed steps asked of WebGPU, per token (then the timer is reset). */
function callsPerToken(api: ApiTimer, steps: number): CallsPerToken {
  const out = {
    dispatches: (api.byCall.get('GPUComputePassEncoder.dispatchWorkgroups')?.calls ?? 0) / steps,
    bindGroups: (api.byCall.get('GPUDevice.createBindGroup')?.calls ?? 0) / steps,
    inWebGpuMs: api.totalNs() / 1e6 / steps,
    mainThreadMs: api.thread.known ? api.thread.onCpu / 1e6 / steps : undefined,
  };
  api.reset();
  return out;
}

type Mode = 'initializers' | 'weights-in' | 'ids';

interface WeightEntry {
  name: string;
  dtype: 'float32' | 'float16' | 'uint8' | 'int32' | 'int64';
  dims: number[];
  file: string;
  offset: number;
  length: number;
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

async function main(): Promise<void> {
  const device = await setupJobDevice('webgpu-node', () => {});
  const api = new ApiTimer(threadSchedNs);
  api.install();
  const ort = await loadOrtForNodeWebGpu();
  const { openOurs, tokenizerFolder } = await import('./ours');
  const { randomPrompt } = await import('./randomPrompt');
  const { argmax } = await import('../../src/engine/llm/sampling');
  const { OrtOwnedBuffers } = await import('../../src/engine/ortOwnedBuffers');

  const dir = join(CACHE, model);
  const info = JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8')) as ModelInfo;
  const files = info.variants[precision];
  if (!files) throw new Error(`${model} has no ${precision} variant`);
  const root = files.fromRepoRoot ? REPO : dir;
  const read = async (path: string) => new Uint8Array(await readFile(path));
  const g = info.geometry;
  const prompt = randomPrompt(promptTokens, g.vocabSize);

  // The engine's path: DecoderRunner on the converter's graph.
  // The reference: ordinary (uncaptured) steps; the engine's own captured steps are the `weights-in` path.
  const ours = await openOurs(read, root, files, info, 'webgpu', join(REPO, tokenizerFolder(info)), true, false);
  // With --pin the main thread gets a core of its own for both paths (SwiftShader's threads move).
  const pin = process.argv.includes('--pin');
  if (pin && !pinMainThreadApart()) console.log('(--pin: could not pin the main thread)');
  const reference = { ids: [] as number[], logits: [] as Float32Array[], wallMs: [] as number[], prefillMs: 0 };
  for (let round = 0; round < 2; round++) {
    // Round 0 compiles the shaders; round 1 is timed.
    const embeds = await ours.embed(prompt);
    const prefillStarted = performance.now();
    let { logits, cache } = await ours.decoder.step(embeds, ours.decoder.emptyCache(), g.loraScale);
    reference.prefillMs = performance.now() - prefillStarted;
    reference.ids = [argmax(logits)];
    reference.logits = [logits.slice()];
    reference.wallMs = [];
    api.reset();
    for (let i = 0; i < steps; i++) {
      if (round === 1) api.begin();
      const started = performance.now();
      ({ logits, cache } = await ours.decoder.decodeStep(reference.ids.at(-1)!, cache, g.loraScale));
      reference.ids.push(argmax(logits));
      reference.wallMs.push(performance.now() - started);
      if (round === 1) api.end();
      reference.logits.push(logits.slice());
    }
    cache.dispose();
  }
  const engineCalls = callsPerToken(api, steps);

  // The captured paths.
  const gpu = (await ort.env.webgpu.device) as GPUDevice;
  const suffix = precision === 'int4' ? '_q4' : '';
  const decoderDir = join(root, files.decoder, '..');
  const decoderData = files.decoderData;
  const embedDir = join(root, files.embed, '..');
  const embedSession = await ort.InferenceSession.create(await read(join(root, files.embed)), {
    executionProviders: [{ name: 'webgpu' }],
    externalData: await Promise.all(files.embedData.map(async (name) => ({ path: name, data: await read(join(embedDir, name)) }))),
  });
  const rows = await ours.embed(prompt);
  type Tensor = InstanceType<typeof ort.Tensor>;
  const bufferOf = (t: Tensor) => t.gpuBuffer as GPUBuffer;

  /**
   * `initializers`: the rewritten decoder with its weights inside (one captured session; the
   * prompt goes through it token by token). `weights-in`: the same graph with its weights as
   * inputs, uploaded once into ORT-owned buffers and bound by two sessions of the one graph: an
   * uncaptured one reads the prompt in one run, the captured one takes the steps.
   */
  async function capturedPath(mode: Mode) {
    // Every tensor the captured graph binds is a buffer onnxruntime-web allocated (OrtOwnedBuffers:
    // imported once under ORT's own handle, so the replays find it bound).
    const owned = new OrtOwnedBuffers();
    const base = join(CACHE, 'capture', `${model}_decoder${suffix}`);
    const graphPath = { initializers: `${base}.onnx`, 'weights-in': `${base}.weights-in.onnx`, ids: `${base}.ids.weights-in.onnx` }[mode];
    const promptGraphPath = mode === 'initializers' ? undefined : `${base}.weights-in.onnx`;
    const graph = await read(graphPath);
    const weights: Record<string, Tensor> = {};
    let uploadMs = 0;
    let externalData: { path: string; data: Uint8Array }[] = [];
    if (promptGraphPath) {
      // Both graphs' weights, each uploaded once (the step graph of `ids` also has the embedding table).
      const started = performance.now();
      const dataFiles = new Map<string, Uint8Array>();
      for (const path of new Set([graphPath, promptGraphPath])) {
        const table = JSON.parse(readFileSync(path.replace(/\.onnx$/, '.json'), 'utf8')) as { weights: WeightEntry[] };
        for (const entry of table.weights) {
          if (weights[entry.name]) continue;
          let data = dataFiles.get(entry.file);
          if (!data) dataFiles.set(entry.file, (data = await read(join(decoderDir, entry.file))));
          weights[entry.name] = await owned.upload(entry.dtype, entry.dims, data.subarray(entry.offset, entry.offset + entry.length));
        }
      }
      await gpu.queue.onSubmittedWorkDone();
      uploadMs = performance.now() - started;
    } else {
      externalData = await Promise.all(decoderData.map(async (name) => ({ path: name, data: await read(join(decoderDir, name)) })));
    }
    const session = await ort.InferenceSession.create(graph, {
      executionProviders: [{ name: 'webgpu' }],
      enableGraphCapture: !process.env.HARK_CAPTURE_OFF,
      externalData,
    });
    const promptSession = promptGraphPath
      ? await ort.InferenceSession.create(await read(promptGraphPath), { executionProviders: [{ name: 'webgpu' }] })
      : undefined;
    const weightsOf = (names: readonly string[]) => Object.fromEntries(names.filter((n) => weights[n]).map((n) => [n, weights[n]!]));
    const stepWeights = weightsOf(session.inputNames);
    const promptWeights = weightsOf(promptSession?.inputNames ?? []);
    // `ids`: the step takes the token id (int64) instead of its embedding row.
    const takesIds = session.inputNames.includes('input_ids');
    const stepIds = takesIds ? await owned.upload('int64', [1, 1], new Uint8Array(8)) : undefined;
    const capacity = promptTokens + steps + 1;
    const kvDims = [1, g.numKvHeads, capacity, g.headDim];
    const kv: Record<string, Tensor> = {};
    const kvOut: Record<string, Tensor> = {};
    for (let layer = 0; layer < g.numLayers; layer++) {
      for (const part of ['key', 'value']) {
        const past = await owned.zeros('float32', kvDims);
        kv[`past_key_values.${layer}.${part}`] = past;
        kvOut[`present.${layer}.${part}`] = ort.Tensor.fromGpuBuffer(bufferOf(past), { dataType: 'float32', dims: kvDims });
      }
    }
    const seqlens = await owned.zeros('int32', [1]);
    const total = await owned.zeros('int32', []);
    const scale = await owned.zeros('float32', []);
    const logitsOut = await owned.zeros('float32', [1, 1, g.vocabSize]);
    const stepEmbeds = await owned.zeros('float32', [1, 1, g.hiddenSize]);
    const staging = gpu.createBuffer({ size: 4 * g.vocabSize, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
    gpu.queue.writeBuffer(bufferOf(scale), 0, new Float32Array([g.loraScale]));
    const takesScale = session.inputNames.includes('lora_scale');
    const common = { seqlens_k: seqlens, total_seq_len: total, ...(takesScale ? { lora_scale: scale } : {}), ...kv, ...stepWeights };
    const fetches = { logits: logitsOut, ...kvOut };
    const stepFeeds = stepIds ? { ...common, input_ids: stepIds } : { ...common, inputs_embeds: stepEmbeds };
    const lengths = (n: number) => {
      gpu.queue.writeBuffer(bufferOf(seqlens), 0, new Int32Array([n - 1]));
      gpu.queue.writeBuffer(bufferOf(total), 0, new Int32Array([n]));
    };
    const readLogits = async () => {
      const encoder = gpu.createCommandEncoder();
      encoder.copyBufferToBuffer(bufferOf(logitsOut), 0, staging, 0, staging.size);
      gpu.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const logits = new Float32Array(staging.getMappedRange().slice(0, 4 * g.vocabSize));
      staging.unmap();
      return logits;
    };
    const embedStep = async (id: number) => {
      if (stepIds) gpu.queue.writeBuffer(bufferOf(stepIds), 0, BigInt64Array.of(BigInt(id)));
      else await embedSession.run({ input_ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(id)), [1, 1]) }, { inputs_embeds: stepEmbeds });
    };
    const readPrompt = async (): Promise<Float32Array> => {
      if (promptSession) {
        // One uncaptured run of the whole prompt, on the same weight and KV buffers.
        const outputs = await promptSession.run({
          ...kv,
          ...promptWeights,
          ...(takesScale ? { lora_scale: new ort.Tensor('float32', Float32Array.of(g.loraScale), []) } : {}),
          inputs_embeds: new ort.Tensor('float32', rows, [1, promptTokens, g.hiddenSize]),
          seqlens_k: new ort.Tensor('int32', Int32Array.of(promptTokens - 1), [1]),
          total_seq_len: new ort.Tensor('int32', Int32Array.of(promptTokens), []),
        }, { logits: null, ...kvOut });
        const logits = (await outputs.logits!.getData()) as Float32Array;
        outputs.logits!.dispose();
        return logits.slice();
      }
      for (let t = 0; t < promptTokens; t++) {
        gpu.queue.writeBuffer(bufferOf(stepEmbeds), 0, rows.slice(t * g.hiddenSize, (t + 1) * g.hiddenSize));
        lengths(t + 1);
        await session.run(stepFeeds, fetches);
      }
      return readLogits();
    };

    const result = { ids: [] as number[], logits: [] as Float32Array[], wallMs: [] as number[], prefillMs: 0, uploadMs };
    for (let round = 0; round < 2; round++) {
      // Round 0 records the graph (at its first runs); round 1 replays it from the first token.
      const prefillStarted = performance.now();
      const first = await readPrompt();
      result.prefillMs = performance.now() - prefillStarted;
      result.ids = [argmax(first)];
      result.logits = [first];
      result.wallMs = [];
      if (round === 1) api.reset();
      for (let i = 0; i < steps; i++) {
        if (round === 1) api.begin();
        const started = performance.now();
        await embedStep(result.ids.at(-1)!);
        lengths(promptTokens + i + 1);
        await session.run(stepFeeds, fetches);
        const logits = await readLogits();
        result.ids.push(argmax(logits));
        result.wallMs.push(performance.now() - started);
        if (round === 1) api.end();
        result.logits.push(logits);
      }
    }
    const calls = callsPerToken(api, steps);
    staging.destroy();
    await session.release();
    await promptSession?.release();
    await owned.release();
    return { ...result, calls };
  }

  const modes = arg('paths', 'initializers,weights-in,ids').split(',') as Mode[];
  const paths: { mode: string; result: Awaited<ReturnType<typeof capturedPath>> }[] = [];
  for (const mode of modes) paths.push({ mode, result: await capturedPath(mode) });

  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  const software = device.software ? ' (software: SwiftShader runs the GPU work on the CPU)' : '';
  console.log(`Graph-captured decode step vs the engine's, ${model} ${precision}, webgpu-node · ${device.label}${software}: ${promptTokens}-token prompt, ${steps} greedy steps${pin ? ', main thread pinned' : ''}\n`);
  console.log('| path | prompt ms | ms per token (mean) | median | dispatches encoded per token | bind groups created per token | ms in WebGPU calls per token | main thread on a CPU ms per token |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  const row = (name: string, prefillMs: number, wall: number[], c: CallsPerToken) =>
    console.log(`| ${name} | ${prefillMs.toFixed(1)} | ${mean(wall).toFixed(2)} | ${median(wall).toFixed(2)} | ${c.dispatches.toFixed(1)} | ${c.bindGroups.toFixed(1)} | ${c.inWebGpuMs.toFixed(3)} | ${c.mainThreadMs === undefined ? '–' : c.mainThreadMs.toFixed(2)} |`);
  row('engine, capture off (DecoderRunner: embedding run + decoder run, uncaptured)', reference.prefillMs, reference.wallMs, engineCalls);
  const label = {
    initializers: 'captured decoder, weights inside (+ the uncaptured embedding run; prompt token by token)',
    'weights-in': 'captured decoder, weights as inputs shared with an uncaptured prompt session (prompt in one run): what the engine runs by default',
    ids: 'as weights-in, the step graph takes the token id (embedding inside: one captured run per token)',
  };
  let ok = true;
  for (const { mode, result } of paths) row(label[mode as keyof typeof label], result.prefillMs, result.wallMs, result.calls);
  console.log('');
  for (const { mode, result } of paths) {
    const worst = Math.max(...reference.logits.map((l, i) => maxAbsDiff(l, result.logits[i]!)));
    const sameIds = JSON.stringify(reference.ids) === JSON.stringify(result.ids);
    ok &&= sameIds && worst <= TOLERANCE;
    const upload = mode !== 'initializers' ? `; weights uploaded into ORT-owned buffers in ${result.uploadMs.toFixed(0)} ms` : '';
    console.log(`${mode}: largest logit difference over ${steps + 1} positions ${worst.toExponential(2)} (limit ${TOLERANCE}); same greedy ids: ${sameIds ? 'yes' : `NO\n  engine:   ${reference.ids.join(',')}\n  captured: ${result.ids.join(',')}`}${upload}`);
  }
  await embedSession.release();
  await ours.release();
  process.exit(ok ? 0 : 1);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:capture failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
