/**
 * Beam search in the app (headless Chromium, WebAssembly): Beams set to 4 in Settings, a question
 * about the golden speech recording, and the answer shown is the engine's own beam-search answer
 * for the same parameters (computed here in Node on the wasm backend), token count included. While
 * it streams, what is shown is always one of the engine's best-so-far texts, in order, the bubble
 * never shrinks, the status says that candidates are compared, and the live region announces the
 * start and the end, never the text. The setting is kept across a reload (as is the answer with
 * its beams), is off with sampling, and "Reset to the model's defaults" brings back the model's.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine } from '../../src/engine/engine';
import type { TokenEvent } from '../../src/engine/llm/generate';
import { GOLDEN_DIR, REPO_ROOT } from '../helpers/golden';
import { tinyBundleFiles } from '../helpers/tinyBundle';
import { chooseBackendInSettings, collectConsoleErrors, launchChromium, recordRequests } from './chromium';

const SPEECH_WAV = join(GOLDEN_DIR, 'audio', 'speech.wav');
const SCREENSHOTS = join(REPO_ROOT, 'test-results', 'screenshots');
const MAX_NEW_TOKENS = 8;
const BEAMS = 4;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 360, height: 780 };

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

/** The Beams control's shown choice ("1 (model default)", "4"). */
async function beamsShown(page: Page): Promise<string> {
  return (await page.getByTestId('setting-beams').locator('option:checked').textContent()) ?? '';
}

interface Observed {
  state: string;
  text: string;
  revisions: number;
  width: number;
  height: number;
  stats: string;
  live: string;
}

