/**
 * A graph-captured decode step against the engine's, same weights, same device:
 * `npm run bench:capture -- --model tiny|medium|7b --precision int4|fp32 --prompt 24 --steps 16 --pin`.
 *
 * An experiment before the engine changes (BENCHMARKS.md, session 11): ORT's graph capture replays
 * a run's kernels without their CPU code, ~90 % of a kernel's CPU cost on the floor. Here the
 * decoder is rewritten by `models/capture_decoder.py` (its `.bench-cache/capture/` output: no CPU
 * node, `seqlens_k` and `total_seq_len` as inputs) and run with `enableGraphCapture`: every input
 * and output a fixed GPU buffer (KV cache of fixed capacity, past and present the same buffer;
 * the step's embedding row written there by the embedding graph), the prompt fed token by token
 * through the same captured session, then greedy steps. (onnxruntime-web 1.30 binds a captured
 * session's tensors at its first run for good, so a prompt of another shape cannot share it, not
 * even as an uncaptured `gpu_graph_id = -1` run: BENCHMARKS.md.) The engine's DecoderRunner on the
 * original graph runs the same prompt: the script prints both paths' ms per token and what each
 * asks of WebGPU per token, and the largest logit difference; it exits 1 unless the greedy ids
 * agree and every step's logits are within 1e-4. `HARK_CAPTURE_OFF=1` runs the same graph and
 * buffers without capture (the control that told the rewrite from the capture apart).
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

/**
 * Keeps onnxruntime-web's registration of `buffers` alive for the process. ORT-web 1.30 imports a
 * user's GPUBuffer into its wasm object table when a run starts and releases the handle when the
 * run ends; a captured graph replays with the handles of the capturing run, so a buffer imported
 * again under another handle is bound wrongly or not at all (seen here: "no overload matched for
 * createBindGroup … resource"). The registration is a refcount on the buffer under ORT's private
 * `gpuBufferMetadata` symbol: raised by one while a run holds it, it never reaches zero. Bench-only:
 * the engine would need ORT to keep such buffers registered (upstream PR #32074 pins them in Python).
 */
function keepRegistered(buffers: GPUBuffer[]): () => boolean {
  const pending = new Set(buffers);
  return () => {
    for (const b of pending) {
      for (const sym of Object.getOwnPropertySymbols(b)) {
        const meta = (b as unknown as Record<symbol, unknown>)[sym];
        if (sym.description === 'gpuBufferMetadata' && Array.isArray(meta) && typeof meta[1] === 'number') {
          meta[1] += 1;
          pending.delete(b);
        }
      }
    }
    return pending.size === 0;
  };
}

/** Calls `check` at each createBindGroup (ORT's runs are in flight then) until it returns true. */
function whileRunning(check: () => boolean): void {
  const proto = (globalThis as unknown as { GPUDevice: { prototype: Record<string, unknown> } }).GPUDevice.prototype;
  const original = proto.createBindGroup as (...a: unknown[]) => unknown;
  proto.createBindGroup = function (this: unknown, ...args: unknown[]) {
    if (check()) proto.createBindGroup = original;
    return original.apply(this, args);
  };
}

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

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

