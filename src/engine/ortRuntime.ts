/**
 * onnxruntime-web set-up shared by every session the engine creates.
 *
 * The engine imports plain `onnxruntime-web`; in Node that resolves to ORT's Node build (wasm
 * backend), and the app's Vite config aliases it to ORT's WebGPU build, whose wasm binary the app
 * serves from its own origin under `ort/` (never a CDN, so the app works offline).
 */
import * as ort from 'onnxruntime-web';
import type { Backend } from './device';
import { ORT_WEBGPU_WASM_FILES } from './ortAssets';

export { ort };

export interface OrtSetup {
  /** URL of the folder holding ORT's `.wasm`/`.mjs` files; omit in Node (ORT finds its own). */
  wasmBaseUrl?: string;
  /** wasm threads; 1 disables multi-threading. */
  numThreads?: number;
}

/**
 * ORT's own log threshold: errors and fatal only. At its default ('warning') every model load on
 * WebGPU logs "Some nodes were not assigned to the preferred execution providers" through
 * console.error (shape ops placed on the CPU on purpose, which is normal), eight lines per load;
 * real failures are logged at 'error' and still reach the console, and reach the user as a
 * HarkError either way.
 */
export const ORT_LOG_LEVEL = 'error' as const;
/** The same threshold for a session's own logger (0 verbose … 3 error, 4 fatal). */
export const ORT_SESSION_LOG_SEVERITY = 3 as const;

ort.env.logLevel = ORT_LOG_LEVEL;

export function configureOrt(setup: OrtSetup): void {
  if (setup.wasmBaseUrl !== undefined) {
    const base = setup.wasmBaseUrl.endsWith('/') ? setup.wasmBaseUrl : `${setup.wasmBaseUrl}/`;
    // Name both files explicitly so ORT never derives a URL from its own (bundled) location.
    ort.env.wasm.wasmPaths = {
      mjs: `${base}${ORT_WEBGPU_WASM_FILES[0]}`,
      wasm: `${base}${ORT_WEBGPU_WASM_FILES[1]}`,
    };
  }
  if (setup.numThreads !== undefined) ort.env.wasm.numThreads = setup.numThreads;
}

/** Session options for a backend; `webgpu` lists only webgpu so a broken GPU fails loudly. */
export function sessionOptions(
  backend: Backend,
  extra: ort.InferenceSession.SessionOptions = {},
): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [backend],
    graphOptimizationLevel: 'all',
    logSeverityLevel: ORT_SESSION_LOG_SEVERITY,
    ...extra,
  };
}
