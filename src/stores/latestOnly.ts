/**
 * Hands on the latest of a fast stream of values at most once per interval: the first at once, the
 * ones that come sooner after it coalesced into one, later. Why: on WebAssembly the tiny model
 * writes ~1000 tokens a second, and one React render of the whole answer per token kept the page's
 * main thread so busy that the answer was shown seconds late and a Stop pressed meanwhile reached
 * the engine only after the answer had ended.
 */
export interface LatestOnly<T> {
  /**
   * `now`: this value marks a change of state (e.g. the answer begins after the thoughts) and is
   * drawn at once, whatever waits; the interval restarts from it.
   */
  push(value: T, now?: boolean): void;
  /** Drops a value still waiting (the stream ended with something newer). */
  cancel(): void;
}

export function latestOnly<T>(apply: (value: T) => void, intervalMs: number): LatestOnly<T> {
  let waiting: { value: T } | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let lastApplied = Number.NEGATIVE_INFINITY;
  const run = () => {
    timer = null;
    if (!waiting) return;
    const { value } = waiting;
    waiting = null;
    lastApplied = performance.now();
    apply(value);
  };
  return {
    push(value, now = false) {
      waiting = { value };
      if (now) {
        if (timer !== null) clearTimeout(timer);
        run();
        return;
      }
      if (timer !== null) return;
      const wait = lastApplied + intervalMs - performance.now();
      if (wait <= 0) run();
      else timer = setTimeout(run, wait);
    },
    cancel() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      waiting = null;
    },
  };
}
