/**
 * The memory-bandwidth roof the "% of roof" column divides by, measured in the same run:
 * - WebGPU: `copyBufferToBuffer` of a large buffer, repeated, timed with `onSubmittedWorkDone`;
 * - wasm (CPU): `TypedArray.set` of a large array (a memcpy).
 * Both count bytes read + bytes written (2 x size per copy), the best of a few repetitions.
 */

export interface Bandwidth {
  gbPerSecond: number;
  method: string;
}

export function measureCpuBandwidth(bytes = 256 << 20, repeats = 6): Bandwidth {
  const src = new Float64Array(bytes / 8);
  for (let i = 0; i < src.length; i += 512) src[i] = i;
  const dst = new Float64Array(src.length);
  dst.set(src); // touch every page first
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    dst.set(src);
    best = Math.min(best, performance.now() - t0);
  }
  return { gbPerSecond: (2 * bytes) / (best / 1000) / 1e9, method: `TypedArray.set ${bytes >> 20} MiB, best of ${repeats}` };
}

export async function measureGpuBandwidth(gpu: GPU, bytes = 256 << 20, copies = 8, repeats = 3): Promise<Bandwidth> {
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter');
  const size = Math.min(bytes, adapter.limits.maxBufferSize);
  const device = await adapter.requestDevice({ requiredLimits: { maxBufferSize: size } });
  try {
    const usage = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const a = device.createBuffer({ size, usage });
    const b = device.createBuffer({ size, usage });
    const copy = async (n: number) => {
      const encoder = device.createCommandEncoder();
      for (let i = 0; i < n; i++) encoder.copyBufferToBuffer(i % 2 ? b : a, 0, i % 2 ? a : b, 0, size);
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
    };
    await copy(2); // allocation and first-touch
    let best = Number.POSITIVE_INFINITY;
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      await copy(copies);
      best = Math.min(best, performance.now() - t0);
    }
    a.destroy();
    b.destroy();
    return {
      gbPerSecond: (2 * size * copies) / (best / 1000) / 1e9,
      method: `copyBufferToBuffer ${size >> 20} MiB x ${copies}, best of ${repeats}`,
    };
  } finally {
    device.destroy();
  }
}
