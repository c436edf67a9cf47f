/**
 * Test-only page script: runs an ONNX model handed over by a browser test on a chosen execution
 * provider, through the engine's own ORT set-up (same build, same self-hosted wasm files).
 */
import { openCapturedDecoder, releaseCapturedDecoder } from '../../../src/engine/decoderCapture';
import type { Backend } from '../../../src/engine/device';
import { DecoderRunner, decoderOutputLocations, embedOutputLocations, type DecoderShape, type KvCache } from '../../../src/engine/llm/decoder';
import { FixedKvCache } from '../../../src/engine/llm/fixedKvCache';
import { argmax } from '../../../src/engine/llm/sampling';
import { buildOnnxModel, TensorType } from '../../../src/engine/onnxBuilder';
import { OrtOwnedBuffers } from '../../../src/engine/ortOwnedBuffers';
import { configureOrt, ort, sessionOptions } from '../../../src/engine/ortRuntime';

configureOrt({ wasmBaseUrl: new URL('/ort/', location.origin).href });

export interface HarnessResult {
  data: number[];
  dims: readonly number[];
  location: string;
}

async function runGraph(modelBase64: string, input: number[], dims: readonly number[], backend: Backend): Promise<HarnessResult> {
  const model = Uint8Array.from(atob(modelBase64), (c) => c.charCodeAt(0));
  // On webgpu, ask for the output to stay on the GPU: a gpu-buffer tensor can only come from the
  // WebGPU EP, so a silent fallback to the CPU cannot pass unnoticed.
  const extra: ort.InferenceSession.SessionOptions = backend === 'webgpu' ? { preferredOutputLocation: 'gpu-buffer' } : {};
  const session = await ort.InferenceSession.create(model, sessionOptions(backend, extra));
  try {
    const x = new ort.Tensor('float32', Float32Array.from(input), dims);
    const outputs = await session.run({ x });
    const y = outputs[session.outputNames[0]!]!;
    const location = y.location;
    const data = (await y.getData(true)) as Float32Array;
    return { data: Array.from(data), dims: y.dims, location };
  } finally {
    await session.release();
  }
}

export interface KvLayoutComparison {
  /** Largest |Δlogit| between the fixed-capacity and the growing cache over every step. */
  maxLogitDifference: number;
  /** Capacities the fixed cache went through (each change is a growth with a GPU copy). */
  capacities: number[];
  steps: number;
  greedyIdsEqual: boolean;
  /** Wall time of the prompt and of the decode steps, per layout (ms). */
  ms: { fixedPrompt: number; growingPrompt: number; fixedSteps: number[]; growingSteps: number[] };
}

/**
 * The tiny bundle's decoder on WebGPU, fed the same prompt and then its own greedy tokens twice:
 * once with a fixed-capacity, in-place cache sized in 8-position steps (so it grows, copying its
 * rows on the GPU, several times) and once with the growing cache (a new present per step).
 */
