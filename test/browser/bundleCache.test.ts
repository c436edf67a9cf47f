/**
 * The bundle loader in headless Chromium: the app's dev server serves `/models/salmonn-tiny/`
 * (vite/serveBundles.ts), a module Web Worker loads it into the Origin Private File System, a page
 * reload finds it there with zero network requests, and a byte corrupted through OPFS from the
 * page makes exactly that file come back over the network.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseManifest, variantBytes, variantFiles } from '../../src/engine/bundle/manifest';
import { collectConsoleErrors, launchChromium, recordRequests } from './chromium';
import type { LoadReport } from './harness/bundleWorker';

const ADDRESS = '/models/salmonn-tiny/';
const manifest = parseManifest(
  JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'models', 'bundles', 'salmonn-tiny', 'manifest.json'), 'utf8')),
);
const INT4 = variantFiles(manifest, 'int4');

async function openHarness(page: Page): Promise<void> {
  await page.goto(new URL('/test/browser/harness/bundle.html', inject('devUrl')).href);
  // The first visit makes the dev server transform the engine's modules: slow on a busy machine.
  await page.waitForFunction(() => window.bundleHarness?.ready === true, null, { timeout: 120_000 });
}

/** Bundle paths fetched by the context since `from` (index into the request log). */
function bundleRequests(urls: string[], from = 0): string[] {
  return urls
    .slice(from)
    .map((url) => new URL(url).pathname)
    .filter((path) => path.startsWith(ADDRESS))
    .map((path) => path.slice(ADDRESS.length))
    .sort();
}

function expectMonotonic(report: LoadReport): void {
  for (let i = 1; i < report.totals.length; i++) expect(report.totals[i]!.loaded).toBeGreaterThanOrEqual(report.totals[i - 1]!.loaded);
  expect(report.totals.at(-1)).toEqual({ loaded: variantBytes(manifest, 'int4'), total: variantBytes(manifest, 'int4') });
}

