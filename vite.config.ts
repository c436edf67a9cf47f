import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import react from '@vitejs/plugin-react';
import { defineConfig, type Plugin } from 'vite';
import { VitePWA } from 'vite-plugin-pwa';
import { contentSecurityPolicy, DEFAULT_MODEL_HOSTS, parseModelHosts } from './src/csp';
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
 * The production build's Content-Security-Policy (src/csp.ts): the hosts models may come from are
 * Hugging Face's plus `HARK_MODEL_HOSTS` (read when building).
 */
const MODEL_HOSTS = [...DEFAULT_MODEL_HOSTS, ...parseModelHosts(process.env.HARK_MODEL_HOSTS)];
const modelHostsDefine = { __HARK_MODEL_HOSTS__: JSON.stringify(MODEL_HOSTS) };

/**
 * Production builds only (the dev server's HMR needs inline script): writes the policy into
 * index.html as the first element of <head> (a meta policy covers only what follows it), and tells
 * the app which model hosts it allows. `vite preview` also sends it as a header (see `preview`).
 */
function contentSecurityPolicyMeta(): Plugin {
  return {
    name: 'hark-csp',
    apply: 'build',
    config: () => ({ define: modelHostsDefine }),
    transformIndexHtml: {
      order: 'post',
      handler: (html) => {
        const meta = `<meta http-equiv="Content-Security-Policy" content="${contentSecurityPolicy(MODEL_HOSTS).replace(/'/g, '&#39;')}" />`;
        const charset = /<meta charset="[^"]*" \/>/i;
        if (!charset.test(html)) throw new Error('index.html: the Content-Security-Policy goes after <meta charset>, which is missing');
        return html.replace(charset, (tag) => `${tag}\n    ${meta}`);
      },
    },
  };
}

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

/**
 * Installable, offline PWA (production builds only; the dev server has no service worker).
 * `src/sw.ts` is our own service worker (`injectManifest`): it precaches the app shell, the sample
 * clips and ORT's wasm, adds COOP/COEP to what it serves, and never caches `models/**` — model
 * files are stored once, in OPFS, by the engine's bundle cache. The page registers it through
 * `src/pwa/registerServiceWorker.ts` (`injectRegister: false`); the plugin adds the
 * `<link rel="manifest">` to index.html.
 */
function pwa(): Plugin[] {
  return VitePWA({
    strategies: 'injectManifest',
    srcDir: 'src',
    filename: 'sw.ts',
    injectRegister: false,
    // Only meaningful for the plugin's own register code; ours waits for the page to apply an update.
    registerType: 'prompt',
    manifest: {
      id: './',
      name: 'Hark — private audio assistant',
      short_name: 'Hark',
      description:
        'Ask questions about a recording. An audio language model runs on your own device, offline once installed; nothing is uploaded.',
      lang: 'en',
      dir: 'ltr',
      // Relative to the manifest, which sits at the base: works under any `base`.
      start_url: './',
      scope: './',
      display: 'standalone',
      orientation: 'any',
      theme_color: '#f6f7f9',
      background_color: '#f6f7f9',
      categories: ['productivity', 'utilities', 'music'],
      icons: [
        { src: 'icons/icon-192.png', sizes: '192x192', type: 'image/png', purpose: 'any' },
        { src: 'icons/icon-512.png', sizes: '512x512', type: 'image/png', purpose: 'any' },
        { src: 'icons/maskable-192.png', sizes: '192x192', type: 'image/png', purpose: 'maskable' },
        { src: 'icons/maskable-512.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
      ],
    },
    injectManifest: {
      // The plugin adds manifest.webmanifest itself.
      globPatterns: ['**/*.{html,js,mjs,css,svg,png,ico,json,wasm,wav}'],
      // Models are cached by the engine in OPFS, never by the service worker.
      globIgnores: ['models/**'],
      // ORT's wasm is ~27 MB; Workbox skips anything over 2 MiB unless told otherwise.
      maximumFileSizeToCacheInBytes: 64 * 1024 * 1024,
      // A classic script (registered without `type: 'module'`, which older browsers lack for workers).
      rollupFormat: 'iife',
      // Workbox's debug build is chosen by NODE_ENV, which test runners set to 'test': always ship
      // (and test) the production service worker.
      buildPlugins: {
        vite: [
          {
            name: 'hark-sw-production',
            config: () => ({ define: { 'process.env.NODE_ENV': JSON.stringify('production'), ...modelHostsDefine } }),
          },
        ],
      },
    },
    // The icons are matched by globPatterns already; listing them twice would only duplicate entries.
    includeManifestIcons: false,
    devOptions: { enabled: false },
  });
}

export default defineConfig({
  plugins: [react(), ortWasmAssets(), serveBundles(), pwa(), contentSecurityPolicyMeta()],
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
  // The built app's policy as a header too: a <meta> policy does not reach the engine worker.
  preview: { headers: { ...isolationHeaders, 'Content-Security-Policy': contentSecurityPolicy(MODEL_HOSTS, { header: true }) } },
  build: { target: 'es2022', chunkSizeWarningLimit: 2048 },
});
