/**
 * `models/index.json`: generated from the bundles' manifests (vite/serveBundles.ts), read back by
 * the page (src/modelIndex.ts). Sizes are checked against the files on disk, not the manifest.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseManifest, variantFiles } from '../../src/engine/bundle/manifest';
import { MODEL_INDEX_FORMAT, MODEL_INDEX_VERSION, readModelIndex } from '../../src/modelIndex';
import { buildModelIndex } from '../../vite/serveBundles';

const BUNDLES = join(import.meta.dirname, '..', '..', 'models', 'bundles');
const TINY_DIR = join(BUNDLES, 'salmonn-tiny');
const tinyText = readFileSync(join(TINY_DIR, 'manifest.json'), 'utf8');
const tiny = parseManifest(JSON.parse(tinyText));
const diskSize = (path: string): number => statSync(join(TINY_DIR, path)).size;

describe('models/index.json', () => {
  const temps: string[] = [];
  afterEach(() => {
    for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('lists the site’s tiny bundle with its label and the sizes of its files on disk', () => {
    const warnings: string[] = [];
    const index = buildModelIndex(BUNDLES, undefined, (message) => warnings.push(message));
    expect(warnings).toEqual([]);
    expect(index.format).toBe(MODEL_INDEX_FORMAT);
    expect(index.formatVersion).toBe(MODEL_INDEX_VERSION);
    // Sorted by folder name: the tiny fused ALARM-CA, ALARM-P and ALARM bundles (format 2) and the tiny SALMONN bundle (format 1).
    expect(index.models.map((m) => m.name)).toEqual(['alarm-ca-tiny', 'alarm-p-tiny', 'alarm-tiny', 'salmonn-tiny']);
    expect(index.models[0]!).toMatchObject({ name: 'alarm-ca-tiny', path: 'alarm-ca-tiny/', randomWeights: true });
    expect(index.models[1]!).toMatchObject({ name: 'alarm-p-tiny', path: 'alarm-p-tiny/', randomWeights: true, label: 'Tiny ALARM-P test model, random weights' });
    expect(index.models[2]!).toMatchObject({ name: 'alarm-tiny', path: 'alarm-tiny/', randomWeights: true });
    const entry = index.models[3]!;
    expect(entry).toMatchObject({ name: 'salmonn-tiny', path: 'salmonn-tiny/', label: tiny.label, description: tiny.description, randomWeights: true });
    // The whole bundle: every file the manifest lists, as stored on disk.
    expect(entry.bytes).toBe(tiny.files.reduce((sum, f) => sum + diskSize(f.path), 0));
    expect(entry.bytes).toBeGreaterThan(15_000_000);
    // Per variant: what loading it downloads, summed from the files on disk.
    expect(Object.keys(entry.variants).sort()).toEqual(Object.keys(tiny.variants).sort());
    for (const [variant, spec] of Object.entries(entry.variants)) {
      expect(spec.bytes, variant).toBe(variantFiles(tiny, variant).reduce((sum, path) => sum + diskSize(path), 0));
      expect(spec.tested, variant).toBe(tiny.variants[variant as keyof typeof tiny.variants]!.tested);
    }
    // int4 is the smaller download, and both are smaller than the whole bundle.
    expect(entry.variants.int4!.bytes).toBeLessThan(entry.variants.fp32!.bytes);
    expect(entry.variants.fp32!.bytes).toBeLessThan(entry.bytes);
    // What the page reads back is what was written.
    expect(readModelIndex(JSON.parse(JSON.stringify(index)))).toEqual(index.models);
  });

  it('leaves out folders without a manifest and bundles whose manifest is invalid, with a warning', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hark-index-'));
    temps.push(dir);
    mkdirSync(join(dir, 'a-broken'));
    writeFileSync(join(dir, 'a-broken', 'manifest.json'), JSON.stringify({ ...JSON.parse(tinyText), files: 'nope' }));
    mkdirSync(join(dir, 'b-good'));
    writeFileSync(join(dir, 'b-good', 'manifest.json'), tinyText);
    mkdirSync(join(dir, 'c-no-manifest'));
    writeFileSync(join(dir, 'c-no-manifest', 'README.md'), 'not a bundle');
    mkdirSync(join(dir, 'd-not-json'));
    writeFileSync(join(dir, 'd-not-json', 'manifest.json'), '{');

    const warnings: string[] = [];
    const index = buildModelIndex(dir, undefined, (message) => warnings.push(message));
    expect(index.models.map((m) => [m.name, m.path])).toEqual([['salmonn-tiny', 'b-good/']]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/left out a-broken\//);
    expect(warnings[1]).toMatch(/left out d-not-json\//);

    // `include` limits the list, as it limits what is served.
    expect(buildModelIndex(dir, ['c-no-manifest'], () => {}).models).toEqual([]);
    // No bundles folder at all: an empty list.
    expect(buildModelIndex(join(dir, 'missing')).models).toEqual([]);
  });

  it('the page’s reader drops malformed entries and paths outside models/, and refuses other documents', () => {
    const good = buildModelIndex(BUNDLES).models[0]!;
    const doc = {
      format: MODEL_INDEX_FORMAT,
      formatVersion: MODEL_INDEX_VERSION,
      models: [good, { ...good, path: '../escape/' }, { ...good, path: 'https://elsewhere.example/x/' }, { ...good, bytes: -1 }, { name: 'x' }, 7],
    };
    expect(readModelIndex(doc)).toEqual([good]);
    expect(() => readModelIndex({ ...doc, formatVersion: 2 })).toThrow(/hark-model-index version 1/);
    expect(() => readModelIndex('<!doctype html>')).toThrow();
  });
});
