/**
 * Switching models in one engine worker on WebGPU (SwiftShader here). onnxruntime destroys its
 * WebGPU device when the engine releases the last session of the old model and creates a new one
 * for the next; the worker used to take that for a lost GPU, so every model switch on WebGPU
 * restarted the engine ("The GPU stopped working … Device was destroyed"). Here SALMONN (format 1)
 * → ALARM (format 2) → SALMONN load in one worker with no restart; each load runs the decoder's
 * attention self-check (llm/attentionCheck.ts) on the new device. ALARM's answers on WebGPU are
 * checked against its goldens in alarmWebgpu.test.ts (one load, one short reasoning run: an ALARM
 * answer costs minutes on SwiftShader), and in Node by test/engine/alarmTiny.test.ts.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { collectConsoleErrors, launchChromium } from './chromium';

describe('switching models in one worker on WebGPU', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('loads SALMONN, ALARM and SALMONN again without an engine restart (each load runs the attention self-check on the new device)', { timeout: 300_000 }, async () => {
    const context = await browser.newContext();
    const errors = collectConsoleErrors(context);
    const page = await context.newPage();
    await page.goto(new URL('/test/browser/harness/engine.html', inject('devUrl')).href);
    await page.waitForFunction(() => window.harkEngineHarness?.ready === true);
    const result = await page.evaluate(async () => {
      const { client } = window.harkEngineHarness;
      const restarts: string[] = [];
      client.onRestart((event) => restarts.push(`${event.reason}: ${event.message}`));
      const loads: { name: string; backend: string; variant: string }[] = [];
      const load = async (source: string) => {
        const info = await client.loadModel(source, { backend: 'webgpu', variant: 'int4' });
        loads.push({ name: info.name, backend: info.backend, variant: info.variant });
        return info;
      };
      await load('/models/salmonn-tiny/');
      const alarm = await load('/models/alarm-tiny/');
      await load('/models/salmonn-tiny/');
      return {
        restarts,
        loads,
        alarmReasoning: alarm.reasoning !== null,
        alarmHasLora: alarm.capabilities.hasLora,
      };
    });
    console.log(`model switch on WebGPU: ${result.loads.map((l) => `${l.name} (${l.variant}, ${l.backend})`).join(' → ')}; restarts ${result.restarts.length}`);
    expect(result.restarts).toEqual([]);
    expect(result.loads.map((l) => l.name)).toEqual(['salmonn-tiny', 'alarm-tiny', 'salmonn-tiny']);
    expect(result.loads.every((l) => l.backend === 'webgpu')).toBe(true);
    expect(result.alarmReasoning).toBe(true);
    expect(result.alarmHasLora).toBe(false);
    expect(errors).toEqual([]);
    await context.close();
  });
});
