import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import react from '@vitejs/plugin-react';
import { defineConfig, type Plugin } from 'vite';
import { ORT_WEBGPU_WASM_FILES } from './src/engine/ortAssets';
import { serveBundles } from './vite/serveBundles';

const require = createRequire(import.meta.url);
const ortDist = dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm'));

/**
 * Cross-origin isolation (COOP + COEP) unlocks SharedArrayBuffer, which onnxruntime-web needs for
 * multi-threaded wasm. Sent by both the dev and the preview server; static hosts need the same two
 * headers for threads (without them the app still works, single-threaded on the CPU path).
 */
const isolationHeaders = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * Serves onnxruntime-web's wasm binary and its loader from our own origin under `ort/` (dev) and
 * writes them into the build, so nothing is ever fetched from a CDN and the app works offline.
 * ORT's WebGPU build would otherwise derive their URL from its own location inside node_modules.
 */
function ortWasmAssets(): Plugin {
  let base = '/';
  return {
    name: 'hark-ort-wasm-assets',
    configResolved(config) {
      base = config.base;
    },
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        const url = (req.url ?? '').split('?')[0] ?? '';
        const file = ORT_WEBGPU_WASM_FILES.find((name) => url === `${base}ort/${name}`);
        if (!file) return next();
        res.setHeader('Content-Type', file.endsWith('.wasm') ? 'application/wasm' : 'text/javascript');
        res.setHeader('Cache-Control', 'no-cache');
        for (const [key, value] of Object.entries(isolationHeaders)) res.setHeader(key, value);
        res.end(readFileSync(join(ortDist, file)));
      });
    },
    generateBundle() {
      for (const file of ORT_WEBGPU_WASM_FILES) {
        this.emitFile({ type: 'asset', fileName: `ort/${file}`, source: readFileSync(join(ortDist, file)) });
      }
    },
  };
}

export default defineConfig({
  plugins: [react(), ortWasmAssets(), serveBundles()],
  resolve: {
    // The engine imports plain 'onnxruntime-web' so Node gets ORT's Node build; in the browser we
    // want the WebGPU build (native WebGPU EP + wasm CPU fallback in one binary).
    // transformers.js imports 'onnxruntime-web/webgpu': alias it to the same file so one ORT
    // instance (and our self-hosted wasm paths) serves both.
    alias: [{ find: /^onnxruntime-web(\/webgpu)?$/, replacement: join(ortDist, 'ort.webgpu.min.mjs') }],
  },
  worker: { format: 'es' },
  // Crawl the worker and the test harness pages up front: a dependency discovered late (e.g.
  // transformers.js first imported by the worker) makes the dev server re-optimise and reload.
  optimizeDeps: { entries: ['index.html', 'workers/*.ts', 'test/browser/harness/*.html'] },
  server: { headers: isolationHeaders },
  preview: { headers: isolationHeaders },
  build: { target: 'es2022', chunkSizeWarningLimit: 2048 },
});
