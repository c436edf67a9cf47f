/**
 * The chromium-webgpu backend: one decoder job (ours + transformers.js, measure.ts) inside headless
 * Debian Chromium with WebGPU on (test/browser/chromium.ts: the browser tests' launcher and flags;
 * on a machine without a GPU the adapter is SwiftShader, software).
 *
 * A Vite dev server (the app's vite.config.ts: same ORT alias and self-hosted ORT wasm, so the
 * page bundles the engine exactly as the app does) serves scripts/bench/page/bench.html, plus a
 * `/bench-fs/<absolute path>` route for the model files, limited to the bench cache and models/.
 * The page's progress lines are saved through `progress`, so a job stopped at its time limit still
 * reports what it measured.
 */
import { createReadStream, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { createServer, type Plugin } from 'vite';
import { launchChromium } from '../../test/browser/chromium';
import type { FloorRow } from './floor';
import type { PageResult } from './page/benchPage';
import type { JobResult, JobSpec } from './types';

const PROGRESS_PREFIX = '[hark-bench] '; // = page/benchPage.ts's (not imported: that module runs only in the page)

/** Serves files under `roots` at /bench-fs/<absolute path> (read-only, no directory listings). */
function benchFiles(roots: string[]): Plugin {
  const allowed = roots.map((root) => resolve(root) + sep);
  const serve = (req: IncomingMessage, res: ServerResponse, next: () => void) => {
    const url = decodeURIComponent((req.url ?? '').split('?')[0] ?? '');
    if (!url.startsWith('/bench-fs/')) return next();
    const path = resolve(url.slice('/bench-fs'.length));
    let size: number;
    try {
      if (!allowed.some((root) => path.startsWith(root))) throw new Error('outside the bench roots');
      const stat = statSync(path);
      if (!stat.isFile()) throw new Error('not a file');
      size = stat.size;
    } catch {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.setHeader('Content-Type', path.endsWith('.json') ? 'application/json' : 'application/octet-stream');
    res.setHeader('Content-Length', String(size));
    res.setHeader('Cache-Control', 'no-store');
    createReadStream(path).pipe(res);
  };
  return { name: 'hark-bench-files', configureServer: (server) => void server.middlewares.use(serve) };
}

export async function startBenchServer(repoRoot: string, modelDir: string): Promise<{ url: string; close(): Promise<void> }> {
  process.env.VITE_CONFIG_NATIVE_IGNORE_WARNING ??= 'true'; // its advice about vite.config.ts is not the bench's business
  const server = await createServer({
    root: repoRoot,
    configFile: join(repoRoot, 'vite.config.ts'),
    logLevel: 'warn',
    cacheDir: join(tmpdir(), `hark-vite-bench-${process.pid}`),
    // No HMR and no watching: the page must never reload while it measures.
    server: { host: '127.0.0.1', port: 0, strictPort: false, hmr: false, watch: null },
    plugins: [benchFiles([modelDir, join(repoRoot, 'models')])],
    // Crawl the page up front so no late dependency discovery re-optimises and reloads it.
    optimizeDeps: { entries: ['scripts/bench/page/bench.html'] },
  });
  await server.listen();
  const url = server.resolvedUrls?.local[0];
  if (!url) throw new Error('the Vite dev server did not report a local URL');
  return { url, close: () => server.close() };
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').slice(0, 300);
}

/** The floor tables (floor.ts) measured in headless Chromium's WebGPU, for `bench:breakdown -- --floor-only --chromium`. */
export async function floorInChromium(repoRoot: string): Promise<{ device: string; rows: FloorRow[] }> {
  const server = await startBenchServer(repoRoot, join(repoRoot, 'models'));
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(new URL('/scripts/bench/page/bench.html', server.url).href);
    await page.waitForFunction(() => window.harkBench?.ready === true, undefined, { timeout: 180_000 });
    const { device, rows } = await page.evaluate(() => window.harkBench.floor());
    // Page-side NaN (a failed row) arrives as null through the protocol.
    return { device: device.label, rows: rows.map((r) => ({ ...r, msEach: r.msEach ?? Number.NaN })) };
  } finally {
    await browser.close().catch(() => undefined);
    await server.close().catch(() => undefined);
  }
}

export async function measureInChromium(spec: JobSpec, result: JobResult, progress: (phase: string) => void): Promise<void> {
  const { resultPath: _unused, ...pageSpec } = spec;
  const server = await startBenchServer(spec.repoRoot, spec.modelDir);
  const browser = await launchChromium();
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= (async () => {
    await browser.close().catch(() => undefined);
    await server.close().catch(() => undefined);
  })());
  // scripts/bench.ts ends a job at its time limit with SIGTERM first: close Chromium, then exit.
  process.once('SIGTERM', () => void stop().then(() => process.exit(143)));
  const merge = (page: Partial<PageResult>) => {
    if (page.device) result.device = page.device;
    if (page.ortThreads !== undefined) result.ortThreads = page.ortThreads;
    result.loadMs = page.loadMs ?? result.loadMs;
    result.runs = page.runs ?? result.runs;
    result.warmupIds = page.warmupIds ?? result.warmupIds;
    result.warmupMs = page.warmupMs ?? result.warmupMs;
    result.peer = page.peer ?? result.peer;
    if (page.error) result.error = page.error;
  };
  try {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    page.on('console', (message) => {
      const text = message.text();
      if (text.startsWith(PROGRESS_PREFIX)) {
        const { phase, measured } = JSON.parse(text.slice(PROGRESS_PREFIX.length)) as { phase: string; measured: PageResult };
        merge(measured);
        progress(phase);
      } else if (text.startsWith('  ')) {
        process.stderr.write(`${text} (chromium)\n`);
      }
    });
    await page.goto(new URL('/scripts/bench/page/bench.html', server.url).href);
    await page.waitForFunction(() => window.harkBench?.ready === true, undefined, { timeout: 180_000 });
    progress('page ready');
    merge(await page.evaluate((s) => window.harkBench.run(s), pageSpec));
    if (pageErrors.length && !result.error) result.error = `page error: ${pageErrors[0]}`;
  } catch (error) {
    result.error = errorText(error);
  } finally {
    await stop();
  }
}
