/**
 * How long the GPU itself works on each kernel, from WebGPU timestamp queries: the other half of
 * `gpuCounters.ts` (which counts calls). Wall time per token minus GPU time per token is what the
 * CPU side (ORT encoding dispatches, dawn.node, submits, the read-back wait) costs — the split issue
 * 9 asks for before choosing the next lever ("timestamp queries against wall time").
 *
 * Installed by wrapping the WebGPU prototypes of this process (dawn.node), so onnxruntime-web's
 * WebGPU EP is measured unchanged. Two modes, switched between runs:
 * - `pass`: ORT's own compute passes get `timestampWrites` (ORT puts up to 16 dispatches in one
 *   pass). Nothing else changes: GPU busy time and span per step as ORT submits them.
 * - `dispatch`: every dispatch runs in a pass of its own (the pass ORT opened is split, pipeline
 *   and bind groups set again), so each kernel's GPU time is attributed to its pipeline's label.
 *   Splitting adds a pass boundary per kernel: a bound on each kernel's time, not the run's.
 * Queries are resolved into buffers when ORT finishes a command encoder and read only by
 * `collect()`, after the timed loop: the loop's wall time gains no read-backs.
 *
 * Written by hand because ORT's own WebGPU profiling writes its results to the wasm file system of
 * the web build, out of reach here; the device must have `timestamp-query` (ORT requests it when
 * the adapter has it: SwiftShader and NVIDIA do).
 */

export type GpuTimerMode = 'off' | 'pass' | 'dispatch';

export interface KernelTime {
  /** The step the kernel was encoded in (`GpuTimer.step` at the time). */
  step: number;
  /** The compute pipeline's label (ORT names them after its programs), or `pass` in pass mode. */
  label: string;
  startNs: number;
  endNs: number;
}

/** Timestamps per query set (2 per pass: begin and end). */
const QUERY_CAPACITY = 512;

interface PendingReadback {
  read: GPUBuffer;
  /** The query set and the resolve buffer, destroyed once read. */
  done: { destroy(): void }[];
  labels: string[];
  steps: number[];
}

interface EncoderTiming {
  device: GPUDevice;
  sets: { set: GPUQuerySet; labels: string[]; steps: number[] }[];
}

type Args = unknown[];

export class GpuTimer {
  mode: GpuTimerMode = 'off';
  /** Tag for the kernels encoded from now on (a decode step's index). */
  step = 0;
  private readonly pending: PendingReadback[] = [];
  private readonly encoders = new WeakMap<GPUCommandEncoder, EncoderTiming>();
  private readonly pipelineLabels = new WeakMap<object, string>();
  private readonly moduleLabels = new WeakMap<object, string>();

  private labelOf(descriptor: GPUComputePipelineDescriptor): string {
    return descriptor.label || this.moduleLabels.get(descriptor.compute.module) || '(no label)';
  }

  /** Wraps the WebGPU prototypes once; call after the WebGPU globals exist, before ORT runs. */
  install(): void {
    const g = globalThis as unknown as Record<string, { prototype: Record<string | symbol, unknown> } | undefined>;
    const device = g.GPUDevice?.prototype;
    const encoder = g.GPUCommandEncoder?.prototype;
    if (!device || !encoder) throw new Error('no WebGPU globals: install dawn.node first');
    if (device[kInstalled]) return;
    device[kInstalled] = true;
    const timer = this;
    const createEncoder = device.createCommandEncoder as (this: GPUDevice, ...a: Args) => GPUCommandEncoder;
    device.createCommandEncoder = function (this: GPUDevice, ...args: Args) {
      const created = createEncoder.apply(this, args);
      timer.encoders.set(created, { device: this, sets: [] });
      return created;
    };
    // ORT labels shader modules with its program's name (MatMulNBits, GroupQueryAttention, …), not pipelines.
    const createModule = device.createShaderModule as (this: GPUDevice, d: GPUShaderModuleDescriptor) => GPUShaderModule;
    device.createShaderModule = function (this: GPUDevice, descriptor: GPUShaderModuleDescriptor) {
      const module = createModule.call(this, descriptor);
      timer.moduleLabels.set(module, descriptor.label ?? '');
      return module;
    };
    const createPipeline = device.createComputePipeline as (this: GPUDevice, d: GPUComputePipelineDescriptor) => GPUComputePipeline;
    device.createComputePipeline = function (this: GPUDevice, descriptor: GPUComputePipelineDescriptor) {
      const pipeline = createPipeline.call(this, descriptor);
      timer.pipelineLabels.set(pipeline, timer.labelOf(descriptor));
      return pipeline;
    };
    const createPipelineAsync = device.createComputePipelineAsync as (this: GPUDevice, d: GPUComputePipelineDescriptor) => Promise<GPUComputePipeline>;
    device.createComputePipelineAsync = async function (this: GPUDevice, descriptor: GPUComputePipelineDescriptor) {
      const pipeline = await createPipelineAsync.call(this, descriptor);
      timer.pipelineLabels.set(pipeline, timer.labelOf(descriptor));
      return pipeline;
    };
    const beginPass = encoder.beginComputePass as (this: GPUCommandEncoder, d?: GPUComputePassDescriptor) => GPUComputePassEncoder;
    encoder.beginComputePass = function (this: GPUCommandEncoder, descriptor: GPUComputePassDescriptor = {}) {
      const timing = timer.encoders.get(this);
      if (timer.mode === 'off' || !timing || descriptor.timestampWrites) return beginPass.call(this, descriptor);
      if (timer.mode === 'pass') return beginPass.call(this, { ...descriptor, timestampWrites: timer.writes(timing, 'pass') });
      // A stand-in ORT drives like a pass (its binding layer only calls these methods).
      const split = new SplitPass((label) => beginPass.call(this, { ...descriptor, timestampWrites: timer.writes(timing, label) }), timer.pipelineLabels);
      return split as unknown as GPUComputePassEncoder;
    };
    const finish = encoder.finish as (this: GPUCommandEncoder, ...a: Args) => GPUCommandBuffer;
    encoder.finish = function (this: GPUCommandEncoder, ...args: Args) {
      const timing = timer.encoders.get(this);
      if (timing) timer.resolve(this, timing);
      return finish.apply(this, args);
    };
  }

