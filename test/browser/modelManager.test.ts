/**
 * The model manager in headless Chromium (WebGPU on SwiftShader), against the dev server:
 * - "Available on this site" lists the bundles of `models/index.json` (salmonn-tiny here);
 * - a download paused half-way stops fetching, is not an error, keeps its bytes, and Resume
 *   (reached with the keyboard) finishes it with HTTP Range requests: the bytes fetched after
 *   resuming are fewer than the variant's total, and the model becomes ready.
 * To pause mid-download the page is served through a small proxy in this test that forwards every
 * request to the dev server unchanged and sends the bundle's files slowly (RATE bytes/s per
 * response), logging each one's Range header, status and the bytes it sent: real bytes, real
 * server, just a slow link. A fresh browser context starts with an empty OPFS.
 * Also checks the production build: `models/index.json` is written and not precached.
 */
import { join } from 'node:path';
import { mkdirSync, readFileSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseManifest, variantBytes } from '../../src/engine/bundle/manifest';
import { formatBytes } from '../../src/ui/format';
import { buildModelIndex } from '../../vite/serveBundles';
import { REPO_ROOT } from '../helpers/golden';
import { chooseBackendInSettings, collectConsoleErrors, launchChromium } from './chromium';
import { startSlowProxy, type Sent } from './proxy';

const BUNDLES = join(import.meta.dirname, '..', '..', 'models', 'bundles');
const BUNDLE_PATH = '/models/salmonn-tiny/';
const manifest = parseManifest(JSON.parse(readFileSync(join(BUNDLES, 'salmonn-tiny', 'manifest.json'), 'utf8')));
/** Bytes per second per response for the bundle's files (tokenizer.json alone takes ~9 s). */
const RATE = 200_000;
const SCREENSHOTS = join(REPO_ROOT, 'test-results', 'screenshots');

async function modelState(page: Page): Promise<string> {
  return (await page.getByTestId('model-status').getAttribute('data-state')) ?? '';
}

async function waitForModelState(page: Page, states: string[], timeout = 180_000): Promise<string> {
  const handle = await page.waitForFunction(
    (wanted) => {
      const state = document.querySelector('[data-testid="model-status"]')?.getAttribute('data-state') ?? '';
      return wanted.includes(state) ? state : false;
    },
    states,
    { timeout, polling: 100 },
  );
  return (await handle.jsonValue()) as string;
}

const sum = (entries: Sent[]): number => entries.reduce((total, e) => total + e.bytes, 0);

