/**
 * The decoder's fixed-capacity, in-place KV cache on real WebGPU (SwiftShader here): fed the same
 * prompt and tokens, it must give the growing cache's logits at every step, also across the growths
 * that copy its rows into larger buffers on the GPU (sized in 8-position steps here, after a
 * 4-token prompt, so that 14 decode steps grow it twice: 8 → 16 → 32 positions).
 *
 * Each decode step costs ~170 ms per path on SwiftShader (the 32000-row head), so the steps are
 * what this file's time is: 40 steps after a 20-token prompt grew the cache just as often, and
 * the file took 25 s longer here (91.5 s → 66.7 s alone, 2026-11-29).
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { collectConsoleErrors, launchChromium } from './chromium';

/** The ORT harness page in a fresh context, and the tiny bundle's URL. */
async function openOrtHarness(browser: Browser) {
  const context = await browser.newContext();
  const errors = collectConsoleErrors(context);
  const page = await context.newPage();
  await page.goto(new URL('/test/browser/harness/ort.html', inject('devUrl')).href);
  await page.waitForFunction(() => window.harkHarness?.ready === true);
  return { context, errors, page, bundleUrl: new URL('/models/salmonn-tiny/', inject('devUrl')).href };
}

/** "USER:" — a prompt that fills half of the first 8-position capacity. */
const PROMPT = [1, 3148, 1001, 29901];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

