/**
 * Starts the servers every browser test shares: the Vite dev server (app + test harness pages) and
 * a production build served by `vite preview` — the same as `npm run build && npm run preview`.
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { CHROMIUM_PATH } from './chromium';
import { buildAndPreview, startDevServer } from './servers';

declare module 'vitest' {
  export interface ProvidedContext {
    devUrl: string;
    previewUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`Browser tests need Chromium at ${CHROMIUM_PATH}: run 'npm run test:browser' (installs it as root) or 'apt-get install -y chromium'.`);
  }
  // Build first: the build runs with NODE_ENV=production, which must not leak into the dev server.
  const prod = await buildAndPreview(join(tmpdir(), `hark-dist-${process.pid}`));
  const dev = await startDevServer();
  project.provide('devUrl', dev.url);
  project.provide('previewUrl', prod.url);
  return async () => {
    await prod.close();
    await dev.close();
  };
}
