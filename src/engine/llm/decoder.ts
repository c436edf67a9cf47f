/**
 * One forward pass of the LLM decoder graph with its KV cache.
 *
 * Graph I/O (transformers.js naming, see models/salmonn/onnx_decoder.py): inputs_embeds f32
 * [1, n, H], attention_mask i64 [1, total], position_ids i64 [1, n], past_key_values.{i}.key/value
 * [1, kvHeads, past, headDim] (f32, or f16 for fp16-compute variants), lora_scale f32 scalar (only
 * in models with LoRA: a model without it has no such input and the scale is ignored),
 * num_logits_to_keep i64 scalar → logits f32 [1, k, vocab], present.{i}.key/value.
 *
 * What a run costs beyond the GPU's own work is what this module keeps small:
 * - only the last position's logits are computed and read back (`num_logits_to_keep` = 1), so a
 *   prefill of n tokens neither runs lm_head n times nor copies n × vocab floats to the CPU;
 * - on WebGPU the KV cache is a FixedKvCache, bound in place (no per-step buffers);
 * - a decode step embeds its token on the device (`decodeStep`): the embedding row goes from the
 *   embed graph's output buffer straight into the decoder, with no GPU→CPU→GPU round trip.
 * - with a captured step (`captured`, llm/capturedStep.ts) a generated token's step is one
 *   graph-captured run on fixed buffers (with the embedding inside it where the bundle allows);
 *   every other run goes through `session`, which then takes the same GPU weights as inputs
 *   (`weights`, and `embedWeights` for the embedding graph).
 * Graphs converted before `num_logits_to_keep` existed still run (all logits, last row kept).
 *
 * `scoreContinuation` feeds given tokens on a scratch view of a cache and returns the logits after
 * each of them (`num_logits_to_keep` = their count), for answers from a fixed label set.
 *
 * Bundles with localization also output `probe_hidden` (the residual entering the first probed
 * layer, see models/salmonn/onnx_decoder.py); it is fetched only by `prefillHidden`, so answers
 * never read it back.
 */
import type { Backend } from '../device';
import { HarkError } from '../errors';
import { ort } from '../ortRuntime';
import type { CapturedDecodeStep } from './capturedStep';
import { FixedKvCache, type KvBuffers, type KvCapacityPolicy } from './fixedKvCache';
import { GrowingKvCache, presentNames, type KvCache, type KvType } from './kvCache';

export { presentNames, type KvCache } from './kvCache';

export interface DecoderShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  hiddenSize: number;
  vocabSize: number;
}

/** Session options for the decoder: KV outputs stay on the GPU, logits come to the CPU. */
export function decoderOutputLocations(backend: Backend, numLayers: number): ort.InferenceSession.SessionOptions {
  if (backend !== 'webgpu') return {};
  const locations: Record<string, ort.Tensor.DataLocation> = { logits: 'cpu' };
  for (const name of presentNames(numLayers)) locations[name] = 'gpu-buffer';
  return { preferredOutputLocation: locations };
}

/** Session options for the token embedding graph: on WebGPU its rows stay on the GPU. */
export function embedOutputLocations(backend: Backend): ort.InferenceSession.SessionOptions {
  return backend === 'webgpu' ? { preferredOutputLocation: 'gpu-buffer' } : {};
}

/**
 * Longest run of new tokens fed to the decoder at once on WebGPU. Measured here (onnxruntime-web
 * 1.30, native WebGPU EP, SwiftShader adapter): GroupQueryAttention is exact for up to 31 new
 * tokens at any past length, and wrong (errors ~0.1–0.4) from 32 on, with or without past, for
 * head sizes 8, 32 and 128 — the length at which ORT switches to its flash-attention prefill
 * shader. Longer prompts are therefore fed in chunks of 31 on top of the growing KV cache, which
 * is mathematically the same computation (causal attention over the cache plus the chunk).
 */
export const WEBGPU_ATTENTION_CHUNK = 31;

