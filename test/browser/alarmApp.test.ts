/**
 * The ALARM bundle through the real app UI (issue 14), in headless Chromium with the Automatic
 * backend (WebAssembly over this machine's software GPU; alarmWebgpu.test.ts checks the numbers on
 * WebGPU): the app starts on the bundled SALMONN; ALARM is picked in the model manager ("Available on
 * this site"); the task presets are ALARM's own from its manifest (one, "Describe", shown without
 * its <AudioHere> marker; its free-question QA task is no chip) and none of SALMONN's; the controls
 * ALARM lacks are gone (LoRA scale, beams, Find in recording) and its thinking budget appears; the
 * Describe preset streams the thoughts apart, which end collapsed under the answer; thoughts and
 * answer are the ALARM PyTorch reference's (goldens, the variant Automatic loaded); switching back
 * to SALMONN brings its tasks and controls back.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { GOLDEN_DIR, REPO_ROOT } from '../helpers/golden';
import { chooseBackendInSettings, collectConsoleErrors, launchChromium } from './chromium';

const SPEECH_WAV = join(GOLDEN_DIR, 'audio', 'speech.wav');
const SCREENSHOTS = join(REPO_ROOT, 'test-results', 'screenshots');
const ALARM_DIR = join(REPO_ROOT, 'models', 'bundles', 'alarm-tiny');
const alarmManifest = JSON.parse(readFileSync(join(ALARM_DIR, 'manifest.json'), 'utf8')) as { label: string; tasks: Record<string, string>; reasoning: { defaultThinkingBudget: number } };
interface ReasoningGolden {
  thinkingBudget: number;
  maxAnswerTokens: number;
  thinkingTokens: number;
  forcedClose: boolean;
  thoughts: string;
  answer: string;
}
const alarmGolden = JSON.parse(readFileSync(join(REPO_ROOT, 'models', 'golden', 'alarm', 'index.json'), 'utf8')) as {
  inputs: { speech: { audio: string; taskPrompt: string; precisions: Record<string, { reasoning: ReasoningGolden }> } };
};

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

/** Waits until the model manager shows `name` in use and the model and the recording are ready. */
async function waitForModelInUse(page: Page, name: string): Promise<void> {
  await page.waitForFunction((n) => document.querySelector(`[data-testid="site-model-${n}"]`)?.getAttribute('data-state') === 'in-use', name, { timeout: 180_000, polling: 100 });
  expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
}

const presetKeys = (page: Page) => page.evaluate(() => [...document.querySelectorAll('[data-testid^="preset-"]')].map((e) => e.getAttribute('data-testid')!.slice('preset-'.length)));

