/**
 * The app as a person uses it, in headless Chromium on its default backend: open a WAV, pick
 * a task preset, and the streamed answer shown equals the engine's greedy output for the same
 * input (computed here in Node on the wasm backend); follow-up, Escape to stop, new conversation,
 * a bad file and a denied microphone show clear errors without losing anything; the microphone
 * path records from Chromium's fake capture device (fed with the same WAV) and answers.
 * Screenshots of the main states at 1280 px and 360 px go to test-results/screenshots/.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine } from '../../src/engine/engine';
import { GOLDEN_DIR, REPO_ROOT } from '../helpers/golden';
import { tinyBundleFiles } from '../helpers/tinyBundle';
import { chooseBackendInSettings, collectConsoleErrors, launchChromium, recordRequests } from './chromium';

const SPEECH_WAV = join(GOLDEN_DIR, 'audio', 'speech.wav');
const SCREENSHOTS = join(REPO_ROOT, 'test-results', 'screenshots');
const MAX_NEW_TOKENS = 12;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 360, height: 780 };

/** Screenshots of the same state at desktop and phone widths. */
async function screenshots(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-1280.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(150);
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-360.png`), fullPage: true });
  // Nothing sticks out sideways on a phone.
  expect(await page.evaluate(() => document.documentElement.scrollWidth), `${name} at 360 px`).toBeLessThanOrEqual(PHONE.width);
  await page.setViewportSize(DESKTOP);
  await page.waitForTimeout(150);
}

/**
 * Opens the app with `backend` chosen in Settings. These tests are about the interface, recording
 * and storage, not the backend, and run on Automatic as a user here would (WebAssembly over a
 * software adapter: WebGPU on SwiftShader costs seconds per token, WebAssembly milliseconds). The
 * app's whole path on WebGPU, with what Settings say of a software adapter, is faults.test.ts's
 * WebGPU test (it was this file's first test too: ~100 s more of CI for the same path).
 */
async function openApp(
  browser: Browser,
  backend: 'auto' | 'webgpu',
): Promise<{ context: BrowserContext; page: Page; errors: string[]; requests: ReturnType<typeof recordRequests> }> {
  const context = await browser.newContext({ viewport: DESKTOP });
  const errors = collectConsoleErrors(context);
  const requests = recordRequests(context);
  await chooseBackendInSettings(context, backend);
  const page = await context.newPage();
  await page.goto(inject('devUrl'));
  await page.getByTestId('model-status').waitFor({ timeout: 60_000 });
  return { context, page, errors, requests };
}

async function waitForState(page: Page, testId: string, states: string[], timeout = 180_000): Promise<string> {
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

async function waitForModel(page: Page): Promise<{ backend: string; variant: string }> {
  expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
  const status = page.getByTestId('model-status');
  return { backend: (await status.getAttribute('data-backend')) ?? '', variant: (await status.getAttribute('data-variant')) ?? '' };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

interface HistoryDbContents {
  conversations: { id: string; recordingId: string; messages: { role: string; text: string; promptTokens?: unknown }[] }[];
  recordings: { id: string; name: string; kind: string; sha256: string }[];
}

/** IndexedDB read directly (not through the app's history module). */
async function readHistoryDb(page: Page): Promise<HistoryDbContents> {
  return page.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const request = indexedDB.open('hark');
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    const all = (store: string) =>
      new Promise<unknown[]>((resolve, reject) => {
        const request = db.transaction(store).objectStore(store).getAll();
        request.onsuccess = () => resolve(request.result as unknown[]);
        request.onerror = () => reject(request.error);
      });
    try {
      const conversations = (await all('conversations')) as HistoryDbContents['conversations'];
      const recordings = (await all('recordings')) as { id: string; name: string; audio: { kind: string; blob?: Blob; samples?: Float32Array } }[];
      const hex = (buffer: ArrayBuffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
      const described = [];
      for (const r of recordings) {
        const bytes = r.audio.kind === 'file' ? await r.audio.blob!.arrayBuffer() : r.audio.samples!.slice().buffer;
        described.push({ id: r.id, name: r.name, kind: r.audio.kind, sha256: hex(await crypto.subtle.digest('SHA-256', bytes)) });
      }
      const messages = (c: HistoryDbContents['conversations'][number]) =>
        c.messages.map((m) => ({ role: m.role, text: m.text, ...(m.role === 'assistant' ? { promptTokens: (m as { stats?: { promptTokens?: unknown } }).stats?.promptTokens } : {}) }));
      return { conversations: conversations.map((c) => ({ id: c.id, recordingId: c.recordingId, messages: messages(c) })), recordings: described };
    } finally {
      db.close();
    }
  });
}

/** Interactive elements in the accessibility tree without a name (e.g. '- button [disabled]'). */
async function unnamedControls(page: Page): Promise<string[]> {
  const tree = await page.locator('body').ariaSnapshot();
  return tree.split('\n').filter((line) => /^\s*- (button|textbox|slider|checkbox|radio|spinbutton|combobox|link|meter|progressbar)( \[[^\]]*\])*:?$/.test(line));
}

async function setMaxNewTokens(page: Page, value: number): Promise<void> {
  const input = page.getByTestId('setting-max-new-tokens');
  await input.fill(String(value));
  await input.blur();
  expect(await input.inputValue()).toBe(String(value));
}

describe('the app: audio in, streamed answers out', () => {
  let browser: Browser;
  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await launchChromium({
      args: ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${SPEECH_WAV}`],
    });
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('an uploaded WAV + the "Describe" preset streams the engine’s greedy answer; follow-up, stop, new conversation, bad file', { timeout: 420_000 }, async () => {
    const { context, page, errors, requests } = await openApp(browser, 'auto');

    // First visit: the bundled tiny model loads by itself, with a real progress bar.
    await page.getByTestId('model-progress').waitFor({ timeout: 30_000 });
    await screenshots(page, 'model-download');
    const model = await waitForModel(page);
    expect(model.backend).toMatch(/^(wasm|webgpu)$/);
    expect(await page.getByTestId('model-status').textContent()).toContain('Tiny test model, random weights');
    expect(await page.getByTestId('model-status').getAttribute('data-random-weights')).toBe('true');
    await screenshots(page, 'empty');
    // Phone width: the settings live in a drawer.
    await page.setViewportSize(PHONE);
    await page.getByTestId('settings-toggle').click();
    await page.getByTestId('lora-scale').waitFor();
    await page.waitForTimeout(400);
    await page.screenshot({ path: join(SCREENSHOTS, 'settings-drawer-360.png') });
    await page.keyboard.press('Escape');
    await page.getByTestId('lora-scale').waitFor({ state: 'hidden' });
    await page.setViewportSize(DESKTOP);

    await setMaxNewTokens(page, MAX_NEW_TOKENS);
    const loraScale = Number(await page.getByTestId('lora-scale').inputValue());
    expect(loraScale).toBeGreaterThan(0);
    // Typed text survives everything that follows until it is sent.
    await page.getByTestId('question-input').fill('draft typed before the audio');

    await page.getByTestId('audio-file-input').setInputFiles(SPEECH_WAV);
    await page.getByTestId('waveform').waitFor();
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
    expect(await page.getByTestId('recording-meta').textContent()).toContain('speech.wav');
    expect(Number(await page.getByTestId('waveform').getAttribute('data-duration'))).toBeCloseTo(86924 / 16000, 1);
    expect(await unnamedControls(page)).toEqual([]);

    await page.getByTestId('question-input').fill('');
    await page.getByTestId('preset-audiocaption').click();
    await waitForState(page, 'answer-1', ['streaming', 'done']);
    await screenshots(page, 'answering');
    expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
    const uiAnswer = (await page.getByTestId('answer-1').textContent()) ?? '';
    expect(Number(await page.getByTestId('answer-1').getAttribute('data-tokens'))).toBe(MAX_NEW_TOKENS);
    expect(await page.getByTestId('answer-stats').first().textContent()).toMatch(/12 tokens · [\d.]+ tokens\/s · first token [\d.]+ m?s/);

    // A follow-up continues the conversation (Enter sends).
    const followUp = 'What else can you hear?';
    await page.getByTestId('question-input').fill(followUp);
    await page.getByTestId('question-input').press('Enter');
    expect(await waitForState(page, 'answer-2', ['done', 'stopped', 'error'])).toBe('done');
    const uiFollowUp = (await page.getByTestId('answer-2').textContent()) ?? '';
    expect(await page.getByTestId('question-input').inputValue()).toBe('');

    // The engine in Node, wasm backend, same variant and settings, greedy: the same text.
    const engine = new HarkEngine({ store: new MemoryBundleStore() });
    try {
      const info = await engine.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: model.variant });
      expect(info.defaults.loraScale).toBe(loraScale);
      await engine.setAudio(new Uint8Array(readFileSync(SPEECH_WAV)));
      const params = { maxNewTokens: MAX_NEW_TOKENS, loraScale, doSample: false };
      const expected = await engine.ask(info.tasks.audiocaption!, params);
      expect(expected.ids.length).toBe(MAX_NEW_TOKENS);
      expect(uiAnswer).toBe(expected.text);
      const expectedFollowUp = await engine.ask(followUp, params);
      expect(uiFollowUp).toBe(expectedFollowUp.text);
    } finally {
      await engine.unload();
    }

    // Escape stops a long answer within a step; the conversation stays usable.
    // (This prompt makes the tiny model write hundreds of tokens: time to stop it on WebAssembly.)
    await setMaxNewTokens(page, 2000);
    await page.getByTestId('question-input').fill('Tell me a long story.');
    await page.getByTestId('question-input').press('Enter');
    await page.getByTestId('stop-button').waitFor();
    await waitForState(page, 'answer-3', ['streaming']);
    await page.getByTestId('question-input').press('Escape');
    expect(await waitForState(page, 'answer-3', ['done', 'stopped', 'error'], 60_000)).toBe('stopped');
    expect(Number(await page.getByTestId('answer-3').getAttribute('data-tokens'))).toBeLessThan(2000);
    await page.getByTestId('send-button').waitFor();

    // New conversation: the thread empties, the recording stays.
    await page.getByTestId('new-conversation').click();
    await page.getByTestId('answer-1').waitFor({ state: 'detached' });
    expect(await waitForState(page, 'audio-status', ['ready'])).toBe('ready');

    // A file that is not audio: a visible alert; the recording and the typed question stay.
    await page.getByTestId('question-input').fill('keep this question');
    await page.getByTestId('audio-file-input').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not audio at all') });
    const alert = page.getByTestId('error-message');
    await alert.waitFor();
    expect(await alert.getAttribute('role')).toBe('alert');
    expect(await alert.textContent()).toMatch(/notes\.txt.*could not be read as audio/);
    expect(await page.getByTestId('recording-meta').textContent()).toContain('speech.wav');
    expect(await page.getByTestId('question-input').inputValue()).toBe('keep this question');
    expect(await waitForState(page, 'audio-status', ['ready'])).toBe('ready');
    await screenshots(page, 'error');

    await context.close();
    expect(errors).toEqual([]);
    expect(requests.nonLocal()).toEqual([]);
  });

  it('records from the microphone (Chromium’s fake device), shows the waveform and answers', { timeout: 300_000 }, async () => {
    const { context, page, errors, requests } = await openApp(browser, 'auto');
    await waitForModel(page);
    await setMaxNewTokens(page, 6);

    const recordClicked = performance.now();
    await page.getByTestId('record-button').click();
    await page.getByTestId('recorder-live').waitFor({ timeout: 30_000 });
    await page.waitForTimeout(2200);
    expect(Number(await page.getByRole('meter', { name: 'Microphone level' }).getAttribute('aria-valuenow'))).toBeGreaterThan(0);
    expect(await page.getByRole('timer').textContent()).toMatch(/^0:0[1-9]$/);
    await screenshots(page, 'recording');
    await page.getByTestId('record-button').click();
    // The screenshots take a while on a busy machine: the capture lasts as long as the test took.
    const recordedFor = (performance.now() - recordClicked) / 1000;

    await page.getByTestId('waveform').waitFor();
    expect(await page.getByTestId('recording-meta').getAttribute('data-kind')).toBe('recording');
    const duration = Number(await page.getByTestId('waveform').getAttribute('data-duration'));
    expect(duration).toBeGreaterThan(1.5);
    expect(duration).toBeLessThan(recordedFor + 0.5);
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');

    await page.getByTestId('preset-asr').click();
    expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
    expect(Number(await page.getByTestId('answer-1').getAttribute('data-tokens'))).toBeGreaterThan(0);

    // A capture is kept as float PCM: a reload brings back the same recording and answer.
    const answer = await page.getByTestId('answer-1').textContent();
    await page.getByTestId('history-entry').first().waitFor();
    expect((await readHistoryDb(page)).recordings.map((r) => r.kind)).toEqual(['pcm']);
    await page.reload();
    await page.getByTestId('answer-1').waitFor({ timeout: 60_000 });
    expect(await page.getByTestId('answer-1').textContent()).toBe(answer);
    expect(await page.getByTestId('recording-meta').getAttribute('data-kind')).toBe('recording');
    expect(Number(await page.getByTestId('waveform').getAttribute('data-duration'))).toBeCloseTo(duration, 2);

    await context.close();
    expect(errors).toEqual([]);
    expect(requests.nonLocal()).toEqual([]);
  });

  it('a reload restores the conversation and its recording (IndexedDB), and a follow-up continues it; deleting removes both', { timeout: 420_000 }, async () => {
    const { context, page, errors, requests } = await openApp(browser, 'auto');
    const model = await waitForModel(page);
    await setMaxNewTokens(page, 4);
    const loraScale = Number(await page.getByTestId('lora-scale').inputValue());
    await page.getByTestId('audio-file-input').setInputFiles(SPEECH_WAV);
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
    await page.getByTestId('preset-asr').click();
    expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
    const answer = (await page.getByTestId('answer-1').textContent()) ?? '';
    expect(answer.length).toBeGreaterThan(0);
    await page.getByTestId('history-entry').first().waitFor();

    // What IndexedDB holds: one conversation with the question and answer, and the file byte for byte.
    const stored = await readHistoryDb(page);
    expect(stored.conversations).toHaveLength(1);
    expect(stored.conversations[0]!.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(stored.conversations[0]!.messages[1]!.text).toBe(answer);
    expect(stored.recordings).toEqual([{ id: stored.conversations[0]!.recordingId, name: 'speech.wav', kind: 'file', sha256: sha256(readFileSync(SPEECH_WAV)) }]);

    await page.reload();
    await page.getByTestId('answer-1').waitFor({ timeout: 60_000 });
    expect(await page.getByTestId('answer-1').textContent()).toBe(answer);
    expect(await page.getByTestId('answer-1').getAttribute('data-state')).toBe('done');
    expect(await page.getByTestId('recording-meta').textContent()).toContain('speech.wav');
    expect(Number(await page.getByTestId('waveform').getAttribute('data-duration'))).toBeCloseTo(86924 / 16000, 1);
    expect(await page.locator('.thread-divider').textContent()).toMatch(/Restored from this device/);
    await waitForModel(page);
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
    // The restored conversation goes on: the engine re-reads it, so the follow-up is the same as
    // in an unbroken conversation (the engine in Node, wasm, same variant); one stored copy.
    await page.getByTestId('question-input').fill('And then?');
    await page.getByTestId('question-input').press('Enter');
    expect(await waitForState(page, 'answer-2', ['done', 'stopped', 'error'])).toBe('done');
    const engine = new HarkEngine({ store: new MemoryBundleStore() });
    try {
      const info = await engine.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: model.variant });
      await engine.setAudio(new Uint8Array(readFileSync(SPEECH_WAV)));
      const params = { maxNewTokens: 4, loraScale, doSample: false };
      const first = await engine.ask(info.tasks.asr!, params);
      expect(first.text).toBe(answer);
      const followUp = await engine.ask('And then?', params);
      expect(followUp.turn).toBe(2);
      expect(await page.getByTestId('answer-2').textContent()).toBe(followUp.text);
      // Asked as a follow-up (only the new turn's tokens were fed), not as a first question (with
      // the audio). An unbroken conversation also feeds the previous answer's last token here when
      // it stopped at the length limit; the re-read has fed it already: one fewer.
      const unfed = first.stats.stopReason === 'max-tokens' ? 1 : 0;
      const storedAnswer = async () => (await readHistoryDb(page)).conversations[0]?.messages[3]?.promptTokens;
      await expect.poll(storedAnswer, { timeout: 10_000 }).toBe(followUp.stats.promptTokens - unfed);
      expect(followUp.stats.promptTokens).toBeLessThan(30);
    } finally {
      await engine.unload();
    }
    expect((await readHistoryDb(page)).conversations.map((c) => c.messages.length)).toEqual([4]);
    expect(await page.getByTestId('history-entry').count()).toBe(1);

    // Export: one JSON file with the conversation and the recording inside.
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-conversation').click()]);
    expect(download.suggestedFilename()).toMatch(/^hark-.+-\d{4}-\d{2}-\d{2}\.json$/);
    const exported = JSON.parse(readFileSync((await download.path())!, 'utf8')) as { conversation: { messages: unknown[] }; recording: { fileName: string; data: string } };
    expect(exported.conversation.messages).toHaveLength(4);
    expect(exported.recording.fileName).toBe('speech.wav');
    expect(sha256(Buffer.from(exported.recording.data, 'base64'))).toBe(sha256(readFileSync(SPEECH_WAV)));

    // Delete (after confirming): gone from the page and from IndexedDB, also after a reload.
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByTestId('delete-conversation').click();
    await page.getByTestId('waveform').waitFor({ state: 'detached' });
    await page.getByTestId('answer-1').waitFor({ state: 'detached' });
    await expect.poll(async () => readHistoryDb(page), { timeout: 10_000 }).toEqual({ conversations: [], recordings: [] });
    await page.reload();
    await page.getByTestId('model-status').waitFor({ timeout: 60_000 });
    await page.waitForTimeout(1000);
    expect(await page.getByTestId('waveform').count()).toBe(0);
    expect(await page.getByTestId('answer-1').count()).toBe(0);

    // A recording not asked about yet also comes back (with an empty thread).
    await page.getByTestId('audio-file-input').setInputFiles(SPEECH_WAV);
    await expect.poll(async () => (await readHistoryDb(page)).conversations.map((c) => c.messages.length), { timeout: 10_000 }).toEqual([0]);
    await page.reload();
    await page.getByTestId('waveform').waitFor({ timeout: 60_000 });
    expect(await page.getByTestId('recording-meta').textContent()).toContain('speech.wav');
    expect(await page.getByTestId('answer-1').count()).toBe(0);

    await context.close();
    expect(errors).toEqual([]);
    expect(requests.nonLocal()).toEqual([]);
  });

  it('explains a denied microphone in a visible alert and keeps the page usable', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    await context.addInitScript(() => {
      navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    });
    const page = await context.newPage();
    await page.goto(inject('devUrl'));
    await page.getByTestId('question-input').fill('still here');
    await page.getByTestId('record-button').click();
    const alert = page.getByTestId('error-message');
    await alert.waitFor({ timeout: 30_000 });
    expect(await alert.textContent()).toMatch(/permission was denied/);
    expect(await page.getByTestId('record-button').isEnabled()).toBe(true);
    expect(await page.getByTestId('question-input').inputValue()).toBe('still here');
    await screenshots(page, 'microphone-denied');
    await context.close();
  });
});
