/**
 * What crosses the worker boundary besides plain data: results travel in an envelope so a
 * HarkError keeps its `code` and `details` (comlink's default error transfer keeps only the
 * message), and the client re-throws it as a real HarkError.
 */
import { HarkError, isSerializedHarkError, type SerializedHarkError } from '../src/engine/errors';

export type Envelope<T> = { ok: true; value: T } | { ok: false; error: SerializedHarkError };

export function toSerializedError(error: unknown): SerializedHarkError {
  if (error instanceof HarkError) return error.toJSON();
  const message = error instanceof Error ? error.message : String(error);
  return {
    name: 'HarkError',
    code: 'engine/inference-failed',
    message: `Something went wrong in the inference worker (${message}). Try again; reloading the page resets it.`,
    details: {},
  };
}

export async function envelope<T>(work: () => Promise<T> | T): Promise<Envelope<T>> {
  try {
    return { ok: true, value: await work() };
  } catch (error) {
    return { ok: false, error: toSerializedError(error) };
  }
}

export function unwrap<T>(result: Envelope<T>): T {
  if (result.ok) return result.value;
  if (isSerializedHarkError(result.error)) {
    throw new HarkError(result.error.code, result.error.message, result.error.details);
  }
  throw new Error('malformed error from the inference worker');
}

/** What a person reads when the WebGPU device was lost (the worker and the client say the same). */
export function deviceLostMessage(detail: string): string {
  return `The GPU stopped working (the browser reported the WebGPU device lost: ${detail}). Hark restarted the engine and is loading the model again; your conversation and recording are kept. Ask again when the model is ready.`;
}

/** What a person reads when the engine's worker died or threw an error nothing caught. */
export function workerCrashedMessage(detail: string): string {
  return `The engine stopped unexpectedly (${detail}). Hark restarted it and is loading the model again from this device; your conversation and recording are kept. Ask again when the model is ready.`;
}
