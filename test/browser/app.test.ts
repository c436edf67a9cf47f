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
    it(`reports WebGPU and the wasm fallback from the worker (${server === 'devUrl' ? 'npm start' : 'npm run build + preview'})`, { timeout: 240_000 }, async () => {
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
      expect(await page.getByTestId('recommended-backend').textContent()).toBe('WebGPU');
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
