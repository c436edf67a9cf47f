/**
 * Hostile bundle manifests through parseManifest (and what the loader asks of an accepted one:
 * variantFiles, their URLs): random JSON, and the tiny bundle's real manifest with fields replaced
 * by hostile values (wrong types, huge and negative numbers, odd strings, deleted keys). Any input
 * is either accepted, and then every file it names resolves inside the bundle's folder, or refused
 * with a `bundle/*` HarkError whose message is a sentence. A manifest whose file paths point outside
 * its folder (`../`, absolute paths, other origins, backslashes, percent-encoding) is refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseManifest, variantFiles, type Manifest, type ManifestV1 } from '../../../src/engine/bundle/manifest';
import { fileUrl } from '../../../src/engine/bundle/source';
import { pathSegments } from '../../../src/engine/bundle/store';
import { formatTwoOf } from '../../helpers/formatTwo';
import { TINY_BUNDLE_DIR } from '../../helpers/golden';
import { expectHarkError, fuzzParams, fuzzTimeout, guarded, hostileText } from './harness';

const CI_RUNS = 1_000;
const CODES = ['bundle/manifest-invalid', 'bundle/unsupported-version'] as const;
const TINY_TEXT = readFileSync(join(TINY_BUNDLE_DIR, 'manifest.json'), 'utf8');
const tiny = (): Record<string, unknown> => JSON.parse(TINY_TEXT) as Record<string, unknown>;
const BASE = 'https://site.example/models/tiny/';

/** Every file an accepted manifest names stays inside its folder, under any source kind. */
function checkAccepted(manifest: Manifest): void {
  for (const file of manifest.files) {
    expect(() => pathSegments(file.path)).not.toThrow();
    expect(fileUrl({ kind: 'url', baseUrl: BASE }, file.path).startsWith(BASE)).toBe(true);
    const hf = fileUrl({ kind: 'hf', repo: 'owner/name' }, file.path);
    expect(new URL(hf).href.startsWith('https://huggingface.co/owner/name/resolve/main/')).toBe(true);
  }
  for (const variant of Object.keys(manifest.variants)) {
    for (const path of variantFiles(manifest, variant)) {
      expect(fileUrl({ kind: 'url', baseUrl: BASE }, path).startsWith(BASE)).toBe(true);
    }
  }
}

function throughParser(json: unknown): void {
  const result = guarded(() => parseManifest(json), (e) => expectHarkError(e, CODES));
  if (result.ok) checkAccepted(result.value);
}

/** Every [key, key, …] path to a value inside `value`. */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...prefix, i])));
  else if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...prefix, k]));
  return out;
}
const TINY_PATHS = paths(tiny()).filter((p) => p.length > 0);
/** The tiny manifest as format 2 (a declared pipeline over the same files). */
const tinyV2 = (): Record<string, unknown> => JSON.parse(JSON.stringify(formatTwoOf(tiny() as unknown as ManifestV1))) as Record<string, unknown>;
const TINY_V2_PATHS = paths(tinyV2()).filter((p) => p.length > 0);

/** Paths that leave a bundle's folder, or are not plain relative paths at all. */
const ESCAPING_PATHS = [
  '../x.onnx',
  '../../etc/passwd',
  'onnx/../../x.onnx',
  'onnx/../x.onnx',
  '/abs/x.onnx',
  '/models/other/onnx/x.onnx',
  'http://other.origin/x.onnx',
  'https://evil.example/onnx/x.onnx',
  '//host/x.onnx',
  '\\\\host\\x.onnx',
  'onnx\\..\\..\\x.onnx',
  '..\\x.onnx',
  '..%2Fx.onnx',
  '%2e%2e/x.onnx',
  'onnx/%2E%2E/%2E%2E/x.onnx',
  'file:///etc/passwd',
  'javascript:alert(1)',
  'data:application/octet-stream;base64,AAAA',
  'C:\\x.onnx',
  '.',
  './',
  'onnx//x.onnx',
  'onnx/./x.onnx',
  '',
  ' onnx/x.onnx',
  'onnx/x.onnx?x=1',
  'onnx/x.onnx#a',
  '．．/x.onnx',
  'onnx/x.onnx\u0000',
];

const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(-1, 0, -0, 1e308, -1e308, 2 ** 53, 0.5, 'x'.repeat(100_000), '', null, [], {}, true),
  fc.constantFrom(...ESCAPING_PATHS),
  fc.string({ unit: 'grapheme', maxLength: 64 }),
  hostileText(64),
);

