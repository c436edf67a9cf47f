/**
 * Shared rules of the hostile-input property tests (test/unit/fuzz/*.test.ts).
 *
 * Case counts: each property runs `fuzzRuns(ciDefault)` cases: `HARK_FUZZ_RUNS` when set (the full
 * run, `npm run test:fuzz`, sets 10,000), otherwise a small default so CI stays fast.
 * `HARK_FUZZ_SEED` replays a failing run (fast-check prints the seed and the shrunk case).
 *
 * What every target must do with any input: return within `MAX_CALL_MS`, or throw a typed error
 * (HarkError with a known code, or the target's own error class) whose message is a readable
 * sentence. Anything else (TypeError, RangeError, a hang, "undefined" in a message) fails.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { HarkError } from '../../../src/engine/errors';

export function fuzzRuns(ciDefault: number): number {
  const env = Number(process.env.HARK_FUZZ_RUNS);
  return Number.isInteger(env) && env > 0 ? env : ciDefault;
}

export function fuzzParams(ciDefault: number): fc.Parameters<unknown> {
  const seed = Number(process.env.HARK_FUZZ_SEED);
  return { numRuns: fuzzRuns(ciDefault), ...(Number.isInteger(seed) ? { seed } : {}) };
}

/** A vitest timeout that fits `runs` cases of at most `msPerCase` each (plus slack). */
export function fuzzTimeout(ciDefault: number, msPerCase: number): number {
  return 60_000 + fuzzRuns(ciDefault) * msPerCase;
}

/** One call on hostile input may take this long at most (a hang or a quadratic blow-up fails; roomy because CI shares 2 cores with other test files). */
export const MAX_CALL_MS = 5_000;

/** Cases each target ran, for the report printed at the end of a file. */
export const counted = new Map<string, number>();
export function count(target: string): void {
  counted.set(target, (counted.get(target) ?? 0) + 1);
}

/** A message a person can read: a bounded sentence, no leaked "undefined"/[object …], no control characters. */
export function expectReadable(message: string): void {
  expect(typeof message).toBe('string');
  expect(message.length, message).toBeGreaterThanOrEqual(20);
  expect(message.length, message.slice(0, 300)).toBeLessThanOrEqual(2_000);
  expect(message, message).toMatch(/^[A-Z“"]/u);
  expect(message, message).toMatch(/[.!?)”"]$/u);
  expect(message, message).not.toMatch(/\bundefined\b|\[object /);
  // eslint-disable-next-line no-control-regex
  expect(message, JSON.stringify(message)).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f\ud800-\udfff]/u);
}

/** A HarkError with one of the expected codes and a readable message. */
export function expectHarkError(error: unknown, codes: readonly string[]): void {
  if (!(error instanceof HarkError)) {
    throw new Error(`expected a HarkError, got ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
  }
  expect(codes, `${error.code}: ${error.message}`).toContain(error.code);
  expectReadable(error.message);
}

/**
 * Runs `call`; returns its value, or undefined after checking that what it threw passes `check`.
 * Fails when the call took longer than `limitMs` (MAX_CALL_MS unless said).
 */
export function guarded<T>(call: () => T, check: (error: unknown) => void, limitMs = MAX_CALL_MS): { ok: true; value: T } | { ok: false } {
  const t0 = performance.now();
  try {
    const value = call();
    return { ok: true, value };
  } catch (error) {
    check(error);
    return { ok: false };
  } finally {
    const ms = performance.now() - t0;
    if (ms > limitMs) throw new Error(`one call took ${ms.toFixed(0)} ms (limit ${limitMs} ms)`);
  }
}

/** Bytes as fast-check generates them, as a Uint8Array. */
export const bytes = (maxLength: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength });

/** Text with lone surrogates, control characters and other code units JSON.parse can produce. */
export const hostileText = (maxLength: number): fc.Arbitrary<string> =>
  fc.string({
    maxLength,
    unit: fc.oneof(
      fc.constantFrom('\ud800', '\udfff', '\u0000', '\u001b', '\u202e', '\u2028', '\ufeff', '\u200f', '\ufffd'),
      fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
    ),
  });
