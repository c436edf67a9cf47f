/**
 * Hostile `models/index.json` documents through readModelIndex: random JSON, and a real index
 * with entries mutated (wrong types, escaping paths, huge sizes, odd keys such as "__proto__").
 * Every input either gives entries that are plain data whose `path` stays inside `models/`, or a
 * `bundle/manifest-invalid` HarkError with a readable message.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MODEL_INDEX_FORMAT, MODEL_INDEX_VERSION, readModelIndex, type ModelIndexEntry } from '../../../src/modelIndex';
import { expectHarkError, fuzzParams, fuzzTimeout, guarded, hostileText } from './harness';

const CI_RUNS = 1_000;
const INDEX_URL = 'https://site.example/app/models/index.json';

function checkEntries(entries: ModelIndexEntry[], input: unknown): void {
  const models = (input as { models: unknown[] }).models;
  expect(entries.length).toBeLessThanOrEqual(models.length);
  for (const e of entries) {
    expect(new URL(e.path, INDEX_URL).href.startsWith('https://site.example/app/models/')).toBe(true);
    expect(new URL(e.path, INDEX_URL).href).not.toBe('https://site.example/app/models/');
    for (const value of [e.name, e.label, e.description]) expect(typeof value).toBe('string');
    expect(Number.isFinite(e.bytes) && e.bytes >= 0).toBe(true);
    expect(typeof e.randomWeights).toBe('boolean');
    expect(Object.getPrototypeOf(e.variants)).toBe(Object.prototype);
    for (const [name, v] of Object.entries(e.variants)) {
      expect(typeof name).toBe('string');
      expect(Number.isFinite(v.bytes) && v.bytes >= 0).toBe(true);
      expect(typeof v.tested).toBe('boolean');
    }
  }
}

function throughReader(json: unknown): void {
  const result = guarded(() => readModelIndex(json), (e) => expectHarkError(e, ['bundle/manifest-invalid']));
  if (result.ok) checkEntries(result.value, json);
}

const validEntry = {
  name: 'salmonn-tiny',
  path: 'salmonn-tiny/',
  label: 'Tiny test model, random weights',
  description: 'A test model.',
  randomWeights: true,
  bytes: 19884906,
  variants: { int4: { bytes: 4168913, tested: true }, fp32: { bytes: 9000000, tested: true } },
};

const hostile: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  hostileText(40),
  fc.constantFrom(
    '../x/', '../../', '/abs/', '//evil.example/', 'https://evil.example/m/', 'x/../../', '..%2F/', 'a\\..\\b/', '.', './', '', 'x', 'x//',
    -1, 1e308, -0, Number.MAX_SAFE_INTEGER, null, [], {},
  ),
);

const entry = fc
  .record({
    field: fc.constantFrom('name', 'path', 'label', 'description', 'randomWeights', 'bytes', 'variants', '__proto__', 'extra'),
    value: hostile,
    variantKey: fc.oneof(fc.constantFrom('__proto__', 'constructor', 'toString', 'int4', ''), hostileText(8)),
    variantValue: fc.oneof(fc.record({ bytes: hostile, tested: hostile }), hostile),
  })
  .map(({ field, value, variantKey, variantValue }) => {
    const e: Record<string, unknown> = JSON.parse(JSON.stringify(validEntry));
    (e.variants as Record<string, unknown>)[variantKey] = variantValue;
    e[field] = value;
    return JSON.parse(JSON.stringify(e)) as unknown;
  });

describe('model index of hostile input', () => {
  it('random JSON', { timeout: fuzzTimeout(CI_RUNS, 5) }, () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 5 }), throughReader), fuzzParams(CI_RUNS));
  });

  it('a real index with mutated entries', { timeout: fuzzTimeout(CI_RUNS, 5) }, () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(entry, fc.constant(validEntry), hostile), { maxLength: 5 }), (models) =>
        throughReader({ format: MODEL_INDEX_FORMAT, formatVersion: MODEL_INDEX_VERSION, models }),
      ),
      fuzzParams(CI_RUNS),
    );
  });

  it('keeps a valid entry, and refuses a document that is not an index with a typed error', () => {
    expect(readModelIndex({ format: MODEL_INDEX_FORMAT, formatVersion: MODEL_INDEX_VERSION, models: [validEntry] })).toHaveLength(1);
    for (const doc of [null, '<!doctype html>', { format: MODEL_INDEX_FORMAT, formatVersion: 2, models: [] }]) {
      const r = guarded(() => readModelIndex(doc), (e) => expectHarkError(e, ['bundle/manifest-invalid']));
      expect(r.ok).toBe(false);
    }
  });

  it('keeps a variant named "__proto__" as data, not as the prototype (found by fuzzing)', () => {
    const doc = JSON.parse(
      `{"format":"${MODEL_INDEX_FORMAT}","formatVersion":${MODEL_INDEX_VERSION},"models":[{"name":"m","path":"m/","label":"M","bytes":1,"variants":{"__proto__":{"bytes":1,"tested":true}}}]}`,
    ) as unknown;
    const [e] = readModelIndex(doc);
    expect(Object.getPrototypeOf(e!.variants)).toBe(Object.prototype);
    expect(Object.keys(e!.variants)).toEqual(['__proto__']);
  });
});
