/**
 * Reasoning traces in the app (issue 12, ALARM), in headless Chromium with the Automatic backend
 * (WebAssembly on this GPU-less machine), on the tiny reasoning bundle: the tiny bundle served
 * under /models/salmonn-tiny-reasoning/ with the golden `reasoning` section added to its manifest
 * (Playwright routes; nothing is written to disk). The app starts on it, the "Thinking budget"
 * setting appears with the bundle's default, and an answer shows its thoughts apart from the
 * answer while they stream, then folded under it as "Thoughts · N tokens", keyboard-operable; the
 * thoughts and the answer are the engine's (the same question and settings asked of HarkEngine in
 * Node, same variant); a reload brings the thoughts back from local history.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine, type AnswerResult } from '../../src/engine/engine';
import type { Manifest } from '../../src/engine/bundle/manifest';
import { GOLDEN_DIR, REPO_ROOT, TINY_BUNDLE_DIR } from '../helpers/golden';
import { loadReasoningGolden, reasoningBundleFiles } from '../helpers/reasoningBundle';
import { reasoningManifest } from '../helpers/reasoningManifest';
import { chooseBackendInSettings, collectConsoleErrors, launchChromium } from './chromium';

const SPEECH_WAV = join(GOLDEN_DIR, 'audio', 'speech.wav');
const SCREENSHOTS = join(REPO_ROOT, 'test-results', 'screenshots');
const golden = loadReasoningGolden();
const SOURCE = `/models/${golden.bundle}/`;
const QUESTION = 'What do you hear?';
const BUDGET = 3;
const MAX_NEW_TOKENS = 5;

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

/** Serves the tiny reasoning bundle: the tiny bundle's files, and its manifest with `reasoning`. */
async function serveReasoningBundle(context: BrowserContext): Promise<void> {
  const base = JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'manifest.json'), 'utf8')) as Manifest;
  const manifest = JSON.stringify(reasoningManifest(base, golden));
  await context.route(`**${SOURCE}**`, async (route) => {
    const url = new URL(route.request().url());
    const path = url.pathname.slice(SOURCE.length);
    if (path === 'manifest.json') {
      await route.fulfill({ status: 200, contentType: 'application/json', body: manifest });
      return;
    }
    const response = await route.fetch({ url: `${url.origin}/models/salmonn-tiny/${path}` });
    await route.fulfill({ response });
  });
}

