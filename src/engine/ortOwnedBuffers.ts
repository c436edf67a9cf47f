/**
 * GPU buffers that onnxruntime-web allocated itself, for a graph-captured session's inputs and
 * outputs (WebGPU only).
 *
 * Why: a captured session replays the commands of its capturing run, bound to the buffers of
 * that run. onnxruntime-web 1.30 imports a GPUBuffer the app made (`Tensor.fromGpuBuffer`) afresh
 * for every run and releases the import when the run ends, so the replay finds its bindings gone
 * (BENCHMARKS.md, session 11). A buffer ORT allocated for an output kept on the GPU
 * (`preferredOutputLocation: 'gpu-buffer'`) is imported once, under ORT's own handle, and stays
 * so until the tensor is disposed: fed to any session of the same device again, it binds the
 * same handle every run. So every fixed buffer a captured graph needs (KV cache, lengths, the
 * step's embedding, logits) is made here as the output of a one-node graph — `Expand` of a zero
 * to the shape asked for — and written afterwards with `GPUQueue.writeBuffer` like any buffer.
 */
import type { KvBuffers } from './llm/fixedKvCache';
import { buildOnnxModel, TensorType } from './onnxBuilder';
import { ort } from './ortRuntime';

export type OwnedBufferType = 'float32' | 'float16' | 'int32';

const ONNX_TYPE: Record<OwnedBufferType, number> = { float32: TensorType.FLOAT, float16: TensorType.FLOAT16, int32: TensorType.INT32 };

/** `out = Expand(zero, [n])`: n zeros, left on the GPU (callers view them in any shape). */
function zerosGraph(type: OwnedBufferType): Uint8Array {
  return buildOnnxModel({
    name: `hark_zeros_${type}`,
    nodes: [{ op: 'Expand', inputs: ['zero', 'shape'], outputs: ['out'] }],
    inputs: [
      { name: 'zero', type: ONNX_TYPE[type], dims: [] },
      { name: 'shape', type: TensorType.INT64, dims: [1] },
    ],
    outputs: [{ name: 'out', type: ONNX_TYPE[type], dims: ['n'] }],
    initializers: [],
  });
}

function zero(type: OwnedBufferType): ort.Tensor {
  if (type === 'int32') return new ort.Tensor('int32', new Int32Array(1), []);
  // float16 zero is the bit pattern 0 whether the runtime exposes Float16Array or Uint16Array.
  if (type === 'float16') return new ort.Tensor('float16', new Uint16Array(1), []);
  return new ort.Tensor('float32', new Float32Array(1), []);
}

export class OrtOwnedBuffers implements KvBuffers {
  private readonly sessions = new Map<OwnedBufferType, Promise<ort.InferenceSession>>();
  private readonly owned: ort.Tensor[] = [];

  /**
   * A zero-filled GPU tensor of `dims`, allocated by onnxruntime-web on its WebGPU device and kept
   * until `release()`. Its `gpuBuffer` may be larger than the tensor (ORT rounds sizes up); more
   * tensors of any shape can view it with `Tensor.fromGpuBuffer(tensor.gpuBuffer, …)` (e.g. a KV
   * cache's past and present) and bind the same import.
   */
  async zeros(type: OwnedBufferType, dims: readonly number[]): Promise<ort.Tensor> {
    const session = await this.session(type);
    const size = dims.reduce((a, b) => a * b, 1);
    const shape = new ort.Tensor('int64', BigInt64Array.of(BigInt(size)), [1]);
    const { out } = await session.run({ zero: zero(type), shape });
    if (!out || out.location !== 'gpu-buffer') {
      out?.dispose();
      throw new Error(`onnxruntime-web returned its ${type} buffer on the ${out?.location ?? 'no'} location, not the GPU`);
    }
    this.owned.push(out);
    return ort.Tensor.fromGpuBuffer(out.gpuBuffer, { dataType: type, dims });
  }

  /**
   * `bytes` in a GPU tensor of `dataType` and `dims` (e.g. a weight from a model's external data
   * file), in a buffer allocated as above and written once: a tensor the app can feed to several
   * sessions without any of them holding its own copy.
   */
  async upload(dataType: ort.Tensor.GpuBufferDataTypes, dims: readonly number[], bytes: Uint8Array): Promise<ort.Tensor> {
    const words = Math.max(1, Math.ceil(bytes.byteLength / 4));
    const buffer = (await this.zeros('int32', [words])).gpuBuffer as GPUBuffer;
    const device = (await ort.env.webgpu.device) as GPUDevice;
    // writeBuffer moves whole 4-byte words: the last partial word goes through a padded copy.
    const whole = bytes.byteLength - (bytes.byteLength % 4);
    if (whole > 0) device.queue.writeBuffer(buffer, 0, bytes.buffer, bytes.byteOffset, whole);
    if (whole < bytes.byteLength) {
      const tail = new Uint8Array(4);
      tail.set(bytes.subarray(whole));
      device.queue.writeBuffer(buffer, whole, tail);
    }
    return ort.Tensor.fromGpuBuffer(buffer, { dataType, dims });
  }

  /**
   * A buffer of at least `bytes` bytes made as above (llm/fixedKvCache.ts's `KvBuffers`: a KV
   * cache a captured session binds).
   */
  async create(bytes: number): Promise<GPUBuffer> {
    return (await this.zeros('int32', [Math.max(1, Math.ceil(bytes / 4))])).gpuBuffer as GPUBuffer;
  }

  /** Gives one buffer made here back to onnxruntime-web (it may hand the memory out again). */
  destroy(buffer: GPUBuffer): void {
    const index = this.owned.findIndex((tensor) => tensor.gpuBuffer === buffer);
    if (index < 0) throw new Error('this GPU buffer was not made by these OrtOwnedBuffers');
    this.owned.splice(index, 1)[0]!.dispose();
  }

  /** Buffers made here and not yet given back. */
  get count(): number {
    return this.owned.length;
  }

  /** Disposes every buffer made here and the one-node sessions. */
  async release(): Promise<void> {
    for (const tensor of this.owned.splice(0)) tensor.dispose();
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(sessions.map(async (s) => (await s).release()));
  }

  private session(type: OwnedBufferType): Promise<ort.InferenceSession> {
    let session = this.sessions.get(type);
    if (!session) {
      session = ort.InferenceSession.create(zerosGraph(type), {
        executionProviders: [{ name: 'webgpu' }],
        preferredOutputLocation: 'gpu-buffer',
      });
      this.sessions.set(type, session);
    }
    return session;
  }
}