describe('bundle cache in OPFS (Chromium)', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: false });
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('loads in a module worker, reloads offline from OPFS, and re-fetches only a corrupted file', async () => {
    const context: BrowserContext = await browser.newContext();
    const requests = recordRequests(context);
    const errors = collectConsoleErrors(context);
    const page = await context.newPage();
    await openHarness(page);

    const first = await page.evaluate((address) => window.bundleHarness.loadInWorker(address), ADDRESS);
    expect(first.error).toBeUndefined();
    expect(first).toMatchObject({ ok: true, variant: 'int4', fromCache: false, syncAccessHandles: true, check: { path: 'tokenizer_config.json', bytes: 270 } });
    expect(first.downloaded).toEqual([...INT4].sort());
    expect(bundleRequests(requests.urls)).toEqual(['manifest.json', ...INT4].sort());
    expectMonotonic(first);

    const summaries = await page.evaluate(() => window.bundleHarness.stored());
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({ name: 'salmonn-tiny', complete: true, hasPartialFiles: false });
    expect(summaries[0]!.completeVariants).toContain('int4');

    // Same context = same profile: the reloaded page finds the bundle in OPFS.
    await page.reload();
    await page.waitForFunction(() => window.bundleHarness?.ready === true, null, { timeout: 120_000 });
    let mark = requests.urls.length;
    const second = await page.evaluate((address) => window.bundleHarness.loadInWorker(address), ADDRESS);
    expect(second).toMatchObject({ ok: true, variant: 'int4', fromCache: true, downloaded: [] });
    expect(second.verified).toEqual([...INT4].sort());
    expect(bundleRequests(requests.urls, mark)).toEqual([]);

    // Corrupt one byte of one stored file from the page, through OPFS.
    const path = 'onnx/connector_q4.onnx';
    const flipped = await page.evaluate(([address, p]) => window.bundleHarness.corrupt(address, p), [ADDRESS, path] as const);
    expect(flipped.after).toBe(flipped.before ^ 0xff);
    expect(flipped.size).toBe(manifest.files.find((f) => f.path === path)!.size);
    mark = requests.urls.length;
    const third = await page.evaluate((address) => window.bundleHarness.loadInWorker(address), ADDRESS);
    expect(third).toMatchObject({ ok: true, fromCache: true, downloaded: [path] });
    expect(bundleRequests(requests.urls, mark)).toEqual([path]);

    // And once more: all good again, nothing fetched.
    mark = requests.urls.length;
    const fourth = await page.evaluate((address) => window.bundleHarness.loadInWorker(address), ADDRESS);
    expect(fourth).toMatchObject({ ok: true, downloaded: [] });
    expect(bundleRequests(requests.urls, mark)).toEqual([]);

    console.info(
      `[bundleCache] tiny int4 (${(variantBytes(manifest, 'int4') / 1e6).toFixed(2)} MB) in a worker: ` +
        `cold ${first.ms.toFixed(0)} ms, warm (hash-verified) ${second.ms.toFixed(0)} ms, one file repaired ${third.ms.toFixed(0)} ms`,
    );
    await context.close();
    expect(errors).toEqual([]);
    expect(requests.nonLocal()).toEqual([]);
  });

  it('also works from the page itself (createWritable) and from a worker forced to createWritable', async () => {
    const context = await browser.newContext();
    const requests = recordRequests(context);
    const errors = collectConsoleErrors(context);
    const page = await context.newPage();
    await openHarness(page);

    const inPage = await page.evaluate((address) => window.bundleHarness.loadInPage(address), ADDRESS);
    expect(inPage.error).toBeUndefined();
    expect(inPage).toMatchObject({ ok: true, fromCache: false, syncAccessHandles: false });
    expect(inPage.downloaded).toEqual([...INT4].sort());
    expectMonotonic(inPage);

    // The worker reads what the page wrote.
    let mark = requests.urls.length;
    const fromWorker = await page.evaluate((address) => window.bundleHarness.loadInWorker(address), ADDRESS);
    expect(fromWorker).toMatchObject({ ok: true, fromCache: true, downloaded: [] });
    expect(bundleRequests(requests.urls, mark)).toEqual([]);

    await page.evaluate(() => window.bundleHarness.clear());
    mark = requests.urls.length;
    const writable = await page.evaluate((address) => window.bundleHarness.loadInWorker(address, { writeMode: 'writable' }), ADDRESS);
    expect(writable).toMatchObject({ ok: true, fromCache: false });
    expect(bundleRequests(requests.urls, mark)).toEqual(['manifest.json', ...INT4].sort());

    // The page and the worker load at the same time: a Web Lock serializes them, so every file
    // is fetched once and the second load finds the bundle complete.
    await page.evaluate(() => window.bundleHarness.clear());
    mark = requests.urls.length;
    const both = await page.evaluate((address) => Promise.all([window.bundleHarness.loadInWorker(address), window.bundleHarness.loadInPage(address)]), ADDRESS);
    expect(both.map((r) => r.error)).toEqual([undefined, undefined]);
    expect(both.map((r) => r.fromCache).sort()).toEqual([false, true]);
    expect(bundleRequests(requests.urls, mark)).toEqual(['manifest.json', ...INT4].sort());
    await context.close();
    expect(errors).toEqual([]);
  });

  it('serves bundle files from the dev server with content types and Range support', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await openHarness(page);
    const result = await page.evaluate(async (address) => {
      const json = await fetch(`${address}manifest.json`);
      const range = await fetch(`${address}tokenizer.json`, { headers: { Range: 'bytes=10-19' } });
      const missing = await fetch(`${address}nope.bin`);
      return {
        json: json.headers.get('content-type'),
        rangeStatus: range.status,
        contentRange: range.headers.get('content-range'),
        rangeBytes: (await range.arrayBuffer()).byteLength,
        onnx: (await fetch(`${address}onnx/connector_q4.onnx`, { method: 'HEAD' })).headers.get('content-type'),
        missing: missing.status,
      };
    }, ADDRESS);
    expect(result).toEqual({
      json: 'application/json; charset=utf-8',
      rangeStatus: 206,
      contentRange: `bytes 10-19/${manifest.files.find((f) => f.path === 'tokenizer.json')!.size}`,
      rangeBytes: 10,
      onnx: 'application/octet-stream',
      missing: 404,
    });
    await context.close();
  });

  it('ships the bundle in the production build (vite preview)', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(inject('previewUrl'));
    const status = await page.evaluate(async (address) => {
      const manifestResponse = await fetch(`${address}manifest.json`);
      const data = await fetch(`${address}onnx/decoder_model_merged_q4.onnx_data`);
      return { manifest: manifestResponse.status, name: ((await manifestResponse.json()) as { name: string }).name, bytes: (await data.arrayBuffer()).byteLength };
    }, ADDRESS);
    expect(status).toEqual({ manifest: 200, name: 'salmonn-tiny', bytes: manifest.files.find((f) => f.path === 'onnx/decoder_model_merged_q4.onnx_data')!.size });
    await context.close();
  });
});
