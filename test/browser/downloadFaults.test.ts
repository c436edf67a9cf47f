/**
 * Network faults during a model download, through the UI of the production build (served by
 * `vite preview` behind test/browser/proxy.ts's faulty proxy; WebAssembly; no service worker, so
 * every request is the page's or the engine worker's own):
 * - the connection drops mid-file → the download stops with a message saying the connection broke
 *   and that the bytes are kept; "Try again" continues that file with `Range: bytes=N-` (206) and
 *   the model starts;
 * - a server that ignores Range (200 with the whole file) → the file starts again from byte 0 and
 *   the model starts, correct (every file is hash-checked);
 * - a file with the right length and a wrong SHA-256, or a file cut short → a message naming the
 *   file and what was wrong, the file is deleted (no complete or `.part` copy kept in OPFS), and
 *   the model in use before stays in use and answers.
 * Each bundle address (`/m1/`, `/m2/`, …: the same files through the proxy) is its own download.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseManifest, variantFiles } from '../../src/engine/bundle/manifest';
import { collectConsoleErrors, launchChromium } from './chromium';
import { startFaultyProxy } from './proxy';

const manifest = parseManifest(JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'models', 'bundles', 'salmonn-tiny', 'manifest.json'), 'utf8')));
const FILE = 'onnx/embed_tokens_q4.onnx';
const SIZE = manifest.files.find((f) => f.path === FILE)!.size;

async function modelState(page: Page, states: string[], timeout = 90_000): Promise<string> {
  const handle = await page.waitForFunction(
    (wanted) => {
      const state = document.querySelector('[data-testid="model-status"]')?.getAttribute('data-state') ?? '';
      const loading = document.querySelector('[data-testid="model-load-detail"]') !== null;
      return wanted.includes(state) && !loading ? state : false;
    },
    states,
    { timeout, polling: 100 },
  );
  return (await handle.jsonValue()) as string;
}

/** Loads a bundle address typed into the model manager; waits until the load has ended. */
async function loadAddress(page: Page, address: string): Promise<void> {
  await page.getByTestId('model-source-input').fill(address);
  await page.getByTestId('model-source-input').press('Enter');
  await page.waitForFunction(() => document.querySelector('[data-testid="model-status"]')?.getAttribute('data-state') === 'loading', null, { timeout: 10_000, polling: 20 }).catch(() => {});
  await page.waitForFunction(() => document.querySelector('[data-testid="model-status"]')?.getAttribute('data-state') !== 'loading', null, { timeout: 90_000, polling: 100 });
}

