/**
 * The floor under a decode step: what WebGPU and onnxruntime-web cost before any model work.
 * `npm run bench:breakdown` prints it after its per-token table, so a step's wall time can be
 * split into (a) the GPU→CPU round trip every generated token needs, (b) one graph run's fixed
 * cost, (c) the cost of each further kernel, and (d) the model's own work.
 *
 * - round trip: a 4-byte copy into a MAP_READ buffer, submit, mapAsync, unmap — the shortest
 *   "ask the GPU, get a number back" there is (a decode step does this once, for its token/logits);
 * - empty submit: submit of an empty command buffer + onSubmittedWorkDone;
 * - ORT, 1 kernel: a one-node graph (Add of a [1, 4] input and a constant), input from the CPU,
 *   output read back to the CPU: one session.run's fixed cost;
 * - ORT, 65 kernels: the same with 64 more Adds chained; (65 − 1) ÷ 64 = the cost of one more kernel.
 *
 * Hand-written because no library measures this; the graphs come from src/engine/onnxBuilder.ts.
 */
import { buildOnnxModel, TensorType, type NodeSpec } from '../../src/engine/onnxBuilder';
import type { ort as OrtModule } from '../../src/engine/ortRuntime';
import type { ApiTimer } from './apiTimer';

type Ort = typeof OrtModule;

export interface FloorRow {
  what: string;
  msEach: number;
  repeats: number;
  /** CPU time per run inside WebGPU calls (`ApiTimer`), where measured. */
  inWebGpuMs?: number;
  /** The main thread's own on-CPU time per run (Node on Linux), where measured. */
  mainThreadMs?: number;
}

export interface ResidentRunOptions {
  repeats?: number;
  /** Times the WebGPU calls of the timed runs (installed by the caller). */
  api?: ApiTimer;
  /** Called before each timed loop (e.g. `pinMainThreadApart`, once the device's threads exist). */
  beforeTiming?: () => void;
}

function chainGraph(kernels: number): Uint8Array {
  const nodes: NodeSpec[] = Array.from({ length: kernels }, (_, i) => ({
    op: 'Add',
    inputs: [i === 0 ? 'x' : `h${i}`, 'c'],
    outputs: [i === kernels - 1 ? 'y' : `h${i + 1}`],
  }));
  return buildOnnxModel({
    nodes,
    inputs: [{ name: 'x', type: TensorType.FLOAT, dims: [1, 4] }],
    outputs: [{ name: 'y', type: TensorType.FLOAT, dims: [1, 4] }],
    initializers: [{ name: 'c', dims: [1, 4], data: new Float32Array([1, 2, 3, 4]) }],
    opset: 17,
  });
}

async function timeEach(repeats: number, body: () => Promise<void>): Promise<number> {
  for (let i = 0; i < 3; i++) await body(); // warm-up: pipelines, buffer pools
  const started = performance.now();
  for (let i = 0; i < repeats; i++) await body();
  return (performance.now() - started) / repeats;
}

/** Times the floor on `navigator.gpu`'s device and on ORT's WebGPU EP (ORT configured by the caller). */
export async function measureFloor(ort: Ort, repeats = 50): Promise<FloorRow[]> {
  const rows: FloorRow[] = [];
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter');
  const device = await adapter.requestDevice();
  const source = device.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.STORAGE });
  const readback = device.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  rows.push({
    what: 'WebGPU round trip (copy 4 B, submit, mapAsync, unmap)',
    repeats,
    msEach: await timeEach(repeats, async () => {
      const encoder = device.createCommandEncoder();
      encoder.copyBufferToBuffer(source, 0, readback, 0, 4);
      device.queue.submit([encoder.finish()]);
      await readback.mapAsync(GPUMapMode.READ, 0, 4);
      readback.unmap();
    }),
  });
  rows.push({
    what: 'WebGPU empty submit + onSubmittedWorkDone',
    repeats,
    msEach: await timeEach(repeats, async () => {
      device.queue.submit([device.createCommandEncoder().finish()]);
      await device.queue.onSubmittedWorkDone();
    }),
  });
  source.destroy();
  readback.destroy();
  device.destroy();

  const input = () => new ort.Tensor('float32', new Float32Array([1, 1, 1, 1]), [1, 4]);
  const runs: Record<number, number> = {};
  for (const kernels of [1, 65]) {
    const session = await ort.InferenceSession.create(chainGraph(kernels), { executionProviders: ['webgpu'], graphOptimizationLevel: 'disabled' });
    runs[kernels] = await timeEach(repeats, async () => {
      const { y } = await session.run({ x: input() });
      await y!.getData();
      y!.dispose();
    });
    await session.release();
    rows.push({ what: `ORT session.run, ${kernels} kernel${kernels > 1 ? 's' : ''} (input from and output to the CPU)`, repeats, msEach: runs[kernels]! });
  }
  rows.push({ what: 'ORT, one more kernel ((65 − 1) ÷ 64)', repeats, msEach: (runs[65]! - runs[1]!) / 64 });
  return rows;
}

