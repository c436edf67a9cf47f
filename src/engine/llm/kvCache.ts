/**
 * The decoder's KV cache, as the decoder graph sees it: `past_key_values.{i}.key/value` inputs
 * [1, kvHeads, positions, headDim] and `present.{i}.key/value` outputs.
 *
 * Two layouts, one interface:
 * - GrowingKvCache (this file): every run returns new, one-position-longer `present` tensors that
 *   become the next run's past. The only layout for the wasm backend, where ORT copies inputs into
 *   its heap and outputs out of it anyway.
 * - FixedKvCache (fixedKvCache.ts): WebGPU buffers of a fixed capacity that GroupQueryAttention
 *   updates in place (past and present bound to the same buffer), grown by doubling when full.
 *
 * A cache handle is consumed by the run that extends it: the runner returns a new handle and the
 * old one must not be used again (its `dispose` then does nothing harmful).
 *
 * Beam search runs several sequences as the decoder's batch (rows of the cache, all of one length):
 * `selectRows` makes a new cache from chosen rows of this one (a prompt's row repeated per beam, or
 * one beam's row for the conversation), and `copyRows` overwrites rows in place with others (the
 * beams reordered after a step). Both copy on the device that holds the cache: a fixed cache's rows
 * never travel to the CPU.
 *
 * `truncate(n)` keeps the first n positions (a follow-up of a model whose chat template rewrites the
 * end of the previous turn, e.g. Qwen3 dropping the thoughts): the handle is consumed like a run's.
 *
 * `scratch()` lends a handle for runs whose positions are thrown away afterwards (scoring the
 * labels of a fixed answer set, each on top of the same prompt): runs on the lent handle see this
 * cache's positions and append theirs, while this handle keeps its length and stays usable. No
 * KV data is copied for it: a growing cache's tensors are only read by a run (each run returns
 * new ones), and a fixed cache's later runs overwrite positions past its length, which
 * attention never reads (it reads the real length from `attention_mask`).
 */
import { ort } from '../ortRuntime';

export type KvType = 'float32' | 'float16';

export interface KvGeometry {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

export interface KvCache {
  /** Positions held. */
  readonly length: number;
  /** Sequences held (the decoder's batch): 1, or the number of beams. */
  readonly batch: number;
  /** The `past_key_values.*` feeds for a run that appends `newPositions` positions. */
  pastFeeds(newPositions: number): Promise<Record<string, ort.Tensor>>;
  /** Pre-allocated `present.*` outputs (bound in place), or null to let ORT allocate them. */
  presentFetches(): Record<string, ort.Tensor> | null;
  /** The handle for after the run (this one is consumed); `outputs` are the run's results. */
  advance(outputs: ort.InferenceSession.OnnxValueMapType, newPositions: number): KvCache;
  /** Frees what this handle owns (GPU buffers included). */
  dispose(): void;
  /**
   * A handle for runs of up to `newPositions` positions in all that leave this cache as it is (see
   * the module comment). Dispose it, and what runs on it return, before this cache is used again.
   */
  scratch(newPositions: number): Promise<KvCache>;
  /** A new cache whose row i is a copy of this cache's row `rows[i]`; this cache stays as it is. */
  selectRows(rows: readonly number[]): Promise<KvCache>;
  /**
   * In place: row `to` becomes a copy of row `from`, for every [from, to] of `moves`. No row may be
   * both a source and a destination.
   */
  copyRows(moves: ReadonlyArray<readonly [from: number, to: number]>): Promise<void>;
  /** The handle holding only the first `length` positions (0 ≤ length ≤ this.length); this one is consumed. */
  truncate(length: number): Promise<KvCache>;
}

/** Throws unless `length` is a valid truncation of a cache holding `held` positions. */
export function checkTruncation(length: number, held: number): void {
  if (!(Number.isInteger(length) && length >= 0 && length <= held)) {
    throw new Error(`a KV cache of ${held} positions cannot be cut to ${length}`);
  }
}

/** Throws unless `moves` are valid row moves for a cache of `batch` rows (see KvCache.copyRows). */
export function checkRowMoves(moves: ReadonlyArray<readonly [number, number]>, batch: number): void {
  const sources = new Set(moves.map(([from]) => from));
  const targets = new Set<number>();
  for (const [from, to] of moves) {
    if (![from, to].every((row) => Number.isInteger(row) && row >= 0 && row < batch)) throw new Error(`row move ${from} → ${to} is outside a batch of ${batch}`);
    if (sources.has(to) || targets.has(to)) throw new Error(`row ${to} is written twice or also read by a row move`);
    targets.add(to);
  }
}

export function pastName(layer: number, kind: 'key' | 'value'): string {
  return `past_key_values.${layer}.${kind}`;
}

export function presentName(layer: number, kind: 'key' | 'value'): string {
  return `present.${layer}.${kind}`;
}

export function presentNames(numLayers: number): string[] {
  return Array.from({ length: numLayers }, (_, i) => [presentName(i, 'key'), presentName(i, 'value')]).flat();
}

export function forEachKv(numLayers: number, visit: (layer: number, kind: 'key' | 'value') => void): void {
  for (let layer = 0; layer < numLayers; layer++) {
    visit(layer, 'key');
    visit(layer, 'value');
  }
}

/** A cache whose every run returns new `present` tensors (see the module comment). */
export class GrowingKvCache implements KvCache {
  private constructor(
    private readonly geometry: KvGeometry,
    private tensors: Record<string, ort.Tensor> | null,
    readonly length: number,
    /** False for the empty cache's CPU tensors, which need no disposing. */
    private readonly owned: boolean,
    readonly batch = 1,
  ) {}

