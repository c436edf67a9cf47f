/**
 * One forward pass of the LLM decoder graph with its KV cache.
 *
 * Graph I/O (transformers.js naming, see models/salmonn/onnx_decoder.py): inputs_embeds f32
 * [1, n, H], attention_mask i64 [1, total], position_ids i64 [1, n], past_key_values.{i}.key/value
 * [1, kvHeads, past, headDim] (f32, or f16 for fp16-compute variants), lora_scale f32 scalar →
 * logits f32 [1, n, vocab], present.{i}.key/value.
 *
 * On WebGPU the presents are kept as GPU buffers (`preferredOutputLocation`) and fed straight back
 * as the next step's past, so the cache never crosses to the CPU; each step's old cache is
 * disposed as soon as the new one exists, so GPU memory is released deterministically.
 */
import type { Backend } from '../device';
import { ort } from '../ortRuntime';

export interface DecoderShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  hiddenSize: number;
  vocabSize: number;
}

export function presentNames(numLayers: number): string[] {
  return Array.from({ length: numLayers }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat();
}

/** Session options for the decoder: KV outputs stay on the GPU, logits come to the CPU. */
export function decoderOutputLocations(backend: Backend, numLayers: number): ort.InferenceSession.SessionOptions {
  if (backend !== 'webgpu') return {};
  const locations: Record<string, ort.Tensor.DataLocation> = { logits: 'cpu' };
  for (const name of presentNames(numLayers)) locations[name] = 'gpu-buffer';
  return { preferredOutputLocation: locations };
}

export class KvCache {
  private constructor(
    /** Tensors named past_key_values.{i}.{key,value}. */
    readonly tensors: Record<string, ort.Tensor>,
    /** Positions held. */
    readonly length: number,
    private readonly owned: boolean,
  ) {}

  static empty(shape: DecoderShape, dtype: 'float32' | 'float16'): KvCache {
    const tensors: Record<string, ort.Tensor> = {};
    const dims = [1, shape.numKvHeads, 0, shape.headDim];
    for (let i = 0; i < shape.numLayers; i++) {
      for (const kind of ['key', 'value']) {
        tensors[`past_key_values.${i}.${kind}`] =
          dtype === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), dims) : new ort.Tensor('float32', new Float32Array(0), dims);
      }
    }
    return new KvCache(tensors, 0, false);
  }

  static fromPresents(outputs: ort.InferenceSession.OnnxValueMapType, numLayers: number, length: number): KvCache {
    const tensors: Record<string, ort.Tensor> = {};
    for (let i = 0; i < numLayers; i++) {
      for (const kind of ['key', 'value']) {
        const present = outputs[`present.${i}.${kind}`];
        if (!present) throw new Error(`decoder graph did not return present.${i}.${kind}`);
        tensors[`past_key_values.${i}.${kind}`] = present;
      }
    }
    return new KvCache(tensors, length, true);
  }

  /** Releases GPU buffers (a no-op for CPU tensors created by us). */
  dispose(): void {
    if (!this.owned) return;
    for (const tensor of Object.values(this.tensors)) tensor.dispose();
  }
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

export class DecoderRunner {
  readonly kvType: 'float32' | 'float16';

  constructor(
    private readonly session: ort.InferenceSession,
    readonly shape: DecoderShape,
    /** Feed at most this many new tokens per graph run (Infinity: all at once). */
    private readonly maxChunk: number = Number.POSITIVE_INFINITY,
  ) {
    const meta = session.inputMetadata.find((m) => m.name === 'past_key_values.0.key');
    this.kvType = meta && meta.isTensor && meta.type === 'float16' ? 'float16' : 'float32';
  }

  emptyCache(): KvCache {
    return KvCache.empty(this.shape, this.kvType);
  }

  /**
   * Runs `embeds` ([n × hidden] rows) after `cache`, in chunks of at most `maxChunk` rows;
   * returns the last row's logits and the new cache. The old cache is disposed here: callers
   * must not reuse it.
   */
  async step(embeds: Float32Array, cache: KvCache, loraScale: number): Promise<{ logits: Float32Array; cache: KvCache }> {
    const hidden = this.shape.hiddenSize;
    const n = embeds.length / hidden;
    if (!Number.isInteger(n) || n < 1) throw new Error(`embeddings length ${embeds.length} is not a multiple of ${hidden}`);
    let result: { logits: Float32Array; cache: KvCache } | undefined;
    for (let start = 0; start < n; start += this.maxChunk) {
      const end = Math.min(n, start + this.maxChunk);
      result = await this.run(embeds.subarray(start * hidden, end * hidden), result?.cache ?? cache, loraScale);
    }
    return result!;
  }

  private async run(embeds: Float32Array, cache: KvCache, loraScale: number): Promise<{ logits: Float32Array; cache: KvCache }> {
    const n = embeds.length / this.shape.hiddenSize;
    const total = cache.length + n;
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', embeds, [1, n, this.shape.hiddenSize]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(cache.length + i)), [1, n]),
      lora_scale: new ort.Tensor('float32', new Float32Array([loraScale]), []),
      ...cache.tensors,
    };
    const outputs = await this.session.run(feeds);
    cache.dispose();
    const logitsTensor = outputs.logits;
    if (!logitsTensor) throw new Error('decoder graph did not return logits');
    const all = (await logitsTensor.getData()) as Float32Array;
    const logits = all.slice(all.length - this.shape.vocabSize);
    logitsTensor.dispose();
    return { logits, cache: KvCache.fromPresents(outputs, this.shape.numLayers, total) };
  }
}
