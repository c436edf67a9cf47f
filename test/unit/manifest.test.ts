import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HarkError } from '../../src/engine/errors';
import {
  externalDataPath,
  parseManifest,
  pickVariant,
  variantBytes,
  variantFiles,
  type Manifest,
} from '../../src/engine/bundle/manifest';
import { bundleKey, fileUrl, parseBundleSource } from '../../src/engine/bundle/source';
import { storeDirName } from '../../src/engine/bundle/store';

const TINY = join(import.meta.dirname, '..', '..', 'models', 'bundles', 'salmonn-tiny', 'manifest.json');
const tinyJson = (): Record<string, unknown> => JSON.parse(readFileSync(TINY, 'utf8')) as Record<string, unknown>;

function caught(fn: () => unknown): HarkError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(HarkError);
    return error as HarkError;
  }
  throw new Error('expected a HarkError');
}

/** The tiny manifest with its variants replaced (keeps the fp32 graphs for every name). */
function withVariants(spec: Record<string, { tested: boolean }>): Manifest {
  const m = parseManifest(tinyJson());
  const graphs = m.variants.fp32!.graphs;
  return { ...m, variants: Object.fromEntries(Object.entries(spec).map(([name, { tested }]) => [name, { tested, graphs }])) };
}

describe('parseManifest', () => {
  it('accepts the tiny bundle manifest', () => {
    const m = parseManifest(tinyJson());
    expect(m.name).toBe('salmonn-tiny');
    expect(m.formatVersion).toBe(1);
    expect(Object.keys(m.variants)).toEqual(expect.arrayContaining(['fp32', 'int4']));
    expect(m.formatVersion === 1 && m.architecture.connector.tokensPerChunk).toBe(88);
  });

  it('rejects a newer format version with bundle/unsupported-version and "update the app"', () => {
    const error = caught(() => parseManifest({ ...tinyJson(), formatVersion: 3 }));
    expect(error.code).toBe('bundle/unsupported-version');
    expect(error.message).toMatch(/newer Hark/);
    expect(error.message).toMatch(/update the app/);
    expect(error.details.formatVersion).toBe(3);
    expect(error.message).toContain("this app reads versions 1 and 2");
    expect(caught(() => parseManifest({ ...tinyJson(), formatVersion: 0 })).code).toBe('bundle/unsupported-version');
  });

  it('lists the first schema errors with JSON pointers', () => {
    const json = tinyJson() as any;
    json.architecture.llm.numLayers = -1;
    delete json.label;
    json.files[0].sha256 = 'not-a-hash';
    json.surprise = true;
    const error = caught(() => parseManifest(json));
    expect(error.code).toBe('bundle/manifest-invalid');
    expect(error.message).toContain('/architecture/llm/numLayers: -1 is less than 1');
    expect(error.message).toContain('(root): Instance does not have required property "label"');
    expect(error.message).toContain('/files/0/sha256');
    expect(error.message).toContain('/surprise: unknown property "surprise"');
    expect(error.message).toMatch(/rebuild it/);
    // Only leaves are listed, not every enclosing "does not match schema".
    expect(error.message).not.toContain('Property "architecture" does not match');
    expect(error.details.errorCount).toBe(4);
  });

  it('caps the list and says how many more there are', () => {
    const json = tinyJson() as any;
    for (const key of ['architecture', 'audio', 'features', 'prompt', 'tasks', 'generation', 'tokenizer']) delete json[key];
    const error = caught(() => parseManifest(json));
    expect(error.code).toBe('bundle/manifest-invalid');
    expect(error.message).toMatch(/\(and 2 more\)/);
  });

  it('rejects non-objects, other formats, unknown variants and unlisted files', () => {
    expect(caught(() => parseManifest(null)).code).toBe('bundle/manifest-invalid');
    expect(caught(() => parseManifest([])).code).toBe('bundle/manifest-invalid');
    expect(caught(() => parseManifest({ ...tinyJson(), format: 'onnx' })).code).toBe('bundle/manifest-invalid');
    const bogus = tinyJson() as any;
    bogus.variants.q8 = bogus.variants.fp32;
    expect(caught(() => parseManifest(bogus)).message).toContain('/variants/q8');
    const unlisted = tinyJson() as any;
    unlisted.files = unlisted.files.filter((f: { path: string }) => f.path !== 'tokenizer.json');
    const error = caught(() => parseManifest(unlisted));
    expect(error.code).toBe('bundle/manifest-invalid');
    expect(error.message).toContain('needs "tokenizer.json", which is not in /files');
    const twice = tinyJson() as any;
    twice.files.push(twice.files[0]);
    expect(caught(() => parseManifest(twice)).message).toContain('listed twice');
  });
});