async function compareKvLayouts(bundleUrl: string, promptIds: number[], steps: number, suffix = ''): Promise<KvLayoutComparison> {
  const bytes = async (file: string) => new Uint8Array(await (await fetch(new URL(file, bundleUrl))).arrayBuffer());
  const manifest = (await (await fetch(new URL('manifest.json', bundleUrl))).json()) as {
    architecture: { llm: DecoderShape & { maxPositions: number } };
  };
  const llm = manifest.architecture.llm;
  const embedTokens = await ort.InferenceSession.create(await bytes(`onnx/embed_tokens${suffix}.onnx`), sessionOptions('webgpu', embedOutputLocations('webgpu')));
  const decoderSession = await ort.InferenceSession.create(
    await bytes(`onnx/decoder_model_merged${suffix}.onnx`),
    sessionOptions('webgpu', {
      ...decoderOutputLocations('webgpu', llm.numLayers),
      externalData: [{ path: `decoder_model_merged${suffix}.onnx_data`, data: await bytes(`onnx/decoder_model_merged${suffix}.onnx_data`) }],
    }),
  );
  try {
    const common = { backend: 'webgpu' as const, embedTokens, maxPositions: llm.maxPositions };
    const fixed = new DecoderRunner(decoderSession, llm, { ...common, kvLayout: 'fixed', kvCapacity: { step: 8, headroom: 0 } });
    const growing = new DecoderRunner(decoderSession, llm, { ...common, kvLayout: 'growing' });
    const { inputs_embeds: prompt } = await embedTokens.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(promptIds, BigInt), [1, promptIds.length]) });
    const promptRows = (await prompt!.getData()) as Float32Array;
    prompt!.dispose();
    const ms = { fixedPrompt: 0, growingPrompt: 0, fixedSteps: [] as number[], growingSteps: [] as number[] };
    let t = performance.now();
    let a = await fixed.step(promptRows, fixed.emptyCache(), 4);
    ms.fixedPrompt = performance.now() - t;
    t = performance.now();
    let b = await growing.step(promptRows, growing.emptyCache(), 4);
    ms.growingPrompt = performance.now() - t;
    let maxLogitDifference = 0;
    let greedyIdsEqual = true;
    const capacities: number[] = [];
    for (let step = 0; step <= steps; step++) {
      for (let i = 0; i < a.logits.length; i++) maxLogitDifference = Math.max(maxLogitDifference, Math.abs(a.logits[i]! - b.logits[i]!));
      const capacity = (a.cache as FixedKvCache).capacity;
      if (capacities.at(-1) !== capacity) capacities.push(capacity);
      if (step === steps) break;
      const next = argmax(a.logits);
      greedyIdsEqual &&= next === argmax(b.logits);
      t = performance.now();
      a = await fixed.decodeStep(next, a.cache, 4);
      ms.fixedSteps.push(performance.now() - t);
      t = performance.now();
      b = await growing.decodeStep(next, b.cache, 4);
      ms.growingSteps.push(performance.now() - t);
    }
    for (const cache of [a.cache, b.cache] as KvCache[]) cache.dispose();
    return { maxLogitDifference, capacities, steps, greedyIdsEqual, ms };
  } finally {
    await decoderSession.release();
    await embedTokens.release();
  }
}

/** Counts the bind groups WebGPU creates from now on (in `count`) until `restore()`. */
function countBindGroups(): { count: number; restore(): void } {
  const proto = GPUDevice.prototype;
  const createBindGroup = proto.createBindGroup;
  const counter = {
    count: 0,
    restore: () => {
      proto.createBindGroup = createBindGroup;
    },
  };
  proto.createBindGroup = function (this: GPUDevice, ...args: Parameters<GPUDevice['createBindGroup']>) {
    counter.count += 1;
    return createBindGroup.apply(this, args);
  };
  return counter;
}

export interface CapturedStepComparison {
  /** Largest |Δlogit| between captured and ordinary steps over the prompt and every step. */
  maxLogitDifference: number;
  /** The same for a label set scored mid-answer on each (the prompt session with shared weights, on a scratch view). */
  maxScoreDifference: number;
  greedyIdsEqual: boolean;
  capturedSteps: number;
  /** Step sessions the captured path made: one per set of KV buffers (each growth moves the cache). */
  stepSessions: number;
  /** A second conversation after the first: its cache's capacity, and the step sessions it made. */
  secondConversation: { capacity: number; newSessions: number };
  capacities: number[];
  /** Bind groups WebGPU created per step after the first three: every such ordinary step, and the captured steps the engine did not check (replays). */
  bindGroupsPerStep: { ordinary: number; captured: number };
  /** What the captured step graph took for its token, and graph runs per captured step. */
  stepInput: string;
  runsPerCapturedStep: number;
  /** Captured runs checked against ordinary ones, and why captured steps stopped (null: they did not). */
  checkedRuns: number;
  /** Captured runs made without feeds, on the session's binding from its first run. */
  boundRuns: number;
  captureFailure: string | null;
}