describe('model manager (Chromium, WebGPU)', () => {
  let browser: Browser;
  let proxy: Awaited<ReturnType<typeof startSlowProxy>>;
  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await launchChromium();
    proxy = await startSlowProxy(inject('devUrl'), { under: BUNDLE_PATH, bytesPerSecond: RATE });
  });
  afterAll(async () => {
    await browser?.close();
    await proxy?.close();
  });

  it('lists the site’s bundles; a paused download resumes with Range requests and the model becomes ready', { timeout: 300_000 }, async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const errors = collectConsoleErrors(context);
    // WebGPU named in Settings (Automatic would pick WebAssembly over a software adapter).
    await chooseBackendInSettings(context, 'webgpu');
    const page = await context.newPage();
    // First visit with an empty OPFS: the app starts loading the bundled tiny model by itself.
    await page.goto(proxy.url);

    // "Available on this site", from models/index.json.
    const row = page.getByTestId('site-model-salmonn-tiny');
    await row.waitFor({ timeout: 120_000 });
    expect(await row.textContent()).toContain(manifest.label);
    expect(await row.textContent()).toContain(`int4 ${formatBytes(variantBytes(manifest, 'int4'))} · fp32 ${formatBytes(variantBytes(manifest, 'fp32'))}`);
    // The row follows the download (one source of truth with the progress bar).
    expect(await row.getAttribute('data-state')).toBe('loading');
    // The four tiny bundles the site serves: SALMONN (format 1), ALARM and the fused ALARM-CA and ALARM-P (format 2).
    expect(await page.getByRole('list', { name: 'Available on this site' }).getByRole('listitem').count()).toBe(4);
    expect(await page.getByTestId('site-model-alarm-tiny').textContent()).toContain('ALARM');
    expect(await page.getByTestId('site-model-alarm-ca-tiny').textContent()).toContain('ALARM-CA');
    expect(await page.getByTestId('site-model-alarm-p-tiny').textContent()).toContain('ALARM-P');

    // Pause once a fifth of the variant has arrived.
    await page.waitForFunction(
      () => (document.querySelector<HTMLProgressElement>('progress[aria-label="Model download progress"]')?.value ?? 0) >= 20,
      null,
      { timeout: 120_000, polling: 50 },
    );
    await page.locator('#side-panel').screenshot({ path: join(SCREENSHOTS, 'model-downloading-1280.png') });
    await page.getByRole('button', { name: 'Pause download' }).click();
    expect(await waitForModelState(page, ['paused', 'ready', 'error'], 60_000)).toBe('paused');

    // Paused, not failed: no alert, how far it got, and Resume has the focus.
    expect(await page.getByTestId('error-message').count()).toBe(0);
    const detail = (await page.getByTestId('model-paused-detail').textContent()) ?? '';
    const match = /^Paused at (\d+)% \([\d.]+ [KM]B of [\d.]+ MB\)$/.exec(detail);
    expect(match, detail).not.toBeNull();
    const pausedPercent = Number(match![1]);
    expect(pausedPercent).toBeGreaterThanOrEqual(20);
    expect(pausedPercent).toBeLessThan(100);
    expect(await page.getByTestId('model-status').textContent()).toContain('Download paused');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('model-resume');
    await page.waitForFunction(() => document.querySelector('[data-testid="site-model-salmonn-tiny"]')?.getAttribute('data-state') === 'paused', null, {
      timeout: 10_000,
    });

    await page.locator('#side-panel').screenshot({ path: join(SCREENSHOTS, 'model-paused-1280.png') });

    // The pause closed every download, and nothing is fetched while paused.
    for (let waited = 0; !proxy.log.every((e) => e.done) && waited < 5000; waited += 100) await page.waitForTimeout(100);
    expect(proxy.log.every((e) => e.done)).toBe(true);
    const mark = proxy.log.length;
    const before = sum(proxy.log);
    await page.waitForTimeout(1500);
    expect(proxy.log.length).toBe(mark);
    expect(await modelState(page)).toBe('paused');

    // Resume with the keyboard.
    await page.keyboard.press('Enter');
    expect(await waitForModelState(page, ['ready', 'error', 'paused'])).toBe('ready');
    const status = page.getByTestId('model-status');
    const variant = (await status.getAttribute('data-variant')) ?? '';
    expect(await status.getAttribute('data-backend')).toBe('webgpu');
    const total = variantBytes(manifest, variant);

    const after = proxy.log.slice(mark);
    const ranged = after.filter((e) => e.range !== null);
    // Files cut off by the pause continued from where their stored part ended.
    expect(ranged.length).toBeGreaterThan(0);
    for (const e of ranged) {
      expect(e.range, e.path).toMatch(/^bytes=[1-9]\d*-$/);
      expect(e.status, e.path).toBe(206);
    }
    const fetchedAfter = sum(after);
    console.log(`model manager: ${variant} variant, ${total} bytes; before the pause the server sent ${before}, after resuming ${fetchedAfter} (${ranged.length} Range requests: ${ranged.map((e) => `${e.path} ${e.range}`).join(', ')})`);
    expect(fetchedAfter).toBeLessThan(total);
    // Together they cover the variant (bytes in flight at the pause were sent but not stored).
    expect(before + fetchedAfter).toBeGreaterThanOrEqual(total);
    expect(before + fetchedAfter).toBeLessThan(total + 0.25 * total);

    // The manager now shows it stored and in use; the paused notice is gone.
    await page.waitForFunction(() => document.querySelector('[data-testid="site-model-salmonn-tiny"]')?.getAttribute('data-state') === 'in-use', null, {
      timeout: 10_000,
    });
    expect(await page.getByTestId('model-paused').count()).toBe(0);
    await page.locator('#side-panel').screenshot({ path: join(SCREENSHOTS, 'model-manager-1280.png') });
    await context.close();
    expect(errors).toEqual([]);
  });

  it('the production build writes models/index.json and does not precache it', async () => {
    const preview = inject('previewUrl');
    const response = await fetch(new URL('models/index.json', preview));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(JSON.parse(JSON.stringify(buildModelIndex(BUNDLES))));
    const sw = await (await fetch(new URL('sw.js', preview))).text();
    const precached = [...sw.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]!);
    expect(precached).toContain('index.html');
    expect(precached.filter((url) => url.startsWith('models/') || url.includes('/models/'))).toEqual([]);
  });
});
