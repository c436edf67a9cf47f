/**
 * onnxruntime-web's WebGPU build, ready for a Node bench process that runs the engine's code on
 * dawn.node (`gpuTime.ts`, `capture.ts`). Call after `setupJobDevice('webgpu-node', …)`, which
 * installs `navigator.gpu` and the import alias.
 *
 * - one wasm thread and the asyncify binary's bytes (`configureOrtForNodeWebGpu`);
 * - transformers.js (imported by the engine's tokenizer) picks its ORT on import: it is handed this
 *   one first, and the wasm paths it overwrites are put back (as job.ts does).
 */
import { readFile } from 'node:fs/promises';

export async function loadOrtForNodeWebGpu() {
  const { ort } = await import('../../src/engine/ortRuntime');
  const { configureOrtForNodeWebGpu } = await import('./nodeWebgpu');
  configureOrtForNodeWebGpu(ort.env);
  const { shareOrtWithTransformers } = await import('./peer');
  shareOrtWithTransformers(ort, async (path) => new Uint8Array(await readFile(path)));
  const wasmPaths = ort.env.wasm.wasmPaths;
  await import('@huggingface/transformers');
  ort.env.wasm.wasmPaths = wasmPaths;
  return ort;
}
