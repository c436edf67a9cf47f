/** Dev and preview servers for browser tests, on free localhost ports. */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, createServer, preview, type PreviewServer, type ViteDevServer } from 'vite';

const root = new URL('../..', import.meta.url).pathname;

export async function startDevServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server: ViteDevServer = await createServer({
    root,
    configFile: `${root}vite.config.ts`,
    logLevel: 'warn',
    // Its own dependency cache: the production build in the same run (NODE_ENV=production) would
    // otherwise invalidate the shared node_modules/.vite and, with HMR off, strand the page.
    cacheDir: join(tmpdir(), `hark-vite-dev-${process.pid}`),
    // No HMR and no file watching: a test page must never reload because a file changed.
    server: { host: '127.0.0.1', port: 0, strictPort: false, hmr: false, watch: null },
  });
  await server.listen();
  const url = server.resolvedUrls?.local[0];
  if (!url) throw new Error('the Vite dev server did not report a local URL');
  return { url, close: () => server.close() };
}

export async function buildAndPreview(outDir: string): Promise<{ url: string; close(): Promise<void> }> {
  // Vitest sets NODE_ENV=test, which would make Vite build a development bundle
  // (import.meta.env.DEV true): build exactly what `npm run build` ships instead.
  const nodeEnv = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await build({ root, configFile: `${root}vite.config.ts`, mode: 'production', logLevel: 'warn', build: { outDir, emptyOutDir: true } });
  } finally {
    process.env.NODE_ENV = nodeEnv;
  }
  const server: PreviewServer = await preview({
    root,
    configFile: `${root}vite.config.ts`,
    logLevel: 'warn',
    build: { outDir },
    preview: { host: '127.0.0.1', port: 0, strictPort: false },
  });
  const url = server.resolvedUrls?.local[0];
  if (!url) throw new Error('the Vite preview server did not report a local URL');
  return { url, close: () => server.close() };
}
