/**
 * WebGPU in Node for onnxruntime-web, through the `webgpu` npm package (dawn.node).
 *
 * Usage (before onnxruntime-web's WebGPU build creates its first session):
 *
 *   import { setupNodeWebGpu } from '../scripts/bench/nodeWebgpu';
 *   const gpu = await setupNodeWebGpu();           // navigator.gpu + WebGPU globals
 *   const ort = await import('onnxruntime-web/webgpu');
 *   await configureOrtForNodeWebGpu(ort.env);      // one thread, the asyncify wasm bytes
 *   ... InferenceSession.create(model, { executionProviders: ['webgpu'] })
 *
 * What it does, and why (facts in ../shared/brief/gpu.md):
 * - `globalThis.navigator = { gpu: create(flags) }` plus dawn.node's WebGPU classes as globals
 *   (Node has no `navigator`; ORT looks for `navigator.gpu`).
 * - wraps `GPUQueue.prototype.writeBuffer`: dawn.node rejects views of a SharedArrayBuffer
 *   ("Invalid argument"), and ORT's wasm heap is one; such views are copied to a plain buffer.
 * - `configureOrtForNodeWebGpu`: `numThreads = 1` (with more, ORT fetches its worker script,
 *   which Node's fetch cannot do for a file URL) and `wasmBinary` = the bytes of
 *   `ort-wasm-simd-threaded.asyncify.wasm` (the WebGPU build's binary, read from node_modules).
 *
 * - keeps Node's event loop turning (a ref'd 1 ms interval, HARK_WEBGPU_KEEPALIVE_MS overrides;
 *   `releaseNodeWebGpu()` clears it). Found here: without it, the first `session.run` of a WebGPU
 *   session never settles. ORT waits on GPU work that holds no libuv handle, so Node sees an empty
 *   loop, stops polling (dawn.node delivers callbacks from the loop) and, once V8's background
 *   wasm compilation ends, exits with the top-level await unsettled. The period matters: the tiny
 *   decoder on SwiftShader decoded at 16.6 s/token with a 1 s interval and 8.6 s/token with 5 ms.
 *
 * The Vulkan driver comes from the environment: on a machine without a GPU, point
 * `VK_ICD_FILENAMES` at Chromium's SwiftShader ICD (`/usr/lib/chromium/vk_swiftshader_icd.json`;
 * `withSwiftShaderFallback` does so when no ICD is set and no GPU driver is installed); on an NVIDIA
 * machine, at `/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json` (and have libvulkan1 +
 * libglvnd installed). Dawn flags (`create([...])`), e.g.
 * `enable-dawn-features=vulkan_enable_f16_on_nvidia` for shader-f16 on NVIDIA, go in `dawnFlags`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

export interface NodeWebGpuInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  /** True when the adapter is SwiftShader (a CPU implementation of Vulkan). */
  isSoftware: boolean;
  features: string[];
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  /** The Vulkan ICD in use (`VK_ICD_FILENAMES`), if one was named. */
  vulkanIcd: string | undefined;
}

export interface NodeWebGpuOptions {
  /** Flags for dawn.node's `create()`. */
  dawnFlags?: string[];
  /** Adapter features to hide from WebGPU users (default: HARK_WEBGPU_HIDE_FEATURES, comma-separated). */
  hideFeatures?: string[];
}

/**
 * Sets VK_ICD_FILENAMES to SwiftShader when nothing is set and no NVIDIA ICD is present.
 * Call before `setupNodeWebGpu` (the Vulkan loader reads the variable when Dawn starts).
 */
export function withSwiftShaderFallback(env: NodeJS.ProcessEnv = process.env): void {
  env.XDG_RUNTIME_DIR ??= '/tmp';
  if (env.VK_ICD_FILENAMES) return;
  const nvidia = '/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json';
  if (existsSync(nvidia)) env.VK_ICD_FILENAMES = nvidia;
  else if (existsSync(SWIFTSHADER_ICD)) env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
}

let installed: Promise<NodeWebGpuInfo> | undefined;
let keepAlive: ReturnType<typeof setInterval> | undefined;

/** Lets the process end on its own again (clears the keep-alive interval). */
export function releaseNodeWebGpu(): void {
  if (keepAlive !== undefined) clearInterval(keepAlive);
  keepAlive = undefined;
}

/** Installs `navigator.gpu` (dawn.node) and returns the adapter it gives. Idempotent. */
export function setupNodeWebGpu(options: NodeWebGpuOptions = {}): Promise<NodeWebGpuInfo> {
  installed ??= install(options);
  return installed;
}

