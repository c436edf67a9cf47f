/**
 * What one more GPU-buffer input costs a session.run, captured and not:
 * `npm run bench:input-cost [-- --pin]` (WebGPU in Node; BENCHMARKS.md, session 12).
 *
 * A chain of k `Add` kernels, y_i = y_(i-1) + a_i, with the addends a_i either inside the graph
 * (initializers) or k graph inputs bound to ORT-owned GPU buffers (src/engine/ortOwnedBuffers.ts),
 * run uncaptured and graph-captured; the difference between the two rows of one k and one
 * capture mode is what k inputs cost a run. It prices a decoder whose weights are graph inputs
 * (models/capture_decoder.py --weights-as-inputs: 453 of them at Vicuna-7B geometry).
 */
import { setupJobDevice } from './jobDevice';
import { loadOrtForNodeWebGpu } from './nodeOrt';
import { pinMainThreadApart, threadSchedNs } from './threadClock';

await setupJobDevice('webgpu-node', () => {});
const ort = await loadOrtForNodeWebGpu();
const { buildOnnxModel, TensorType } = await import('../../src/engine/onnxBuilder');
const { OrtOwnedBuffers } = await import('../../src/engine/ortOwnedBuffers');
if (process.argv.includes('--pin')) pinMainThreadApart();
const owned = new OrtOwnedBuffers();
const out = await owned.zeros('float32', [4]);
console.log('| kernels | addends | captured | ms per run (wall) | main thread ms per run |');
console.log('| --- | --- | --- | --- | --- |');
for (const k of [64, 256, 512]) {
  for (const addends of ['initializers', 'inputs'] as const) {
    for (const capture of [false, true]) {
      // A chain of k Adds: y_i = y_(i-1) + a_i, the a_i either weights inside the graph or GPU-buffer inputs.
      const names = Array.from({ length: k }, (_, i) => `a${i}`);
      const model = buildOnnxModel({
        nodes: names.map((name, i) => ({ op: 'Add', inputs: [i === 0 ? 'x' : `y${i - 1}`, name], outputs: [i === k - 1 ? 'y' : `y${i}`] })),
        inputs: [{ name: 'x', type: TensorType.FLOAT, dims: [4] }, ...(addends === 'inputs' ? names.map((name) => ({ name, type: TensorType.FLOAT, dims: [4] })) : [])],
        outputs: [{ name: 'y', type: TensorType.FLOAT, dims: [4] }],
        initializers: addends === 'initializers' ? names.map((name, i) => ({ name, dims: [4], data: new Float32Array(4).fill(i) })) : [],
      });
      const session = await ort.InferenceSession.create(model, { executionProviders: [{ name: 'webgpu' }], enableGraphCapture: capture });
      const feeds: Record<string, InstanceType<typeof ort.Tensor>> = { x: await owned.zeros('float32', [4]) };
      if (addends === 'inputs') for (const name of names) feeds[name] = await owned.zeros('float32', [4]);
      const fetches = { y: out };
      for (let i = 0; i < 5; i++) await session.run(feeds, fetches);
      const runs = 30;
      const t0 = performance.now();
      const c0 = threadSchedNs()?.onCpu ?? 0;
      for (let i = 0; i < runs; i++) await session.run(feeds, fetches);
      const c1 = threadSchedNs()?.onCpu ?? 0;
      const t1 = performance.now();
      console.log(`| ${k} | ${addends} | ${capture ? 'yes' : 'no'} | ${((t1 - t0) / runs).toFixed(3)} | ${((c1 - c0) / 1e6 / runs).toFixed(3)} |`);
      await session.release();
    }
  }
}
process.exit(0);