export interface DecoderOptions {
  backend: Backend;
  /** The token embedding graph (input_ids → inputs_embeds), for decodeStep. */
  embedTokens: ort.InferenceSession;
  /** Graph inputs fed to every run of `embedTokens`: its weights, when they live in shared GPU buffers. */
  embedWeights?: Record<string, ort.Tensor>;
  /** Longest context (positions); a fixed-capacity cache never grows past it. */
  maxPositions: number;
  /** Feed at most this many new tokens per graph run (default: all at once). */
  maxChunk?: number;
  /** KV layout; default: fixed-capacity in place on WebGPU, growing on wasm. */
  kvLayout?: 'fixed' | 'growing';
  /** How a fixed-capacity cache is sized and grown (default 256-position steps; tests use small ones). */
  kvCapacity?: KvCapacityPolicy;
  /** Where a fixed-capacity cache's buffers come from (default: the app's own; a captured step needs ORT's). */
  kvBuffers?: KvBuffers;
  /** Graph inputs fed to every run of `session`: its weights, when they live in shared GPU buffers. */
  weights?: Record<string, ort.Tensor>;
  /** Runs single-sequence decode steps graph-captured (WebGPU). */
  captured?: CapturedDecodeStep;
}

export interface StepResult {
  /** The last position's logits (the last positions' rows for a scoring run). */
  logits: Float32Array;
  cache: KvCache;
  /** `probe_hidden` rows of this run ([n × hidden]), when asked for. */
  hidden?: Float32Array;
}

/** The decoder output that localization's probe starts from. */
export const PROBE_HIDDEN = 'probe_hidden';

export class DecoderRunner {
  readonly kvType: KvType;
  readonly kvLayout: 'fixed' | 'growing';
  readonly maxChunk: number;
  /** Graph runs so far (decoder and embedding), for diagnostics and benchmarks. */
  runs = 0;
  /** Decode steps run graph-captured so far. */
  capturedSteps = 0;
  /** Why captured steps stopped (the first error a captured run raised); null while they run. */
  captureFailure: string | null = null;
  private captured: CapturedDecodeStep | null;
  private readonly keepsLogits: boolean;
  /** The graph has a LoRA scale input (SALMONN); without LoRA (format 2's `lora: null`) it has none. */
  private readonly takesLoraScale: boolean;
  /** Outputs fetched by every run: all but `probe_hidden`. */
  private readonly stepOutputs: string[];

  constructor(
    private readonly session: ort.InferenceSession,
    readonly shape: DecoderShape,
    private readonly options: DecoderOptions,
  ) {
    const meta = session.inputMetadata.find((m) => m.name === 'past_key_values.0.key');
    this.kvType = meta && meta.isTensor && meta.type === 'float16' ? 'float16' : 'float32';
    this.kvLayout = options.kvLayout ?? (options.backend === 'webgpu' ? 'fixed' : 'growing');
    this.maxChunk = options.maxChunk ?? Number.POSITIVE_INFINITY;
    this.keepsLogits = session.inputNames.includes('num_logits_to_keep');
    this.takesLoraScale = session.inputNames.includes('lora_scale');
    this.stepOutputs = session.outputNames.filter((name) => name !== PROBE_HIDDEN);
    this.captured = options.captured ?? null;
  }

  /** Whether generated tokens' steps run graph-captured. */
  get capturesSteps(): boolean {
    return this.captured !== null;
  }

  /** Whether the graph outputs `probe_hidden` (bundles converted with localization). */
  get hasProbeHidden(): boolean {
    return this.session.outputNames.includes(PROBE_HIDDEN);
  }

  /**
   * The residual stream entering the first probed layer at every position of a prompt run from an
   * empty cache ([n × hidden]), for localization's probe. Fed in the same chunks as any prefill;
   * the cache it builds is released.
   */
  async prefillHidden(embeds: Float32Array, loraScale: number, signal?: AbortSignal): Promise<Float32Array> {
    if (!this.hasProbeHidden) throw new Error(`the decoder graph has no ${PROBE_HIDDEN} output`);
    const hidden = this.shape.hiddenSize;
    const n = embeds.length / hidden;
    const out = new Float32Array(embeds.length);
    let cache = this.emptyCache();
    try {
      for (let start = 0; start < n; start += this.maxChunk) {
        signal?.throwIfAborted();
        const end = Math.min(n, start + this.maxChunk);
        const rows = embeds.subarray(start * hidden, end * hidden);
        const result = await this.run(new ort.Tensor('float32', rows, [1, end - start, hidden]), cache, loraScale, true);
        cache = result.cache;
        out.set(result.hidden!, start * hidden);
      }
    } finally {
      cache.dispose();
    }
    return out;
  }

  emptyCache(): KvCache {
    return this.kvLayout === 'fixed'
      ? FixedKvCache.empty(this.shape, this.kvType, this.options.maxPositions, this.options.kvCapacity, this.options.kvBuffers)
      : GrowingKvCache.empty(this.shape, this.kvType);
  }

