/**
 * A generated token's decoder step as a graph-captured onnxruntime-web run (WebGPU only).
 *
 * Why: at real size the decode loop is bound by per-run and per-kernel CPU work, not by the GPU
 * (BENCHMARKS.md: a 7B int4 step on an H200 spent ~35 ms, ~1 % of the bandwidth roof). With
 * `enableGraphCapture` ORT records a run's kernels once and replays them, skipping each kernel's
 * CPU code and bind-group creation (session 11: ~90 % of a kernel's CPU cost). Capture needs:
 * - a graph with no CPU node and fixed shapes: the step graph of llm/decoderGraphEdit.ts takes
 *   `seqlens_k`/`total_seq_len` as inputs and keeps one row of logits;
 * - the same GPU buffers bound on every run: onnxruntime-web 1.30 keeps a captured session's
 *   bindings from its first run, so every input and output here is a buffer ORT allocated
 *   (ortOwnedBuffers.ts) — the weights (shared with the uncaptured prompt session), the KV cache
 *   (a FixedKvCache on those buffers, past and present one buffer), the token id (or, for a step
 *   graph without the embedding graph in front, its embedding row), the lengths, the LoRA scale
 *   and the logits, each rewritten in place before a run.
 * A captured graph is bound to one set of KV buffers: when the cache moves to new ones (it grew)
 * the step session is made afresh and captures again. So that a new conversation does not, this
 * class is also where its caches' buffers come from (`KvBuffers`): the bound set, when its cache is
 * disposed, is held and handed to the next cache (which takes its capacity when that is enough),
 * so one captured session serves conversation after conversation. Why it matters beyond the
 * capture's cost: onnxruntime-web 1.30 leaves a few small indirect-dispatch buffers behind for
 * every captured session released (5 for the tiny decoder), so a session per conversation leaked.
 * Prompts, scoring, beams and the probe stay uncaptured (llm/decoder.ts): their shapes change.
 *
 * After a session's first run its runs go to ORT's session handler without feeds (`runBound`):
 * the binding made at that first run is what a captured session reads, so the feeds — the weights
 * among them — need not be handed over again on every token.
 */
import { ort, sessionOptions } from '../ortRuntime';
import type { OrtOwnedBuffers } from '../ortOwnedBuffers';
import { FixedKvCache, type KvBuffers } from './fixedKvCache';
import { presentName, pastName, forEachKv, type KvCache } from './kvCache';

/** Runs of each captured session checked against ordinary runs (see `checking`). */
const CHECKED_RUNS_PER_SESSION = 3;
/** Largest logit difference a check accepts, relative to the largest logit (at least 1). */
const CHECK_TOLERANCE = 1e-3;

export interface CapturedStepShape {
  numLayers: number;
  hiddenSize: number;
  vocabSize: number;
}

/** What a step graph is fed for its token (llm/decoderGraphEdit.ts `stepInput`). */
export type StepInput = 'input_ids' | 'inputs_embeds';

/** The fixed buffers every step run binds besides the KV cache and the weights. */
interface StepBuffers {
  /** The token: its id (int64 [1, 1]) or its embedding row (float32 [1, 1, hidden]). */
  token: ort.Tensor;
  seqlens: ort.Tensor;
  total: ort.Tensor;
  scale: ort.Tensor;
  logits: ort.Tensor;
}

/**
 * A new session of the step graph, to be captured at its runs. Throws where ORT refuses capture
 * (a node it places on the CPU, e.g. a shape op some graphs keep): the caller then runs ordinary
 * steps, so ORT is told not to log the refusal itself (the reason reaches the device report).
 */
/** The object an onnxruntime-web InferenceSession hands its runs to (its private `handler`). */
interface OrtSessionHandler {
  run(feeds: Record<string, ort.Tensor>, fetches: Record<string, ort.Tensor>, options: ort.InferenceSession.RunOptions): Promise<unknown>;
}

/**
 * `session`'s handler, where it has the shape onnxruntime-web 1.30 gives it; else null (then every
 * run goes through `session.run`). Why reach past the public API: for a session with I/O binding
 * (graph capture) ORT binds the inputs at the first run and never reads feeds again, yet
 * `InferenceSession.run` refuses a run without every input, and ORT's wasm core then registers,
 * wraps and releases a tensor per feed per run: ≈ 7–17 µs each here (`bench:input-cost`), ≈ 4 ms a
 * token for the 7B step's 453 weight inputs. The handler takes the feeds it is given, none for a
 * bound session. What it returns is the same: the replay check (`checks`) covers the first run made
 * through it, so an ORT version where this differs stops capture instead of answering wrongly.
 */
