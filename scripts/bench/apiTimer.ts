/**
 * The CPU time a decode step spends inside WebGPU calls, call by call: the third view of a step
 * beside `gpuCounters.ts` (how many calls) and `gpuTimer.ts` (how long the GPU works). On the H200
 * a 7B step is ~40 ms of wall time for ~4 ms of GPU work and ~430 dispatches (~0.08 ms each): this
 * says how much of that per-dispatch cost is the WebGPU implementation (dawn.node: validation, the
 * N-API crossing, our `nodeWebgpu.ts` shims) and how much is onnxruntime-web itself (its kernels'
 * CPU code in wasm, bind-group and uniform bookkeeping) — which decides whether the next lever is
 * fewer calls per dispatch, fewer dispatches, or neither.
 *
 * Installed by wrapping every method of the WebGPU prototypes in this process; `enabled` switches
 * the timing on for the measured steps only (when off, a wrapper is one extra JS call). A call's
 * time is its synchronous part; for `mapAsync` the time until its promise settles is kept apart as
 * the wait for the GPU (it includes the GPU work queued before it). Everything that is neither is
 * ORT's own CPU time (and the engine's JS), which SwiftShader's threads also compete with here.
 * No Node API here: the floor (`floor.ts`) uses it in Chromium's bench page too.
 */

/** A thread clock: this thread's on-CPU and runnable-but-waiting ns (see `threadClock.ts`). */
export type ThreadClock = () => { onCpu: number; waiting: number } | undefined;

export interface ApiCallStats {
  calls: number;
  ns: number;
}

const CLASSES = ['GPUDevice', 'GPUQueue', 'GPUCommandEncoder', 'GPUComputePassEncoder', 'GPUBuffer'] as const;
const kInstalled = Symbol.for('hark.apiTimer');

export class ApiTimer {
  enabled = false;
  /** Per `Class.method`: calls and nanoseconds inside them while enabled. */
  readonly byCall = new Map<string, ApiCallStats>();
  /** Nanoseconds from `mapAsync`'s call to its promise settling, while enabled. */
  waitNs = 0;
  /** The main thread's on-CPU and runnable-but-waiting ns in the measured spans (`begin`/`end`). */
  readonly thread = { onCpu: 0, waiting: 0, known: true };
  private spanStart: { onCpu: number; waiting: number } | undefined;

  /** `threadClock` reads the main thread's own clock (Node on Linux); without it, `thread.known` is false. */
  constructor(private readonly threadClock?: ThreadClock) {}

  /** Starts a measured span (a decode step): timing on, the thread's counters read. */
  begin(): void {
    this.spanStart = this.threadClock?.();
    this.enabled = true;
  }

  /** Ends the span begun last. */
  end(): void {
    this.enabled = false;
    const now = this.threadClock?.();
    if (!now || !this.spanStart) {
      this.thread.known = false;
      return;
    }
    this.thread.onCpu += now.onCpu - this.spanStart.onCpu;
    this.thread.waiting += now.waiting - this.spanStart.waiting;
  }

  /** Wraps the WebGPU prototypes (once per process: one timer); call after the other wrappers. */
  install(): void {
    const g = globalThis as unknown as Record<string, { prototype: Record<string | symbol, unknown> } | undefined>;
    for (const name of CLASSES) {
      const proto = g[name]?.prototype;
      if (!proto) continue;
      if (proto[kInstalled]) {
        if (proto[kInstalled] !== this) throw new Error('another ApiTimer already wraps the WebGPU prototypes');
        continue;
      }
      proto[kInstalled] = this;
      for (const method of Object.getOwnPropertyNames(proto)) {
        const descriptor = Object.getOwnPropertyDescriptor(proto, method);
        if (method === 'constructor' || !descriptor || typeof descriptor.value !== 'function') continue;
        this.wrap(proto, `${name}.${method}`, method, descriptor.value as (...a: unknown[]) => unknown);
      }
    }
  }

  private wrap(proto: Record<string, unknown>, key: string, method: string, original: (...a: unknown[]) => unknown): void {
    const timer = this;
    proto[method] = function (this: unknown, ...args: unknown[]) {
      if (!timer.enabled) return original.apply(this, args);
      const started = performance.now();
      const result = original.apply(this, args);
      const ended = performance.now();
      timer.add(key, (ended - started) * 1e6);
      if (method === 'mapAsync' && result instanceof Promise) {
        return result.finally(() => {
          timer.waitNs += (performance.now() - ended) * 1e6;
        });
      }
      return result;
    };
  }

  private add(key: string, ns: number): void {
    const entry = this.byCall.get(key) ?? { calls: 0, ns: 0 };
    entry.calls += 1;
    entry.ns += ns;
    this.byCall.set(key, entry);
  }

  /** Total nanoseconds inside WebGPU calls since the last reset. */
  totalNs(): number {
    let sum = 0;
    for (const entry of this.byCall.values()) sum += entry.ns;
    return sum;
  }

  reset(): void {
    this.byCall.clear();
    this.waitNs = 0;
    Object.assign(this.thread, { onCpu: 0, waiting: 0, known: true });
  }
}
