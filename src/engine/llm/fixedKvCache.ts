/**
 * A KV cache of fixed capacity on the GPU, updated in place (WebGPU only).
 *
 * Each layer's key and value live in one GPUBuffer shaped [1, kvHeads, capacity, headDim]. The
 * same tensor is fed as `past_key_values.*` and bound as the pre-allocated `present.*` output;
 * onnxruntime's WebGPU GroupQueryAttention sees past and present share one buffer and writes only
 * the new positions (its "past_present_share_buffer" mode), reading the real length from
 * `seqlens_k` (attention_mask), not from the buffer's capacity. So a decode step allocates nothing
 * and copies nothing, where a growing cache makes 2 × layers new buffers of the whole context
 * every step (transformers.js issue #1741 measured that as a 3× slow-down at 2k–6k context).
 *
 * Capacity is sized per conversation: the first run allocates what it needs plus headroom, and a
 * run that would overflow doubles it (copying the valid rows on the GPU), so memory stays
 * proportional to use instead of the model's whole context.
 *
 * With beams (batch > 1) each buffer is [beams, kvHeads, capacity, headDim]: a beam's row is one
 * contiguous block, so selecting or moving a row is one buffer copy per layer's key and value,
 * queued on the GPU (WebGPU copies within one buffer go through a one-row scratch buffer).
 *
 * A scratch handle (`scratch()`) shares the owner's buffers: its runs write positions past the
 * owner's length, which the owner's next run overwrites. It never reallocates (that would free
 * the owner's buffers), so the owner makes room for the scratch runs before lending it.
 *
 * Where the buffers come from is the caller's (`KvBuffers`): plain GPUBuffers by default, or
 * buffers onnxruntime-web allocated (ortOwnedBuffers.ts) when a graph-captured decode step binds
 * them (llm/capturedStep.ts).
 */
import { ort } from '../ortRuntime';
import { checkRowMoves, checkTruncation, forEachKv, pastName, presentName, type KvCache, type KvGeometry, type KvType } from './kvCache';

export interface KvCapacityPolicy {
  /** Positions are allocated in multiples of this. */
  step: number;
  /** Room left for the answer when the first run sizes the cache. */
  headroom: number;
}

export const DEFAULT_KV_CAPACITY: KvCapacityPolicy = { step: 256, headroom: 256 };

/** Where a cache's GPU buffers come from and go back to. */
export interface KvBuffers {
  /** A buffer of at least `bytes` bytes, usable as storage and as a copy source and target. */
  create(bytes: number): Promise<GPUBuffer>;
  destroy(buffer: GPUBuffer): void;
  /**
   * The capacity (positions) of a whole set of `count` buffers of `bytesPerPosition` each that
   * `create` would hand out again, if any: a new cache sized to it reuses them (a captured step
   * bound to them then needs no new capture).
   */
  heldCapacity?(bytesPerPosition: number, count: number): number | null;
}

/** Buffers the app makes itself (any session can bind them uncaptured). */
export const APP_KV_BUFFERS: KvBuffers = {
  async create(bytes) {
    const device = (await ort.env.webgpu.device) as GPUDevice;
    return device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  },
  destroy(buffer) {
    buffer.destroy();
  },
};

/** What every handle of one conversation's cache shares. */
interface CacheConfig {
  geometry: KvGeometry;
  dtype: KvType;
  /** The model's longest context: capacity never exceeds it. */
  maxPositions: number;
  policy: KvCapacityPolicy;
  buffers: KvBuffers;
}

interface Storage {
  capacity: number;
  buffers: GPUBuffer[];
  tensors: Record<string, ort.Tensor>;
  /** One row's worth of GPU memory for in-place row moves (made on first use). */
  rowScratch?: GPUBuffer;
}

export class FixedKvCache implements KvCache {
  private constructor(
    private readonly config: CacheConfig,
    private storage: Storage | null,
    readonly length: number,
    /** A scratch handle: the storage belongs to another handle. */
    private readonly lent = false,
    readonly batch = 1,
  ) {}

