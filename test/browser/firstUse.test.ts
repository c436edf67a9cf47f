/**
 * What a first-time user tripped over (issue 10), each checked the way they met it: keyboard
 * focus, what the panels say, download state, questions asked too early, long or refused files,
 * console noise; and what they expected to find (encoding time left, copy / regenerate with the
 * settings of each answer, importing an exported conversation, range messages on number fields,
 * a note when switching recordings mid-answer). The app runs on WebAssembly where the backend does
 * not matter: the software WebGPU adapter here is many times slower.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { REPO_ROOT } from '../helpers/golden';
import { chooseBackendInSettings, collectConsoleErrors, launchChromium } from './chromium';
import { startSlowProxy } from './proxy';

const SCREENSHOTS = join(REPO_ROOT, 'test-results', 'screenshots');
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 360, height: 780 };

interface OpenedApp {
  context: BrowserContext;
  page: Page;
  errors: string[];
}

async function openApp(browser: Browser, url = inject('devUrl')): Promise<OpenedApp> {
  // Clipboard access for Copy (granted, as a person allowing it would).
  const context = await browser.newContext({ viewport: DESKTOP, permissions: ['clipboard-read', 'clipboard-write'] });
  const errors = collectConsoleErrors(context);
  await chooseBackendInSettings(context, 'wasm');
  const page = await context.newPage();
  await page.goto(url);
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

async function waitForModel(page: Page): Promise<void> {
  expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
}

/** The focused element, described for an assertion message ("textarea#question", "body"). */
async function focused(page: Page): Promise<string> {
  return page.evaluate(() => {
    const element = document.activeElement;
    if (!element) return 'none';
    return `${element.tagName.toLowerCase()}${element.id ? `#${element.id}` : ''}`;
  });
}

/**
 * The app with no model loaded and none loading: its download is paused (as a person would have
 * left it), so nothing is encoded and a test of the recording view costs no model time.
 */
async function openAppWithoutModel(browser: Browser, progress = { loaded: 0, total: 0, percent: 0 }): Promise<OpenedApp> {
  const context = await browser.newContext({ viewport: DESKTOP });
  const errors = collectConsoleErrors(context);
  await context.addInitScript((made) => {
    if (location.protocol !== 'http:') return;
    const paused = { source: '/models/salmonn-tiny/', label: '/models/salmonn-tiny/', backend: 'wasm', ...made };
    localStorage.setItem('hark-settings', JSON.stringify({ state: { backend: 'wasm', pausedDownload: paused }, version: 1 }));
  }, progress);
  const page = await context.newPage();
  await page.goto(inject('devUrl'));
  expect(await waitForState(page, 'model-status', ['paused', 'loading', 'ready'], 30_000)).toBe('paused');
  return { context, page, errors };
}

/** A mono 8-bit 4 kHz WAV of a slowly swelling tone: long recordings in few bytes. */
function toneWav(seconds: number, rate = 4000): Buffer {
  const n = Math.round(seconds * rate);
  const wav = Buffer.alloc(44 + n);
  wav.write('RIFF', 0);
  wav.writeUInt32LE(36 + n, 4);
  wav.write('WAVE', 8);
  wav.write('fmt ', 12);
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20); // PCM
  wav.writeUInt16LE(1, 22); // mono
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate, 28);
  wav.writeUInt16LE(1, 32);
  wav.writeUInt16LE(8, 34);
  wav.write('data', 36);
  wav.writeUInt32LE(n, 40);
  for (let i = 0; i < n; i++) wav[44 + i] = 128 + Math.round(60 * Math.sin(i / 9) * Math.abs(Math.sin(i / (rate * 20))));
  return wav;
}

/** Window time labels on the waveform that overlap each other or stick out of the track. */
async function clashingWindowLabels(page: Page): Promise<{ shown: number; clashes: string[] }> {
  return page.evaluate(() => {
    const track = document.querySelector('.waveform-track')!.getBoundingClientRect();
    const labels = [...document.querySelectorAll('.window-label')].map((label) => ({ text: label.textContent ?? '', rect: label.getBoundingClientRect() }));
    const clashes: string[] = [];
    labels.forEach((label, i) => {
      if (label.rect.left < track.left || label.rect.right > track.right) clashes.push(`${label.text} outside the track`);
      const next = labels[i + 1];
      if (next && next.rect.left < label.rect.right) clashes.push(`${label.text} overlaps ${next.text}`);
    });
    return { shown: labels.length, clashes };
  });
}

