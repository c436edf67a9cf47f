/**
 * One lane for the engine's stateful calls (load model, set audio, ask, new conversation): the
 * engine refuses overlapping work ('engine/busy'), so the stores queue their calls here, in order.
 * `cancel()` deliberately bypasses the lane.
 */
let tail: Promise<unknown> = Promise.resolve();
let pending = 0;

export function inEngineLane<T>(work: () => Promise<T>): Promise<T> {
  pending++;
  const run = tail.then(work, work);
  tail = run.then(
    () => pending--,
    () => pending--,
  );
  return run;
}

/** Calls queued or running (diagnostics). */
export function engineLaneDepth(): number {
  return pending;
}