describe('ALARM in the app: its own tasks, its controls, thoughts folded under the answer (issue 14)', () => {
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
    await waitForModelInUse(page, 'salmonn-tiny');
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
  });

  it('SALMONN → ALARM (its task, no LoRA/beams/Find, a thinking budget; thoughts streamed apart, then collapsed under the answer, as the reference) → SALMONN (its tasks and controls again)', { timeout: 300_000 }, async () => {
    const salmonnControls = async () => {
      expect(await presetKeys(page)).toContain('asr');
      expect(await presetKeys(page)).not.toContain('describe');
      expect(await page.getByTestId('lora-scale').count()).toBe(1);
      expect(await page.getByTestId('setting-beams').count()).toBe(1);
      expect(await page.getByTestId('setting-thinking-budget').count()).toBe(0);
      expect(await page.getByTestId('find-input').count()).toBe(1);
      expect(await page.getByTestId('find-input').isDisabled()).toBe(false);
    };
    await page.getByTestId('audio-file-input').setInputFiles(SPEECH_WAV);
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
    await salmonnControls();

    // Pick ALARM in the model manager.
    const started = Date.now();
    await page.getByTestId('site-model-alarm-tiny').getByRole('button', { name: `Download ${alarmManifest.label}` }).click();
    await waitForModelInUse(page, 'alarm-tiny');
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
    const loadAndListenMs = Date.now() - started;
    const variant = (await page.getByTestId('model-status').getAttribute('data-variant')) ?? '';
    const golden = alarmGolden.inputs.speech.precisions[variant]!.reasoning;

    // ALARM's own task prompts: "describe" only (QA is a bare question), shown without <AudioHere>.
    expect(Object.keys(alarmManifest.tasks).sort()).toEqual(['QA', 'describe']);
    expect(await presetKeys(page)).toEqual(['describe']);
    const describe = page.getByTestId('preset-describe');
    expect(await describe.textContent()).toBe('Describe');
    expect(await describe.getAttribute('title')).toBe('Describe the audio content.');
    expect(await page.getByRole('button', { name: /More tasks/ }).count()).toBe(0);
    // Controls ALARM lacks are gone; its thinking budget is there with the manifest's default.
    expect(await page.getByTestId('lora-scale').count()).toBe(0);
    expect(await page.getByText('LoRA', { exact: false }).count()).toBe(0);
    expect(await page.getByTestId('setting-beams').count()).toBe(0);
    expect(await page.getByTestId('find-input').count()).toBe(0);
    const budget = page.getByTestId('setting-thinking-budget');
    expect(await budget.inputValue()).toBe(String(alarmManifest.reasoning.defaultThinkingBudget));
    expect(await page.getByTestId('reasoning-help').count()).toBe(1);

    // The goldens' forced-close run: budget and answer length.
    await budget.fill(String(golden.thinkingBudget));
    await budget.blur();
    const maxTokens = page.getByTestId('setting-max-new-tokens');
    await maxTokens.fill(String(golden.maxAnswerTokens));
    await maxTokens.blur();

    await page.evaluate(() => {
      const seen: { thoughts: string | null; answer: string; open: boolean }[] = [];
      (window as unknown as { alarmSnapshots: typeof seen }).alarmSnapshots = seen;
      new MutationObserver(() => {
        const answer = document.querySelector('[data-testid="answer-1"]');
        if (!answer) return;
        const details = document.querySelector<HTMLDetailsElement>('[data-testid="thoughts-1"]');
        seen.push({ thoughts: document.querySelector('[data-testid="thoughts-text-1"]')?.textContent ?? null, answer: answer.textContent ?? '', open: details?.open ?? false });
      }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    const asked = Date.now();
    await describe.click();
    expect(await waitForState(page, 'answer-1', ['done', 'error'], 120_000)).toBe('done');
    const answerMs = Date.now() - asked;

    // The question reads as the task's text, without the audio marker.
    expect(await page.locator('.bubble.user .bubble-text').last().textContent()).toBe('Describe the audio content.');
    expect(await page.locator('.bubble.user .bubble-label').last().textContent()).toBe('Describe');
    // The reference's thoughts and answer (the goldens' forced-close run, this variant).
    const details = page.getByTestId('thoughts-1');
    expect(await page.getByTestId('answer-1').textContent()).toBe(golden.answer);
    expect(await page.getByTestId('thoughts-text-1').textContent()).toBe(golden.thoughts);
    expect(golden.forcedClose).toBe(true);
    expect(await details.locator('summary').textContent()).toBe(`Thoughts · ${golden.thinkingTokens} tokens · cut at the thinking budget`);
    // Collapsed, under the answer.
    expect(await details.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(false);
    expect(await page.getByTestId('thoughts-text-1').isVisible()).toBe(false);
    const order = await page.evaluate(() => document.querySelector('[data-testid="answer-1"]')!.compareDocumentPosition(document.querySelector('[data-testid="thoughts-1"]')!) & Node.DOCUMENT_POSITION_FOLLOWING);
    expect(order).toBeTruthy();
    // While streaming, the thoughts showed apart (open, no answer yet); each channel only grew.
    const snapshots = await page.evaluate(() => (window as unknown as { alarmSnapshots: { thoughts: string | null; answer: string; open: boolean }[] }).alarmSnapshots);
    expect(snapshots.some((s) => s.thoughts !== null && s.thoughts.length > 0 && s.answer === '' && s.open)).toBe(true);
    expect(snapshots.some((s) => s.answer.length > 0 && s.answer.length < golden.answer.length)).toBe(true);
    for (const s of snapshots) {
      if (s.thoughts !== null && s.thoughts !== '(no thoughts)') expect(golden.thoughts.startsWith(s.thoughts)).toBe(true);
      expect(golden.answer.startsWith(s.answer)).toBe(true);
    }
    const settings = (await page.getByTestId('answer-settings').textContent()) ?? '';
    expect(settings).toContain(`thinking budget ${golden.thinkingBudget} tokens`);
    expect(settings).not.toContain('LoRA');
    await page.screenshot({ path: join(SCREENSHOTS, 'alarm-thoughts-1280.png'), fullPage: true });

    // Back to SALMONN: its tasks and controls return.
    await page.getByTestId('site-model-salmonn-tiny').getByRole('button', { name: /^Use / }).click();
    await waitForModelInUse(page, 'salmonn-tiny');
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');
    await salmonnControls();
    console.log(`ALARM in the app (${variant}, WebAssembly): load + listen ${loadAndListenMs} ms, Describe answered in ${answerMs} ms`);
    expect(errors).toEqual([]);
  });
});