describe('fixed-capacity KV cache on WebGPU', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('matches the growing cache step for step, across growths', { timeout: 300_000 }, async () => {
    const { context, errors, page, bundleUrl } = await openOrtHarness(browser);
    // 4 prompt positions, then 14 greedy steps.
    const result = await page.evaluate(([url, ids]) => window.harkHarness.compareKvLayouts(url, ids, 14), [bundleUrl, PROMPT] as const);
    console.log(`fixed vs growing KV on WebGPU: max |Δlogit| ${result.maxLogitDifference.toExponential(2)}, capacities ${result.capacities.join(' → ')}; ms/step fixed ${median(result.ms.fixedSteps).toFixed(1)}, growing ${median(result.ms.growingSteps).toFixed(1)} (SwiftShader: no performance claim)`);
    expect(result.capacities[0]).toBe(8); // 4 + 0 headroom, rounded up to the 8-position step
    expect(result.capacities).toEqual([8, 16, 32]); // 4 + 14 positions: grown twice, by doubling
    expect(result.maxLogitDifference).toBeLessThan(1e-4);
    expect(result.greedyIdsEqual).toBe(true);
    expect(errors).toEqual([]);
    await context.close();
  });

  it('graph-captured decode steps match ordinary ones step for step, across growths, with scoring in between, and in the next conversation', { timeout: 300_000 }, async () => {
    // 16 steps: the last session (from step 12) has its 3 checked runs, then replays.
    const { context, errors, page, bundleUrl } = await openOrtHarness(browser);
    const result = await page.evaluate(([url, ids]) => window.harkHarness.compareCapturedSteps(url, ids, 16), [bundleUrl, PROMPT] as const);
    console.log(
      `captured vs ordinary steps on WebGPU: max |Δlogit| ${result.maxLogitDifference.toExponential(2)}, scoring ${result.maxScoreDifference.toExponential(2)}; ` +
        `capacities ${result.capacities.join(' → ')}, ${result.stepSessions} step sessions (then ${JSON.stringify(result.secondConversation)}); bind groups per step ${result.bindGroupsPerStep.ordinary} → ${result.bindGroupsPerStep.captured}`,
    );
    // The same kernels on the same numbers: captured steps are bit-identical to ordinary ones.
    expect(result.maxLogitDifference).toBe(0);
    expect(result.maxScoreDifference).toBe(0);
    expect(result.greedyIdsEqual).toBe(true);
    expect(result.capturedSteps).toBe(16 + 5); // and 5 in the second conversation
    expect(result.capacities).toEqual([8, 16, 32]);
    expect(result.stepSessions).toBe(3); // captured afresh after each growth
    // The next conversation takes the last one's buffers (32 positions) and its captured session.
    expect(result.secondConversation).toEqual({ capacity: 32, newSessions: 0 });
    // The embedding graph runs inside the captured step: one run per token, and a replay creates
    // no bind groups.
    expect(result.stepInput).toBe('input_ids');
    expect(result.runsPerCapturedStep).toBe(1);
    expect(result.bindGroupsPerStep.captured).toBe(0);
    // Each session's first 3 runs were checked against ordinary runs, and agreed.
    expect(result.checkedRuns).toBe(3 * result.stepSessions);
    // Every run but a session's first went to its binding without feeds (its first replay among
    // the checked runs above).
    expect(result.boundRuns).toBe(result.capturedSteps - result.stepSessions);
    expect(result.captureFailure).toBeNull();
    expect(errors).toEqual([]);
    await context.close();
  });

  it('graph-captured steps fed embedding rows (a bundle whose embedding graph cannot join the step) match ordinary ones too', { timeout: 300_000 }, async () => {
    const { context, errors, page, bundleUrl } = await openOrtHarness(browser);
    const result = await page.evaluate(([url, ids]) => window.harkHarness.compareCapturedSteps(url, ids, 8, { withEmbedding: false }), [bundleUrl, PROMPT] as const);
    console.log(`captured steps fed rows vs ordinary on WebGPU: max |Δlogit| ${result.maxLogitDifference.toExponential(2)}, capacities ${result.capacities.join(' → ')}; bind groups per step ${result.bindGroupsPerStep.ordinary} → ${result.bindGroupsPerStep.captured}`);
    expect(result.stepInput).toBe('inputs_embeds');
    expect(result.runsPerCapturedStep).toBe(2); // the embedding run, then the captured step
    expect(result.maxLogitDifference).toBe(0);
    expect(result.maxScoreDifference).toBe(0);
    expect(result.greedyIdsEqual).toBe(true);
    expect(result.capturedSteps).toBe(8 + 5);
    expect(result.capacities).toEqual([8, 16]);
    expect(result.boundRuns).toBe(8 + 5 - 2); // two sessions, each fed at its first run
    expect(result.captureFailure).toBeNull();
    expect(errors).toEqual([]);
    await context.close();
  });

  it("a replay that returns stale logits is caught at the session's first runs: captured steps stop, every token stays the ordinary run's", { timeout: 300_000 }, async () => {
    const { context, errors, page } = await openOrtHarness(browser);
    // The tiny ALARM decoder with its tied head's last node hidden from the rewrite: its logits stay
    // written by a Reshape, whose copy ORT leaves out of the capture (what the rewrite avoids).
    const url = new URL('/models/alarm-tiny/', inject('devUrl')).href;
    const prompt = [151644, 872, 198, 3838, 374, 419, 30, 151645, 198, 151644, 77091, 198];
    const result = await page.evaluate(
      ([u, ids]) => window.harkHarness.compareCapturedSteps(u, ids, 4, { labels: [16, 17, 18], staleLogits: true, secondConversation: false }),
      [url, prompt] as const,
    );
    console.log(`stale replay: ${result.captureFailure}; ${result.checkedRuns} runs checked, ${result.capturedSteps} captured steps, max |Δlogit| ${result.maxLogitDifference}`);
    expect(result.captureFailure).toMatch(/^a replayed decode step differed from an ordinary run of the same token \(logits off by \d\.\de[+-]\d+\)$/);
    expect(result.checkedRuns).toBe(2); // the regular run agreed, the capturing run did not
    expect(result.capturedSteps).toBe(2);
    expect(result.maxLogitDifference).toBe(0);
    expect(result.greedyIdsEqual).toBe(true);
    expect(errors).toEqual([]);
    await context.close();
  });
});