  /**
   * Runs `embeds` ([n × hidden] rows) after `cache`, in chunks of at most `maxChunk` rows;
   * returns the last row's logits and the new cache. `cache` is consumed: callers must not reuse it.
   */
  async step(embeds: Float32Array, cache: KvCache, loraScale: number, signal?: AbortSignal): Promise<StepResult> {
    const hidden = this.shape.hiddenSize;
    const n = embeds.length / hidden;
    if (!Number.isInteger(n) || n < 1) throw new Error(`embeddings length ${embeds.length} is not a multiple of ${hidden}`);
    let result: StepResult | undefined;
    for (let start = 0; start < n; start += this.maxChunk) {
      // A prompt fed in chunks stops between them; the half-fed cache is released.
      if (result && signal?.aborted) {
        result.cache.dispose();
        throw new HarkError('engine/cancelled', 'The answer was stopped while the model read the question; the conversation starts over from the recording.');
      }
      const end = Math.min(n, start + this.maxChunk);
      const rows = embeds.subarray(start * hidden, end * hidden);
      result = await this.run(new ort.Tensor('float32', rows, [1, end - start, hidden]), result?.cache ?? cache, loraScale);
    }
    return result!;
  }

  /**
   * One generated token: embedded on the device and fed straight to the decoder — as one
   * graph-captured run when this runner has a captured step that can bind `cache`.
   */
  async decodeStep(id: number, cache: KvCache, loraScale: number): Promise<StepResult> {
    const captured = this.captured;
    if (captured?.accepts(cache)) {
      try {
        // The first runs of each captured session are checked against an ordinary run of the same
        // token (on a scratch view: the cache is left as it was).
        const reference = captured.checks(cache) ? await this.scoreContinuation([id], cache, loraScale) : null;
        const result = await captured.run(id, cache, loraScale, (token, into) => this.embedInto(token, into));
        this.runs += captured.input === 'input_ids' ? 1 : 2;
        this.capturedSteps += 1;
        const mismatch = reference ? captured.check(reference, result.logits) : null;
        if (!mismatch) return result;
        // Later steps run uncaptured; this one again, as an ordinary run on the position the
        // replay wrote (its KV row is not trusted either).
        this.captureFailure = mismatch;
        this.captured = null;
        const again = await result.cache.truncate(cache.length);
        await captured.release().catch(() => undefined);
        return this.decodeBatch([id], again, loraScale);
      } catch (error) {
        // A device or driver that cannot replay the graph: later steps run uncaptured, as they did
        // before capture existed (the cache was not consumed; this step is run again below).
        this.captureFailure = error instanceof Error ? error.message : String(error);
        this.captured = null;
        await captured.release().catch(() => undefined);
      }
    }
    return this.decodeBatch([id], cache, loraScale);
  }

  /**
   * Several known tokens (a reasoning model's forced closing text) fed after `cache` in runs of at
   * most `maxChunk`, embedded on the device: the last one's logits and the new cache. The same
   * computation as one decodeStep per token (causal attention over the cache), in one run instead
   * of one per token. `cache` is consumed.
   */
  async decodeTokens(ids: readonly number[], cache: KvCache, loraScale: number): Promise<StepResult> {
    if (ids.length === 0) throw new Error('no tokens to feed');
    let result: StepResult | undefined;
    for (let start = 0; start < ids.length; start += this.maxChunk) {
      const embeds = await this.embedOnDevice(ids.slice(start, Math.min(ids.length, start + this.maxChunk)));
      try {
        result = await this.run(embeds, result?.cache ?? cache, loraScale);
      } finally {
        embeds.dispose();
      }
    }
    return result!;
  }

  /**
   * One token per sequence of a batched cache (beam search: `ids[i]` continues the cache's row i);
   * `logits` holds one row per sequence ([ids.length × vocab]).
   */
  async decodeBatch(ids: readonly number[], cache: KvCache, loraScale: number): Promise<StepResult> {
    if (ids.length !== cache.batch) throw new Error(`${ids.length} tokens for a KV cache of ${cache.batch} sequences`);
    const embeds = await this.embedOnDevice(ids, ids.length);
    try {
      return await this.run(embeds, cache, loraScale);
    } finally {
      embeds.dispose();
    }
  }