export interface CapturedStepOptions {
  /** The embedding graph inside the step (the engine's default; false: the step takes rows). */
  withEmbedding?: boolean;
  variant?: string;
  /** Tokens scored after step 6, between replays (the model's vocabulary). */
  labels?: number[];
  /**
   * Hides the tied head's last node from the load-time rewrite (its name changed by one letter),
   * so the logits stay written by a Reshape, whose copy ORT leaves out of the capture: replays
   * return stale logits, which the engine's check must catch.
   */
  staleLogits?: boolean;
  /** Run a second conversation after the first (default true). */
  secondConversation?: boolean;
}

/** `bytes` with every occurrence of ASCII `from` replaced by `to` (same length: protobuf stays valid). */
function replaceAscii(bytes: Uint8Array, from: string, to: string): Uint8Array {
  const a = new TextEncoder().encode(from);
  const b = new TextEncoder().encode(to);
  if (a.length !== b.length) throw new Error('same-length strings only');
  const out = bytes.slice();
  let found = 0;
  for (let i = 0; i + a.length <= out.length; i++) {
    if (a.every((byte, j) => out[i + j] === byte)) {
      out.set(b, i);
      found += 1;
    }
  }
  if (found === 0) throw new Error(`"${from}" is not in the graph`);
  return out;
}

/**
 * The tiny bundle's decoder fed the same prompt and its own greedy tokens twice: with ordinary
 * steps, and with graph-captured ones (engine defaults: decoderCapture.ts, the embedding graph
 * inside the step; `withEmbedding` false: the step takes embedding rows), both on a
 * fixed-capacity cache sized in 8-position steps so that it grows, and the captured step is made
 * and captured again, several times.
 */