async function main(): Promise<void> {
  const device = await setupJobDevice('webgpu-node', () => {});
  const api = new ApiTimer(threadSchedNs);
  api.install();
  const ort = await loadOrtForNodeWebGpu();
  const { openOurs, tokenizerFolder } = await import('./ours');
  const { randomPrompt } = await import('./randomPrompt');
  const { argmax } = await import('../../src/engine/llm/sampling');

  const dir = join(CACHE, model);
  const info = JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8')) as ModelInfo;
  const files = info.variants[precision];
  if (!files) throw new Error(`${model} has no ${precision} variant`);
  const root = files.fromRepoRoot ? REPO : dir;
  const read = async (path: string) => new Uint8Array(await readFile(path));
  const g = info.geometry;
  const prompt = randomPrompt(promptTokens, g.vocabSize);

  // The engine's path: DecoderRunner on the converter's graph.
  const ours = await openOurs(read, root, files, info, 'webgpu', join(REPO, tokenizerFolder(info)));
  // With --pin the main thread gets a core of its own for both paths (SwiftShader's threads move).
  const pin = process.argv.includes('--pin');
  if (pin && !pinMainThreadApart()) console.log('(--pin: could not pin the main thread)');
  const reference = { ids: [] as number[], logits: [] as Float32Array[], wallMs: [] as number[] };
  for (let round = 0; round < 2; round++) {
    // Round 0 compiles the shaders; round 1 is timed.
    const embeds = await ours.embed(prompt);
    let { logits, cache } = await ours.decoder.step(embeds, ours.decoder.emptyCache(), g.loraScale);
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

  // The captured path.
  const gpu = (await ort.env.webgpu.device) as GPUDevice;
  const suffix = precision === 'int4' ? '_q4' : '';
  const capturedGraph = join(CACHE, 'capture', `${model}_decoder${suffix}.onnx`);
  const decoderDir = join(root, files.decoder, '..');
  const externalData = await Promise.all(files.decoderData.map(async (name) => ({ path: name, data: await read(join(decoderDir, name)) })));
  const session = await ort.InferenceSession.create(await read(capturedGraph), {
    executionProviders: [{ name: 'webgpu' }],
    enableGraphCapture: !process.env.HARK_CAPTURE_OFF,
    externalData,
  });
  const embedDir = join(root, files.embed, '..');
  const embedSession = await ort.InferenceSession.create(await read(join(root, files.embed)), {
    executionProviders: [{ name: 'webgpu' }],
    externalData: await Promise.all(files.embedData.map(async (name) => ({ path: name, data: await read(join(embedDir, name)) }))),
  });
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const buffer = (bytes: number) => gpu.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
  const capacity = promptTokens + steps + 1;
  const kvDims = [1, g.numKvHeads, capacity, g.headDim];
  type Tensor = InstanceType<typeof ort.Tensor>;
  const kv: Record<string, Tensor> = {};
  const kvOut: Record<string, Tensor> = {};
  for (let layer = 0; layer < g.numLayers; layer++) {
    for (const part of ['key', 'value']) {
      const b = buffer(4 * g.numKvHeads * capacity * g.headDim);
      kv[`past_key_values.${layer}.${part}`] = ort.Tensor.fromGpuBuffer(b, { dataType: 'float32', dims: kvDims });
      kvOut[`present.${layer}.${part}`] = ort.Tensor.fromGpuBuffer(b, { dataType: 'float32', dims: kvDims });
    }
  }
  const seqlensBuffer = buffer(4);
  const totalBuffer = buffer(4);
  const scaleBuffer = buffer(4);
  const logitsBuffer = buffer(4 * g.vocabSize);
  const stepEmbeds = buffer(4 * g.hiddenSize);
  const staging = gpu.createBuffer({ size: logitsBuffer.size, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  gpu.queue.writeBuffer(scaleBuffer, 0, new Float32Array([g.loraScale]));
  const common = {
    seqlens_k: ort.Tensor.fromGpuBuffer(seqlensBuffer, { dataType: 'int32', dims: [1] }),
    total_seq_len: ort.Tensor.fromGpuBuffer(totalBuffer, { dataType: 'int32', dims: [] }),
    ...(session.inputNames.includes('lora_scale') ? { lora_scale: ort.Tensor.fromGpuBuffer(scaleBuffer, { dataType: 'float32', dims: [] }) } : {}),
    ...kv,
  };
  const fetches = { logits: ort.Tensor.fromGpuBuffer(logitsBuffer, { dataType: 'float32', dims: [1, 1, g.vocabSize] }), ...kvOut };
  const stepFeeds = { ...common, inputs_embeds: ort.Tensor.fromGpuBuffer(stepEmbeds, { dataType: 'float32', dims: [1, 1, g.hiddenSize] }) };
  const lengths = (total: number) => {
    gpu.queue.writeBuffer(seqlensBuffer, 0, new Int32Array([total - 1]));
    gpu.queue.writeBuffer(totalBuffer, 0, new Int32Array([total]));
  };
  const readLogits = async () => {
    const encoder = gpu.createCommandEncoder();
    encoder.copyBufferToBuffer(logitsBuffer, 0, staging, 0, staging.size);
    gpu.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const logits = new Float32Array(staging.getMappedRange().slice(0, 4 * g.vocabSize));
    staging.unmap();
    return logits;
  };
  const embedStep = async (id: number) => {
    await embedSession.run(
      { input_ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(id)), [1, 1]) },
      { inputs_embeds: ort.Tensor.fromGpuBuffer(stepEmbeds, { dataType: 'float32', dims: [1, 1, g.hiddenSize] }) },
    );
  };

  const kvBuffers = Object.values(kv).map((t) => t.gpuBuffer as GPUBuffer);
  // Registered during the first runs of the two sessions.
  whileRunning(keepRegistered([...kvBuffers, seqlensBuffer, totalBuffer, scaleBuffer, logitsBuffer, stepEmbeds]));
  const captured = { ids: [] as number[], logits: [] as Float32Array[], wallMs: [] as number[] };
  for (let round = 0; round < 2; round++) {
    // Round 0 records the graph (at its first runs); round 1 replays it from the first token.
    const rows = await ours.embed(prompt);
    for (let t = 0; t < promptTokens; t++) {
      gpu.queue.writeBuffer(stepEmbeds, 0, rows.slice(t * g.hiddenSize, (t + 1) * g.hiddenSize));
      lengths(t + 1);
      await session.run(stepFeeds, fetches);
    }
    const first = await readLogits();
    captured.ids = [argmax(first)];
    captured.logits = [first];
    captured.wallMs = [];
    if (round === 1) api.reset();
    for (let i = 0; i < steps; i++) {
      if (round === 1) api.begin();
      const started = performance.now();
      await embedStep(captured.ids.at(-1)!);
      lengths(promptTokens + i + 1);
      await session.run(stepFeeds, fetches);
      const logits = await readLogits();
      captured.ids.push(argmax(logits));
      captured.wallMs.push(performance.now() - started);
      if (round === 1) api.end();
      captured.logits.push(logits);
    }
  }
  const capturedCalls = callsPerToken(api, steps);

  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const worst = Math.max(...reference.logits.map((l, i) => maxAbsDiff(l, captured.logits[i]!)));
  const sameIds = JSON.stringify(reference.ids) === JSON.stringify(captured.ids);
  const software = device.software ? ' (software: SwiftShader runs the GPU work on the CPU)' : '';
  console.log(`Graph-captured decode step vs the engine's, ${model} ${precision}, webgpu-node · ${device.label}${software}: ${promptTokens}-token prompt, ${steps} greedy steps${pin ? ', main thread pinned' : ''}\n`);
  console.log('| path | ms per token (mean) | median | dispatches encoded per token | bind groups created per token | ms in WebGPU calls per token | main thread on a CPU ms per token |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  const row = (name: string, wall: number[], c: CallsPerToken) =>
    console.log(`| ${name} | ${mean(wall).toFixed(2)} | ${median(wall).toFixed(2)} | ${c.dispatches.toFixed(1)} | ${c.bindGroups.toFixed(1)} | ${c.inWebGpuMs.toFixed(3)} | ${c.mainThreadMs === undefined ? '–' : c.mainThreadMs.toFixed(2)} |`);
  row('engine (DecoderRunner: embedding run + decoder run, uncaptured)', reference.wallMs, engineCalls);
  row('captured decoder (+ the uncaptured embedding run)', captured.wallMs, capturedCalls);
  console.log(`largest logit difference over ${steps + 1} positions: ${worst.toExponential(2)} (limit ${TOLERANCE}); same greedy ids: ${sameIds ? 'yes' : `NO\n  engine:   ${reference.ids.join(',')}\n  captured: ${captured.ids.join(',')}`}`);
  await session.release();
  await embedSession.release();
  await ours.release();
  process.exit(sameIds && worst <= TOLERANCE ? 0 : 1);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:capture failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