describe('reasoning bundle in the app: thoughts folded under the answer (issue 12)', () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    errors = collectConsoleErrors(context);
    await serveReasoningBundle(context);
    await context.addInitScript((source) => {
      if (location.protocol !== 'http:' && location.protocol !== 'https:') return;
      if (localStorage.getItem('hark-settings') === null) {
        localStorage.setItem('hark-settings', JSON.stringify({ state: { backend: 'auto', modelSource: source }, version: 1 }));
      }
    }, SOURCE);
    await chooseBackendInSettings(context, 'auto');
    page = await context.newPage();
    await page.goto(inject('devUrl'));
    expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
  });

  it('streams the thoughts apart, then shows them collapsed under the answer: the engine’s thoughts and answer; kept in history', async () => {
    const variant = (await page.getByTestId('model-status').getAttribute('data-variant')) ?? '';
    expect(['fp32', 'int4']).toContain(variant);

    // The setting exists for this bundle, with the manifest's default; set a small budget.
    const budget = page.getByTestId('setting-thinking-budget');
    expect(await budget.inputValue()).toBe(String(golden.reasoning.defaultThinkingBudget));
    expect(await page.getByLabel('Thinking budget').count()).toBe(1);
    await budget.fill(String(BUDGET));
    await budget.blur();
    const maxTokens = page.getByTestId('setting-max-new-tokens');
    await maxTokens.fill(String(MAX_NEW_TOKENS));
    await maxTokens.blur();

    await page.getByTestId('audio-file-input').setInputFiles(SPEECH_WAV);
    expect(await waitForState(page, 'audio-status', ['ready', 'error'])).toBe('ready');

    // Record every state of the thoughts and the answer as they stream.
    await page.evaluate(() => {
      const seen: { thoughts: string | null; answer: string; open: boolean }[] = [];
      (window as unknown as { reasoningSnapshots: typeof seen }).reasoningSnapshots = seen;
      new MutationObserver(() => {
        const answer = document.querySelector('[data-testid="answer-1"]');
        if (!answer) return;
        const details = document.querySelector<HTMLDetailsElement>('[data-testid="thoughts-1"]');
        seen.push({ thoughts: document.querySelector('[data-testid="thoughts-text-1"]')?.textContent ?? null, answer: answer.textContent ?? '', open: details?.open ?? false });
      }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    await page.getByTestId('question-input').fill(QUESTION);
    await page.getByTestId('question-input').press('Enter');
    expect(await waitForState(page, 'answer-1', ['done', 'error'], 120_000)).toBe('done');

    // What the engine answers to the same question with the same settings (Node, same variant).
    const engine = new HarkEngine({ store: new MemoryBundleStore() });
    let expected: AnswerResult;
    try {
      await engine.loadModel(reasoningBundleFiles(golden), { backend: 'wasm', variant });
      await engine.setAudio(new Uint8Array(readFileSync(SPEECH_WAV)));
      expected = await engine.ask(QUESTION, { thinkingBudget: BUDGET, maxNewTokens: MAX_NEW_TOKENS });
    } finally {
      await engine.unload();
    }
    expect(expected.forcedClose).toBe(true);
    expect(expected.thinkingTokens).toBe(BUDGET);

    const details = page.getByTestId('thoughts-1');
    expect(await page.getByTestId('answer-1').textContent()).toBe(expected.text);
    expect(await page.getByTestId('thoughts-text-1').textContent()).toBe(expected.thoughts);
    expect(await details.locator('summary').textContent()).toBe(`Thoughts · ${BUDGET} tokens · cut at the thinking budget`);
    // Collapsed, under the answer.
    expect(await details.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(false);
    expect(await page.getByTestId('thoughts-text-1').isVisible()).toBe(false);
    const order = await page.evaluate(() => {
      const answer = document.querySelector('[data-testid="answer-1"]')!;
      const thoughts = document.querySelector('[data-testid="thoughts-1"]')!;
      return answer.compareDocumentPosition(thoughts) & Node.DOCUMENT_POSITION_FOLLOWING;
    });
    expect(order).toBeTruthy();

    // While streaming, the thoughts were shown apart (open, the answer still empty) and each
    // channel only ever grew towards its final text.
    const snapshots = await page.evaluate(() => (window as unknown as { reasoningSnapshots: { thoughts: string | null; answer: string; open: boolean }[] }).reasoningSnapshots);
    expect(snapshots.some((s) => s.thoughts !== null && s.thoughts.length > 0 && s.answer === '' && s.open)).toBe(true);
    for (const s of snapshots) {
      if (s.thoughts !== null && s.thoughts !== '(no thoughts)') expect(expected.thoughts!.startsWith(s.thoughts)).toBe(true);
      expect(expected.text.startsWith(s.answer)).toBe(true);
    }

    // Keyboard: the summary takes focus and Enter opens the thoughts; it is exposed as a group that can expand.
    await details.locator('summary').focus();
    await page.keyboard.press('Enter');
    expect(await details.evaluate((d) => (d as HTMLDetailsElement).open)).toBe(true);
    expect(await page.getByTestId('thoughts-text-1').isVisible()).toBe(true);
    expect(await page.getByTestId('answer-settings').textContent()).toContain(`thinking budget ${BUDGET} tokens`);
    await page.screenshot({ path: join(SCREENSHOTS, 'reasoning-thoughts-1280.png'), fullPage: true });

    // A reload brings the conversation back from local history, thoughts included (collapsed).
    await page.reload();
    expect(await waitForState(page, 'model-status', ['ready', 'error'])).toBe('ready');
    await page.getByTestId('thoughts-1').waitFor({ state: 'attached', timeout: 60_000 });
    expect(await page.getByTestId('thoughts-text-1').textContent()).toBe(expected.thoughts);
    expect(await page.getByTestId('answer-1').textContent()).toBe(expected.text);
    expect(await page.getByTestId('thoughts-1').evaluate((d) => (d as HTMLDetailsElement).open)).toBe(false);
    expect(errors).toEqual([]);
  });
});
