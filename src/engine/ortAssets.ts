/**
 * The files onnxruntime-web's WebGPU build loads at run time. The app serves both from its own
 * origin under `ort/` (see vite.config.ts); kept free of imports so build tooling can read it.
 */
export const ORT_WEBGPU_WASM_FILES = [
  'ort-wasm-simd-threaded.asyncify.mjs',
  'ort-wasm-simd-threaded.asyncify.wasm',
] as const;