  static empty(
    geometry: KvGeometry,
    dtype: KvType,
    maxPositions: number,
    policy: KvCapacityPolicy = DEFAULT_KV_CAPACITY,
    buffers: KvBuffers = APP_KV_BUFFERS,
  ): FixedKvCache {
    return new FixedKvCache({ geometry, dtype, maxPositions, policy, buffers }, null, 0);
  }

  /** Where this cache's buffers come from (a captured step binds only its own kind). */
  get buffers(): KvBuffers {
    return this.config.buffers;
  }

  /** A scratch handle, whose storage belongs to another handle. */
  get isScratch(): boolean {
    return this.lent;
  }

  /** Positions the GPU buffers can hold now (0 before the first run). */
  get capacity(): number {
    return this.storage?.capacity ?? 0;
  }

  async pastFeeds(newPositions: number): Promise<Record<string, ort.Tensor>> {
    const needed = this.length + newPositions;
    if (this.lent && (!this.storage || this.storage.capacity < needed)) {
      throw new Error(`a scratch KV cache holds ${this.storage?.capacity ?? 0} positions, ${needed} were asked for`);
    }
    if (!this.storage || this.storage.capacity < needed) {
      const { policy, maxPositions, buffers, geometry } = this.config;
      const grown = this.storage ? Math.max(needed, 2 * this.storage.capacity) : needed + policy.headroom;
      let capacity = Math.max(needed, Math.min(maxPositions, roundUp(grown, policy.step)));
      const held = this.storage ? null : buffers.heldCapacity?.(this.batch * this.rowBytes(1), 2 * geometry.numLayers);
      if (held && held >= needed && held <= maxPositions) capacity = held;
      this.storage = await this.reallocate(capacity);
    }
    return this.storage.tensors;
  }

  presentFetches(): Record<string, ort.Tensor> {
    const storage = this.requireStorage();
    const fetches: Record<string, ort.Tensor> = {};
    forEachKv(this.config.geometry.numLayers, (layer, kind) => {
      fetches[presentName(layer, kind)] = storage.tensors[pastName(layer, kind)]!;
    });
    return fetches;
  }

  advance(_outputs: ort.InferenceSession.OnnxValueMapType, newPositions: number): KvCache {
    const storage = this.requireStorage();
    this.storage = null; // ownership moves to the new handle
    return new FixedKvCache(this.config, storage, this.length + newPositions, this.lent, this.batch);
  }

  dispose(): void {
    if (this.storage && !this.lent) this.destroy(this.storage);
    this.storage = null;
  }

  async scratch(newPositions: number): Promise<KvCache> {
    await this.pastFeeds(newPositions); // room for the scratch runs, in this handle's own storage
    return new FixedKvCache(this.config, this.requireStorage(), this.length, true, this.batch);
  }

  async selectRows(rows: readonly number[]): Promise<KvCache> {
    const source = this.requireStorage();
    for (const row of rows) if (!(Number.isInteger(row) && row >= 0 && row < this.batch)) throw new Error(`row ${row} is outside a batch of ${this.batch}`);
    const device = (await ort.env.webgpu.device) as GPUDevice;
    const storage = await this.allocate(source.capacity, rows.length);
    const rowBytes = this.rowBytes(source.capacity);
    const encoder = device.createCommandEncoder();
    source.buffers.forEach((buffer, index) => {
      rows.forEach((row, i) => encoder.copyBufferToBuffer(buffer, row * rowBytes, storage.buffers[index]!, i * rowBytes, rowBytes));
    });
    device.queue.submit([encoder.finish()]);
    return new FixedKvCache(this.config, storage, this.length, false, rows.length);
  }

