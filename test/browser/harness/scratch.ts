import { configureOrt, ort } from '../../../src/engine/ortRuntime';
configureOrt({ wasmBaseUrl: new URL('/ort/', location.origin).href });
async function bytes(p: string) { return new Uint8Array(await (await fetch(p)).arrayBuffer()); }
function rnd(n: number, seed: number) { return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + seed)); }
function feedsFor(name: string, n: number): Record<string, ort.Tensor> {
  if (name.startsWith('gqa')) {
    const hd = Number(name.slice(6)); const H = 4 * hd; const p = (window as any).past ?? 0;
    return { q: new ort.Tensor('float32', rnd(n * H, 1), [1, n, H]), k: new ort.Tensor('float32', rnd(n * H, 2), [1, n, H]), v: new ort.Tensor('float32', rnd(n * H, 3), [1, n, H]),
      pk: new ort.Tensor('float32', rnd(4 * p * hd, 4), [1, 4, p, hd]), pv: new ort.Tensor('float32', rnd(4 * p * hd, 5), [1, 4, p, hd]),
      seqlens_k: new ort.Tensor('int32', Int32Array.from([p + n - 1]), [1]), total: new ort.Tensor('int32', Int32Array.from([p + n]), []) };
  }
  if (name === 'matmul_k8') return { x: new ort.Tensor('float32', rnd(n * 8, 1), [1, n, 8]) };
  return { x: new ort.Tensor('float32', rnd(n * 32, 1), [1, n, 32]), pos: new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(i)), [1, n]) };
}
async function run(name: string, n: number, ep: 'webgpu' | 'wasm') {
  const s = await ort.InferenceSession.create(await bytes(`/test/browser/harness/scratch_models/${name}.onnx`), { executionProviders: [ep] });
  const out = await s.run(feedsFor(name, n));
  return Array.from(out[s.outputNames[0]!]!.data as Float32Array);
}
(window as any).cmp = async (name: string, n: number, past = 0) => {
  (window as any).past = past;
  const a = await run(name, n, 'webgpu'); const b = await run(name, n, 'wasm');
  let d = 0; for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
};
(window as any).ready = true;