/**
 * One graph run with everything on the GPU (input a GPU buffer, output into a GPU buffer, nothing
 * read back), without and with ORT's graph capture (`enableGraphCapture`: the first run records
 * the kernels, later runs replay them without ORT running each kernel's CPU code again). With an
 * `ApiTimer`, each row also says how much of a run is spent inside WebGPU calls (and, in Node, the
 * main thread's own CPU time), which splits the per-kernel cost into WebGPU's and ORT's shares.
 *
 * The WebGPU EP must be named as an object (`{ name: 'webgpu' }`): onnxruntime-web 1.30 hands
 * `enableGraphCapture` to the EP only then. Named as the string 'webgpu', the session runs without
 * capture and releases the input buffer's handle after the first run while still binding it in
 * the second ("no overload matched for createBindGroup … resource": the "capture fails" of
 * BENCHMARKS.md's session-5 and session-10 floors).
 */
export async function measureGpuResidentRuns(ort: Ort, options: ResidentRunOptions = {}): Promise<FloorRow[]> {
  const { repeats = 50, api, beforeTiming } = options;
  const rows: FloorRow[] = [];
  const dims = [1, 4];
  for (const kernels of [1, 65, 257]) {
    for (const capture of [false, true]) {
      if (kernels === 1 && capture) continue;
      const what = `ORT session.run, ${kernels} kernel${kernels > 1 ? 's' : ''}, GPU in/out, no read-back${capture ? ', graph capture' : ''}`;
      try {
        const session = await ort.InferenceSession.create(chainGraph(kernels), {
          executionProviders: [{ name: 'webgpu' }],
          graphOptimizationLevel: 'disabled',
          preferredOutputLocation: 'gpu-buffer',
          ...(capture ? { enableGraphCapture: true } : {}),
        });
        const device = (await ort.env.webgpu.device) as GPUDevice;
        const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
        const inBuffer = device.createBuffer({ size: 16, usage });
        const outBuffer = device.createBuffer({ size: 16, usage });
        device.queue.writeBuffer(inBuffer, 0, new Float32Array([1, 1, 1, 1]));
        const x = ort.Tensor.fromGpuBuffer(inBuffer, { dataType: 'float32', dims });
        const y = ort.Tensor.fromGpuBuffer(outBuffer, { dataType: 'float32', dims });
        for (let i = 0; i < 3; i++) await session.run({ x }, { y }); // warm-up (and the capture)
        await device.queue.onSubmittedWorkDone();
        beforeTiming?.();
        api?.reset();
        const started = performance.now();
        for (let i = 0; i < repeats; i++) {
          api?.begin();
          await session.run({ x }, { y });
          api?.end();
        }
        const msEach = (performance.now() - started) / repeats;
        const check = await readFloats(device, outBuffer);
        const expected = 1 + kernels; // each Add adds c[0] = 1 to element 0
        await session.release();
        inBuffer.destroy();
        outBuffer.destroy();
        rows.push({
          what: `${what}${check[0] === expected ? '' : ` (WRONG: y[0] = ${check[0]}, expected ${expected})`}`,
          repeats,
          msEach,
          ...(api ? { inWebGpuMs: api.totalNs() / 1e6 / repeats } : {}),
          ...(api?.thread.known ? { mainThreadMs: api.thread.onCpu / 1e6 / repeats } : {}),
        });
      } catch (error) {
        rows.push({ what: `${what}: failed (${(error instanceof Error ? error.message : String(error)).slice(0, 160)})`, repeats: 0, msEach: Number.NaN });
      }
    }
  }
  const row = (what: string) => rows.find((r) => r.what === what);
  const base = 'ORT session.run, 1 kernel, GPU in/out, no read-back';
  const many = 'ORT session.run, 257 kernels, GPU in/out, no read-back';
  rows.push(difference('→ one more kernel, GPU in/out ((257 − 1) ÷ 256)', row(many), row(base), 256));
  rows.push(difference('→ saved per kernel by graph capture ((without − with) ÷ 257)', row(many), row(`${many}, graph capture`), 257));
  return rows;
}

/** (a − b) ÷ per, field by field: a derived row (NaN where either run failed or was not timed). */
function difference(what: string, a: FloorRow | undefined, b: FloorRow | undefined, per: number): FloorRow {
  const field = (key: 'msEach' | 'inWebGpuMs' | 'mainThreadMs') => {
    const [x, y] = [a?.[key], b?.[key]];
    return x === undefined || y === undefined ? undefined : (x - y) / per;
  };
  const [inWebGpuMs, mainThreadMs] = [field('inWebGpuMs'), field('mainThreadMs')];
  return {
    what,
    repeats: a?.repeats ?? 0,
    msEach: field('msEach') ?? Number.NaN,
    ...(inWebGpuMs !== undefined ? { inWebGpuMs } : {}),
    ...(mainThreadMs !== undefined ? { mainThreadMs } : {}),
  };
}

async function readFloats(device: GPUDevice, buffer: GPUBuffer): Promise<Float32Array> {
  const staging = device.createBuffer({ size: buffer.size, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const data = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return data;
}

export function renderFloor(rows: FloorRow[]): string {
  const cell = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : v.toFixed(3));
  return [
    '| floor | ms each | in WebGPU calls ms | main thread on a CPU ms | repeats |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.what} | ${cell(r.msEach)} | ${cell(r.inWebGpuMs)} | ${cell(r.mainThreadMs)} | ${r.repeats} |`),
  ].join('\n');
}