async function install(options: NodeWebGpuOptions): Promise<NodeWebGpuInfo> {
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create(options.dawnFlags ?? (process.env.HARK_DAWN_FLAGS ?? '').split(',').filter(Boolean));
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  patchWriteBuffer();
  hideAdapterFeatures(gpu, options.hideFeatures ?? (process.env.HARK_WEBGPU_HIDE_FEATURES ?? '').split(',').filter(Boolean));
  keepAlive ??= setInterval(() => {}, Number(process.env.HARK_WEBGPU_KEEPALIVE_MS ?? 1));
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new Error(
      `dawn.node found no WebGPU adapter (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? 'unset'}). ` +
        `Without a GPU, set VK_ICD_FILENAMES=${SWIFTSHADER_ICD} (Debian's chromium package).`,
    );
  }
  return describe(adapter);
}

function describe(adapter: GPUAdapter): NodeWebGpuInfo {
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  const isSoftware = text.includes('swiftshader') || text.includes('llvmpipe') || text.includes('lavapipe');
  return {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    isFallbackAdapter: Boolean(info.isFallbackAdapter ?? false),
    isSoftware,
    features: [...adapter.features].map(String).sort(),
    maxBufferSize: adapter.limits.maxBufferSize,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    vulkanIcd: process.env.VK_ICD_FILENAMES,
  };
}

/**
 * Makes the adapters `gpu` returns leave `names` out of `features` (and out of
 * `requestDevice`'s requiredFeatures), so ORT neither requests nor uses them.
 */
function hideAdapterFeatures(gpu: GPU, names: string[]): void {
  if (names.length === 0) return;
  const requestAdapter = gpu.requestAdapter.bind(gpu);
  gpu.requestAdapter = async (options?: GPURequestAdapterOptions) => {
    const adapter = await requestAdapter(options);
    if (!adapter) return adapter;
    const features = new Set([...adapter.features].filter((f) => !names.includes(f)));
    return new Proxy(adapter, {
      get(target, key) {
        if (key === 'features') return features;
        if (key === 'requestDevice') {
          return (descriptor: GPUDeviceDescriptor = {}) =>
            target.requestDevice({ ...descriptor, requiredFeatures: [...(descriptor.requiredFeatures ?? [])].filter((f) => !names.includes(f)) });
        }
        const value: unknown = Reflect.get(target, key, target);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
  };
}

const kPatched = Symbol.for('hark.writeBufferCopiesSharedViews');

function patchWriteBuffer(): void {
  const proto = (globalThis as { GPUQueue?: { prototype: GPUQueue & { [kPatched]?: boolean } } }).GPUQueue?.prototype;
  if (!proto || proto[kPatched]) return;
  const original = proto.writeBuffer;
  proto.writeBuffer = function (
    this: GPUQueue,
    buffer: GPUBuffer,
    offset: number,
    data: BufferSource | SharedArrayBuffer,
    dataOffset?: number,
    size?: number,
  ): undefined {
    let plain: BufferSource = data as BufferSource;
    if (ArrayBuffer.isView(data) && data.buffer instanceof SharedArrayBuffer) {
      // dataOffset/size count elements of the view's type: keep the element type.
      const bytes = new Uint8Array(data.byteLength);
      bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      const Ctor = (data as unknown as { constructor: new (b: ArrayBuffer) => ArrayBufferView }).constructor;
      plain = data instanceof DataView ? bytes : (new Ctor(bytes.buffer) as BufferSource);
    } else if (data instanceof SharedArrayBuffer) {
      plain = new Uint8Array(data).slice().buffer;
    }
    return original.call(this, buffer, offset, plain, dataOffset, size);
  } as GPUQueue['writeBuffer'];
  proto[kPatched] = true;
}

/** The shape of `ort.env` this module touches (any onnxruntime-web build). */
export interface OrtWasmEnv {
  wasm: { numThreads?: number; wasmBinary?: ArrayBufferLike | Uint8Array; wasmPaths?: unknown };
}

/** Path of onnxruntime-web's asyncify wasm (the binary of its WebGPU build). */
export function ortWebGpuWasmPath(): string {
  // The GPU kit (scripts/bench/gpuKit.ts) runs bundled, without node_modules: it names the file.
  if (process.env.HARK_ORT_WASM) return process.env.HARK_ORT_WASM;
  const require = createRequire(import.meta.url);
  const main = require.resolve('onnxruntime-web/webgpu');
  return join(dirname(main), 'ort-wasm-simd-threaded.asyncify.wasm');
}

/** One wasm thread and the asyncify binary's bytes: what `onnxruntime-web/webgpu` needs in Node. */
export function configureOrtForNodeWebGpu(env: OrtWasmEnv): void {
  env.wasm.numThreads = 1;
  env.wasm.wasmBinary = new Uint8Array(readFileSync(ortWebGpuWasmPath()));
}
