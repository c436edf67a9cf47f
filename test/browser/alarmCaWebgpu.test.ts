/**
 * The tiny fused ALARM-CA bundle (four encoders: Whisper, w2v-BERT 2.0, SSLAM and MuQ; an adapter
 * each; the cross-attention connector; Qwen3) in Chromium on WebGPU (SwiftShader here), through
 * the real worker, against the PyTorch reference's goldens (models/make_alarm_ca_goldens.py): every
 * adapter's output, the connector's and the audio embeddings within 1e-4 (MuQ's adapter 2e-3, as in
 * Node: its encoder is sensitive to the last ulp of the resampled waveform), the first-step logits
 * within 1e-3 and the greedy thought tokens. Node (test/engine/alarmCaTiny.test.ts) checks every
 * feature and per-piece encoder output, int4, the 35 s clip and the forced-close run; here one
 * page, one load, fp32, the speech clip and a short ask keep the SwiftShader cost down — still
 * ~330 s on this 2-core machine (setAudio ~276 s, most of it waiting for SwiftShader to finish the
 * encoders: MuQ's 30 s window at 24 kHz through a DFT-basis matmul and its conformer, Whisper's 3000
 * frames), too long for `npm test`'s budget: it runs with `npm run test:alarm-ca-webgpu`
 * (HARK_ALARM_CA_WEBGPU=1) and is skipped otherwise.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { collectConsoleErrors, launchChromium } from './chromium';

const THOUGHT_TOKENS = 2;

describe.skipIf(process.env.HARK_ALARM_CA_WEBGPU !== '1')('the tiny ALARM-CA bundle in Chromium on WebGPU vs the PyTorch reference', () => {
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

  it('fp32, speech: every adapter, the connector and the audio embeddings; first-step logits; greedy thought tokens', { timeout: 400_000 }, async () => {
    const started = Date.now();
    const info = await page.evaluate(() => window.harkEngineHarness.client.loadModel('/models/alarm-ca-tiny/', { backend: 'webgpu', variant: 'fp32' }));
    const loadMs = Date.now() - started;
    expect(info.backend).toBe('webgpu');
    expect(info.capabilities).toMatchObject({ hasLora: false, fusion: 'cross-attention', llm: 'qwen3' });

    const report = await page.evaluate((n) => window.harkEngineHarness.alarmCaParity('speech', 'fp32', n), THOUGHT_TOKENS);
    console.log(
      `ALARM-CA fp32 on WebGPU: load ${loadMs} ms; setAudio ${report.ms.setAudio.toFixed(0)} ms ` +
        `(graph runs ${JSON.stringify(Object.fromEntries(Object.entries(report.ms.graphsMs).map(([k, v]) => [k, Math.round(v)])))}); ask ${report.ms.ask.toFixed(0)} ms; ` +
        `errors ${JSON.stringify(report.stageErrors)}, logits ${report.logitError.toExponential(1)}`,
    );
    expect(report.numTokens).toBe(report.expectedNumTokens);
    expect(Object.keys(report.stageErrors).sort()).toEqual(['-1:adapter.muq', '-1:adapter.sslam', '-1:adapter.w2vbert', '-1:adapter.whisper', '-1:connector', '-1:tokens']);
    for (const [stage, error] of Object.entries(report.stageErrors)) expect(error, stage).toBeLessThan(stage === '-1:adapter.muq' ? 2e-3 : 1e-4);
    expect(report.logitError).toBeLessThan(1e-3);
    expect(report.thoughtIds).toEqual(report.expectedThoughtIds);
    expect(errors).toEqual([]);
  });
});