  /**
   * The logits after each of `ids` ([ids.length × vocab]) fed after `cache`, which is left as it
   * was: the tokens go onto a scratch view of it (KvCache.scratch) that is dropped afterwards.
   * Tokens are embedded on the device, in chunks of at most `maxChunk` per run.
   */
  async scoreContinuation(ids: readonly number[], cache: KvCache, loraScale: number): Promise<Float32Array> {
    const vocab = this.shape.vocabSize;
    const rows = new Float32Array(ids.length * vocab);
    let view = await cache.scratch(ids.length);
    try {
      for (let start = 0; start < ids.length; start += this.maxChunk) {
        const chunk = ids.slice(start, Math.min(ids.length, start + this.maxChunk));
        const embeds = await this.embedOnDevice(chunk);
        try {
          const result = await this.run(embeds, view, loraScale, false, chunk.length);
          view = result.cache;
          rows.set(result.logits, start * vocab);
        } finally {
          embeds.dispose();
        }
      }
    } finally {
      view.dispose();
    }
    return rows;
  }

  /** Token `id`'s embedding row written into `into` (a fixed GPU buffer a captured step binds). */
  private async embedInto(id: number, into: ort.Tensor): Promise<void> {
    await this.options.embedTokens.run({ input_ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(id)), [1, 1]), ...this.options.embedWeights }, { inputs_embeds: into });
  }

  /**
   * Token ids → their embedding rows, left where the embedding graph put them (the GPU on WebGPU):
   * [1, ids.length, hidden], or one token per sequence ([batch, 1, hidden]) for a batch.
   */
  private async embedOnDevice(ids: readonly number[], batch = 1): Promise<ort.Tensor> {
    const { inputs_embeds: embeds } = await this.options.embedTokens.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [batch, ids.length / batch]),
      ...this.options.embedWeights,
    });
    this.runs += 1;
    if (!embeds) throw new Error('the embedding graph did not return inputs_embeds');
    return embeds;
  }

  /**
   * One graph run; `logits` holds the last `keep` positions' rows of each sequence. All sequences
   * of a batch have the cache's length, so the mask is all ones and positions are shared.
   */
  private async run(embeds: ort.Tensor, cache: KvCache, loraScale: number, withHidden = false, keep = 1): Promise<StepResult> {
    const batch = embeds.dims[0]!;
    const n = embeds.dims[1]!;
    if (batch !== cache.batch) throw new Error(`a batch of ${batch} for a KV cache of ${cache.batch} sequences`);
    const total = cache.length + n;
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: embeds,
      attention_mask: new ort.Tensor('int64', new BigInt64Array(batch * total).fill(1n), [batch, total]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: batch * n }, (_, i) => BigInt(cache.length + (i % n))), [batch, n]),
      ...(await cache.pastFeeds(n)),
      ...this.options.weights,
    };
    if (this.takesLoraScale) feeds.lora_scale = new ort.Tensor('float32', new Float32Array([loraScale]), []);
    if (this.keepsLogits) feeds.num_logits_to_keep = new ort.Tensor('int64', BigInt64Array.of(BigInt(keep)), []);
    const presents = cache.presentFetches();
    const names = withHidden ? [...this.stepOutputs, PROBE_HIDDEN] : this.stepOutputs;
    // Naming every wanted output keeps ORT returning all of them when some are pre-allocated.
    const outputs = presents
      ? await this.session.run(feeds, { ...Object.fromEntries(names.map((name) => [name, null])), ...presents })
      : await this.session.run(feeds, names);
    this.runs += 1;
    let hiddenRows: Float32Array | undefined;
    if (withHidden) {
      const tensor = outputs[PROBE_HIDDEN];
      if (!tensor) throw new Error(`decoder graph did not return ${PROBE_HIDDEN}`);
      hiddenRows = ((await tensor.getData()) as Float32Array).slice();
      tensor.dispose();
    }
    const logitsTensor = outputs.logits;
    if (!logitsTensor) throw new Error('decoder graph did not return logits');
    const all = (await logitsTensor.getData()) as Float32Array;
    const vocab = this.shape.vocabSize;
    const wanted = keep * vocab;
    let logits = all;
    if (all.length !== batch * wanted) {
      // A graph without num_logits_to_keep returns every position: keep each sequence's last rows.
      const perSequence = all.length / batch;
      logits = new Float32Array(batch * wanted);
      for (let b = 0; b < batch; b++) logits.set(all.subarray((b + 1) * perSequence - wanted, (b + 1) * perSequence), b * wanted);
    }
    logitsTensor.dispose();
    return { logits, cache: cache.advance(outputs, n), ...(hiddenRows ? { hidden: hiddenRows } : {}) };
  }
}
