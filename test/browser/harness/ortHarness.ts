/**
 * Test-only page script: runs an ONNX model handed over by a browser test on a chosen execution
 * provider, through the engine's own ORT set-up (same build, same self-hosted wasm files).
 */
import type { Backend } from '../../../src/engine/device';
import { configureOrt, ort, sessionOptions } from '../../../src/engine/ortRuntime';

configureOrt({ wasmBaseUrl: new URL('/ort/', location.origin).href });

export interface HarnessResult {
  data: number[];
  dims: readonly number[];
  location: string;
}

async function runGraph(modelBase64: string, input: number[], dims: readonly number[], backend: Backend): Promise<HarnessResult> {
  const model = Uint8Array.from(atob(modelBase64), (c) => c.charCodeAt(0));
  // On webgpu, ask for the output to stay on the GPU: a gpu-buffer tensor can only come from the
  // WebGPU EP, so a silent fallback to the CPU cannot pass unnoticed.
  const extra: ort.InferenceSession.SessionOptions = backend === 'webgpu' ? { preferredOutputLocation: 'gpu-buffer' } : {};
  const session = await ort.InferenceSession.create(model, sessionOptions(backend, extra));
  try {
    const x = new ort.Tensor('float32', Float32Array.from(input), dims);
    const outputs = await session.run({ x });
    const y = outputs[session.outputNames[0]!]!;
    const location = y.location;
    const data = (await y.getData(true)) as Float32Array;
    return { data: Array.from(data), dims: y.dims, location };
  } finally {
    await session.release();
  }
}

declare global {
  interface Window {
    harkHarness: { runGraph: typeof runGraph; ready: true };
  }
}

window.harkHarness = { runGraph, ready: true };
