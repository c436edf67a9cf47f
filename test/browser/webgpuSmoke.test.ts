import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Backend } from '../../src/engine/device';
import { maxAbsDiff, SMOKE_IN, SMOKE_OUT, SMOKE_ROWS, smokeCase } from '../helpers/smokeGraph';
import { collectConsoleErrors, launchChromium } from './chromium';
import type { HarnessResult } from './harness/ortHarness';

async function openHarness(browser: Browser): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext();
  const errors = collectConsoleErrors(context);
  const page = await context.newPage();
  await page.goto(new URL('/test/browser/harness/ort.html', inject('devUrl')).href);
  await page.waitForFunction(() => window.harkHarness?.ready === true);
  return { page, errors };
}

function runInPage(page: Page, backend: Backend): Promise<HarnessResult> {
  const { model, input } = smokeCase();
  return page.evaluate(
    ([modelBase64, x, dims, ep]) => window.harkHarness.runGraph(modelBase64, x, dims, ep),
    [Buffer.from(model).toString('base64'), Array.from(input), [SMOKE_ROWS, SMOKE_IN], backend] as const,
  );
}

describe('onnxruntime-web smoke test in Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('runs on the webgpu EP with a GPU-resident output and matches the float64 reference', async () => {
    const { page, errors } = await openHarness(browser);
    const result = await runInPage(page, 'webgpu');
    expect(result.location).toBe('gpu-buffer');
    expect(result.dims).toEqual([SMOKE_ROWS, SMOKE_OUT]);
    expect(maxAbsDiff(result.data, smokeCase().expected)).toBeLessThan(1e-5);
    expect(errors).toEqual([]);
  });

  it('runs on the wasm EP and matches the float64 reference', async () => {
    const { page, errors } = await openHarness(browser);
    const result = await runInPage(page, 'wasm');
    expect(result.location).toBe('cpu');
    expect(maxAbsDiff(result.data, smokeCase().expected)).toBeLessThan(1e-6);
    expect(errors).toEqual([]);
  });

  it('replays a graph-captured session on ORT-owned buffers: each run follows its new input, replays create no bind groups', async () => {
    const { page, errors } = await openHarness(browser);
    const report = await page.evaluate(() => window.harkHarness.capturedReplay(5));
    console.info(`[webgpuSmoke] captured replay: bind groups per run ${report.bindGroups.join(', ')}`);
    expect(report.outputs).toEqual(report.expected); // exact: sums and doublings of small binary fractions
    expect(report.bindGroups[0]).toBeGreaterThan(0); // the regular run before capture builds its bind groups
    expect(report.bindGroups.slice(2)).toEqual([0, 0, 0]); // replays bind nothing anew
    expect(errors).toEqual([]);
  });

  it('fails loudly, never silently on the CPU, when the browser has no WebGPU', async () => {
    const noGpu = await launchChromium({ webgpu: false });
    try {
      const { page } = await openHarness(noGpu);
      await expect(runInPage(page, 'webgpu')).rejects.toThrow(/webgpu/i);
    } finally {
      await noGpu.close();
    }
  });
});