describe('variantFiles', () => {
  it('lists the five graphs with their external data, the localization probe, the tokenizer and the preprocessor config', () => {
    const m = parseManifest(tinyJson());
    expect(variantFiles(m, 'int4')).toEqual([
      'onnx/speech_encoder_q4.onnx',
      'onnx/audio_encoder_q4.onnx',
      'onnx/connector_q4.onnx',
      'onnx/embed_tokens_q4.onnx',
      'onnx/decoder_model_merged_q4.onnx',
      'onnx/decoder_model_merged_q4.onnx_data',
      'onnx/decoder_probe_q4.onnx',
      'tokenizer.json',
      'tokenizer_config.json',
      'preprocessor_config.json',
    ]);
    expect(variantFiles(m, 'fp32')).toContain('onnx/decoder_model_merged.onnx_data');
    expect(variantFiles(m, 'fp32')).not.toContain('onnx/decoder_model_merged_q4.onnx');
    // the fp16 variants reuse the probes of fp32 and int4 (fp32 activations, same weights)
    expect(variantFiles(m, 'fp16')).toContain('onnx/decoder_probe.onnx');
    expect(variantFiles(m, 'int4f16')).toContain('onnx/decoder_probe_q4.onnx');
    // a bundle converted before localization has no probe and still lists its files
    const old = tinyJson() as { variants: Record<string, { graphs: Record<string, unknown> }>; localization?: unknown };
    for (const v of Object.values(old.variants)) delete v.graphs.probe;
    delete old.localization;
    expect(variantFiles(parseManifest(old), 'int4')).not.toContain('onnx/decoder_probe_q4.onnx');
    const sizes = new Map(m.files.map((f) => [f.path, f.size]));
    expect(variantBytes(m, 'fp32')).toBe(variantFiles(m, 'fp32').reduce((s, p) => s + sizes.get(p)!, 0));
    expect(caught(() => variantFiles(m, 'q8')).message).toMatch(/has no "q8" variant \(it has: fp32, int4/);
  });

  it('resolves external data relative to the graph', () => {
    expect(externalDataPath('onnx/a.onnx', 'a.onnx_data')).toBe('onnx/a.onnx_data');
    expect(externalDataPath('a.onnx', 'a.onnx_data')).toBe('a.onnx_data');
    expect(externalDataPath('onnx/x/a.onnx', '../w/a.bin')).toBe('onnx/w/a.bin');
  });
});

describe('pickVariant', () => {
  it('prefers int4 on both backends, and int4f16 only with shader-f16 on WebGPU', () => {
    const all = withVariants({ fp32: { tested: true }, fp16: { tested: true }, int4: { tested: true }, int4f16: { tested: true } });
    expect(pickVariant(all, { backend: 'webgpu', shaderF16: true })).toBe('int4f16');
    expect(pickVariant(all, { backend: 'webgpu', shaderF16: false })).toBe('int4');
    expect(pickVariant(all, { backend: 'wasm', shaderF16: true })).toBe('int4');
    expect(pickVariant(all)).toBe('int4');
    expect(pickVariant(parseManifest(tinyJson()), { backend: 'webgpu' })).toBe('int4');
  });

  it('skips untested variants unless asked', () => {
    const m = withVariants({ fp32: { tested: true }, int4: { tested: false }, int4f16: { tested: false } });
    expect(pickVariant(m, { backend: 'webgpu', shaderF16: true })).toBe('fp32');
    expect(pickVariant(m, { backend: 'webgpu', shaderF16: true, allowUntested: true })).toBe('int4f16');
    expect(pickVariant(m, { backend: 'wasm', allowUntested: true })).toBe('int4');
  });

  it('never picks fp16 compute without shader-f16, and says so', () => {
    const m = withVariants({ fp16: { tested: true }, int4f16: { tested: true } });
    expect(pickVariant(m, { backend: 'webgpu', shaderF16: true })).toBe('int4f16');
    const error = caught(() => pickVariant(m, { backend: 'webgpu', shaderF16: false }));
    expect(error.code).toBe('engine/backend-unavailable');
    expect(error.message).toMatch(/shader-f16/);
  });
});

describe('bundle sources', () => {
  it('parses URLs, site paths and Hugging Face repos', () => {
    expect(parseBundleSource('https://example.com/models/x')).toEqual({ kind: 'url', baseUrl: 'https://example.com/models/x/' });
    expect(parseBundleSource(' https://example.com/m/x/manifest.json ')).toEqual({ kind: 'url', baseUrl: 'https://example.com/m/x/' });
    expect(parseBundleSource('/models/salmonn-tiny/', 'http://localhost:5173/app/')).toEqual({
      kind: 'url',
      baseUrl: 'http://localhost:5173/models/salmonn-tiny/',
    });
    expect(parseBundleSource('./models/x', 'http://localhost:5173/app/')).toEqual({ kind: 'url', baseUrl: 'http://localhost:5173/app/models/x/' });
    expect(parseBundleSource('owner/name')).toEqual({ kind: 'hf', repo: 'owner/name' });
    expect(parseBundleSource('owner/name@v1.0')).toEqual({ kind: 'hf', repo: 'owner/name', revision: 'v1.0' });
    expect(parseBundleSource('https://huggingface.co/owner/name')).toEqual({ kind: 'hf', repo: 'owner/name' });
    expect(parseBundleSource('https://huggingface.co/owner/name/tree/dev')).toEqual({ kind: 'hf', repo: 'owner/name', revision: 'dev' });
    for (const bad of ['', 'justaname', 'a/b/c', 'owner/name@', 'ftp://x/y']) {
      expect(() => parseBundleSource(bad), bad).toThrow(HarkError);
    }
    expect(() => parseBundleSource('/models/x/')).toThrow(/not a bundle address/); // no origin in Node
  });

  it('builds file URLs (HF resolve URLs default to main)', () => {
    expect(fileUrl({ kind: 'hf', repo: 'owner/name' }, 'onnx/a.onnx')).toBe('https://huggingface.co/owner/name/resolve/main/onnx/a.onnx');
    expect(fileUrl({ kind: 'hf', repo: 'owner/name', revision: 'refs/pr/1' }, 'manifest.json')).toBe(
      'https://huggingface.co/owner/name/resolve/refs%2Fpr%2F1/manifest.json',
    );
    expect(fileUrl({ kind: 'url', baseUrl: 'http://h/models/x' }, 'onnx/a.onnx')).toBe('http://h/models/x/onnx/a.onnx');
    expect(() => fileUrl({ kind: 'files', files: new Map() }, 'a')).toThrow(HarkError);
  });

  it('gives stable store keys and safe folder names', () => {
    expect(bundleKey({ kind: 'hf', repo: 'o/n' })).toBe('hf:o/n@main');
    expect(bundleKey({ kind: 'hf', repo: 'o/n', revision: 'abc' })).toBe('hf:o/n@abc');
    expect(bundleKey({ kind: 'url', baseUrl: 'http://h/models/x' })).toBe(bundleKey(parseBundleSource('http://h/models/x/')));
    expect(bundleKey({ kind: 'files', files: new Map() }, 'salmonn-tiny')).toBe('files:salmonn-tiny');
    const dir = storeDirName('url:http://127.0.0.1:5173/models/salmonn-tiny/');
    expect(dir).toMatch(/^[A-Za-z0-9%_~!*'()-]+$/);
    expect(decodeURIComponent(dir)).toBe('url:http://127.0.0.1:5173/models/salmonn-tiny/');
  });
});

describe('parseManifest: the optional reasoning section', () => {
  const GOLDEN = join(import.meta.dirname, '..', '..', 'models', 'golden', 'reasoning.json');
  const reasoning = (): Record<string, unknown> => (JSON.parse(readFileSync(GOLDEN, 'utf8')) as { reasoning: Record<string, unknown> }).reasoning;

  it('accepts the tiny reasoning template, and ALARM’s', () => {
    expect(parseManifest({ ...tinyJson(), reasoning: reasoning() }).reasoning).toEqual(reasoning());
    const alarm = {
      thinkOpen: '<think>', thinkClose: '</think>', promptOpensThinking: true, answerOpen: '<answer>', answerClose: '</answer>', defaultThinkingBudget: 1024,
      forcedClose: '\n\nConsidering the limited time by the user, I have to give the solution based on the thinking directly now.\n</think>\n\n',
    };
    expect(parseManifest({ ...tinyJson(), reasoning: alarm }).reasoning).toEqual(alarm);
    expect(parseManifest(tinyJson()).reasoning).toBeUndefined();
  });

  it('refuses a forced text without the close marker, a negative budget, a missing field and unknown fields', () => {
    const base = reasoning();
    expect(caught(() => parseManifest({ ...tinyJson(), reasoning: { ...base, forcedClose: 'Answer now.' } })).message).toContain('/reasoning/forcedClose: must contain thinkClose');
    expect(caught(() => parseManifest({ ...tinyJson(), reasoning: { ...base, defaultThinkingBudget: -1 } })).message).toContain('/reasoning/defaultThinkingBudget');
    const { promptOpensThinking: _dropped, ...missing } = base;
    expect(caught(() => parseManifest({ ...tinyJson(), reasoning: missing })).code).toBe('bundle/manifest-invalid');
    expect(caught(() => parseManifest({ ...tinyJson(), reasoning: { ...base, budget: 5 } })).message).toContain('unknown property "budget"');
  });
});
