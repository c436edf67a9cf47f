/**
 * The tiny ALARM bundle (format 2: Whisper-v3 features → encoder → conv-downsampler adapter → 25
 * embeddings per second between learnt boundaries → Qwen3 with a system text and a thinking budget)
 * in Chromium on WebGPU (SwiftShader here), through the real worker, against the ALARM PyTorch
 * reference's goldens (models/make_alarm_goldens.py), with the tolerances of the Node test
 * (test/engine/alarmTiny.test.ts): mel, encoder, adapter and audio embeddings within 1e-4; the
 * first-step logits within 1e-3; greedy tokens identical; the forced-close reasoning run identical.
 *
 * Cost on this 2-core machine decides the shape (measured, fp32 on SwiftShader): the Whisper encoder
 * always reads 3000 frames (a 30 s window, whatever the clip), ~20–25 s; the 176-token prompt is fed
 * in 6 chunks of ≤31 (SwiftShader's attention over 32+ new tokens is wrong, see attentionCheck.ts),
 * ~10 s; each decode step ~2 s (most of it the 151936-row lm_head). So one page, one load, the
 * goldens' shortest input (speech, one window), and ONE ask that covers the rest: its first step
 * gives the first-step logits, its first thought tokens are the greedy golden's, the budget (4) runs
 * out, the closing text is forced (one decoder run: generate.ts) and the golden's 8 answer tokens
 * follow; then one follow-up question, whose first-step logits and first token check the fixed KV
 * cache cut back to the first generation prompt (Qwen3's chat template: the first answer written
 * back without its thoughts; prompt.history). Node checks 16 greedy tokens and the whole follow-up
 * run. fp32 only: int4's lm_head kernel
 * (MatMulNBits) on SwiftShader made one int4 answer run past 15 minutes; Node checks int4 on wasm.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { collectConsoleErrors, launchChromium } from './chromium';

const ANSWER_TOKENS = 8;

describe('the tiny ALARM bundle in Chromium on WebGPU vs the ALARM PyTorch reference', () => {
  let browser: Browser;
  let page: Page;
  let errors: string[];
  beforeAll(async () => {
    browser = await launchChromium();
    const context = await browser.newContext();
    errors = collectConsoleErrors(context);
    page = await context.newPage();
    await page.goto(new URL('/test/browser/harness/engine.html', inject('devUrl')).href);
    await page.waitForFunction(() => window.harkEngineHarness?.ready === true);
  });
  afterAll(async () => {
    await browser?.close();
  });

  it(`fp32, speech: every audio stage within 1e-4, first-step logits within 1e-3, greedy thought tokens, the forced close and ${ANSWER_TOKENS} answer tokens identical; a follow-up's first-step logits and token`, { timeout: 300_000 }, async () => {
    const started = Date.now();
    const info = await page.evaluate(() => window.harkEngineHarness.client.loadModel('/models/alarm-tiny/', { backend: 'webgpu', variant: 'fp32' }));
    const loadMs = Date.now() - started;
    expect(info.backend).toBe('webgpu');
    expect(info.variant).toBe('fp32');
    expect(info.capabilities).toMatchObject({ hasLora: false, fusion: 'sum', llm: 'qwen3', localizes: false });
    expect(info.reasoning).not.toBeNull();
    // Qwen3's tied head reads the embedding table: its captured step needs no shape op on the CPU,
    // and the table is uploaded once for the embedding graph, the step and the head.
    expect(info.decode).toMatchObject({ captured: true, embeddingInStep: true });
    expect(info.decode.summary).toMatch(/token id in and logits out: .* \(the embedding table once for the embedding, the step and the tied head\)\.$/);

    const report = await page.evaluate((n) => window.harkEngineHarness.alarmParity('speech', 'fp32', n), ANSWER_TOKENS);
    const { ms } = report;
    console.log(
      `ALARM fp32 on WebGPU (${JSON.stringify(info.prefill.chunk)}-token prefill chunks): load ${loadMs} ms; setAudio ${ms.setAudio.toFixed(0)} ms ` +
        `(features ${ms.featuresMs.toFixed(0)}, graph runs ${JSON.stringify(Object.fromEntries(Object.entries(ms.graphsMs).map(([k, v]) => [k, Math.round(v)])))}, the rest waiting for the GPU's results); ` +
        `ask ${ms.ask.toFixed(0)} ms (prefill ${ms.prefill.toFixed(0)}, ${report.ids.length} tokens in ${report.decodeRuns} decoder runs ${ms.decode.toFixed(0)}); ` +
        `errors: ${JSON.stringify(report.stageErrors)}, logits ${report.logitError.toExponential(1)}`,
    );

    expect(report.chunks).toBe(report.expectedChunks);
    expect(report.numTokens).toBe(report.expectedNumTokens);
    expect(Object.keys(report.stageErrors).sort()).toEqual(['-1:adapter.whisper', '-1:tokens', '0:mel', '0:whisper']);
    for (const [stage, error] of Object.entries(report.stageErrors)) expect(error, stage).toBeLessThan(1e-4);
    expect(report.logitError).toBeLessThan(1e-3);

    const expected = report.expected;
    // The thought tokens before the budget ran out are the plain greedy golden run's first tokens.
    expect(report.ids.slice(0, expected.thinkingBudget)).toEqual(report.greedy.slice(0, expected.thinkingBudget));
    expect(report.ids).toEqual(expected.tokens.slice(0, expected.answerStart + ANSWER_TOKENS));
    expect(report.ids.slice(expected.thinkingBudget, expected.answerStart)).toEqual(expected.forcedCloseIds);
    expect(report.thinkingTokens).toBe(expected.thinkingTokens);
    expect(report.forcedClose).toBe(true);
    expect(report.thoughts).toBe(expected.thoughts);
    expect(expected.answer.startsWith(report.answer)).toBe(true);
    expect(report.answer.length).toBeGreaterThan(0);
    expect(report.forcedIndices).toEqual(expected.forcedCloseIds.map((_, i) => expected.thinkingBudget + i));
    expect(report.channels).toEqual(report.ids.map((_, i) => (i < expected.answerStart ? 'thought' : 'answer')));
    expect(report.streamedThoughts).toBe(report.thoughts);
    const counters = await page.evaluate(() => window.harkEngineHarness.client.counters());
    expect(counters.captureFailure).toBeNull();
    expect(counters.capturedSteps).toBeGreaterThan(0);
    expect(report.streamedAnswer).toBe(report.answer);
    // The forced closing text took one decoder run: budget steps, 1, then one per answer token but the last.
    expect(report.decodeRuns).toBe(expected.thinkingBudget + 1 + ANSWER_TOKENS - 1);
    // the follow-up, on the fixed KV cache cut back (KvCache.truncate) with the first answer written back
    expect(report.followUp, 'follow-up ran').not.toBeNull();
    console.log(`ALARM follow-up on WebGPU: ${report.followUp!.ms.toFixed(0)} ms, logits ${report.followUp!.logitError.toExponential(1)}`);
    expect(report.followUp!.logitError).toBeLessThan(1e-3);
    expect(report.followUp!.firstId).toBe(report.followUp!.expectedFirstId);
    expect(errors).toEqual([]);
  });
});