export function sessionHandlerOf(session: ort.InferenceSession): OrtSessionHandler | null {
  const handler = (session as unknown as { handler?: Partial<OrtSessionHandler> }).handler;
  return typeof handler?.run === 'function' ? (handler as OrtSessionHandler) : null;
}

export async function openStepSession(graph: Uint8Array): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(
      graph,
      sessionOptions('webgpu', {
        // The provider as an object: onnxruntime-web 1.30 hands `enableGraphCapture` to the WebGPU
        // provider only then (with the plain 'webgpu' string the session runs uncaptured).
        executionProviders: [{ name: 'webgpu' }],
        enableGraphCapture: true,
        preferredOutputLocation: 'gpu-buffer',
        logSeverityLevel: 4,
      }),
    );
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(message.replace(/^Can't create a session\. ERROR_CODE: \d+, ERROR_MESSAGE: /, '').replace(/\s+/g, ' ').trim());
  }
}

export class CapturedDecodeStep implements KvBuffers {
  /** Step sessions made so far (one per set of KV buffers), for stats and tests. */
  sessionsMade = 0;
  /** Captured runs checked against an ordinary run of the same token so far (`checking`). */
  checkedRuns = 0;
  /** Runs made without feeds (the session's binding from its first run: `sessionHandlerOf`), for stats and tests. */
  boundRuns = 0;
  /** Hand every run all its feeds, as `session.run` must (benchmarks compare the two). */
  feedsEveryRun = false;
  /** Runs of the current session so far. */
  private runsOfSession = 0;
  private session: ort.InferenceSession | null = null;
  /** A session made (and so checked) at load and not run yet: the first capture takes it. */
  private fresh: ort.InferenceSession | null;
  /** The KV tensors of the current binding, and its feeds and fetches. */
  private bound: { past: Record<string, ort.Tensor>; feeds: Record<string, ort.Tensor>; fetches: Record<string, ort.Tensor> } | null = null;
  /** The KV buffers the current session was captured with, in input order. */
  private boundBuffers: GPUBuffer[] = [];
  /** Bound buffers whose cache was disposed, kept for the next cache, in the order they were freed. */
  private held: GPUBuffer[] = [];
  /** Bytes asked for each KV buffer made here (ORT may round a buffer's size up). */
  private readonly asked = new Map<GPUBuffer, number>();
  private writtenScale = Number.NaN;

  private constructor(
    private readonly graph: Uint8Array,
    private readonly owned: OrtOwnedBuffers,
    private readonly weights: Record<string, ort.Tensor>,
    private readonly shape: CapturedStepShape,
    private readonly buffers: StepBuffers,
    private readonly staging: GPUBuffer,
    private readonly device: GPUDevice,
    private readonly takesScale: boolean,
    /** What the graph takes for the token. */
    readonly input: StepInput,
    fresh: ort.InferenceSession,
  ) {
    this.fresh = fresh;
  }

