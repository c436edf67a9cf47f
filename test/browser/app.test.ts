import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { collectConsoleErrors, launchChromium, recordRequests } from './chromium';

describe('the app shows what this device can run', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  for (const server of ['devUrl', 'previewUrl'] as const) {
    it(`reports WebGPU, the wasm fallback and Automatic's choice with its reason (wasm over a software adapter), and loads the model there (${server === 'devUrl' ? 'npm start' : 'npm run build + preview'})`, { timeout: 240_000 }, async () => {
      const context = await browser.newContext();
      const requests = recordRequests(context);
      const errors = collectConsoleErrors(context);
      const page = await context.newPage();
      await page.goto(inject(server));

      const webgpu = page.getByTestId('webgpu-report');
      // The worker also starts loading the bundled model at once; on a cold dev server with the
      // software GPU adapter the report can take a while to arrive.
      await webgpu.waitFor({ state: 'attached', timeout: 200_000 });
      expect(await webgpu.getAttribute('data-available')).toBe('true');
      // Automatic never picks a software WebGPU adapter (SwiftShader here) over WebAssembly, and
      // says why; on a machine with a real GPU it picks WebGPU.
      const software = (await page.getByTestId('software-adapter').textContent()) ?? '';
      const reason = (await page.getByTestId('recommendation-reason').textContent()) ?? '';
      if (software.startsWith('yes')) {
        expect(await page.getByTestId('recommended-backend').textContent()).toBe('WebAssembly (CPU)');
        expect(reason).toMatch(
          /^The only WebGPU adapter here is a software renderer( \(SwiftShader\))?, not a GPU \(.+\); it runs the model many times slower than WebAssembly on the same CPU, so Automatic chose WebAssembly \(CPU\)\. WebGPU can still be picked in Settings\.$/,
        );
      } else {
        expect(await page.getByTestId('recommended-backend').textContent()).toBe('WebGPU');
        expect(reason).toMatch(/so Automatic chose WebGPU\.$/);
      }
      // The bundled model, loaded with Automatic, runs there and the report says so and why.
      await page.waitForFunction(() => document.querySelector('[data-testid="model-status"]')?.getAttribute('data-state') === 'ready', null, {
        timeout: 120_000,
        polling: 100,
      });
      const runtime = page.getByTestId('model-runtime-backend');
      const prefill = page.getByTestId('prefill-check');
      if (software.startsWith('yes')) {
        expect(await runtime.getAttribute('data-backend')).toBe('wasm');
        expect(await runtime.textContent()).toBe(`WebAssembly (CPU). ${reason}`);
        expect(await prefill.getAttribute('data-check')).toBe('not-needed');
        expect(await page.getByTestId('device-backend-advice').count()).toBe(0);
      } else {
        expect(await runtime.getAttribute('data-backend')).toBe('webgpu');
        expect(['exact', 'inexact']).toContain(await prefill.getAttribute('data-check'));
      }
      // SwiftShader: no f16, 1 GiB buffers (see the brief); a real GPU would show its own values.
      expect(await page.getByTestId('shader-f16').textContent()).toMatch(/^(yes|no)$/);
      expect(await page.getByTestId('max-buffer-size').textContent()).toMatch(/(MiB|GiB)$/);
      // COOP/COEP from the server make the page cross-origin isolated, which wasm threads need.
      expect(await page.getByTestId('cross-origin-isolated').textContent()).toBe('yes');
      expect(await page.getByTestId('wasm-threads').textContent()).toMatch(/^yes \(\d+\)$/);
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);

      await page.close();
      await context.close();
      expect(errors).toEqual([]);
      expect(requests.urls.length).toBeGreaterThan(0);
      expect(requests.nonLocal()).toEqual([]);
    });
  }

  it('serves onnxruntime-web wasm files from its own origin in the production build', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(inject('previewUrl'));
    const status = await page.evaluate(async () => {
      const response = await fetch('/ort/ort-wasm-simd-threaded.asyncify.wasm', { method: 'HEAD' });
      return { ok: response.ok, type: response.headers.get('content-type') };
    });
    expect(status).toEqual({ ok: true, type: 'application/wasm' });
    await context.close();
  });
});