/**
 * Types into the question box and presses keys from inside the page. While the tiny model answers
 * on WebAssembly here (2 cores), the page's main thread is so busy that Playwright's own fill and
 * press time out waiting for it to settle; an in-page event is handled like a real key press.
 */
async function typeInPage(page: Page, text: string): Promise<void> {
  await page.evaluate((value) => {
    const box = document.querySelector<HTMLTextAreaElement>('#question')!;
    Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value')!.set!.call(box, value);
    box.dispatchEvent(new Event('input', { bubbles: true }));
  }, text);
}

async function pressInPage(page: Page, ...keys: string[]): Promise<void> {
  await page.evaluate((pressed) => {
    const box = document.querySelector<HTMLTextAreaElement>('#question')!;
    box.focus();
    for (const key of pressed) box.dispatchEvent(new KeyboardEvent('keydown', { key, bubbles: true, cancelable: true }));
  }, keys);
}

/** The shared app with a recording ready to ask about (a test run alone finds none open yet). */
async function readyToAsk(page: Page): Promise<void> {
  await waitForModel(page);
  if ((await page.getByTestId('recording-meta').count()) === 0) await page.getByTestId('sample-speech').click();
  expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
}

async function setMaxNewTokens(page: Page, value: number): Promise<void> {
  const input = page.getByTestId('setting-max-new-tokens');
  await input.fill(String(value));
  await input.blur();
}

