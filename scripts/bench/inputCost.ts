/**
 * What one more GPU-buffer input costs a session.run, captured and not:
 * `npm run bench:input-cost [-- --pin]` (WebGPU in Node; BENCHMARKS.md, session 12).
 *
 * A chain of k `Add` kernels, y_i = y_(i-1) + a_i, with the addends a_i either inside the graph
 * (initializers) or k graph inputs bound to ORT-owned GPU buffers (src/engine/ortOwnedBuffers.ts),
 * run uncaptured, graph-captured, and graph-captured with runs after the first made without feeds
 * (on the session's binding, as the engine's captured step runs: `sessionHandlerOf` in
 * src/engine/llm/capturedStep.ts); the difference between the two rows of one k and one mode is
 * what k inputs cost a run. It prices a decoder whose weights are graph inputs (453 of them at
 * Vicuna-7B geometry). Each row checks the chain's sum on the GPU, so a run that skipped work shows.
 */
import { setupJobDevice } from './jobDevice';
import { loadOrtForNodeWebGpu } from './nodeOrt';
import { pinMainThreadApart, threadSchedNs } from './threadClock';

await setupJobDevice('webgpu-node', () => {});
const ort = await loadOrtForNodeWebGpu();
const { buildOnnxModel, TensorType } = await import('../../src/engine/onnxBuilder');
const { OrtOwnedBuffers } = await import('../../src/engine/ortOwnedBuffers');
const { sessionHandlerOf } = await import('../../src/engine/llm/capturedStep');
if (process.argv.includes('--pin')) pinMainThreadApart();
const owned = new OrtOwnedBuffers();
const out = await owned.zeros('float32', [4]);
const device = (await ort.env.webgpu.device) as GPUDevice;
const staging = device.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
/** The chain's output, read back. */
async function readOut(): Promise<number> {
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(out.gpuBuffer as GPUBuffer, 0, staging, 0, 16);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const value = new Float32Array(staging.getMappedRange())[0]!;
  staging.unmap();
  return value;
}
const modes = { 'no': 'uncaptured', 'yes': 'captured, all feeds every run', 'bound': 'captured, later runs without feeds' } as const;
console.log('| kernels | addends | run | ms per run (wall) | main thread ms per run | sum right |');
console.log('| --- | --- | --- | --- | --- | --- |');
let allRight = true;
for (const k of [64, 256, 512]) {
  for (const addends of ['initializers', 'inputs'] as const) {
    for (const mode of ['no', 'yes', 'bound'] as const) {
      // A chain of k Adds: y_i = y_(i-1) + a_i, the a_i either weights inside the graph or GPU-buffer inputs.
      const names = Array.from({ length: k }, (_, i) => `a${i}`);
      const model = buildOnnxModel({
        nodes: names.map((name, i) => ({ op: 'Add', inputs: [i === 0 ? 'x' : `y${i - 1}`, name], outputs: [i === k - 1 ? 'y' : `y${i}`] })),
        inputs: [{ name: 'x', type: TensorType.FLOAT, dims: [4] }, ...(addends === 'inputs' ? names.map((name) => ({ name, type: TensorType.FLOAT, dims: [4] })) : [])],
        outputs: [{ name: 'y', type: TensorType.FLOAT, dims: [4] }],
        initializers: addends === 'initializers' ? names.map((name, i) => ({ name, dims: [4], data: new Float32Array(4).fill(i) })) : [],
      });
      const session = await ort.InferenceSession.create(model, { executionProviders: [{ name: 'webgpu' }], enableGraphCapture: mode !== 'no' });
      const feeds: Record<string, InstanceType<typeof ort.Tensor>> = { x: await owned.zeros('float32', [4]) };
      if (addends === 'inputs') for (const [i, name] of names.entries()) feeds[name] = await owned.upload('float32', [4], new Uint8Array(new Float32Array(4).fill(i).buffer));
      const fetches = { y: out };
      await session.run(feeds, fetches); // binds the feeds (a captured session keeps them)
      const handler = mode === 'bound' ? sessionHandlerOf(session) : null;
      if (mode === 'bound' && !handler) throw new Error("this onnxruntime-web's session has no handler to run without feeds");
      const run = () => (handler ? handler.run({}, fetches, {}) : session.run(feeds, fetches));
      for (let i = 0; i < 4; i++) await run();
      const runs = 30;
      const t0 = performance.now();
      const c0 = threadSchedNs()?.onCpu ?? 0;
      for (let i = 0; i < runs; i++) await run();
      const c1 = threadSchedNs()?.onCpu ?? 0;
      const t1 = performance.now();
      const right = (await readOut()) === (k * (k - 1)) / 2;
      allRight &&= right;
      console.log(`| ${k} | ${addends} | ${modes[mode]} | ${((t1 - t0) / runs).toFixed(3)} | ${((c1 - c0) / 1e6 / runs).toFixed(3)} | ${right ? 'yes' : 'NO'} |`);
      await session.release();
    }
  }
}
process.exit(allRight ? 0 : 1);
