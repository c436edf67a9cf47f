/**
 * Hark's service worker (built by vite-plugin-pwa, `injectManifest`; production builds only).
 *
 * - Precaches the app shell: HTML, JS, CSS, icons, the web manifest, the sample clips and
 *   onnxruntime-web's wasm + loader under `ort/` (the wasm is ~27 MB; see vite.config.ts for the
 *   size limit), so the app starts with the network off after one online visit.
 * - Never touches model files: `models/**` is not precached and no route matches it, so the
 *   engine's own fetches (`cache: 'no-store'`, stored in OPFS by the bundle store) go straight to
 *   the network and the bytes are kept exactly once.
 * - Navigations fall back to the precached `index.html` (except under `models/`).
 * - Every response it serves carries COOP `same-origin` + COEP `require-corp` and the build's
 *   Content-Security-Policy (src/csp.ts). Cache Storage keeps
 *   the headers the server sent when precaching, but adding them here keeps the page (and the
 *   engine worker) cross-origin isolated — needed for wasm threads — even where the static host
 *   sends no such headers: after the first visit the service worker supplies them.
 * - Updates wait until the page asks (`SKIP_WAITING` message, sent by
 *   src/pwa/registerServiceWorker.ts `applyUpdate()`), so an answer being generated is never cut
 *   off by an automatic reload. The first install claims open pages at once.
 *
 * It makes no request of its own except precaching same-origin files listed at build time.
 */
import { clientsClaim, type WorkboxPlugin } from 'workbox-core';
import { addPlugins, cleanupOutdatedCaches, createHandlerBoundToURL, precacheAndRoute, type PrecacheEntry } from 'workbox-precaching';
import { NavigationRoute, registerRoute } from 'workbox-routing';
import { contentSecurityPolicy, policyModelHosts } from './csp';

/** The few service-worker globals used here (the project's lib is DOM, not WebWorker). */
interface HarkServiceWorkerScope {
  __WB_MANIFEST: Array<PrecacheEntry | string>;
  registration: { scope: string };
  skipWaiting(): Promise<void>;
  addEventListener(type: 'message', listener: (event: MessageEvent<unknown>) => void): void;
}
declare const self: HarkServiceWorkerScope;

const ISOLATION_HEADERS: Record<string, string> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  // The build's Content-Security-Policy (src/csp.ts): with it on the engine worker's script, the
  // worker's downloads are held to the same connect-src as the page, on any static host.
  'Content-Security-Policy': contentSecurityPolicy(policyModelHosts() ?? [], { header: true }),
};

/** Returns the response with COOP/COEP set (a copy when any header is missing). */
function withIsolationHeaders(response: Response): Response {
  if (response.type === 'opaque' || response.type === 'opaqueredirect' || response.type === 'error') return response;
  const missing = Object.entries(ISOLATION_HEADERS).filter(([name, value]) => response.headers.get(name) !== value);
  if (missing.length === 0) return response;
  const headers = new Headers(response.headers);
  for (const [name, value] of missing) headers.set(name, value);
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

const isolation: WorkboxPlugin = {
  handlerWillRespond: async ({ response }) => withIsolationHeaders(response),
};

addPlugins([isolation]);
precacheAndRoute(self.__WB_MANIFEST);
cleanupOutdatedCaches();

const scopePath = new URL(self.registration.scope).pathname;
registerRoute(
  new NavigationRoute(createHandlerBoundToURL('index.html'), {
    // Model files (and anything else under models/) are never answered by the service worker.
    denylist: [new RegExp(`^${scopePath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}models/`)],
  }),
);

self.addEventListener('message', (event) => {
  if ((event.data as { type?: unknown } | null)?.type === 'SKIP_WAITING') void self.skipWaiting();
});

clientsClaim();
