/**
 * The installable, offline app (production build served by `vite preview` with COOP/COEP) and the
 * local history store:
 * - Lighthouse-style basics: a valid web app manifest with real 192/512 PNG icons (and maskable
 *   ones), theme colour, lang, title, viewport; every interactive element has an accessible name;
 * - the service worker controls the page after a reload, precaches the shell and ORT's 27 MB wasm
 *   but nothing under `models/`, and keeps the page cross-origin isolated;
 * - offline: after one online visit that loaded the tiny model (stored in OPFS by the engine),
 *   the page reloads with the network off, still cross-origin isolated, and the engine worker
 *   loads the model from OPFS and answers — with zero network requests and the same tokens as
 *   online; then the app itself, reloaded offline, loads its model and answers a question asked
 *   through the UI (sample clip + task preset); no request left localhost during the whole run;
 * - history (dev server harness): recordings and conversations survive a reload, export, and are
 *   gone from IndexedDB after delete.
 */
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Browser, BrowserContext, Page, Request } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { collectConsoleErrors, launchChromium, recordRequests } from './chromium';
import { startProxy } from './proxy';

const require = createRequire(import.meta.url);
const ORT_WASM = '/ort/ort-wasm-simd-threaded.asyncify.wasm';
const ORT_WASM_BYTES = statSync(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm')).size;
const MODEL = '/models/salmonn-tiny/';

/** Waits until the app has rendered something into #root. */
async function waitForApp(page: Page): Promise<void> {
  await page.waitForFunction(() => (document.getElementById('root')?.childElementCount ?? 0) > 0, null, { timeout: 60_000 });
}

/**
 * Makes sure the service worker is registered and active. The app registers it itself from
 * src/main.tsx (`registerServiceWorker()`); until that is wired in, the test registers the same
 * `sw.js` (registering an already registered script is a no-op).
 */
async function ensureServiceWorker(page: Page): Promise<{ registeredByApp: boolean; state: string | undefined }> {
  const registeredByApp = await page.evaluate(async () => {
    for (let i = 0; i < 20; i++) {
      if (await navigator.serviceWorker.getRegistration()) return true;
      await new Promise((r) => setTimeout(r, 250));
    }
    return false;
  });
  if (!registeredByApp) await page.evaluate(() => navigator.serviceWorker.register('/sw.js', { scope: '/' }).then(() => undefined));
  // ready = an active worker (precache complete: install only succeeds once every file is cached).
  const state = await page.evaluate(async () => {
    const registration = await navigator.serviceWorker.ready;
    const worker = registration.active!;
    if (worker.state !== 'activated') await new Promise((r) => worker.addEventListener('statechange', () => worker.state === 'activated' && r(null)));
    return worker.state;
  });
  return { registeredByApp, state };
}

interface EngineRun {
  error?: string;
  info?: { backend: string; variant: string };
  answer?: { ids: number[]; text: string };
  crossOriginIsolatedInWorker?: boolean;
}

/**
 * Drives the app's engine worker (the built `assets/engine.worker-*.js`) from the page with raw
 * comlink messages: load the tiny model (fp32: int4's GatherBlockQuantized has no wasm kernel) on
 * the wasm backend (multi-threaded only when cross-origin isolated), set a 1 s tone, ask greedily.
 */
async function runEngine(page: Page, workerUrl: string): Promise<EngineRun> {
  return page.evaluate(
    async ([url, model]) => {
      const worker = new Worker(url, { type: 'module', name: 'hark-engine-offline-check' });
      let nextId = 1;
      const call = (method: string, ...args: unknown[]): Promise<{ ok: boolean; value?: unknown; error?: { code: string; message: string } }> =>
        new Promise((resolve, reject) => {
          const id = `pwa-${nextId++}`;
          const onMessage = (event: MessageEvent<{ id: string; type: string; value: unknown }>): void => {
            if (event.data?.id !== id) return;
            worker.removeEventListener('message', onMessage);
            if (event.data.type !== 'RAW') reject(new Error(`unexpected comlink reply ${event.data.type}`));
            else resolve(event.data.value as never);
          };
          worker.addEventListener('message', onMessage);
          worker.addEventListener('error', (e) => reject(new Error(`worker error: ${e.message}`)), { once: true });
          worker.postMessage({ id, type: 'APPLY', path: [method], argumentList: args.map((value) => ({ type: 'RAW', value })) });
        });
      try {
        const loaded = await call('loadModel', model, { backend: 'wasm', variant: 'fp32' }, undefined);
        if (!loaded.ok) return { error: `loadModel: ${loaded.error?.code} ${loaded.error?.message}` };
        const report = await call('deviceReport');
        const samples = Float32Array.from({ length: 16000 }, (_, i) => 0.5 * Math.sin((2 * Math.PI * 440 * i) / 16000));
        const audio = await call('setAudio', { sampleRate: 16000, channels: [samples] }, {}, undefined);
        if (!audio.ok) return { error: `setAudio: ${audio.error?.code} ${audio.error?.message}` };
        const answer = await call('ask', 'Describe the audio.', { maxNewTokens: 6, doSample: false }, undefined);
        if (!answer.ok) return { error: `ask: ${answer.error?.code} ${answer.error?.message}` };
        const info = loaded.value as { backend: string; variant: string };
        const result = answer.value as { ids: number[]; text: string };
        return {
          info: { backend: info.backend, variant: info.variant },
          answer: { ids: result.ids, text: result.text },
          crossOriginIsolatedInWorker: (report.value as { wasm?: { crossOriginIsolated?: boolean } } | undefined)?.wasm?.crossOriginIsolated,
        };
      } catch (error) {
        return { error: String(error) };
      } finally {
        worker.terminate();
      }
    },
    [workerUrl, MODEL] as const,
  );
}

/** Waits for the app's model to settle; returns 'ready' or 'error'. */
async function waitForModelStatus(page: Page): Promise<string> {
  const handle = await page.waitForFunction(
    () => {
      const state = document.querySelector('[data-testid="model-status"]')?.getAttribute('data-state');
      return state === 'ready' || state === 'error' ? state : false;
    },
    null,
    { timeout: 180_000, polling: 200 },
  );
  return (await handle.jsonValue()) as string;
}

/** Path names (no query) of every entry in every Cache Storage cache of the origin. */
async function cachedPaths(page: Page): Promise<{ caches: string[]; paths: string[] }> {
  return page.evaluate(async () => {
    const names = await caches.keys();
    const paths: string[] = [];
    for (const name of names) {
      for (const request of await (await caches.open(name)).keys()) paths.push(new URL(request.url).pathname);
    }
    return { caches: names, paths: paths.sort() };
  });
}

describe('installable offline app (production build)', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('has a valid web app manifest with 192 and 512 PNG icons, and the basic page metadata', async () => {
    const context = await browser.newContext();
    const requests = recordRequests(context);
    const errors = collectConsoleErrors(context);
    const page = await context.newPage();
    await page.goto(inject('previewUrl'));
    await waitForApp(page);

    const href = await page.locator('link[rel="manifest"]').getAttribute('href');
    expect(href).toBeTruthy();
    const report = await page.evaluate(async (manifestHref) => {
      const manifestUrl = new URL(manifestHref, location.href);
      const response = await fetch(manifestUrl);
      const manifest = (await response.json()) as {
        name?: string;
        short_name?: string;
        start_url?: string;
        scope?: string;
        display?: string;
        theme_color?: string;
        background_color?: string;
        icons?: { src: string; sizes: string; type: string; purpose?: string }[];
      };
      const icons = [];
      for (const icon of manifest.icons ?? []) {
        const iconResponse = await fetch(new URL(icon.src, manifestUrl));
        const bytes = new Uint8Array(await iconResponse.clone().arrayBuffer());
        const bitmap = await createImageBitmap(await iconResponse.blob());
        icons.push({
          ...icon,
          status: iconResponse.status,
          contentType: iconResponse.headers.get('content-type'),
          pngSignature: Array.from(bytes.subarray(0, 8)).join(','),
          width: bitmap.width,
          height: bitmap.height,
        });
      }
      return {
        contentType: response.headers.get('content-type'),
        manifest,
        startUrl: new URL(manifest.start_url ?? '', manifestUrl).href,
        scope: new URL(manifest.scope ?? '', manifestUrl).href,
        icons,
        lang: document.documentElement.lang,
        title: document.title,
        viewport: document.querySelector('meta[name="viewport"]')?.getAttribute('content'),
        themeColors: Array.from(document.querySelectorAll('meta[name="theme-color"]')).map((m) => m.getAttribute('content')),
        appleTouchIcon: document.querySelector('link[rel="apple-touch-icon"]')?.getAttribute('href'),
      };
    }, href!);

    expect(report.contentType).toMatch(/^application\/manifest\+json/);
    expect(report.manifest).toMatchObject({ name: 'Hark — private audio assistant', short_name: 'Hark', display: 'standalone' });
    expect(report.manifest.theme_color).toMatch(/^#[0-9a-f]{6}$/i);
    expect(report.manifest.background_color).toMatch(/^#[0-9a-f]{6}$/i);
    const origin = new URL(inject('previewUrl')).origin;
    expect(report.startUrl).toBe(`${origin}/`);
    expect(report.scope).toBe(`${origin}/`);
    const PNG = '137,80,78,71,13,10,26,10';
    for (const icon of report.icons) {
      expect(icon, icon.src).toMatchObject({ status: 200, type: 'image/png', contentType: 'image/png', pngSignature: PNG });
      expect(`${icon.width}x${icon.height}`, icon.src).toBe(icon.sizes);
    }
    for (const size of ['192x192', '512x512']) {
      expect(report.icons.some((i) => i.sizes === size && (i.purpose ?? 'any').split(' ').includes('any')), `${size} any`).toBe(true);
    }
    expect(report.icons.some((i) => i.sizes === '512x512' && i.purpose?.split(' ').includes('maskable'))).toBe(true);
    expect(report.lang).toBe('en');
    expect(report.title).toMatch(/Hark/);
    expect(report.viewport).toContain('width=device-width');
    expect(report.themeColors.length).toBeGreaterThan(0);
    expect(report.appleTouchIcon).toBeTruthy();

    await context.close();
    expect(errors).toEqual([]);
    expect(requests.nonLocal()).toEqual([]);
  });

  it('gives every interactive element an accessible name', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(inject('previewUrl'));
    await waitForApp(page);
    await page.waitForLoadState('networkidle');
    const cdp = await context.newCDPSession(page);
    await cdp.send('Accessibility.enable');
    const { nodes } = (await cdp.send('Accessibility.getFullAXTree')) as {
      nodes: { ignored: boolean; role?: { value?: string }; name?: { value?: string }; backendDOMNodeId?: number }[];
    };
    const INTERACTIVE = new Set([
      'button', 'link', 'textbox', 'searchbox', 'checkbox', 'radio', 'combobox', 'listbox', 'slider', 'spinbutton',
      'switch', 'tab', 'menuitem', 'menuitemcheckbox', 'menuitemradio', 'option', 'treeitem',
    ]);
    const interactive = nodes.filter((n) => !n.ignored && INTERACTIVE.has(n.role?.value ?? ''));
    const unnamed = interactive.filter((n) => !(n.name?.value ?? '').trim()).map((n) => `${n.role?.value} (node ${n.backendDOMNodeId})`);
    console.info(`[pwa] ${interactive.length} interactive elements, ${unnamed.length} without an accessible name`);
    expect(unnamed).toEqual([]);
    await context.close();
  });

  describe('service worker and offline', () => {
    let context: BrowserContext;
    let page: Page;
    let requests: ReturnType<typeof recordRequests>;
    let errors: string[];
    let workerUrl: string;
    let online: EngineRun;

    beforeAll(async () => {
      context = await browser.newContext();
      requests = recordRequests(context);
      errors = collectConsoleErrors(context);
      page = await context.newPage();
    });
    afterAll(async () => {
      await context?.close();
    });

    it('controls the page after a reload, precaches the shell and the ORT wasm, and nothing under models/', async () => {
      await page.goto(inject('previewUrl'));
      await waitForApp(page);
      const sw = await ensureServiceWorker(page);
      expect(sw.registeredByApp).toBe(true);
      expect(sw.state).toBe('activated');

      const response = await page.reload();
      await waitForApp(page);
      expect(response?.fromServiceWorker()).toBe(true);
      const state = await page.evaluate(() => ({
        controlled: navigator.serviceWorker.controller !== null,
        scriptURL: navigator.serviceWorker.controller?.scriptURL,
        isolated: crossOriginIsolated,
      }));
      expect(state).toEqual({ controlled: true, scriptURL: new URL('/sw.js', inject('previewUrl')).href, isolated: true });

      const { caches: cacheNames, paths } = await cachedPaths(page);
      expect(cacheNames.some((name) => name.includes('precache'))).toBe(true);
      for (const path of [ORT_WASM, '/ort/ort-wasm-simd-threaded.asyncify.mjs', '/index.html', '/manifest.webmanifest', '/icons/icon-192.png', '/icons/icon-512.png']) {
        expect(paths, path).toContain(path);
      }
      expect(paths.filter((p) => p.startsWith('/models/'))).toEqual([]);
      const engineWorkers = paths.filter((p) => /^\/assets\/engine\.worker-[\w-]+\.js$/.test(p));
      expect(engineWorkers).toHaveLength(1);
      workerUrl = engineWorkers[0]!;
      const wasm = await page.evaluate(async (url) => {
        // Workbox keys unhashed files with a __WB_REVISION__ query.
        const cached = await caches.match(url, { ignoreSearch: true });
        return { bytes: (await cached?.arrayBuffer())?.byteLength, type: cached?.headers.get('content-type') };
      }, ORT_WASM);
      expect(wasm).toEqual({ bytes: ORT_WASM_BYTES, type: 'application/wasm' });
    });

    it('loads the model online from the network (not through the service worker) and answers', async () => {
      expect(workerUrl).toBeTruthy();
      const modelResponses: { path: string; fromServiceWorker: boolean }[] = [];
      const onResponse = (r: import('playwright-core').Response): void => {
        const path = new URL(r.url()).pathname;
        if (path.startsWith(MODEL)) modelResponses.push({ path, fromServiceWorker: r.fromServiceWorker() });
      };
      context.on('response', onResponse);
      online = await runEngine(page, workerUrl);
      context.off('response', onResponse);
      expect(online.error).toBeUndefined();
      expect(online.info?.backend).toBe('wasm');
      expect(online.answer?.ids.length).toBeGreaterThan(0);
      expect(online.crossOriginIsolatedInWorker).toBe(true);
      expect(modelResponses.map((r) => r.path)).toContain(`${MODEL}manifest.json`);
      expect(modelResponses.filter((r) => r.fromServiceWorker)).toEqual([]);
      // Models are stored once (OPFS by the engine), never in Cache Storage.
      expect((await cachedPaths(page)).paths.filter((p) => p.startsWith('/models/'))).toEqual([]);
    });

    it('reloads with the network off, stays cross-origin isolated, and the engine answers from OPFS with zero network requests', async () => {
      expect(online?.answer).toBeTruthy();
      const offlineRequests: { url: string; bySw: boolean; fromSw?: boolean; failed?: string }[] = [];
      const onRequest = (request: Request): void => {
        offlineRequests.push({ url: request.url(), bySw: request.serviceWorker() !== null });
      };
      const onFinished = async (request: Request): Promise<void> => {
        const entry = offlineRequests.find((r) => r.url === request.url() && r.fromSw === undefined);
        if (entry) entry.fromSw = (await request.response())?.fromServiceWorker() ?? false;
      };
      const onFailed = (request: Request): void => {
        const entry = offlineRequests.find((r) => r.url === request.url() && r.failed === undefined);
        if (entry) entry.failed = request.failure()?.errorText ?? 'failed';
      };
      await context.setOffline(true);
      context.on('request', onRequest);
      context.on('requestfinished', onFinished);
      context.on('requestfailed', onFailed);
      try {
        const response = await page.reload();
        await waitForApp(page);
        expect(response?.fromServiceWorker()).toBe(true);
        expect(await page.evaluate(() => ({ online: navigator.onLine, isolated: crossOriginIsolated, controlled: !!navigator.serviceWorker.controller }))).toEqual({
          online: false,
          isolated: true,
          controlled: true,
        });

        const offline = await runEngine(page, workerUrl);
        expect(offline.error).toBeUndefined();
        expect(offline.crossOriginIsolatedInWorker).toBe(true);
        expect(offline.info).toEqual(online.info);
        expect(offline.answer).toEqual(online.answer);
        // The service worker does not hold model files, so it could not have answered for them.
        expect(await page.evaluate((url) => caches.match(url, { ignoreSearch: true }).then((r) => r !== undefined), `${MODEL}manifest.json`)).toBe(false);
      } finally {
        context.off('request', onRequest);
        context.off('requestfinished', onFinished);
        context.off('requestfailed', onFailed);
        await context.setOffline(false);
      }
      await new Promise((r) => setTimeout(r, 200)); // let the last requestfinished handlers settle
      console.info(`[pwa] offline: ${offlineRequests.length} requests, all answered by the service worker`);
      expect(offlineRequests.filter((r) => new URL(r.url).pathname.startsWith('/models/'))).toEqual([]);
      expect(offlineRequests.filter((r) => r.bySw || r.failed !== undefined || r.fromSw === false)).toEqual([]);
      expect(offlineRequests.some((r) => new URL(r.url).pathname === ORT_WASM)).toBe(true);
    });

    it('with the network off, the app itself reloads, loads its model from OPFS and answers a question asked in the UI', { timeout: 400_000 }, async () => {
      // Online: the app's own start-up load of the bundled model (the variant it picks for this
      // browser) finishes and is stored; a short answer keeps the software GPU quick.
      // Generous timeouts: the software GPU compiles shaders on the same two CPU cores.
      await page.reload({ waitUntil: 'domcontentloaded', timeout: 120_000 });
      await waitForApp(page);
      expect(await waitForModelStatus(page)).toBe('ready');
      const maxTokens = page.getByTestId('setting-max-new-tokens');
      await maxTokens.fill('4');
      await maxTokens.blur();

      const offlineRequests: { url: string; fromSw: boolean | null }[] = [];
      const onRequest = (request: Request): void => {
        // blob: URLs (the recording's playback) never touch a network.
        if (/^https?:/.test(request.url())) offlineRequests.push({ url: request.url(), fromSw: null });
      };
      const onFinished = async (request: Request): Promise<void> => {
        const entry = offlineRequests.find((r) => r.url === request.url() && r.fromSw === null);
        if (entry) entry.fromSw = (await request.response())?.fromServiceWorker() ?? false;
      };
      await context.setOffline(true);
      context.on('request', onRequest);
      context.on('requestfinished', onFinished);
      try {
        const response = await page.reload({ waitUntil: 'domcontentloaded', timeout: 120_000 });
        await waitForApp(page);
        expect(response?.fromServiceWorker()).toBe(true);
        expect(await waitForModelStatus(page)).toBe('ready');
        // A built-in sample (precached with the shell), then a task preset, as a person would.
        await page.getByTestId('sample-speech').click({ timeout: 120_000 });
        await page.waitForFunction(() => document.querySelector('[data-testid="audio-status"]')?.getAttribute('data-state') === 'ready', null, { timeout: 180_000, polling: 200 });
        await page.getByTestId('preset-audiocaption').click({ timeout: 120_000 });
        const state = await page.waitForFunction(
          () => {
            const state = document.querySelector('[data-testid="answer-1"]')?.getAttribute('data-state');
            return state === 'done' || state === 'error' || state === 'stopped' ? state : false;
          },
          null,
          { timeout: 180_000, polling: 200 },
        );
        expect(await state.jsonValue()).toBe('done');
        expect(Number(await page.getByTestId('answer-1').getAttribute('data-tokens'))).toBe(4);
        expect(await page.evaluate(() => navigator.onLine)).toBe(false);
      } finally {
        context.off('request', onRequest);
        context.off('requestfinished', onFinished);
        await context.setOffline(false);
      }
      await new Promise((r) => setTimeout(r, 200));
      console.info(`[pwa] offline UI answer: ${offlineRequests.length} requests, all answered by the service worker`);
      expect(offlineRequests.length).toBeGreaterThan(0);
      expect(offlineRequests.filter((r) => new URL(r.url).pathname.startsWith('/models/'))).toEqual([]);
      expect(offlineRequests.filter((r) => r.fromSw === false)).toEqual([]);
    });

    it('made no request outside localhost and logged no errors', () => {
      expect(requests.urls.length).toBeGreaterThan(0);
      expect(requests.nonLocal()).toEqual([]);
      expect(errors).toEqual([]);
    });
  });
});

/**
 * A plain static host: forwards to the preview server but drops COOP/COEP, like most static
 * hosts (GitHub Pages, …) do.
 */
async function startHeaderlessProxy(target: string): Promise<{ url: string; close(): Promise<void> }> {
  return startProxy(target, (_req, response, res) => {
    const headers = { ...response.headers };
    delete headers['cross-origin-opener-policy'];
    delete headers['cross-origin-embedder-policy'];
    res.writeHead(response.statusCode ?? 502, headers);
    response.pipe(res);
  });
}

describe('cross-origin isolation from the service worker', () => {
  let browser: Browser;
  let proxy: Awaited<ReturnType<typeof startHeaderlessProxy>>;
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: false });
    proxy = await startHeaderlessProxy(inject('previewUrl'));
  });
  afterAll(async () => {
    await browser?.close();
    await proxy?.close();
  });

  it('makes the page and its workers cross-origin isolated on a host that sends no COOP/COEP, once it controls the page', async () => {
    const context = await browser.newContext();
    const requests = recordRequests(context);
    const errors = collectConsoleErrors(context);
    const page = await context.newPage();
    const first = await page.goto(proxy.url);
    expect(first?.headers()['cross-origin-embedder-policy']).toBeUndefined();
    await waitForApp(page);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(false);
    await ensureServiceWorker(page);
    const second = await page.reload();
    await waitForApp(page);
    expect(second?.fromServiceWorker()).toBe(true);
    // The app's own engine worker (the built app's Content-Security-Policy allows no blob: workers).
    const engineWorker = page.workers().find((w) => /\/assets\/engine\.worker-[\w-]+\.js$/.test(w.url())) ?? (await page.waitForEvent('worker', { timeout: 60_000 }));
    const isolation = {
      ...(await page.evaluate(() => ({ page: crossOriginIsolated, sharedArrayBuffer: typeof SharedArrayBuffer === 'function' }))),
      worker: await engineWorker.evaluate(() => crossOriginIsolated),
    };
    expect(isolation).toEqual({ page: true, worker: true, sharedArrayBuffer: true });
    await context.close();
    expect(errors).toEqual([]);
    expect(requests.nonLocal()).toEqual([]);
  });
});