async function compareCapturedSteps(bundleUrl: string, promptIds: number[], steps: number, options: CapturedStepOptions = {}): Promise<CapturedStepComparison> {
  const { withEmbedding = true, variant = 'fp32', labels = [29871, 1724, 338], staleLogits = false, secondConversation = true } = options;
  const bytes = async (file: string) => new Uint8Array(await (await fetch(new URL(file, bundleUrl))).arrayBuffer());
  type Files = { path: string; externalData: string[] };
  const manifest = (await (await fetch(new URL('manifest.json', bundleUrl))).json()) as {
    architecture?: { llm: DecoderShape & { maxPositions: number } };
    pipeline?: { llm: DecoderShape & { maxPositions: number } };
    variants: Record<string, { graphs: { decoder: Files; embedTokens: Files } }>;
  };
  const llm = (manifest.architecture ?? manifest.pipeline)!.llm;
  const { decoder: decoderFiles, embedTokens: embedFiles } = manifest.variants[variant]!.graphs;
  const open = async (files: Files, options: ort.InferenceSession.SessionOptions) =>
    ort.InferenceSession.create(
      await bytes(files.path),
      sessionOptions('webgpu', { ...options, externalData: await Promise.all(files.externalData.map(async (name) => ({ path: name, data: await bytes(`onnx/${name}`) }))) }),
    );
  const embedTokens = await open(embedFiles, embedOutputLocations('webgpu'));
  const plainSession = await open(decoderFiles, decoderOutputLocations('webgpu', llm.numLayers));
  const readForCapture = async (file: string) =>
    staleLogits && file === decoderFiles.path ? replaceAscii(await bytes(file), '/lm_head/Reshape_back', '/lm_head/Reshape_bacK') : bytes(file);
  const opened = await openCapturedDecoder({ readFile: readForCapture }, decoderFiles, llm, withEmbedding ? embedFiles : undefined);
  if (!opened.ok) throw new Error(`capture refused: ${opened.reason}`);
  const capture = opened.decoder;
  if (withEmbedding && !capture.embed) throw new Error(`the embedding graph was not joined to the step: ${capture.embedNote}`);
  const bindGroups = countBindGroups();
  try {
    const common = { backend: 'webgpu' as const, embedTokens, maxPositions: llm.maxPositions, kvLayout: 'fixed' as const, kvCapacity: { step: 8, headroom: 0 } };
    const ordinary = new DecoderRunner(plainSession, llm, common);
    const captured = new DecoderRunner(capture.session, llm, {
      ...common,
      ...(capture.embed ? { embedTokens: capture.embed.session, embedWeights: capture.embed.weights } : {}),
      weights: capture.weights,
      captured: capture.step,
      kvBuffers: capture.step,
    });
    const { inputs_embeds: prompt } = await embedTokens.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(promptIds, BigInt), [1, promptIds.length]) });
    const promptRows = (await prompt!.getData()) as Float32Array;
    prompt!.dispose();
    let a = await ordinary.step(promptRows, ordinary.emptyCache(), 4);
    let b = await captured.step(promptRows, captured.emptyCache(), 4);
    const diff = (x: Float32Array, y: Float32Array) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i]!)), 0);
    let maxLogitDifference = diff(a.logits, b.logits);
    let maxScoreDifference = 0;
    let greedyIdsEqual = true;
    const capacities: number[] = [];
    const groups = { ordinary: 0, captured: 0 };
    let replaysCounted = 0;
    let runsPerCapturedStep = 0;
    for (let step = 0; step < steps; step++) {
      const next = argmax(a.logits);
      greedyIdsEqual &&= next === argmax(b.logits);
      const counted = step >= 3;
      bindGroups.count = 0;
      a = await ordinary.decodeStep(next, a.cache, 4);
      if (counted) groups.ordinary += bindGroups.count;
      bindGroups.count = 0;
      const runsBefore = captured.runs;
      // Steps the engine checks against an ordinary run (each session's first) are not counted.
      const replay = counted && !capture.step.checks(b.cache as FixedKvCache);
      b = await captured.decodeStep(next, b.cache, 4);
      if (replay) {
        groups.captured += bindGroups.count;
        replaysCounted += 1;
      }
      if (step === steps - 1) runsPerCapturedStep = captured.runs - runsBefore;
      maxLogitDifference = Math.max(maxLogitDifference, diff(a.logits, b.logits));
      const capacity = (b.cache as FixedKvCache).capacity;
      if (capacities.at(-1) !== capacity) capacities.push(capacity);
      if (step === 6) {
        maxScoreDifference = diff(await ordinary.scoreContinuation(labels, a.cache, 4), await captured.scoreContinuation(labels, b.cache, 4));
      }
    }
    a.cache.dispose();
    b.cache.dispose();
    // A second conversation (half the prompt, 5 steps): its cache takes the first one's buffers,
    // so the captured session goes on without a new capture.
    const sessionsBefore = capture.step.sessionsMade;
    const checkedRuns = capture.step.checkedRuns;
    const half = promptRows.subarray(0, (promptIds.length >> 1) * llm.hiddenSize);
    a = await ordinary.step(half, ordinary.emptyCache(), 4);
    b = await captured.step(half, captured.emptyCache(), 4);
    const secondCapacity = (b.cache as FixedKvCache).capacity;
    maxLogitDifference = Math.max(maxLogitDifference, diff(a.logits, b.logits));
    for (let step = 0; step < (secondConversation ? 5 : 0); step++) {
      const next = argmax(a.logits);
      greedyIdsEqual &&= next === argmax(b.logits);
      a = await ordinary.decodeStep(next, a.cache, 4);
      b = await captured.decodeStep(next, b.cache, 4);
      maxLogitDifference = Math.max(maxLogitDifference, diff(a.logits, b.logits));
    }
    a.cache.dispose();
    b.cache.dispose();
    const counted = Math.max(1, steps - 3);
    return {
      maxLogitDifference,
      maxScoreDifference,
      greedyIdsEqual,
      capturedSteps: captured.capturedSteps,
      stepSessions: sessionsBefore,
      secondConversation: { capacity: secondCapacity, newSessions: capture.step.sessionsMade - sessionsBefore },
      capacities,
      bindGroupsPerStep: { ordinary: groups.ordinary / counted, captured: groups.captured / Math.max(1, replaysCounted) },
      stepInput: capture.step.input,
      runsPerCapturedStep,
      checkedRuns,
      boundRuns: capture.step.boundRuns,
      captureFailure: captured.captureFailure,
    };
  } finally {
    bindGroups.restore();
    await releaseCapturedDecoder(capture);
    await capture.session.release();
    await capture.embed?.session.release();
    await plainSession.release();
    await embedTokens.release();
  }
}