  async copyRows(moves: ReadonlyArray<readonly [number, number]>): Promise<void> {
    checkRowMoves(moves, this.batch);
    if (moves.length === 0) return;
    const storage = this.requireStorage();
    const device = (await ort.env.webgpu.device) as GPUDevice;
    const rowBytes = this.rowBytes(storage.capacity);
    storage.rowScratch ??= device.createBuffer({ size: rowBytes, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    const scratch = storage.rowScratch;
    // WebGPU forbids a copy within one buffer; copies of one encoder run in order, so one scratch row serves all.
    const encoder = device.createCommandEncoder();
    for (const buffer of storage.buffers) {
      for (const [from, to] of moves) {
        encoder.copyBufferToBuffer(buffer, from * rowBytes, scratch, 0, rowBytes);
        encoder.copyBufferToBuffer(scratch, 0, buffer, to * rowBytes, rowBytes);
      }
    }
    device.queue.submit([encoder.finish()]);
  }

  /** Positions past `length` stay in the buffers, unread: attention reads the length from `attention_mask`. */
  async truncate(length: number): Promise<KvCache> {
    checkTruncation(length, this.length);
    const storage = this.requireStorage();
    this.storage = null; // ownership moves to the new handle
    return new FixedKvCache(this.config, storage, length, this.lent, this.batch);
  }

  /** Bytes of one sequence's row of one layer's key (or value) at `capacity` positions. */
  private rowBytes(capacity: number): number {
    const { geometry, dtype } = this.config;
    return geometry.numKvHeads * capacity * geometry.headDim * (dtype === 'float16' ? 2 : 4);
  }

  /** Fresh, uninitialized buffers for `batch` rows of `capacity` positions. */
  private async allocate(capacity: number, batch: number): Promise<Storage> {
    const { geometry, dtype, buffers: source } = this.config;
    const dims = [batch, geometry.numKvHeads, capacity, geometry.headDim];
    const buffers: GPUBuffer[] = [];
    const tensors: Record<string, ort.Tensor> = {};
    const names: string[] = [];
    forEachKv(geometry.numLayers, (layer, kind) => names.push(pastName(layer, kind)));
    for (const name of names) {
      const buffer = await source.create(batch * this.rowBytes(capacity));
      buffers.push(buffer);
      tensors[name] = ort.Tensor.fromGpuBuffer(buffer, { dataType: dtype, dims });
    }
    return { capacity, buffers, tensors };
  }

  private destroy(storage: Storage): void {
    for (const tensor of Object.values(storage.tensors)) tensor.dispose();
    for (const buffer of storage.buffers) this.config.buffers.destroy(buffer);
    storage.rowScratch?.destroy();
  }

  private requireStorage(): Storage {
    if (!this.storage) throw new Error('this KV cache was already consumed by a decoder run');
    return this.storage;
  }

  /** New buffers of `capacity` positions holding this cache's valid rows. */
  private async reallocate(capacity: number): Promise<Storage> {
    const device = (await ort.env.webgpu.device) as GPUDevice;
    const { geometry, dtype } = this.config;
    const { numKvHeads, headDim } = geometry;
    const rowBytes = headDim * (dtype === 'float16' ? 2 : 4);
    const old = this.storage;
    const storage = await this.allocate(capacity, this.batch);
    if (old && this.length > 0) {
      const encoder = device.createCommandEncoder();
      old.buffers.forEach((buffer, index) => {
        // Each (sequence, head) block of positions is contiguous: copy its valid rows to the block's new offset.
        for (let block = 0; block < this.batch * numKvHeads; block++) {
          encoder.copyBufferToBuffer(buffer, block * old.capacity * rowBytes, storage.buffers[index]!, block * capacity * rowBytes, this.length * rowBytes);
        }
      });
      device.queue.submit([encoder.finish()]);
    }
    if (old) this.destroy(old); // destroyed buffers live until the submitted copies finish
    return storage;
  }
}

function roundUp(value: number, step: number): number {
  return Math.ceil(value / step) * step;
}
