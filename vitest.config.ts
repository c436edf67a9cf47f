import { defineConfig } from 'vitest/config';

/**
 * Three layers, each runnable alone (`npm run test:unit|test:engine|test:browser`):
 * - unit: pure TypeScript in Node;
 * - engine: real onnxruntime-web (wasm backend) in Node;
 * - browser: Debian's Chromium driven by playwright-core with real WebGPU.
 * No alias here: in Node, 'onnxruntime-web' must resolve to ORT's Node build.
 */
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], environment: 'node' } },
      { test: { name: 'engine', include: ['test/engine/**/*.test.ts'], environment: 'node', testTimeout: 60_000, hookTimeout: 120_000 } },
      {
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/browser/globalSetup.ts'],
          testTimeout: 180_000,
          hookTimeout: 300_000,
          // One Chromium at a time: the software WebGPU adapter is CPU-heavy on 2 cores.
          fileParallelism: false,
        },
      },
    ],
  },
});