/** Every stored file (complete or `.part`) of the bundle whose address contains `part`. */
async function storedFiles(page: Page, part: string): Promise<string[]> {
  return page.evaluate(async (needle) => {
    const root = await (await navigator.storage.getDirectory()).getDirectoryHandle('hark-bundles');
    const out: string[] = [];
    const walk = async (dir: FileSystemDirectoryHandle, prefix: string): Promise<void> => {
      for await (const [name, entry] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
        if (entry.kind === 'directory') await walk(entry as FileSystemDirectoryHandle, `${prefix}${name}/`);
        else out.push(prefix + name);
      }
    };
    for await (const [name, entry] of (root as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
      if (entry.kind === 'directory' && decodeURIComponent(name).includes(needle)) await walk(entry as FileSystemDirectoryHandle, '');
    }
    return out.sort();
  }, part);
}

async function errorText(page: Page): Promise<string> {
  const alert = page.getByTestId('error-message');
  await alert.waitFor({ timeout: 10_000 });
  return (await alert.textContent()) ?? '';
}

describe('network faults while downloading a model (production build, UI)', () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];
  let proxy: Awaited<ReturnType<typeof startFaultyProxy>>;

  beforeAll(async () => {
    browser = await launchChromium({ webgpu: false });
    proxy = await startFaultyProxy(inject('previewUrl'), { mirrors: ['/m1/', '/m2/', '/m3/'] });
    context = await browser.newContext({ serviceWorkers: 'block', viewport: { width: 1280, height: 900 } });
    errors = collectConsoleErrors(context);
  }, 60_000);
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await proxy?.close();
  }, 30_000);

  it('a dropped connection: says so, keeps the bytes, and “Try again” resumes with Range', { timeout: 120_000 }, async () => {
    const path = `/models/salmonn-tiny/${FILE}`;
    proxy.faults.set(path, { cutAfter: 300_000 });
    page = await context.newPage();
    await page.goto(proxy.url);
    expect(await modelState(page, ['ready', 'error'])).toBe('error');
    const message = await errorText(page);
    expect(message).toContain(`Could not download ${new URL(path, proxy.url).href}`);
    expect(message).toMatch(new RegExp(`the connection broke after \\d+ of ${SIZE} bytes`));
    expect(message).toContain('downloaded files are kept and the download resumes');
    // Kept: the part of the file that arrived.
    expect((await storedFiles(page, '/models/salmonn-tiny/')).filter((f) => f.startsWith(FILE))).toEqual([`${FILE}.part`]);

    const mark = proxy.log.length;
    await page.getByTestId('model-retry').click();
    expect(await modelState(page, ['ready', 'error'])).toBe('ready');
    const again = proxy.log.slice(mark).filter((e) => e.path === path);
    expect(again).toHaveLength(1);
    const offset = Number(/^bytes=(\d+)-$/.exec(again[0]!.range ?? '')?.[1]);
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThanOrEqual(300_000);
    expect(again[0]).toMatchObject({ status: 206, bytes: SIZE - offset });
    expect(await page.getByTestId('model-failed').count()).toBe(0);
    console.info(`[downloadFaults] cut at 300000 of ${SIZE} bytes; resumed from ${offset} with one 206 of ${SIZE - offset} bytes`);
  });

  it('a server that ignores Range: the file starts again from byte 0 and the model is right', { timeout: 120_000 }, async () => {
    const path = `/m1/salmonn-tiny/${FILE}`;
    proxy.faults.set(path, { cutAfter: 300_000 });
    proxy.ignoreRange.add('/m1/');
    await loadAddress(page, '/m1/salmonn-tiny/');
    // The model in use before stays.
    expect(await modelState(page, ['ready', 'error'])).toBe('ready');
    expect(await errorText(page)).toMatch(/^Could not load \/m1\/salmonn-tiny\/; still using .+\. Could not download .+the connection broke/);
    const mark = proxy.log.length;
    await page.getByTestId('model-retry').click();
    await page.getByTestId('model-failed').waitFor({ state: 'detached', timeout: 90_000 });
    expect(await modelState(page, ['ready', 'error'])).toBe('ready');
    const again = proxy.log.slice(mark).filter((e) => e.path === path);
    expect(again).toHaveLength(1);
    // Asked for the rest, got the whole file (200), and kept exactly one complete copy.
    expect(again[0]!.range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(again[0]).toMatchObject({ status: 200, bytes: SIZE });
    expect((await storedFiles(page, '/m1/')).filter((f) => f.startsWith(FILE))).toEqual([FILE]);
    expect(await page.getByTestId('error-message').count()).toBe(0);
  });

  it('a wrong SHA-256 or a short file: a clear error naming the file, nothing of it kept, the model in use still answers', { timeout: 120_000 }, async () => {
    proxy.faults.set(`/m2/salmonn-tiny/${FILE}`, { flip: true });
    await loadAddress(page, '/m2/salmonn-tiny/');
    let message = await errorText(page);
    expect(message).toMatch(/^Could not load \/m2\/salmonn-tiny\/; still using .+\./);
    expect(message).toContain(`${FILE} arrived damaged or changed (SHA-256 `);
    expect(message).toContain(`instead of ${manifest.files.find((f) => f.path === FILE)!.sha256}); it was deleted and not used`);
    expect((await storedFiles(page, '/m2/')).filter((f) => f.startsWith(FILE))).toEqual([]);

    proxy.faults.set(`/m3/salmonn-tiny/${FILE}`, { shortBy: 1000 });
    await loadAddress(page, '/m3/salmonn-tiny/');
    message = await errorText(page);
    expect(message).toContain(`${FILE} arrived damaged or changed (${SIZE - 1000} bytes instead of ${SIZE}); it was deleted and not used`);
    expect((await storedFiles(page, '/m3/')).filter((f) => f.startsWith(FILE))).toEqual([]);

    // The model in use (m1, from the test before) still answers.
    expect(await modelState(page, ['ready', 'error'])).toBe('ready');
    await page.getByTestId('sample-speech').click();
    const input = page.getByTestId('setting-max-new-tokens');
    await input.fill('3');
    await input.blur();
    await page.getByTestId('preset-asr').click();
    await page.waitForFunction(() => ['done', 'error', 'stopped'].includes(document.querySelector('[data-testid="answer-1"]')?.getAttribute('data-state') ?? ''), null, {
      timeout: 60_000,
    });
    expect(await page.getByTestId('answer-1').getAttribute('data-state')).toBe('done');
    // The only failed responses were the ones the proxy broke on purpose.
    expect(errors.filter((e) => !/HTTP|net::|Failed to fetch|network/i.test(e))).toEqual([]);
    expect(variantFiles(manifest, (await page.getByTestId('model-status').getAttribute('data-variant')) ?? '')).toContain(FILE);
  });
});
