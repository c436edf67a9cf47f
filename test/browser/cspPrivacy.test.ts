/**
 * The production build (`vite build` + `vite preview`, as `npm run build && npm run preview`)
 * under its Content-Security-Policy (src/csp.ts), and what it asks of the network, over one whole
 * session driven through the UI on WebAssembly: first visit (the bundled tiny model is downloaded
 * into OPFS), a recording from Chromium's fake microphone, a task preset answered, the history
 * entry, export, delete.
 *
 * - CSP: the policy is in index.html (meta) and on every response (header, so the engine worker
 *   runs under it too); no `securitypolicyviolation` in the page and no CSP report on any console
 *   (page, engine worker, service worker) during the session. Controls that the check can fail:
 *   a fetch from the page to another host and a model download asked of the engine worker from
 *   another host are both blocked and seen.
 * - Privacy: every request that reached the site went through a logging proxy in front of
 *   `vite preview` (page, workers and service worker alike share its origin) and every request the
 *   browser made is recorded too: only GET/HEAD (nothing uploaded), only the app's own files (the
 *   service worker's precache list, `sw.js`, `/`, `models/index.json`) and the files of the model
 *   variant in use, nothing to another host.
 * - A model address on a host the policy does not allow is refused before any request, with a
 *   message saying what to do, and the model in use stays.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Worker } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseManifest, variantFiles } from '../../src/engine/bundle/manifest';
import { GOLDEN_DIR } from '../helpers/golden';
import { collectConsoleErrors, launchChromium, recordRequests } from './chromium';
import { passThrough, startProxy } from './proxy';

const SPEECH_WAV = join(GOLDEN_DIR, 'audio', 'speech.wav');
const BUNDLE = '/models/salmonn-tiny/';
const manifest = parseManifest(JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'models', 'bundles', 'salmonn-tiny', 'manifest.json'), 'utf8')));

interface Logged {
  method: string;
  path: string;
  status: number;
  bodyBytes: number;
}

declare global {
  interface Window {
    __cspViolations?: string[];
  }
}

describe('production build: Content-Security-Policy and privacy over a whole session', () => {
  let browser: Browser;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  const log: Logged[] = [];

  beforeAll(async () => {
    browser = await launchChromium({
      webgpu: false,
      args: ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${SPEECH_WAV}`],
    });
    proxy = await startProxy(inject('previewUrl'), (req, upstream, res) => {
      const entry: Logged = { method: req.method ?? '', path: (req.url ?? '/').split('?')[0]!, status: upstream.statusCode ?? 0, bodyBytes: 0 };
      req.on('data', (chunk: Buffer) => (entry.bodyBytes += chunk.length));
      log.push(entry);
      passThrough(req, upstream, res);
    });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await proxy?.close();
  }, 30_000);

  it('loads, records, answers, exports and deletes without a CSP violation, asking only for its own files and the chosen model', { timeout: 180_000 }, async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const requests = recordRequests(context);
    const errors = collectConsoleErrors(context);
    const consoleLines: string[] = [];
    context.on('console', (message) => consoleLines.push(message.text()));
    await context.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations!.push(`${e.effectiveDirective} ${e.blockedURI}`));
    });
    const page = await context.newPage();
    page.on('console', (message) => consoleLines.push(message.text()));
    // The same listener in every worker the page starts (the engine worker does the downloads).
    const workers: Worker[] = [];
    const workerViolations: Promise<string[]>[] = [];
    page.on('worker', (worker) => {
      workers.push(worker);
      void worker
        .evaluate(() => {
          const scope = self as unknown as { __cspViolations: string[] };
          scope.__cspViolations = [];
          self.addEventListener('securitypolicyviolation', (e) => scope.__cspViolations.push(`${e.effectiveDirective} ${e.blockedURI}`));
        })
        .catch(() => {});
    });
    const response = await page.goto(proxy.url);
    const headerPolicy = response?.headers()['content-security-policy'] ?? '';
    expect(headerPolicy).toContain("script-src 'self' 'wasm-unsafe-eval'");
    expect(headerPolicy).toContain("connect-src 'self' https://huggingface.co");
    const metaPolicy = (await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content')) ?? '';
    expect(metaPolicy).toContain("script-src 'self' 'wasm-unsafe-eval'");
    expect(metaPolicy).not.toContain('unsafe-inline');
    // No inline script anywhere in the page the server sent.
    const html = await response!.text();
    expect([...html.matchAll(/<script\b[^>]*>/g)].every((m) => /\bsrc=/.test(m[0]))).toBe(true);

    // First visit: the bundled model is downloaded and started (Automatic → WebAssembly here).
    const status = page.getByTestId('model-status');
    await page.waitForFunction(() => ['ready', 'error'].includes(document.querySelector('[data-testid="model-status"]')?.getAttribute('data-state') ?? ''), null, {
      timeout: 120_000,
      polling: 200,
    });
    expect(await status.getAttribute('data-state')).toBe('ready');
    const variant = (await status.getAttribute('data-variant')) ?? '';
    const input = page.getByTestId('setting-max-new-tokens');
    await input.fill('4');
    await input.blur();

    // Record from the fake microphone, ask with a preset, get an answer.
    await page.getByTestId('record-button').click();
    await page.getByTestId('recorder-live').waitFor({ timeout: 30_000 });
    await page.waitForTimeout(1500);
    await page.getByTestId('record-button').click();
    await page.waitForFunction(() => document.querySelector('[data-testid="audio-status"]')?.getAttribute('data-state') === 'ready', null, { timeout: 60_000 });
    await page.getByTestId('preset-asr').click();
    await page.waitForFunction(() => ['done', 'error', 'stopped'].includes(document.querySelector('[data-testid="answer-1"]')?.getAttribute('data-state') ?? ''), null, {
      timeout: 60_000,
    });
    expect(await page.getByTestId('answer-1').getAttribute('data-state')).toBe('done');
    const answer = (await page.getByTestId('answer-1').textContent()) ?? '';

    // History, export, delete.
    await page.getByTestId('history-entry').first().waitFor({ timeout: 10_000 });
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-conversation').click()]);
    const exported = JSON.parse(readFileSync((await download.path())!, 'utf8')) as { conversation: { messages: { text: string }[] } };
    expect(exported.conversation.messages[1]?.text).toBe(answer);
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByTestId('delete-conversation').click();
    await page.getByTestId('answer-1').waitFor({ state: 'detached', timeout: 10_000 });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="history-entry"]').length === 0, null, { timeout: 10_000 });

    // A model address on a host the policy does not name: refused before any request, the
    // current model stays, and the message says what to do.
    const before = log.length;
    await page.getByTestId('model-source-input').fill('https://models.example.com/salmonn-7b/');
    await page.getByTestId('model-source-input').press('Enter');
    const alert = page.getByTestId('error-message');
    await alert.waitFor({ timeout: 10_000 });
    const refusal = (await alert.textContent()) ?? '';
    expect(refusal).toContain('may only download models from this site, huggingface.co');
    expect(refusal).toContain('Open a model folder');
    expect(refusal).toContain('HARK_MODEL_HOSTS');
    expect(await status.getAttribute('data-state')).toBe('ready');
    // (The model manager re-reads the site's model list afterwards; nothing else is asked for.)
    expect(log.slice(before).filter((e) => e.path !== '/models/index.json')).toEqual([]);
    expect(requests.urls.filter((u) => u.includes('models.example.com'))).toEqual([]);

    const sessionViolations = await page.evaluate(() => window.__cspViolations ?? []);
    for (const worker of workers) {
      workerViolations.push(worker.evaluate(() => (self as unknown as { __cspViolations?: string[] }).__cspViolations ?? []).catch(() => []));
    }
    sessionViolations.push(...(await Promise.all(workerViolations)).flat());
    const sessionConsole = consoleLines.filter((line) => /Content Security Policy|Refused to/i.test(line));
    const sessionErrors = [...errors];

    // Controls: the same listeners do see a violation, in the page and in the engine worker.
    const pageBlocked = await page.evaluate(() => fetch('https://blocked.example.com/x').then(
      () => 'fetched',
      (e: Error) => e.name,
    ));
    expect(pageBlocked).toBe('TypeError');
    // (Reported once per policy that blocks it: the meta and the header.)
    await expect.poll(async () => [...new Set(await page.evaluate(() => window.__cspViolations ?? []))]).toEqual(['connect-src https://blocked.example.com/x']);
    const engineWorker = workers.find((w) => /\/assets\/engine\.worker-[\w-]+\.js$/.test(w.url()));
    expect(engineWorker, workers.map((w) => w.url()).join(', ')).toBeTruthy();
    const workerBlocked = await engineWorker!.evaluate(() => fetch('https://worker-blocked.example.com/m/manifest.json').then(
      () => 'fetched',
      (e: Error) => e.name,
    ));
    expect(workerBlocked).toBe('TypeError');
    await expect.poll(() => engineWorker!.evaluate(() => [...new Set((self as unknown as { __cspViolations: string[] }).__cspViolations)])).toEqual([
      'connect-src https://worker-blocked.example.com/m/manifest.json',
    ]);
    // And a model download the policy blocks is reported as such by the engine (not "offline?").
    const workerLoad = await page.evaluate(async (url) => {
      const worker = new Worker(url, { type: 'module' });
      try {
        return await new Promise<unknown>((resolve) => {
          worker.onmessage = (event: MessageEvent<{ id: string; value: unknown }>) => event.data?.id === 'csp-1' && resolve(event.data.value);
          const args = ['https://worker-blocked.example.com/m/', {}, undefined].map((value) => ({ type: 'RAW', value }));
          worker.postMessage({ id: 'csp-1', type: 'APPLY', path: ['loadModel'], argumentList: args });
        });
      } finally {
        worker.terminate();
      }
    }, engineWorker!.url());
    expect(workerLoad).toMatchObject({ ok: false, error: { code: 'bundle/host-not-allowed' } });
    expect((workerLoad as { error: { message: string } }).error.message).toContain('may only download models from this site, huggingface.co');

    await context.close();

    // No violation and no error during the session.
    expect(sessionViolations).toEqual([]);
    expect(sessionConsole).toEqual([]);
    expect(sessionErrors).toEqual([]);

    // Every request: GET or HEAD with no body, the app's own files and the chosen variant's files.
    const sw = await (await fetch(new URL('sw.js', inject('previewUrl')))).text();
    const precached = new Set([...sw.matchAll(/"url":"([^"]+)"/g)].map((m) => `/${m[1]!}`));
    const modelFiles = new Set([`${BUNDLE}manifest.json`, ...variantFiles(manifest, variant).map((f) => `${BUNDLE}${f}`)]);
    const own = new Set(['/', '/sw.js', '/models/index.json']);
    const session = log.filter((e) => e.path !== '/x');
    const unexpected = session.filter((e) => !own.has(e.path) && !precached.has(e.path) && !modelFiles.has(e.path));
    expect(unexpected).toEqual([]);
    expect(session.filter((e) => (e.method !== 'GET' && e.method !== 'HEAD') || e.bodyBytes > 0)).toEqual([]);
    // The chosen variant's files were all downloaded (the session did download the model), and no other model file.
    const fetchedModel = new Set(session.map((e) => e.path).filter((p) => p.startsWith(BUNDLE)));
    expect([...fetchedModel].sort()).toEqual([...modelFiles].sort());
    // Nothing reached any other host (the controls above were blocked before leaving the browser).
    expect(requests.nonLocal().filter((u) => !u.includes('blocked.example.com'))).toEqual([]);
    console.info(`[cspPrivacy] ${session.length} requests to the site (${fetchedModel.size} model files of ${variant}), ${requests.urls.length} seen by the browser; no CSP violation`);
  });
});
