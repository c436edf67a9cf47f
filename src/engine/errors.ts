/**
 * Every failure the engine reports to a user is a HarkError: a stable `code` for programs and a
 * `message` a person can act on (what happened, and what to do). Plain objects with these fields
 * cross the worker boundary intact (see workers/), so the UI can show them as they are.
 */

export type HarkErrorCode =
  // audio input
  | 'audio/empty'
  | 'audio/unsupported-format'
  | 'audio/truncated'
  | 'audio/no-samples'
  | 'audio/invalid-samples'
  | 'audio/too-long'
  | 'audio/decode-failed'
  // bundles
  | 'bundle/manifest-invalid'
  | 'bundle/unsupported-version'
  /** A valid bundle with a part this app cannot run yet (e.g. a Perceiver fusion). */
  | 'bundle/unsupported-model'
  | 'bundle/fetch-failed'
  | 'bundle/hash-mismatch'
  | 'bundle/missing-file'
  | 'bundle/storage'
  /** The built app's Content-Security-Policy does not allow the model's host (src/csp.ts). */
  | 'bundle/host-not-allowed'
  | 'bundle/aborted'
  // inference
  | 'engine/not-ready'
  | 'engine/no-audio'
  | 'engine/context-overflow'
  | 'engine/backend-unavailable'
  | 'engine/inference-failed'
  | 'engine/cancelled'
  | 'engine/busy'
  // the engine's worker (src/engineClient.ts)
  | 'engine/device-lost'
  | 'engine/worker-crashed';

export class HarkError extends Error {
  override readonly name = 'HarkError';

  constructor(
    readonly code: HarkErrorCode,
    message: string,
    /** Extra machine-readable facts (file name, sizes, limits) for logs and tests. */
    readonly details: Record<string, string | number | boolean> = {},
  ) {
    super(message);
  }

  /** A structured-clone-safe copy for postMessage/comlink. */
  toJSON(): SerializedHarkError {
    return { name: 'HarkError', code: this.code, message: this.message, details: this.details };
  }
}

export interface SerializedHarkError {
  name: 'HarkError';
  code: HarkErrorCode;
  message: string;
  details: Record<string, string | number | boolean>;
}

export function isHarkError(value: unknown): value is HarkError {
  return value instanceof HarkError;
}

export function isSerializedHarkError(value: unknown): value is SerializedHarkError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { name?: unknown }).name === 'HarkError' &&
    typeof (value as { code?: unknown }).code === 'string' &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}

/**
 * Untrusted text (a property name, a file name, a value from a file) made safe to quote in a
 * message: control characters and lone surrogates become \uXXXX escapes and anything past `max`
 * characters is cut with "…", so a hostile file cannot make a message unreadable or huge.
 */
export function printable(text: string, max = 80): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return cut.replace(
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
