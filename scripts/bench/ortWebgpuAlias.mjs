// Node module hook (registered by scripts/bench/job.ts for WebGPU runs): resolves the engine's
// plain `onnxruntime-web` import to onnxruntime-web's WebGPU build, as the app's Vite alias does
// in the browser, so our runtime, transformers.js and the bench share one ORT instance.
export async function resolve(specifier, context, nextResolve) {
  if (specifier === 'onnxruntime-web') return nextResolve('onnxruntime-web/webgpu', context);
  return nextResolve(specifier, context);
}