  /** The timestamp writes for the next pass of `timing`'s encoder, remembered under `label`. */
  private writes(timing: EncoderTiming, label: string): GPUComputePassTimestampWrites {
    let last = timing.sets.at(-1);
    if (!last || last.labels.length * 2 >= QUERY_CAPACITY) {
      last = { set: timing.device.createQuerySet({ type: 'timestamp', count: QUERY_CAPACITY }), labels: [], steps: [] };
      timing.sets.push(last);
    }
    const index = last.labels.length * 2;
    last.labels.push(label);
    last.steps.push(this.step);
    return { querySet: last.set, beginningOfPassWriteIndex: index, endOfPassWriteIndex: index + 1 };
  }

  /** Appends the resolve of `encoder`'s queries to it (called as ORT finishes it). */
  private resolve(encoder: GPUCommandEncoder, timing: EncoderTiming): void {
    for (const { set, labels, steps } of timing.sets) {
      if (labels.length === 0) continue;
      const bytes = labels.length * 2 * 8;
      const resolved = timing.device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      const read = timing.device.createBuffer({ size: bytes, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
      encoder.resolveQuerySet(set, 0, labels.length * 2, resolved, 0);
      encoder.copyBufferToBuffer(resolved, 0, read, 0, bytes);
      this.pending.push({ read, labels, steps, done: [set, resolved] });
    }
    timing.sets = [];
  }

  /** Every kernel timed since the last collect, in encoding order. */
  async collect(): Promise<KernelTime[]> {
    const pending = this.pending.splice(0);
    const out: KernelTime[] = [];
    for (const { read, labels, steps, done } of pending) {
      await read.mapAsync(GPUMapMode.READ);
      const stamps = new BigUint64Array(read.getMappedRange().slice(0));
      read.destroy();
      for (const resource of done) resource.destroy();
      labels.forEach((label, i) => out.push({ step: steps[i]!, label, startNs: Number(stamps[2 * i]!), endNs: Number(stamps[2 * i + 1]!) }));
    }
    return out;
  }
}

const kInstalled = Symbol.for('hark.gpuTimer');

/**
 * A compute pass as ORT sees it, run as one real pass per dispatch: the pipeline and bind groups
 * set so far are set again on each new pass, so every dispatch sees the state it would have had.
 */
class SplitPass {
  private real: GPUComputePassEncoder | null = null;
  private pipeline: GPUComputePipeline | null = null;
  private readonly bindGroups = new Map<number, Args>();
  label = '';

  constructor(
    private readonly begin: (label: string) => GPUComputePassEncoder,
    private readonly labels: WeakMap<object, string>,
  ) {}

  setPipeline(pipeline: GPUComputePipeline): void {
    this.pipeline = pipeline;
  }

  setBindGroup(...args: Args): void {
    this.bindGroups.set(args[0] as number, args);
  }

  dispatchWorkgroups(x: number, y?: number, z?: number): void {
    this.open().dispatchWorkgroups(x, y, z);
    this.close();
  }

  dispatchWorkgroupsIndirect(buffer: GPUBuffer, offset: number): void {
    this.open().dispatchWorkgroupsIndirect(buffer, offset);
    this.close();
  }

  pushDebugGroup(): void {}
  popDebugGroup(): void {}
  insertDebugMarker(): void {}

  end(): void {
    this.close();
  }

  private open(): GPUComputePassEncoder {
    const pass = this.begin(this.pipeline ? (this.labels.get(this.pipeline) ?? '(unknown pipeline)') : '(no pipeline)');
    if (this.pipeline) pass.setPipeline(this.pipeline);
    for (const args of this.bindGroups.values()) (pass.setBindGroup as (...a: Args) => void).apply(pass, args);
    this.real = pass;
    return pass;
  }

  private close(): void {
    this.real?.end();
    this.real = null;
  }
}