  static empty(geometry: KvGeometry, dtype: KvType): GrowingKvCache {
    const tensors: Record<string, ort.Tensor> = {};
    const dims = [1, geometry.numKvHeads, 0, geometry.headDim];
    forEachKv(geometry.numLayers, (layer, kind) => {
      tensors[pastName(layer, kind)] =
        dtype === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), dims) : new ort.Tensor('float32', new Float32Array(0), dims);
    });
    return new GrowingKvCache(geometry, tensors, 0, false);
  }

  async pastFeeds(): Promise<Record<string, ort.Tensor>> {
    if (!this.tensors) throw new Error('this KV cache was already consumed by a decoder run');
    return this.tensors;
  }

  presentFetches(): null {
    return null;
  }

  advance(outputs: ort.InferenceSession.OnnxValueMapType, newPositions: number): KvCache {
    const tensors: Record<string, ort.Tensor> = {};
    forEachKv(this.geometry.numLayers, (layer, kind) => {
      const present = outputs[presentName(layer, kind)];
      if (!present) throw new Error(`decoder graph did not return ${presentName(layer, kind)}`);
      tensors[pastName(layer, kind)] = present;
    });
    this.dispose(); // the old presents are not needed once the new ones exist
    return new GrowingKvCache(this.geometry, tensors, this.length + newPositions, true, this.batch);
  }

  dispose(): void {
    if (this.tensors && this.owned) for (const tensor of Object.values(this.tensors)) tensor.dispose();
    this.tensors = null;
  }

  /** The same tensors, not owned: a run on it returns new presents and leaves these intact. */
  async scratch(): Promise<KvCache> {
    if (!this.tensors) throw new Error('this KV cache was already consumed by a decoder run');
    return new GrowingKvCache(this.geometry, this.tensors, this.length, false, this.batch);
  }

  async selectRows(rows: readonly number[]): Promise<KvCache> {
    const source = this.requireTensors();
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, tensor] of Object.entries(source)) {
      const data = rowData(tensor);
      const rowLength = data.length / this.batch;
      const out = new (data.constructor as Float32ArrayConstructor | Uint16ArrayConstructor)(rowLength * rows.length);
      rows.forEach((row, i) => {
        if (!(Number.isInteger(row) && row >= 0 && row < this.batch)) throw new Error(`row ${row} is outside a batch of ${this.batch}`);
        out.set(data.subarray(row * rowLength, (row + 1) * rowLength), i * rowLength);
      });
      const dims = [rows.length, ...tensor.dims.slice(1)];
      tensors[name] = out instanceof Uint16Array ? new ort.Tensor('float16', out, dims) : new ort.Tensor('float32', out as Float32Array, dims);
    }
    return new GrowingKvCache(this.geometry, tensors, this.length, true, rows.length);
  }

  async copyRows(moves: ReadonlyArray<readonly [number, number]>): Promise<void> {
    checkRowMoves(moves, this.batch);
    for (const tensor of Object.values(this.requireTensors())) {
      const data = rowData(tensor);
      const rowLength = data.length / this.batch;
      for (const [from, to] of moves) data.copyWithin(to * rowLength, from * rowLength, (from + 1) * rowLength);
    }
  }

  async truncate(length: number): Promise<KvCache> {
    checkTruncation(length, this.length);
    const source = this.requireTensors();
    if (length === this.length) {
      this.tensors = null; // ownership moves to the new handle
      return new GrowingKvCache(this.geometry, source, length, this.owned, this.batch);
    }
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, tensor] of Object.entries(source)) {
      // [batch, kvHeads, positions, headDim]: keep the first `length` rows of every (sequence, head) block.
      const data = (tensor.location === 'cpu' ? tensor.data : await tensor.getData()) as Float32Array | Uint16Array;
      const [batch, heads, held, headDim] = tensor.dims as [number, number, number, number];
      const out = new (data.constructor as Float32ArrayConstructor | Uint16ArrayConstructor)(batch * heads * length * headDim);
      for (let block = 0; block < batch * heads; block++) {
        out.set(data.subarray(block * held * headDim, (block * held + length) * headDim), block * length * headDim);
      }
      const dims = [batch, heads, length, headDim];
      tensors[name] = out instanceof Uint16Array ? new ort.Tensor('float16', out, dims) : new ort.Tensor('float32', out as Float32Array, dims);
    }
    this.dispose();
    return new GrowingKvCache(this.geometry, tensors, length, true, this.batch);
  }

  private requireTensors(): Record<string, ort.Tensor> {
    if (!this.tensors) throw new Error('this KV cache was already consumed by a decoder run');
    return this.tensors;
  }
}

/** A CPU tensor's elements (a growing cache lives on the CPU: the wasm backend's outputs). */
function rowData(tensor: ort.Tensor): Float32Array | Uint16Array {
  if (tensor.location !== 'cpu') throw new Error('a growing KV cache on the GPU cannot be reordered; beam search uses the fixed layout there');
  return tensor.data as Float32Array | Uint16Array;
}