/** Records the first answer after every DOM change (a MutationObserver: each rendered state). */
async function observeFirstAnswer(page: Page): Promise<void> {
  await page.evaluate(() => {
    const seen: unknown[] = [];
    (window as unknown as { __answerTrace: unknown[] }).__answerTrace = seen;
    new MutationObserver(() => {
      const text = document.querySelector('[data-testid="answer-1"]');
      if (!text) return;
      const bubble = text.closest('li')!;
      const { width, height } = bubble.getBoundingClientRect();
      seen.push({
        state: text.getAttribute('data-state') ?? '',
        text: text.textContent ?? '',
        revisions: Number(text.getAttribute('data-revisions')),
        width,
        height,
        stats: bubble.querySelector('[data-testid="answer-stats"]')?.textContent ?? '',
        live: document.querySelector('[data-testid="live-status"]')?.textContent ?? '',
      });
    }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
}

describe('beam search in the app', () => {
  let browser: Browser;
  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('Beams = 4 in Settings: the answer is the engine’s beam-search answer, streamed without jumps, and says its beams', { timeout: 420_000 }, async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const errors = collectConsoleErrors(context);
    const requests = recordRequests(context);
    await chooseBackendInSettings(context, 'wasm');
    const page = await context.newPage();
    await page.goto(inject('devUrl'));
    expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
    const variant = (await page.getByTestId('model-status').getAttribute('data-variant')) ?? '';

    // The tiny bundle declares one beam: that is the default, named as such.
    const beams = page.getByTestId('setting-beams');
    expect(await beamsShown(page)).toBe('1 (model default)');
    expect(await beams.locator('option').allTextContents()).toEqual(['1 (model default)', '2', '3', '4', '6', '8']);
    // Sampling draws one sequence: the control is off, and says why.
    await page.getByTestId('setting-sampling').check();
    expect(await beams.isDisabled()).toBe(true);
    expect(await page.getByTestId('beams-sampling-note').textContent()).toBe('Sampling is on: beams apply to deterministic answers only.');
    await page.getByTestId('setting-sampling').uncheck();
    expect(await beams.isDisabled()).toBe(false);
    expect(await page.getByTestId('beams-sampling-note').count()).toBe(0);

    await beams.selectOption(String(BEAMS));
    expect(await beamsShown(page)).toBe('4');
    const input = page.getByTestId('setting-max-new-tokens');
    await input.fill(String(MAX_NEW_TOKENS));
    await input.blur();
    const loraScale = Number(await page.getByTestId('lora-scale').inputValue());

    await page.getByTestId('audio-file-input').setInputFiles(SPEECH_WAV);
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
    await observeFirstAnswer(page);
    await page.getByTestId('preset-audiocaption').click();
    expect(await waitForState(page, 'answer-1', ['done', 'stopped', 'error'])).toBe('done');
    const answer = page.getByTestId('answer-1');
    const shown = (await answer.textContent()) ?? '';
    const bubble = page.locator('.bubble.assistant').first();

    // The engine in Node, wasm backend, same variant and settings, 4 beams.
    const engine = new HarkEngine({ store: new MemoryBundleStore() });
    const events: TokenEvent[] = [];
    let expected: Awaited<ReturnType<HarkEngine['ask']>>;
    let prompt: string;
    try {
      const info = await engine.loadModel(tinyBundleFiles(), { backend: 'wasm', variant });
      expect(info.defaults.numBeams).toBe(1);
      expect(info.defaults.loraScale).toBe(loraScale);
      prompt = info.tasks.audiocaption!;
      await engine.setAudio(new Uint8Array(readFileSync(SPEECH_WAV)));
      expected = await engine.ask(prompt, { numBeams: BEAMS, maxNewTokens: MAX_NEW_TOKENS, loraScale, doSample: false, onToken: (e) => events.push(e) });
      expect(expected.stats.beams).toBe(BEAMS);
      // This question revises its best answer while it searches: the app's handling of that is seen here.
      expect(expected.stats.revisions).toBeGreaterThan(0);
    } finally {
      await engine.unload();
    }
    expect(shown).toBe(expected.text);
    expect(Number(await answer.getAttribute('data-tokens'))).toBe(expected.ids.length);
    expect(Number(await answer.getAttribute('data-revisions'))).toBe(expected.stats.revisions);
    const ending = expected.stats.stopReason === 'max-tokens' ? 'reached the length limit' : 'finished';
    expect(await bubble.getByTestId('answer-stats').textContent()).toMatch(
      new RegExp(`^4 beams · ${expected.ids.length} tokens? · [\\d.]+ tokens/s per beam · first token [\\d.]+ m?s · ${ending}$`),
    );
    await bubble.getByText('Settings', { exact: true }).click();
    expect(await bubble.getByTestId('answer-settings').textContent()).toMatch(
      new RegExp(`^LoRA scale ${loraScale.toFixed(2)} · 4 beams \\(the best of 4 candidate answers\\) · at most ${MAX_NEW_TOKENS} new tokens · repetition penalty 1\\.00 · .+ · WebAssembly$`),
    );
    // The last revision fades in (its text is wrapped for the animation).
    expect(await answer.locator('.answer-revised').count()).toBe(1);

    // While it streamed: only the engine's best-so-far texts, in order; the bubble never shrank;
    // candidates were compared in the status line; the live region said when, never what.
    const trace = (await page.evaluate(() => (window as unknown as { __answerTrace: Observed[] }).__answerTrace)) as Observed[];
    const streaming = trace.filter((o) => o.state === 'streaming');
    expect(streaming.length).toBeGreaterThan(0);
    const texts = streaming.map((o) => o.text).filter((t, i, all) => i === 0 || t !== all[i - 1]);
    const engineTexts = events.map((e) => e.text);
    let at = 0;
    for (const text of texts) {
      const found = engineTexts.indexOf(text, at);
      expect(found, `“${text}” shown while streaming is one of the engine's best-so-far texts, in order`).toBeGreaterThanOrEqual(0);
      at = found;
    }
    for (let i = 1; i < streaming.length; i++) {
      expect(streaming[i]!.width).toBeGreaterThanOrEqual(streaming[i - 1]!.width - 0.5);
      expect(streaming[i]!.height).toBeGreaterThanOrEqual(streaming[i - 1]!.height - 0.5);
    }
    expect(streaming.every((o) => o.stats.startsWith('Comparing 4 candidate answers…'))).toBe(true);
    // Once done, it stays the answer (a token event arriving after the result changes nothing).
    const afterDone = trace.slice(trace.findIndex((o) => o.state === 'done'));
    expect(afterDone.map((o) => [o.text, o.revisions])).toEqual(afterDone.map(() => [expected.text, expected.stats.revisions]));
    const announced = [...new Set(trace.map((o) => o.live).filter((t) => t !== ''))];
    expect(announced).toContain('Answering: comparing 4 candidate answers…');
    for (const text of announced) expect(engineTexts.some((t) => t !== '' && text.includes(t))).toBe(false);
    await page.screenshot({ path: join(SCREENSHOTS, 'beam-answer-1280.png'), fullPage: true });
    await page.setViewportSize(PHONE);
    await page.waitForTimeout(150);
    await page.screenshot({ path: join(SCREENSHOTS, 'beam-answer-360.png'), fullPage: true });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    await page.setViewportSize(DESKTOP);

    // A reload keeps the setting and the answer with its beams.
    await page.getByTestId('history-entry').first().waitFor();
    await page.waitForTimeout(500);
    await page.reload();
    await page.getByTestId('answer-1').waitFor({ timeout: 60_000 });
    expect(await page.getByTestId('answer-1').textContent()).toBe(expected.text);
    expect(await page.locator('.bubble.assistant').first().getByTestId('answer-stats').textContent()).toMatch(/^4 beams · /);
    expect(await beamsShown(page)).toBe('4');
    await page.getByTestId('reset-answer-settings').click();
    expect(await beamsShown(page)).toBe('1 (model default)');

    await context.close();
    expect(errors).toEqual([]);
    expect(requests.nonLocal()).toEqual([]);
  });
});