/** The same state at desktop and phone widths, into the README's screenshot set. */
async function screenshotBoth(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-1280.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(150);
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-360.png`), fullPage: true });
  expect(await page.evaluate(() => document.documentElement.scrollWidth), `${name} at 360 px`).toBeLessThanOrEqual(PHONE.width);
  await page.setViewportSize(DESKTOP);
  await page.waitForTimeout(150);
}

/** Buttons in the side panel whose label does not fit: clipped inside, or running past their card. */
async function overflowingSideButtons(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const found: string[] = [];
    for (const button of document.querySelectorAll<HTMLElement>('#side-panel .button')) {
      const rect = button.getBoundingClientRect();
      if (rect.width === 0) continue;
      const card = button.closest('.card')?.getBoundingClientRect();
      if (button.scrollWidth > button.clientWidth + 1 || (card && rect.right > card.right + 0.5)) {
        found.push(`${button.textContent?.trim()} (content ${button.scrollWidth} px in ${button.clientWidth} px)`);
      }
    }
    return found;
  });
}

/** Every backend name the page shows for the loaded model: header, model panel, device report, settings. */
async function backendsShown(page: Page): Promise<Record<string, string>> {
  const text = async (testId: string) => ((await page.getByTestId(testId).textContent()) ?? '').trim();
  const name = (value: string) => /WebAssembly \(CPU\)|WebGPU/.exec(value)?.[0] ?? `none in “${value}”`;
  return {
    header: name((await page.locator('.model-status-detail').textContent()) ?? ''),
    modelPanel: name(await text('model-backend')),
    deviceReport: name(await text('model-runtime-backend')),
    settings: name(await text('backend-reason')),
  };
}

/** Starts recording every text an element takes from now on (see `textsSeen`). */
async function watchTexts(page: Page, testId: string): Promise<void> {
  await page.evaluate((id) => {
    const element = document.querySelector(`[data-testid="${id}"]`)!;
    const seen: string[] = [];
    (window as unknown as Record<string, string[]>)[`seen-${id}`] = seen;
    new MutationObserver(() => seen.push(element.textContent ?? '')).observe(element, { subtree: true, childList: true, characterData: true });
  }, testId);
}

async function textsSeen(page: Page, testId: string): Promise<string[]> {
  return page.evaluate((id) => (window as unknown as Record<string, string[]>)[`seen-${id}`] ?? [], testId);
}

describe('a first-time user: what tripped them up (issue 10)', () => {
  let browser: Browser;
  /** One app (WebAssembly) shared by the tests that only add to what it shows, in order. */
  let shared: OpenedApp;
  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await launchChromium();
    shared = await openApp(browser);
  });
  afterAll(async () => {
    await shared?.context.close();
    await browser?.close();
    expect(shared?.errors ?? []).toEqual([]);
  });

  it('keeps keyboard focus: Enter on a sample clip or on a task preset leaves focus in the question box, not on <body>', async () => {
    const { page } = shared;
    const sample = page.getByTestId('sample-speech');
    await sample.waitFor();
    await sample.focus();
    await page.keyboard.press('Enter');
    await page.getByTestId('recording-meta').waitFor();
    await expect.poll(() => focused(page), { timeout: 5_000 }).toBe('textarea#question');

    await waitForModel(page);
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
    await setMaxNewTokens(page, 2);
    const preset = page.getByTestId('preset-asr');
    await preset.focus();
    await page.keyboard.press('Enter');
    await page.getByTestId('answer-1').waitFor();
    expect(await focused(page)).toBe('textarea#question');
    expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
    expect(await focused(page)).toBe('textarea#question');
  });

  it('fits every side-panel button inside its card, at 1280 px and in the 360 px drawer (the reset button used to overflow)', async () => {
    const { page } = shared;
    await waitForModel(page);
    await page.getByTestId('reset-answer-settings').waitFor();
    expect(await overflowingSideButtons(page)).toEqual([]);
    await page.setViewportSize(PHONE);
    await page.getByTestId('settings-toggle').click();
    await page.getByTestId('reset-answer-settings').waitFor();
    expect(await overflowingSideButtons(page)).toEqual([]);
    await page.keyboard.press('Escape');
    await page.setViewportSize(DESKTOP);
  });

  it('names one backend everywhere after switching to WebAssembly: header, model panel, device report and settings, also while it loads', async () => {
    const { page } = shared;
    await waitForModel(page);
    await page.locator('input[name="backend"][value="auto"]').check();
    await waitForModel(page);
    const automatic = ((await page.getByTestId('recommended-backend').textContent()) ?? '').trim();
    expect(Object.values(await backendsShown(page))).toEqual(Array(4).fill(automatic));

    await watchTexts(page, 'backend-reason');
    await page.locator('input[name="backend"][value="wasm"]').check();
    await waitForModel(page);
    expect(await backendsShown(page)).toEqual({ header: 'WebAssembly (CPU)', modelPanel: 'WebAssembly (CPU)', deviceReport: 'WebAssembly (CPU)', settings: 'WebAssembly (CPU)' });
    // While WebAssembly loads, the settings say so, not what Automatic would have used.
    const seen = await textsSeen(page, 'backend-reason');
    expect(seen.some((text) => text.startsWith('Loading the model on WebAssembly (CPU)'))).toBe(true);
    expect(seen.filter((text) => text.includes('Automatic'))).toEqual([]);
    expect(seen.at(-1)).toBe('Running on WebAssembly (CPU). WebAssembly (CPU) was chosen in Settings.');
    // The int4 variant on WebAssembly: its weights were unpacked once at load, and the report says so.
    expect(await page.getByTestId('decode-capture').textContent()).toMatch(
      /^Each answer token is an ordinary decoder run on WebAssembly .* The model's int4 weights were unpacked to full precision once, at load \(59 matrices, \d+ MiB, \d+\.\d s\): WebAssembly's int4 kernel would unpack them again on every run\.$/,
    );
  });

  it('says an address without a model has no model there (the dev server answers it with its HTML page), not that a bundle is damaged', async () => {
    const { page } = shared;
    await waitForModel(page);
    await page.getByTestId('model-source-input').fill('/models/does-not-exist/');
    await page.getByTestId('model-source-input').press('Enter');
    const alert = page.locator('[data-testid="error-message"][data-scope="model"]');
    await alert.waitFor({ timeout: 30_000 });
    const text = (await alert.textContent()) ?? '';
    expect(text).toMatch(/^Could not load \/models\/does-not-exist\/; still using .+\. There is no model at http:\/\/[^ ]+\/models\/does-not-exist\/: its manifest\.json is a web page, not a model manifest\. Is the address right\?/);
    expect(text).not.toMatch(/damaged|JSON/);
    // The model in use stays, and the address can be corrected.
    expect(await page.getByTestId('model-status').getAttribute('data-state')).toBe('ready');
    expect(await page.getByTestId('model-source-input').inputValue()).toBe('/models/does-not-exist/');
    await screenshotBoth(page, 'model-not-found');
    await page.getByRole('button', { name: 'Dismiss the message' }).click();
    await page.getByTestId('model-source-input').fill('');
  });

  it('sends a question asked while the model loads or the recording is encoded once they are ready, saying so meanwhile', async () => {
    const { context, page, errors } = await openApp(browser);
    try {
      await setMaxNewTokens(page, 3);
      await page.getByTestId('sample-speech').click();
      await page.getByTestId('recording-meta').waitFor();
      const status = await page.getByTestId('model-status').getAttribute('data-state');
      expect(status, 'the model should still be loading here').not.toBe('ready');
      await page.getByTestId('question-input').fill('What is said first?');
      await page.getByTestId('question-input').press('Enter');
      const note = page.getByTestId('queued-question');
      await note.waitFor({ timeout: 2_000 });
      expect(await note.textContent()).toMatch(/^“What is said first\?” will be sent when (the model has loaded|the recording is ready)\. Cancel$/);
      expect(await page.getByTestId('live-status').textContent()).toMatch(/^Your question will be sent when (the model has loaded|the recording is ready)\.$/);
      await screenshotBoth(page, 'question-queued');
      expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
      expect(await page.locator('.bubble.user .bubble-text').first().textContent()).toBe('What is said first?');
      expect(await note.count()).toBe(0);
    } finally {
      await context.close();
    }
    expect(errors).toEqual([]);
  });

  it('sends a question asked while an answer is written once that answer has ended (it used to be ignored), and Escape stops on WebAssembly', async () => {
    const { page } = shared;
    await readyToAsk(page);
    await setMaxNewTokens(page, 2000);
    const before = await page.locator('.answer-text').count();
    const [first, second] = [`answer-${before + 1}`, `answer-${before + 2}`];
    // (This prompt makes the tiny model write hundreds of tokens: time to ask and stop meanwhile.)
    await page.getByTestId('question-input').fill('Tell me a long story.');
    await page.getByTestId('question-input').press('Enter');
    await waitForState(page, first, ['streaming']);
    await watchTexts(page, 'live-status');
    await typeInPage(page, 'And after the stop?');
    // Enter while the answer is written, then Escape: stopped within a step, even though
    // WebAssembly decodes without pausing for messages.
    await pressInPage(page, 'Enter', 'Escape');
    expect(await waitForState(page, first, ['done', 'stopped', 'error'], 60_000)).toBe('stopped');
    expect(Number(await page.getByTestId(first).getAttribute('data-tokens'))).toBeLessThan(2000);
    expect(await textsSeen(page, 'live-status')).toContain('Your question will be sent when this answer is finished.');
    // The waiting question went out by itself.
    await waitForState(page, second, ['streaming', 'done', 'stopped', 'error']);
    expect(await page.locator('.bubble.user .bubble-text').last().textContent()).toBe('And after the stop?');
    expect(await page.getByTestId('question-input').inputValue()).toBe('');
    await pressInPage(page, 'Escape');
    expect(await waitForState(page, second, ['done', 'stopped', 'error'], 60_000)).not.toBe('error');
  });

  it('refuses a 12-minute file without replacing the current recording, and labels a 10-minute waveform without overlaps at 1280 and 360 px', async () => {
    const { context, page } = await openAppWithoutModel(browser);
    try {
      await page.getByTestId('audio-file-input').setInputFiles({ name: 'almost-ten-minutes.wav', mimeType: 'audio/wav', buffer: toneWav(599) });
      await page.getByTestId('waveform').waitFor({ timeout: 30_000 });
      expect(Number(await page.getByTestId('waveform').getAttribute('data-duration'))).toBeCloseTo(599, 0);
      expect(await page.getByTestId('audio-status').textContent()).toMatch(/download is paused: resume it under Models/);
      const wide = await clashingWindowLabels(page);
      expect(wide.clashes).toEqual([]);
      expect(wide.shown).toBeGreaterThanOrEqual(5);
      await page.setViewportSize(PHONE);
      await page.waitForTimeout(200);
      const narrow = await clashingWindowLabels(page);
      expect(narrow.clashes).toEqual([]);
      expect(narrow.shown).toBeGreaterThanOrEqual(1);
      await page.setViewportSize(DESKTOP);
      await page.waitForTimeout(150);
      await screenshotBoth(page, 'long-recording');

      await page.getByTestId('audio-file-input').setInputFiles({ name: 'twelve-minutes.wav', mimeType: 'audio/wav', buffer: toneWav(720) });
      const alert = page.locator('[data-testid="error-message"][data-scope="audio"]');
      await alert.waitFor({ timeout: 30_000 });
      expect(await alert.textContent()).toBe(
        '“twelve-minutes.wav” is 12 min long; Hark listens to at most 10 minutes. Trim it to 10 minutes or less (or split it), then open it again. The current recording stays open.',
      );
      expect(await page.getByTestId('recording-meta').textContent()).toContain('almost-ten-minutes.wav');
      expect(await page.getByTestId('audio-status').getAttribute('data-state')).toBe('waiting-model');
      await screenshotBoth(page, 'too-long-refused');
    } finally {
      await context.close();
    }
  });

  it('answers “Keep models stored” visibly, both when the browser refuses and with its real answer', async () => {
    const { page } = shared;
    const button = page.getByTestId('persist-storage');
    const result = page.getByTestId('persist-result');
    // A browser that refuses (as Chromium does for sites that are not installed or often used).
    await page.evaluate(() => Object.defineProperty(navigator.storage, 'persist', { configurable: true, value: async () => false }));
    await button.click();
    await expect.poll(() => result.getAttribute('data-answer')).toBe('refused');
    expect(await result.textContent()).toMatch(/^The browser said no: it may still clear stored models when the disk runs low/);
    expect(await button.isVisible()).toBe(true);
    // This browser's own answer, whichever it is, is shown too.
    await page.evaluate(() => delete (navigator.storage as unknown as Record<string, unknown>).persist);
    await button.click();
    await page.waitForTimeout(500);
    const answer = await result.getAttribute('data-answer');
    expect(['granted', 'refused']).toContain(answer);
    if (answer === 'granted') {
      expect(await result.textContent()).toBe('Models are kept: the browser will not clear them to free space.');
      expect(await focused(page)).toBe('p');
    }
  });

  it('loads the model on WebGPU without a single console error or warning from onnxruntime', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const lines: string[] = [];
    context.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') lines.push(`${message.type()}: ${message.text()}`);
    });
    await chooseBackendInSettings(context, 'webgpu');
    const page = await context.newPage();
    try {
      await page.goto(inject('devUrl'));
      await waitForModel(page);
      expect(await page.getByTestId('model-status').getAttribute('data-backend')).toBe('webgpu');
      // It used to log eight "Some nodes were not assigned to the preferred execution providers" lines.
      expect(lines).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('nits: “Paused at 4%”, a 19.6 s clip is not labelled 20 s beside a timeline ending at 0:19', async () => {
    const { context, page } = await openAppWithoutModel(browser, { loaded: 168_000, total: 4_210_000, percent: 4.2 });
    try {
      expect(await page.getByTestId('model-paused-detail').textContent()).toBe('Paused at 4% (168 KB of 4.21 MB)');
      await page.getByTestId('audio-file-input').setInputFiles({ name: 'clip.wav', mimeType: 'audio/wav', buffer: toneWav(19.6) });
      await page.getByTestId('waveform').waitFor({ timeout: 30_000 });
      expect(await page.getByTestId('recording-duration').textContent()).toBe('19.6 s');
      expect(await page.locator('.waveform-time span').last().textContent()).toBe('0:19');
    } finally {
      await context.close();
    }
  });

  it('nits: deleting the only conversation asks about “the only conversation”, not “all 1 conversation”', async () => {
    const { page } = shared;
    const deleteAll = page.getByTestId('history-delete-all');
    if ((await deleteAll.count()) > 0) {
      page.once('dialog', (dialog) => void dialog.accept());
      await deleteAll.click();
      await page.getByTestId('history-entry').first().waitFor({ state: 'detached' });
    }
    await readyToAsk(page);
    await setMaxNewTokens(page, 2);
    const before = await page.locator('.answer-text').count();
    await page.getByTestId('preset-asr').click();
    expect(await waitForState(page, `answer-${before + 1}`, ['done', 'stopped', 'error'])).toBe('done');
    await page.getByTestId('history-entry').first().waitFor();
    expect(await page.getByTestId('history-entry').count()).toBe(1);
    const asked = new Promise<string>((resolve) => page.once('dialog', (dialog) => (resolve(dialog.message()), void dialog.dismiss())));
    await deleteAll.click();
    expect(await asked).toBe('Delete the only conversation and its recording from this device? This cannot be undone.');
    expect(await page.getByTestId('history-entry').count()).toBe(1);
  });

  it('says when “Max new tokens” is out of range instead of silently reverting or clamping it', async () => {
    const { page } = shared;
    const input = page.getByTestId('setting-max-new-tokens');
    const problem = page.getByTestId('max-new-tokens-problem');
    await setMaxNewTokens(page, 50);
    expect(await problem.count()).toBe(0);
    for (const [typed, says] of [
      ['0', '0 is too few: the least is 1.'],
      ['-5', '-5 is too few: the least is 1.'],
      ['99999', '99999 is too many: the most is 4096.'],
      ['2.5', '2.5 is not a whole number.'],
    ] as const) {
      await input.fill(typed);
      await input.blur();
      // What was typed stays, with what is wrong and what is used meanwhile.
      expect(await input.inputValue()).toBe(typed);
      expect(await problem.textContent()).toBe(`${says} Answers use 50 until it is fixed.`);
      expect(await input.getAttribute('aria-invalid')).toBe('true');
    }
    await page.locator('#side-panel').screenshot({ path: join(SCREENSHOTS, 'max-tokens-out-of-range-1280.png') });
    await setMaxNewTokens(page, 4096);
    expect(await problem.count()).toBe(0);
    expect(await input.getAttribute('aria-invalid')).toBe('false');
  });

  it('asks before another recording replaces one whose answer is still being written, and says the answer was stopped', async () => {
    const { page } = shared;
    await readyToAsk(page);
    const current = (await page.getByTestId('recording-meta').textContent()) ?? '';
    await setMaxNewTokens(page, 2000);
    const before = await page.locator('.answer-text').count();
    const answer = `answer-${before + 1}`;
    // (This prompt makes the tiny model write hundreds of tokens: long enough to switch mid-answer.)
    await page.getByTestId('question-input').fill('Tell me a long story.');
    await page.getByTestId('question-input').press('Enter');
    await waitForState(page, answer, ['streaming']);
    // Clicked from the page itself: the answer keeps the main thread busy, and Playwright's own
    // click would wait for it to settle.
    const clickSample = () => page.evaluate(() => document.querySelector<HTMLButtonElement>('[data-testid="sample-sound-events"]')!.click());

    // Declined: nothing changes, the answer goes on.
    const asked = new Promise<string>((resolve) => page.once('dialog', (dialog) => (resolve(dialog.message()), void dialog.dismiss())));
    await clickSample();
    expect(await asked).toBe('An answer is still being written. Stop it and open “Doorbell, knocks, alarm”? What it has written so far stays in History.');
    expect(await page.getByTestId('recording-meta').textContent()).toBe(current);
    expect(await page.getByTestId(answer).getAttribute('data-state')).toBe('streaming');

    // Accepted: the answer stops where it is, the new recording opens, and the thread says why.
    page.once('dialog', (dialog) => void dialog.accept());
    await clickSample();
    await expect.poll(async () => page.getByTestId('recording-meta').textContent(), { timeout: 60_000 }).toContain('Doorbell, knocks, alarm');
    expect(await page.locator('.thread-divider').first().textContent()).toBe(
      'The answer to “Tell me a long story.” was stopped when you opened “Doorbell, knocks, alarm”; what it wrote is kept in History.',
    );
  });

  it('shows how long listening to a recording will take, from what the last one took on this device', async () => {
    const { page } = shared;
    await readyToAsk(page); // one recording encoded here already: its pace is remembered
    await page.getByTestId('sample-music').click();
    await waitForState(page, 'audio-status', ['encoding'], 30_000);
    const timing = (await page.getByTestId('encode-time').textContent()) ?? '';
    expect(timing).toMatch(/^ · (about \d+ (s|min) left|almost done)$/);
    expect(await page.locator('[data-testid="audio-status"] progress').getAttribute('value')).not.toBeNull();
    expect(await page.getByTestId('audio-status').textContent()).toMatch(/^Listening to the recording…/);
    await screenshotBoth(page, 'listening-time-left');
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
  });

  it('offers Copy and Regenerate on an answer and shows, on demand, the settings that produced it', async () => {
    const { page } = shared;
    await readyToAsk(page);
    await setMaxNewTokens(page, 3);
    const before = await page.locator('.answer-text').count();
    await page.getByTestId('preset-asr').click();
    expect(await waitForState(page, `answer-${before + 1}`, ['done', 'stopped', 'error'])).toBe('done');
    const last = page.locator('.bubble.assistant').last();
    const text = (await page.getByTestId(`answer-${before + 1}`).textContent()) ?? '';
    const lora = Number(await page.getByTestId('lora-scale').inputValue());

    await last.getByText('Settings', { exact: true }).click();
    expect(await last.getByTestId('answer-settings').textContent()).toMatch(
      new RegExp(`^LoRA scale ${lora.toFixed(2)} · greedy \\(always the most likely word\\) · at most 3 new tokens · repetition penalty 1\\.00 · .+ · WebAssembly$`),
    );
    await last.getByTestId('copy-answer').click();
    await expect.poll(() => last.getByTestId('copy-answer').textContent()).toBe('Copied');
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(text);
    await screenshotBoth(page, 'answer-actions');

    // A lower LoRA scale, then Regenerate: the same question, answered again in its place.
    await page.getByTestId('lora-scale').focus();
    await page.keyboard.press('Home');
    await last.getByTestId('regenerate-answer').click();
    expect(await waitForState(page, `answer-${before + 1}`, ['done', 'stopped', 'error'])).toBe('done');
    expect(await page.locator('.answer-text').count()).toBe(before + 1);
    const again = page.locator('.bubble.assistant').last();
    await again.getByText('Settings', { exact: true }).click();
    expect(await again.getByTestId('answer-settings').textContent()).toMatch(/^LoRA scale 0\.00 · greedy/);
    expect(await page.locator('.bubble.user .bubble-label').last().textContent()).toBe('Transcribe');
  });

  it('imports an exported conversation file, checked as untrusted input: bad files are refused with a reason, text stays text', async () => {
    const { page } = shared;
    await readyToAsk(page);
    await setMaxNewTokens(page, 2);
    const before = await page.locator('.answer-text').count();
    await page.getByTestId('preset-asr').click();
    expect(await waitForState(page, `answer-${before + 1}`, ['done', 'stopped', 'error'])).toBe('done');
    await page.getByTestId('history-entry').first().waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-conversation').click()]);
    const exported = JSON.parse(readFileSync((await download.path())!, 'utf8')) as {
      conversation: { messages: { role: string; text: string }[] };
      recording: { name: string };
    };
    const importFile = (name: string, content: string) =>
      page.getByTestId('import-conversation').setInputFiles({ name, mimeType: 'application/json', buffer: Buffer.from(content) });
    const alert = page.locator('[data-testid="error-message"][data-scope="history"]');
    const dismiss = () => page.getByRole('button', { name: 'Dismiss the message' }).click();

    // Refused, each with what happened and what to do; nothing is added.
    const entries = await page.getByTestId('history-entry').count();
    await importFile('notes.json', 'not json at all');
    await alert.waitFor();
    expect(await alert.textContent()).toBe('Could not import the conversation: “notes.json” is not a Hark conversation file (it is not JSON). Choose a file saved with Export in Hark’s History.');
    await dismiss();
    const tampered = structuredClone(exported);
    tampered.conversation.messages[0]!.role = 'system';
    await importFile('tampered.json', JSON.stringify(tampered));
    await alert.waitFor();
    expect(await alert.textContent()).toMatch(/^Could not import the conversation: “tampered\.json” is damaged or was changed, so it was not imported \(\/conversation\/messages\/0\/role: .+\)\. Export the conversation again and import that file\.$/);
    await dismiss();
    await importFile('no-audio.json', JSON.stringify({ ...exported, recording: { ...exported.recording, mimeType: 'text/html' } }));
    await alert.waitFor();
    expect(await alert.textContent()).toMatch(/\/recording\/mimeType/);
    await dismiss();
    expect(await page.getByTestId('history-entry').count()).toBe(entries);

    // Accepted: markup in an answer is shown as text, never run; the conversation opens.
    const marked = structuredClone(exported);
    const answer = marked.conversation.messages.findLast((m) => m.role === 'assistant')!;
    answer.text = '<img src=x onerror="window.harkPwned=1"> imported';
    await importFile('conversation.json', JSON.stringify(marked));
    await expect.poll(() => page.getByTestId('history-entry').count(), { timeout: 30_000 }).toBe(entries + 1);
    await page.locator('.answer-text', { hasText: 'imported' }).waitFor({ timeout: 30_000 });
    expect(await page.locator('.answer-text').last().textContent()).toBe('<img src=x onerror="window.harkPwned=1"> imported');
    expect(await page.locator('.thread img').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { harkPwned?: number }).harkPwned)).toBeUndefined();
    expect(await page.getByTestId('recording-meta').textContent()).toContain(exported.recording.name);
    expect(await alert.count()).toBe(0);
  });

  it('gives a bundle one state: the site row follows the first download, and a paused download stays paused across a reload until Resume', async () => {
    const bundlePath = '/models/salmonn-tiny/';
    // Slow enough that the pause always cuts a file part-way: at 1.5 MB/s per file (3 at a time)
    // the pause, clicked once 5 % was shown, came after 2.4 of the 4.4 MB had arrived, with the
    // file in flight 1325 bytes short of its end; a pause a little later left nothing to resume
    // with a Range request (CI failed on that).
    const proxy = await startSlowProxy(inject('devUrl'), { under: bundlePath, bytesPerSecond: 250_000 });
    const { context, page, errors } = await openApp(browser, proxy.url);
    try {
      const row = page.getByTestId('site-model-salmonn-tiny');
      await page.waitForFunction(() => (document.querySelector<HTMLProgressElement>('progress[aria-label="Model download progress"]')?.value ?? 0) >= 5, null, {
        timeout: 60_000,
        polling: 50,
      });
      // While it downloads, the row says so (not "Not downloaded · Download", nor a greyed-out Resume).
      expect(await row.getAttribute('data-state')).toBe('loading');
      expect(await row.textContent()).toMatch(/Downloading · \d+%/);
      expect(await row.getByRole('button').count()).toBe(0);

      await page.getByTestId('model-pause').click();
      expect(await waitForState(page, 'model-status', ['paused', 'ready', 'error'], 30_000)).toBe('paused');
      expect(await row.getAttribute('data-state')).toBe('paused');
      expect(await row.textContent()).toMatch(/Download paused at \d+%/);
      expect(await row.getByRole('button', { name: /^Resume / }).isEnabled()).toBe(true);
      const pausedDetail = await page.getByTestId('model-paused-detail').textContent();

      // A reload does not restart it: nothing is fetched, and it still says how far it got.
      await page.waitForTimeout(300);
      const fetched = proxy.log.length;
      await page.reload();
      await page.getByTestId('model-status').waitFor();
      await page.waitForTimeout(2000);
      expect(await page.getByTestId('model-status').getAttribute('data-state')).toBe('paused');
      expect(proxy.log.length).toBe(fetched);
      expect(await page.getByTestId('model-paused-detail').textContent()).toBe(pausedDetail);
      await row.waitFor();
      expect(await row.getAttribute('data-state')).toBe('paused');

      // Resume continues where it stopped (HTTP Range); test/browser/modelManager.test.ts follows
      // a resumed download to the end.
      await page.getByTestId('model-resume').click();
      await expect
        .poll(() => proxy.log.slice(fetched).some((sent) => sent.status === 206), { timeout: 30_000, message: `no Range answer after Resume; before the pause: ${JSON.stringify(proxy.log.slice(0, fetched))}` })
        .toBe(true);
      expect(await row.getAttribute('data-state')).toBe('loading');
    } finally {
      await context.close();
      await proxy.close();
    }
    expect(errors).toEqual([]);
  });
});
