/**
 * The main thread's own clock in Node on Linux, for `ApiTimer`: on a software adapter SwiftShader's
 * threads run the "GPU" work on the same cores, so wall time overstates what the main thread (ORT,
 * dawn.node's calls) costs; its scheduler counters say how long it ran and how long it waited.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** This thread's ns on a CPU and runnable-but-waiting (`/proc/thread-self/schedstat`), or undefined. */
export function threadSchedNs(): { onCpu: number; waiting: number } | undefined {
  try {
    const [onCpu, waiting] = readFileSync('/proc/thread-self/schedstat', 'utf8').trim().split(/\s+/).map(Number);
    return onCpu !== undefined && waiting !== undefined ? { onCpu, waiting } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Puts the main thread on CPU 0 and every other thread of this process (SwiftShader's, V8's) on
 * the others (`taskset`), so the main thread's calls are timed without competing for a core. Call
 * after the WebGPU device exists (its threads must exist to be moved). Returns false where it
 * cannot (one core, no taskset, not Linux).
 */
export function pinMainThreadApart(): boolean {
  const cpus = availableParallelism();
  if (cpus < 2) return false;
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const main = tid === String(process.pid);
      execFileSync('taskset', ['-pc', main ? '0' : `1-${cpus - 1}`, tid], { stdio: 'ignore' });
    }
    return true;
  } catch {
    return false;
  }
}