  /**
   * `graph`: the step graph, `fresh` a session of it from openStepSession; `weights`: every weight
   * input it has, as tensors `owned` made (the same ones the prompt and embedding sessions bind);
   * `takesScale`: the graph has a LoRA scale input; `input`: what it takes for the token.
   */
  static async create(
    graph: Uint8Array,
    fresh: ort.InferenceSession,
    owned: OrtOwnedBuffers,
    weights: Record<string, ort.Tensor>,
    shape: CapturedStepShape,
    { takesScale, input }: { takesScale: boolean; input: StepInput },
  ): Promise<CapturedDecodeStep> {
    const device = (await ort.env.webgpu.device) as GPUDevice;
    const buffers: StepBuffers = {
      token: input === 'input_ids'
        ? ort.Tensor.fromGpuBuffer((await owned.zeros('int32', [2])).gpuBuffer, { dataType: 'int64', dims: [1, 1] })
        : await owned.zeros('float32', [1, 1, shape.hiddenSize]),
      seqlens: await owned.zeros('int32', [1]),
      total: await owned.zeros('int32', []),
      scale: await owned.zeros('float32', []),
      logits: await owned.zeros('float32', [1, 1, shape.vocabSize]),
    };
    const staging = device.createBuffer({ size: 4 * shape.vocabSize, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
    return new CapturedDecodeStep(graph, owned, weights, shape, buffers, staging, device, takesScale, input, fresh);
  }

  /**
   * Whether the run for `cache` should be checked against an ordinary one (DecoderRunner does
   * it): the first runs of every captured session — ORT's regular run, the capturing run and the
   * first replay — including a run that makes a new session because the cache grows. Why: a replay that silently differs from the run it recorded is possible (a graph
   * output written by a copy ORT leaves out of the capture returned stale logits, found on the
   * tiny ALARM decoder), and other GPUs pick other kernels; a wrong answer must not be the symptom.
   */
  checks(cache: FixedKvCache): boolean {
    return this.runsOfSession < CHECKED_RUNS_PER_SESSION || cache.length + 1 > cache.capacity;
  }

  /**
   * Compares a checked run's logits with the ordinary run's (`reference`): null when they agree
   * (the same kernels on the same numbers: equal, within a margin for any reordering), else why not.
   */
  check(reference: Float32Array, logits: Float32Array): string | null {
    this.checkedRuns += 1;
    let scale = 1;
    let largest = 0;
    for (let i = 0; i < reference.length; i++) {
      scale = Math.max(scale, Math.abs(reference[i]!));
      const difference = Math.abs(reference[i]! - logits[i]!);
      if (!(difference <= largest)) largest = Number.isNaN(difference) ? Number.POSITIVE_INFINITY : difference;
    }
    if (reference.length === logits.length && largest <= CHECK_TOLERANCE * scale) return null;
    return `a replayed decode step differed from an ordinary run of the same token (logits off by ${largest.toExponential(1)})`;
  }

  /** Inputs the current session is fed at its first run (0 before one): what a run without feeds leaves out. */
  get boundFeeds(): number {
    return this.bound ? Object.keys(this.bound.feeds).length : 0;
  }

  /** Whether `cache` is one this step can bind: one sequence, on buffers from here, not a scratch view. */
  accepts(cache: KvCache): cache is FixedKvCache {
    return cache instanceof FixedKvCache && cache.buffers === this && cache.batch === 1 && !cache.isScratch;
  }

  /** KvBuffers: a held buffer of exactly `bytes` (the next in order), else a new ORT-owned one. */
  async create(bytes: number): Promise<GPUBuffer> {
    const next = this.held[0];
    if (next && this.asked.get(next) === bytes) return this.held.shift()!;
    const buffer = await this.owned.create(bytes);
    this.asked.set(buffer, bytes);
    return buffer;
  }

  /** KvBuffers: a buffer the session is bound to is held for the next cache; any other goes back to ORT. */
  destroy(buffer: GPUBuffer): void {
    if (this.boundBuffers.includes(buffer)) {
      this.held.push(buffer);
      return;
    }
    this.asked.delete(buffer);
    this.owned.destroy(buffer);
  }

  /** KvBuffers: the held set's capacity, when it is a whole cache's set of this layout. */
  heldCapacity(bytesPerPosition: number, count: number): number | null {
    if (this.held.length !== count) return null;
    const bytes = this.asked.get(this.held[0]!)!;
    if (!this.held.every((buffer) => this.asked.get(buffer) === bytes) || bytes % bytesPerPosition !== 0) return null;
    return bytes / bytesPerPosition;
  }

  /**
   * Feeds token `id` after `cache`: the next position's logits and the cache one position longer
   * (`cache` is consumed). A graph that takes embedding rows gets the row `embed` writes into its
   * buffer; one with the embedding graph inside gets the id, written on the GPU (8 bytes).
   */
  async run(
    id: number,
    cache: FixedKvCache,
    loraScale: number,
    embed: (id: number, into: ort.Tensor) => Promise<void>,
  ): Promise<{ logits: Float32Array; cache: KvCache }> {
    const past = await cache.pastFeeds(1); // may move the cache to larger buffers
    const bound = await this.bind(past);
    const queue = this.device.queue;
    if (this.input === 'input_ids') queue.writeBuffer(this.bufferOf(this.buffers.token), 0, BigInt64Array.of(BigInt(id)));
    else await embed(id, this.buffers.token);
    queue.writeBuffer(this.bufferOf(this.buffers.seqlens), 0, Int32Array.of(cache.length));
    queue.writeBuffer(this.bufferOf(this.buffers.total), 0, Int32Array.of(cache.length + 1));
    if (this.takesScale && loraScale !== this.writtenScale) {
      queue.writeBuffer(this.bufferOf(this.buffers.scale), 0, Float32Array.of(loraScale));
      this.writtenScale = loraScale;
    }
    await this.runBound(bound.feeds, bound.fetches);
    this.runsOfSession += 1;
    const logits = await this.readLogits();
    return { logits, cache: cache.advance({}, 1) };
  }

  /** Releases the session and the held buffers (the owner releases every ORT-owned buffer after). */
  async release(): Promise<void> {
    await this.session?.release();
    await this.fresh?.release();
    this.session = null;
    this.fresh = null;
    this.bound = null;
    this.boundBuffers = [];
    for (const buffer of this.held.splice(0)) this.destroy(buffer);
    this.staging.destroy();
  }

  /** The session captured with `past`'s buffers as its KV cache (made afresh when the cache moved to others). */
  private async bind(past: Record<string, ort.Tensor>) {
    if (this.bound?.past === past && this.session) return this.bound;
    const names: string[] = [];
    forEachKv(this.shape.numLayers, (layer, kind) => names.push(pastName(layer, kind)));
    const buffers = names.map((name) => past[name]!.gpuBuffer as GPUBuffer);
    const same = this.session !== null && buffers.length === this.boundBuffers.length && buffers.every((b, i) => b === this.boundBuffers[i]);
    if (!same) await this.capture(buffers);
    const outputs: Record<string, ort.Tensor> = { logits: this.buffers.logits };
    // Past and present are one buffer: GroupQueryAttention writes the new position in place.
    forEachKv(this.shape.numLayers, (layer, kind) => {
      outputs[presentName(layer, kind)] = past[pastName(layer, kind)]!;
    });
    // In the session's output order, the order `session.run` binds them in at the first run (later
    // runs hand them to the handler as they are: see `runBound`).
    const fetches: Record<string, ort.Tensor> = {};
    for (const name of this.session!.outputNames) {
      const output = outputs[name];
      if (!output) throw new Error(`the captured step graph has an output "${name}" the runtime does not bind`);
      fetches[name] = output;
    }
    const feeds: Record<string, ort.Tensor> = {
      ...past,
      [this.input]: this.buffers.token,
      seqlens_k: this.buffers.seqlens,
      total_seq_len: this.buffers.total,
      ...(this.takesScale ? { lora_scale: this.buffers.scale } : {}),
    };
    for (const name of this.session!.inputNames) {
      if (feeds[name]) continue;
      const weight = this.weights[name];
      if (!weight) throw new Error(`the captured step graph asks for "${name}", which is not a weight the runtime uploaded`);
      feeds[name] = weight;
    }
    this.bound = { past, feeds, fetches };
    return this.bound;
  }

  /**
   * One run of the current session: with all its feeds the first time (ORT binds them then), after
   * that without any (see `sessionHandlerOf`); the outputs are handed over each time, as ORT asks.
   */
  private async runBound(feeds: Record<string, ort.Tensor>, fetches: Record<string, ort.Tensor>): Promise<void> {
    const handler = this.runsOfSession > 0 && !this.feedsEveryRun ? sessionHandlerOf(this.session!) : null;
    if (!handler) {
      await this.session!.run(feeds, fetches);
      return;
    }
    await handler.run({}, fetches, {});
    this.boundRuns += 1;
  }

  /** A new step session, to be captured on `buffers`; held buffers of the old binding go back to ORT. */
  private async capture(buffers: GPUBuffer[]): Promise<void> {
    await this.session?.release();
    this.session = null;
    this.boundBuffers = buffers;
    for (const buffer of this.held.splice(0)) this.destroy(buffer);
    this.session = this.fresh ?? (await openStepSession(this.graph));
    this.fresh = null;
    this.sessionsMade += 1;
    this.runsOfSession = 0;
  }

  private bufferOf(tensor: ort.Tensor): GPUBuffer {
    return tensor.gpuBuffer as GPUBuffer;
  }

  /** The logits row, copied from its GPU buffer (one read-back per token). */
  private async readLogits(): Promise<Float32Array> {
    const bytes = 4 * this.shape.vocabSize;
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(this.bufferOf(this.buffers.logits), 0, this.staging, 0, bytes);
    this.device.queue.submit([encoder.finish()]);
    await this.staging.mapAsync(GPUMapMode.READ);
    const logits = new Float32Array(this.staging.getMappedRange(0, bytes).slice(0));
    this.staging.unmap();
    return logits;
  }
}
