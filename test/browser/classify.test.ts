/**
 * "Classify" (issue 12, answers from a fixed label set) as a person uses it, in headless Chromium
 * on the tiny bundle with the Automatic backend (WebAssembly on this GPU-less machine): open the
 * golden speech recording, pick a preset, try label lists the form refuses, type the golden
 * question and labels, press Classify. The answer is the reference's label and each bar's
 * percentage is the reference probability (models/golden, classification of the same question,
 * labels, recording and precision). The tiny model's weights are random, so the label means
 * nothing: the test checks that the UI shows the engine's answer faithfully.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { GOLDEN_DIR, REPO_ROOT, loadGoldenIndex } from '../helpers/golden';
import { chooseBackendInSettings, collectConsoleErrors, launchChromium } from './chromium';

const SPEECH_WAV = join(GOLDEN_DIR, 'audio', 'speech.wav');
const SCREENSHOTS = join(REPO_ROOT, 'test-results', 'screenshots');

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

describe('Classify: answers from a fixed label set (issue 12)', () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    errors = collectConsoleErrors(context);
    await chooseBackendInSettings(context, 'auto');
    page = await context.newPage();
    await page.goto(inject('devUrl'));
    expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
  });

  it('shows the chosen label and a bar per label with the reference probabilities; refuses bad label lists and shows the engine’s refusal', async () => {
    await page.getByTestId('audio-file-input').setInputFiles(SPEECH_WAV);
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');

    await page.getByTestId('classify-toggle').click();
    const question = page.getByLabel('Question', { exact: true });
    const labels = page.getByLabel('Labels, separated by commas');
    const preset = page.getByLabel('Label set');
    const button = page.getByTestId('classify-button');
    // The first preset is filled in; another preset fills its own question and labels.
    expect(await question.inputValue()).toBe('What emotion does the speaker express?');
    expect(await labels.inputValue()).toBe('neutral, happy, sad, angry');
    await preset.selectOption('speakers');
    expect(await question.inputValue()).toBe('How many people speak in this recording?');
    expect(await labels.inputValue()).toBe('1, 2, 3 or more');
    await expect.poll(() => button.getAttribute('aria-disabled')).toBe('false');

    // Lists the form refuses, with what to do, before anything reaches the engine.
    await labels.fill('speech, music, speech');
    expect(await page.getByTestId('classify-status').textContent()).toBe('The label “speech” is given twice: each label must be different. Remove one of them.');
    expect(await labels.getAttribute('aria-invalid')).toBe('true');
    expect(await button.getAttribute('aria-disabled')).toBe('true');
    await labels.fill('speech, , music');
    expect(await page.getByTestId('classify-status').textContent()).toMatch(/^One of the labels is empty: remove the extra comma/);
    // Pressed anyway: nothing is asked (no turn is added), the reason stays next to the button.
    await button.focus();
    await page.keyboard.press('Enter');
    expect(await page.locator('.bubble').count()).toBe(0);

    // The golden question and labels (typed: the preset list shows "Your own labels"), sent with Enter.
    const variant = (await page.getByTestId('model-status').getAttribute('data-variant')) ?? '';
    expect(['fp32', 'int4']).toContain(variant);
    const reference = loadGoldenIndex().inputs.speech!.precisions[variant as 'fp32' | 'int4'].classification!;
    expect(reference, `a reference classification for the ${variant} variant`).toBeDefined();
    await question.fill(reference.question);
    await labels.fill(reference.labels.join(', '));
    expect(await preset.inputValue()).toBe('custom');
    expect(await labels.getAttribute('aria-invalid')).toBe('false');
    const started = Date.now();
    await labels.press('Enter');
    expect(await waitForState(page, 'answer-1', ['done', 'error'], 60_000)).toBe('done');
    const took = Date.now() - started;

    // The question is a turn of the conversation, the chosen label its answer.
    expect(await page.locator('.bubble.user .bubble-text').first().textContent()).toBe(reference.question);
    expect(await page.getByTestId('answer-1').textContent()).toBe(reference.label);
    // A bar per label, in the order given, as a list whose items read "speech 79%".
    const list = page.getByRole('list', { name: 'Probability of each label' });
    expect(await list.count()).toBe(1);
    const bars = await list.getByRole('listitem').evaluateAll((items) =>
      items.map((item) => ({ text: item.textContent ?? '', label: (item as HTMLElement).dataset.label ?? '', probability: Number((item as HTMLElement).dataset.probability) })),
    );
    expect(bars.map((b) => b.label)).toEqual(reference.labels);
    expect(bars.map((b) => b.text)).toEqual(reference.labels.map((label, i) => `${label} ${Math.round(reference.probabilities[i]! * 100)}%`));
    // The numbers behind the bars are the engine's, which are the reference's (Node checks 1e-4).
    bars.forEach((bar, i) => expect(Math.abs(bar.probability - reference.probabilities[i]!), bar.label).toBeLessThan(1e-3));
    const best = reference.probabilities[reference.labels.indexOf(reference.label)]!;
    await expect.poll(() => page.getByTestId('live-status').textContent()).toBe(
      `Answer: ${reference.label}, ${Math.round(best * 100)} percent. ${reference.labels.map((l, i) => `${l} ${Math.round(reference.probabilities[i]! * 100)} percent`).join(', ')}.`,
    );
    console.log(`classify in the UI (${variant}, WebAssembly): ${took} ms from Enter to the bars`);
    await page.screenshot({ path: join(SCREENSHOTS, 'classify-result-1280.png'), fullPage: true });

    // A label the engine refuses (too many tokens): its message is shown with the failed answer.
    await labels.fill(`speech, ${Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ')}`);
    await button.click();
    expect(await waitForState(page, 'answer-2', ['done', 'error'], 60_000)).toBe('error');
    expect(await page.locator('.bubble.assistant .answer-error').last().textContent()).toMatch(/^The label “.*” is too long \(\d+ tokens; at most 30\)/);
    expect(await button.getAttribute('aria-disabled')).toBe('false');
    // The button kept keyboard focus while it waited (it is never disabled under the focus).
    expect(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.testid)).toBe('classify-button');

    // At phone width the form and the bars fit.
    await page.setViewportSize({ width: 360, height: 780 });
    await page.waitForTimeout(150);
    await page.screenshot({ path: join(SCREENSHOTS, 'classify-result-360.png'), fullPage: true });
    expect(await page.evaluate(() => document.documentElement.scrollWidth), 'at 360 px').toBeLessThanOrEqual(360);
    await page.setViewportSize({ width: 1280, height: 900 });

    // After a reload the conversation comes back from this device with its bars (the engine
    // re-reads it from the stored token ids before the next question).
    await page.reload();
    expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
    await expect.poll(() => page.getByTestId('answer-1').textContent(), { timeout: 30_000 }).toBe(reference.label);
    const restored = await page.getByRole('list', { name: 'Probability of each label' }).getByRole('listitem').allTextContents();
    expect(restored).toEqual(bars.map((b) => b.text));

    expect(errors).toEqual([]);
  });
});