describe('conversation history in IndexedDB (dev server harness)', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium({ webgpu: false });
  });
  afterAll(async () => {
    await browser?.close();
  });

  async function openHarness(page: Page): Promise<void> {
    await page.goto(new URL('/test/browser/harness/history.html', inject('devUrl')).href);
    await page.waitForFunction(() => window.historyHarness?.ready === true, null, { timeout: 120_000 });
  }

  it('saves a recording and a conversation, restores them after a reload, exports them, and deletes them from IndexedDB', async () => {
    const context = await browser.newContext();
    const requests = recordRequests(context);
    const errors = collectConsoleErrors(context);
    const page = await context.newPage();
    await openHarness(page);
    expect((await page.evaluate(() => window.historyHarness.rawDump())).exists).toBe(false);

    const saved = await page.evaluate(async () => {
      const { history, tone } = window.historyHarness;
      const recording = await history.saveRecording({
        name: 'Recording 14:02',
        durationSeconds: 1.5,
        sampleRate: 16000,
        audio: { kind: 'pcm', samples: tone(24000, 16000) },
      });
      const fileBytes = Uint8Array.from({ length: 5000 }, (_, i) => (i * 31) & 0xff);
      const file = await history.saveRecording({
        name: 'duck.mp3',
        durationSeconds: 2,
        sampleRate: 44100,
        audio: { kind: 'file', blob: new Blob([fileBytes], { type: 'audio/mpeg' }), mimeType: 'audio/mpeg' },
      });
      const first = await history.saveConversation({
        id: history.newId(),
        recordingId: file.id,
        modelName: 'salmonn-tiny',
        messages: [{ role: 'user', text: 'What animal is this?' }],
      });
      const conversation = await history.saveConversation({
        id: history.newId(),
        recordingId: recording.id,
        modelName: 'salmonn-tiny',
        messages: [{ role: 'user', text: 'Transcribe the speech.' }],
      });
      // Upsert: the answer arrives, same id.
      const updated = await history.saveConversation({
        ...conversation,
        messages: [...conversation.messages, { role: 'assistant', text: 'Hello <b>world</b> 🎧', stats: { generatedTokens: 5, decodeTokensPerSecond: 12.5 } }],
      });
      return { recordingId: recording.id, fileId: file.id, firstId: first.id, conversationId: conversation.id, createdAt: conversation.createdAt, updated };
    });
    expect(saved.updated.createdAt).toBe(saved.createdAt);
    expect(saved.updated.updatedAt).toBeGreaterThan(saved.createdAt - 1);
    let raw = await page.evaluate(() => window.historyHarness.rawDump());
    expect(raw).toMatchObject({ exists: true, stores: ['conversations', 'recordings'], counts: { conversations: 2, recordings: 2 } });

    // A reload starts the module from scratch: everything comes back from IndexedDB.
    await page.reload();
    await page.waitForFunction(() => window.historyHarness?.ready === true, null, { timeout: 120_000 });
    const restored = await page.evaluate(async (ids) => {
      const { history, tone, sameSamples, digest } = window.historyHarness;
      const latest = await history.restoreLatest();
      const list = await history.listConversations();
      const file = await history.getRecording(ids.fileId);
      const pcm = latest?.recording?.audio;
      return {
        conversation: latest?.conversation,
        recording: latest?.recording && { ...latest.recording, audio: undefined },
        samplesIntact: pcm?.kind === 'pcm' && pcm.samples instanceof Float32Array && sameSamples(pcm.samples, tone(24000, 16000)),
        listOrder: list.map((c) => c.id),
        byRecording: (await history.listConversations({ recordingId: ids.fileId })).map((c) => c.id),
        fileDigest: file?.audio.kind === 'file' ? { type: file.audio.mimeType, digest: digest(new Uint8Array(await file.audio.blob.arrayBuffer())) } : null,
        expectedFileDigest: digest(Uint8Array.from({ length: 5000 }, (_, i) => (i * 31) & 0xff)),
        counts: await history.historyCounts(),
      };
    }, saved);
    expect(restored.conversation).toEqual(saved.updated);
    expect(restored.recording).toMatchObject({ id: saved.recordingId, name: 'Recording 14:02', durationSeconds: 1.5, sampleRate: 16000 });
    expect(restored.samplesIntact).toBe(true);
    expect(restored.listOrder).toEqual([saved.conversationId, saved.firstId]);
    expect(restored.byRecording).toEqual([saved.firstId]);
    expect(restored.fileDigest).toEqual({ type: 'audio/mpeg', digest: restored.expectedFileDigest });
    expect(restored.counts).toEqual({ recordings: 2, conversations: 2 });

    // Export: one JSON file, the recording embedded as a base64 WAV (pcm) or the original file.
    const exported = await page.evaluate(async (ids) => {
      const { history, base64ToBytes, decodeWav, tone, digest } = window.historyHarness;
      const blob = await history.exportConversation(ids.conversationId);
      const doc = JSON.parse(await blob.text()) as import('../../src/storage/history').ConversationExport;
      const wav = decodeWav(base64ToBytes(doc.recording!.data));
      const expected = tone(24000, 16000);
      let maxError = 0;
      for (let i = 0; i < expected.length; i++) maxError = Math.max(maxError, Math.abs(wav.channels[0]![i]! - expected[i]!));
      const fileDoc = JSON.parse(await (await history.exportConversation(ids.firstId)).text()) as import('../../src/storage/history').ConversationExport;
      return {
        type: blob.type,
        format: doc.format,
        version: doc.version,
        messages: doc.conversation.messages,
        recording: { ...doc.recording, data: undefined },
        wav: { rate: wav.sampleRate, channels: wav.channels.length, frames: wav.channels[0]!.length, maxError },
        file: { mimeType: fileDoc.recording!.mimeType, fileName: fileDoc.recording!.fileName, digest: digest(base64ToBytes(fileDoc.recording!.data)) },
        fileName: history.exportFileName(doc.conversation),
        unknown: await history.exportConversation('nope').then(() => 'resolved', (e: Error) => e.name),
      };
    }, saved);
    expect(exported).toMatchObject({ type: 'application/json', format: 'hark-conversation', version: 1 });
    expect(exported.messages).toEqual(saved.updated.messages);
    expect(exported.recording).toMatchObject({ mimeType: 'audio/wav', fileName: 'Recording 14:02.wav', encoding: 'base64', sampleRate: 16000 });
    expect(exported.wav).toMatchObject({ rate: 16000, channels: 1, frames: 24000 });
    expect(exported.wav.maxError).toBeLessThan(1e-4);
    expect(exported.file).toEqual({ mimeType: 'audio/mpeg', fileName: 'duck.mp3', digest: restored.expectedFileDigest });
    expect(exported.fileName).toMatch(/^hark-transcribe-the-speech-\d{4}-\d{2}-\d{2}\.json$/);
    expect(exported.unknown).toBe('RangeError');

    // Delete one conversation with its recording: both are gone from IndexedDB, the other pair stays.
    const deleted = await page.evaluate((id) => window.historyHarness.history.deleteConversation(id, { withRecording: true }), saved.conversationId);
    expect(deleted).toEqual({ deleted: true, recordingDeleted: true });
    raw = await page.evaluate(() => window.historyHarness.rawDump());
    expect(raw.keys).toEqual({ conversations: [saved.firstId], recordings: [saved.fileId] });

    // A recording shared by two conversations is kept until the last one goes.
    const shared = await page.evaluate(async (ids) => {
      const { history } = window.historyHarness;
      const second = await history.saveConversation({ id: history.newId(), recordingId: ids.fileId, modelName: 'salmonn-tiny', messages: [] });
      const a = await history.deleteConversation(ids.firstId, { withRecording: true });
      const b = await history.deleteConversation(second.id, { withRecording: true });
      return { a, b };
    }, saved);
    expect(shared).toEqual({ a: { deleted: true, recordingDeleted: false }, b: { deleted: true, recordingDeleted: true } });
    raw = await page.evaluate(() => window.historyHarness.rawDump());
    expect(raw.counts).toEqual({ conversations: 0, recordings: 0 });

    // deleteAll empties both stores, also after another reload.
    await page.evaluate(async () => {
      const { history, tone } = window.historyHarness;
      const r = await history.saveRecording({ name: 'x', durationSeconds: 0.1, sampleRate: 8000, audio: { kind: 'pcm', samples: tone(800, 8000) } });
      await history.saveConversation({ id: history.newId(), recordingId: r.id, modelName: 'm', messages: [{ role: 'user', text: 'q' }] });
    });
    expect((await page.evaluate(() => window.historyHarness.rawDump())).counts).toEqual({ conversations: 1, recordings: 1 });
    await page.evaluate(() => window.historyHarness.history.deleteAll());
    await page.reload();
    await page.waitForFunction(() => window.historyHarness?.ready === true, null, { timeout: 120_000 });
    raw = await page.evaluate(() => window.historyHarness.rawDump());
    expect(raw).toMatchObject({ exists: true, counts: { conversations: 0, recordings: 0 } });
    expect(await page.evaluate(() => window.historyHarness.history.restoreLatest())).toBeUndefined();

    await context.close();
    expect(errors).toEqual([]);
    expect(requests.nonLocal()).toEqual([]);
  });
});