/** `base()` with one to three fields set to hostile values, deleted or renamed. */
const mutatedManifest = (base: () => Record<string, unknown>, basePaths: (string | number)[][]) => fc
  .array(fc.record({ at: fc.nat({ max: basePaths.length - 1 }), op: fc.constantFrom('set', 'set', 'delete', 'rename'), value: hostileValue, key: hostileText(12) }), {
    minLength: 1,
    maxLength: 3,
  })
  .map((mutations) => {
    const json = base();
    for (const { at, op, value, key } of mutations) {
      const path = basePaths[at]!;
      let parent: Record<string | number, unknown> = json;
      for (const k of path.slice(0, -1)) {
        const next = parent[k];
        if (typeof next !== 'object' || next === null) return JSON.parse(JSON.stringify(json)) as unknown;
        parent = next as Record<string | number, unknown>;
      }
      const last = path[path.length - 1]!;
      if (op === 'delete' && Array.isArray(parent)) parent.splice(Number(last), 1);
      else if (op === 'delete') delete parent[last];
      else if (op === 'rename' && !Array.isArray(parent)) {
        parent[key] = parent[last];
        delete parent[last];
      } else parent[last] = value;
    }
    // What the loader passes on is always JSON.parse output (no undefined, no holes).
    return JSON.parse(JSON.stringify(json)) as unknown;
  });

describe('manifest parsing of hostile input', () => {
  it('accepts the real manifest', () => {
    checkAccepted(parseManifest(tiny()));
  });

  it('random JSON values, and random text through JSON.parse', { timeout: fuzzTimeout(CI_RUNS, 10) }, () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), throughParser), fuzzParams(CI_RUNS));
  });

  it('the real manifest with fields replaced, deleted or renamed', { timeout: fuzzTimeout(CI_RUNS, 20) }, () => {
    fc.assert(fc.property(mutatedManifest(tiny, TINY_PATHS), throughParser), fuzzParams(CI_RUNS));
  });

  it('accepts the real manifest rewritten as format 2', () => {
    checkAccepted(parseManifest(tinyV2()));
  });

  it('the format-2 manifest with fields replaced, deleted or renamed (pipeline cross-references included)', { timeout: fuzzTimeout(CI_RUNS, 20) }, () => {
    fc.assert(fc.property(mutatedManifest(tinyV2, TINY_V2_PATHS), throughParser), fuzzParams(CI_RUNS));
  });

  it('any file path, set both in /files and where a variant uses it, is accepted only inside the folder', { timeout: fuzzTimeout(CI_RUNS, 20) }, () => {
    const where = fc.constantFrom('graph', 'externalData', 'tokenizer', 'preprocessor');
    const pathText = fc.oneof(fc.constantFrom(...ESCAPING_PATHS), fc.string({ unit: 'binary-ascii', maxLength: 40 }), fc.webUrl(), fc.webPath());
    fc.assert(fc.property(where, pathText, (at, path) => throughParser(withFilePath(at, path))), fuzzParams(CI_RUNS));
  });

  it('quotes hostile property names and bundle names escaped and cut short (found by fuzzing)', () => {
    const json = tiny();
    json['\u0000\u001b[31m'] = 1;
    json.name = `x\n${'y'.repeat(10_000)}`;
    const result = guarded(() => parseManifest(json), (e) => {
      expectHarkError(e, ['bundle/manifest-invalid']);
      expect((e as Error).message).toContain('unknown property "\\u0000\\u001b[31m"');
      expect((e as Error).message).toMatch(/^The bundle manifest is not valid/);
    });
    expect(result.ok).toBe(false);
  });

  it('refuses a property name with a lone surrogate with a typed error, not a URIError (found by fuzzing)', () => {
    const json = JSON.parse(TINY_TEXT.replace('"format":', '"\\ud800": 1, "format":')) as unknown;
    const result = guarded(() => parseManifest(json), (e) => expectHarkError(e, ['bundle/manifest-invalid']));
    expect(result.ok).toBe(false);
  });

  it.each(ESCAPING_PATHS)('refuses a manifest whose files include %j', (path) => {
    for (const at of ['graph', 'externalData', 'tokenizer', 'preprocessor'] as const) {
      const result = guarded(() => parseManifest(withFilePath(at, path)), (e) => expectHarkError(e, ['bundle/manifest-invalid']));
      expect(result.ok, `${at}: ${JSON.stringify(path)}`).toBe(false);
    }
  });
});

/** The tiny manifest with one file renamed to `path` both in /files and where the int4 variant refers to it. */
function withFilePath(at: 'graph' | 'externalData' | 'tokenizer' | 'preprocessor', path: string): Record<string, unknown> {
  const json = tiny() as unknown as ManifestV1;
  const rename = (from: string, to: string): void => {
    for (const f of json.files) if (f.path === from) f.path = to;
  };
  const int4 = json.variants.int4!;
  switch (at) {
    case 'graph':
      rename(int4.graphs.connector.path, path);
      int4.graphs.connector.path = path;
      break;
    case 'externalData': {
      // A reference relative to the graph's folder: onnx/ + path.
      const decoder = int4.graphs.decoder;
      rename(`onnx/${decoder.externalData[0]!}`, `onnx/${path}`);
      decoder.externalData = [path];
      break;
    }
    case 'tokenizer':
      rename(json.tokenizer.tokenizerJson, path);
      json.tokenizer.tokenizerJson = path;
      break;
    case 'preprocessor':
      rename(json.features.whisper.preprocessorConfig, path);
      json.features.whisper.preprocessorConfig = path;
      break;
  }
  return json as unknown as Record<string, unknown>;
}
