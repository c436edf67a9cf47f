/**
 * The site's model list says "needs a GPU" for a bundle too large for WebAssembly, when this device
 * would run it there (Settings chose WebAssembly, or Automatic would): models/index.json carries
 * each variant's `fitsWasm` from the engine's estimate (src/engine/wasmMemory.ts), and the real
 * <ModelPanel/> is rendered (react-dom/server) from the real stores.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readModelIndex } from '../../src/modelIndex';
import { useDeviceStore } from '../../src/stores/deviceStore';
import { useModelStore, type SiteModel } from '../../src/stores/modelStore';
import { useSettingsStore } from '../../src/stores/settingsStore';
import { ModelPanel, tooLargeForWasm } from '../../src/ui/ModelPanel';
import { buildModelIndex } from '../../vite/serveBundles';
import type { WorkerDeviceReport } from '../../workers/engine.worker';
import { alarmAtRealSize, readManifestJson } from '../helpers/realSize';

const dir = mkdtempSync(join(tmpdir(), 'hark-index-wasm-'));
for (const [folder, manifest] of [['alarm-4b', { ...alarmAtRealSize(), name: 'alarm-4b' }], ['alarm-tiny', readManifestJson('alarm-tiny')]] as const) {
  mkdirSync(join(dir, folder));
  writeFileSync(join(dir, folder, 'manifest.json'), JSON.stringify(manifest));
}
const warnings: string[] = [];
const index = buildModelIndex(dir, undefined, (message) => warnings.push(message));
const site: SiteModel[] = readModelIndex(JSON.parse(JSON.stringify(index))).map((entry) => ({ ...entry, source: `/models/${entry.path}` }));

function deviceRecommending(recommended: 'wasm' | 'webgpu'): WorkerDeviceReport {
  // Only `recommended` is read by the list; the rest is what a worker reports without a GPU.
  return {
    webgpu: { available: false, reason: 'no WebGPU' },
    wasm: { crossOriginIsolated: true, sharedArrayBuffer: true, threads: true, numThreads: 2, hardwareConcurrency: 2, simd: true },
    recommended,
    recommendationReason: '',
  } as WorkerDeviceReport;
}

// Server rendering reads a zustand store through getInitialState (useSyncExternalStore's server
// snapshot), so state goes into that object too, as it would into the live one.
function set<T extends object>(store: { setState(partial: Partial<T>): void; getInitialState(): T }, state: Partial<T>): void {
  store.setState(state);
  Object.assign(store.getInitialState(), state);
}
const render = (): string => renderToStaticMarkup(createElement(ModelPanel));
/** The big bundle as an int4-only one (its fp32 keeps the tiny files' sizes), beside the tiny one. */
const int4Only = (model: SiteModel): SiteModel => ({ ...model, variants: { int4: model.variants.int4! } });

describe('"needs a GPU" in the site list', () => {
  afterEach(() => {
    set(useSettingsStore, { backend: 'auto' });
    set(useDeviceStore, { state: { status: 'idle' } });
  });
  afterAll(() => {
    set(useModelStore, { siteModels: [] });
    rmSync(dir, { recursive: true, force: true });
  });

  it('the index says which variants fit the wasm heap, and the page reads it back', () => {
    expect(warnings).toEqual([]);
    const [big, tiny] = site;
    expect(big!.name).toBe('alarm-4b');
    expect(Object.values(big!.variants).map((v) => v.fitsWasm)).toEqual(Object.keys(big!.variants).map((name) => name !== 'int4'));
    expect(Object.values(tiny!.variants).every((v) => v.fitsWasm === true)).toBe(true);
    // int4 is too large; fp32 of the tiny files still fits (only the int4 files were grown here).
    expect(tooLargeForWasm(big!)).toBe(false);
    expect(tooLargeForWasm(int4Only(big!))).toBe(true);
    const { fitsWasm: _, ...noClaim } = big!.variants.int4!;
    expect(tooLargeForWasm({ ...big!, variants: { int4: noClaim } })).toBe(false); // an older index: no claim
  });

  it('is shown when WebAssembly would run it (Settings, or Automatic on this device), and not otherwise', () => {
    set(useModelStore, { siteModels: [int4Only(site[0]!), site[1]!] });
    set(useSettingsStore, { backend: 'wasm' });
    let html = render();
    expect(html).toContain('data-testid="site-model-needs-gpu-alarm-4b"');
    expect(html).toContain('Needs a GPU: too large for WebAssembly (CPU), which Settings chose.');
    expect(html).not.toContain('site-model-needs-gpu-alarm-tiny');

    set(useSettingsStore, { backend: 'auto' });
    set(useDeviceStore, { state: { status: 'ready', report: deviceRecommending('wasm') } });
    html = render();
    expect(html).toContain('Needs a GPU: too large for WebAssembly (CPU), which this device would use.');

    set(useDeviceStore, { state: { status: 'ready', report: deviceRecommending('webgpu') } });
    expect(render()).not.toContain('Needs a GPU');
    set(useSettingsStore, { backend: 'webgpu' });
    expect(render()).not.toContain('Needs a GPU');
  });
});