export interface CapturedReplayReport {
  /** y read back after each run, and what it must be: (x + w) · 2 for that run's x. */
  outputs: number[][];
  expected: number[][];
  /** Bind groups WebGPU created during each run: a replayed run creates none. */
  bindGroups: number[];
}

/**
 * A graph-captured session whose inputs and output are ORT-owned buffers (OrtOwnedBuffers): x is
 * rewritten before every run, w (a "weight" input) is uploaded once. Run 1 is ORT's regular run
 * before capture, run 2 records, the rest replay; each run's output must follow that run's x.
 */
async function capturedReplay(runs: number): Promise<CapturedReplayReport> {
  const model = buildOnnxModel({
    nodes: [
      { op: 'Add', inputs: ['x', 'w'], outputs: ['sum'] },
      { op: 'Add', inputs: ['sum', 'sum'], outputs: ['y'] },
    ],
    inputs: [{ name: 'x', type: TensorType.FLOAT, dims: [5] }, { name: 'w', type: TensorType.FLOAT, dims: [5] }],
    outputs: [{ name: 'y', type: TensorType.FLOAT, dims: [5] }],
    initializers: [],
  });
  const owned = new OrtOwnedBuffers();
  const session = await ort.InferenceSession.create(model, { executionProviders: [{ name: 'webgpu' }], enableGraphCapture: true });
  const device = (await ort.env.webgpu.device) as GPUDevice;
  const bindGroups = countBindGroups();
  try {
    const weights = Float32Array.of(0.5, -1, 2, 10, -0.25);
    const w = await owned.upload('float32', [5], new Uint8Array(weights.buffer));
    const x = await owned.zeros('float32', [5]);
    const y = await owned.zeros('float32', [5]);
    const staging = device.createBuffer({ size: 20, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
    const report: CapturedReplayReport = { outputs: [], expected: [], bindGroups: [] };
    for (let run = 0; run < runs; run++) {
      const values = Float32Array.from({ length: 5 }, (_, i) => (run + 1) * (i - 2));
      device.queue.writeBuffer(x.gpuBuffer as GPUBuffer, 0, values);
      const before = bindGroups.count;
      await session.run({ x, w }, { y });
      report.bindGroups.push(bindGroups.count - before);
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(y.gpuBuffer as GPUBuffer, 0, staging, 0, 20);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      report.outputs.push(Array.from(new Float32Array(staging.getMappedRange().slice(0))));
      staging.unmap();
      report.expected.push(Array.from(values, (v, i) => (v + weights[i]!) * 2));
    }
    staging.destroy();
    return report;
  } finally {
    bindGroups.restore();
    await session.release();
    await owned.release();
  }
}

declare global {
  interface Window {
    harkHarness: {
      runGraph: typeof runGraph;
      compareKvLayouts: typeof compareKvLayouts;
      compareCapturedSteps: typeof compareCapturedSteps;
      capturedReplay: typeof capturedReplay;
      ready: true;
    };
  }
}

window.harkHarness = { runGraph, compareKvLayouts, compareCapturedSteps, capturedReplay, ready: true };
