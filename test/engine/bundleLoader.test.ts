/**
 * The bundle loader in Node against a real HTTP server (node:http on 127.0.0.1) serving the tiny
 * bundle with Range support, and a FsBundleStore in a temp directory: download, offline reload,
 * corruption, resume, tampering, bad manifests, abort, local files.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, openAsBlob, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { deleteBundle, listBundles, loadBundle, type ProgressInfo } from '../../src/engine/bundle/loader';
import { parseManifest, variantBytes, variantFiles, type Manifest } from '../../src/engine/bundle/manifest';
import { bundleKey, type BundleSource } from '../../src/engine/bundle/source';
import { FsBundleStore, MemoryBundleStore, PART_SUFFIX, storeDirName } from '../../src/engine/bundle/store';
import { HarkError } from '../../src/engine/errors';
import { sendFile } from '../../vite/serveBundles';

const BUNDLE_DIR = join(import.meta.dirname, '..', '..', 'models', 'bundles', 'salmonn-tiny');
const manifest: Manifest = parseManifest(JSON.parse(readFileSync(join(BUNDLE_DIR, 'manifest.json'), 'utf8')));
const INT4 = variantFiles(manifest, 'int4');
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

interface LoggedRequest {
  path: string;
  range: string | undefined;
  status: number;
}

interface TestServer {
  url: string;
  log: LoggedRequest[];
  /** Replacement bodies by bundle path (served as 200, no ranges). */
  overrides: Map<string, Uint8Array>;
  /** Answer range requests with the whole file (a server without Range support). */
  ignoreRanges: boolean;
  /** Send files in 16 KiB pieces this many ms apart. */
  slowMs: number;
  /** Cut the connection after this many body bytes of the given path. */
  breakAfter: { path: string; bytes: number } | null;
  close(): Promise<void>;
}

async function startServer(): Promise<TestServer> {
  const state: Omit<TestServer, 'url' | 'close'> = { log: [], overrides: new Map(), ignoreRanges: false, slowMs: 0, breakAfter: null };
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]!.replace(/^\//, ''));
    const entry: LoggedRequest = { path, range: req.headers.range, status: 0 };
    state.log.push(entry);
    res.on('finish', () => (entry.status = res.statusCode));
    res.on('close', () => (entry.status ||= res.statusCode));
    const override = state.overrides.get(path);
    const file = join(BUNDLE_DIR, path);
    if (!override && (path.includes('..') || !statSafe(file))) {
      res.statusCode = 404;
      res.end('not found');
      return;
    }
    const slow = state.slowMs > 0 || state.breakAfter?.path === path;
    if (!override && !slow) {
      if (state.ignoreRanges) delete req.headers.range;
      sendFile(req, res, file);
      return;
    }
    let body = override ?? readFileSync(file);
    const range = !override && !state.ignoreRanges ? /^bytes=(\d+)-$/.exec(req.headers.range ?? '') : null;
    res.setHeader('Content-Type', 'application/octet-stream');
    if (range) {
      const start = Number(range[1]);
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${start}-${body.byteLength - 1}/${body.byteLength}`);
      body = body.subarray(start);
    }
    res.setHeader('Content-Length', String(body.byteLength));
    const cut = state.breakAfter?.path === path ? state.breakAfter.bytes : Infinity;
    let sent = 0;
    const step = (): void => {
      if (res.destroyed) return;
      if (sent >= cut) {
        res.destroy();
        return;
      }
      const piece = body.subarray(sent, Math.min(sent + (1 << 14), body.byteLength, cut));
      sent += piece.byteLength;
      res.write(piece);
      if (sent >= body.byteLength) res.end();
      else setTimeout(step, state.slowMs);
    };
    step();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

function statSafe(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

async function caught(promise: Promise<unknown>): Promise<HarkError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(HarkError);
    return error as HarkError;
  }
  throw new Error('expected the load to fail');
}

describe('loadBundle over HTTP into a FsBundleStore', () => {
  let server: TestServer;
  let dir: string;
  let store: FsBundleStore;
  let source: BundleSource;
  let key: string;
  const stored = (path: string): string => join(dir, storeDirName(key), path);

  beforeAll(async () => {
    server = await startServer();
    source = { kind: 'url', baseUrl: server.url };
    key = bundleKey(source);
  });
  afterAll(async () => {
    await server.close();
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'hark-store-'));
    store = new FsBundleStore(dir);
    Object.assign(server, { log: [], ignoreRanges: false, slowMs: 0, breakAfter: null });
    server.overrides.clear();
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  async function firstLoad(events: ProgressInfo[] = []): Promise<number> {
    const start = performance.now();
    await loadBundle(source, { store, onProgress: (e) => events.push(e) });
    return performance.now() - start;
  }

  it('downloads every file of the variant once, with monotonic progress and manifest totals, then loads offline', async () => {
    const events: ProgressInfo[] = [];
    const coldMs = await firstLoad(events);
    expect(server.log.map((r) => r.path).sort()).toEqual(['manifest.json', ...INT4].sort());
    expect(server.log.every((r) => r.range === undefined && r.status === 200)).toBe(true);

    const totals = events.filter((e) => e.status === 'progress_total');
    const total = variantBytes(manifest, 'int4');
    expect(totals.length).toBeGreaterThan(2);
    for (const t of totals) {
      expect(t.total).toBe(total);
      expect(Object.keys(t.files).sort()).toEqual([...INT4].sort());
      for (const path of INT4) expect(t.files[path]!.total).toBe(manifest.files.find((f) => f.path === path)!.size);
    }
    for (let i = 1; i < totals.length; i++) {
      expect(totals[i]!.loaded).toBeGreaterThanOrEqual(totals[i - 1]!.loaded);
      for (const path of INT4) expect(totals[i]!.files[path]!.loaded).toBeGreaterThanOrEqual(totals[i - 1]!.files[path]!.loaded);
    }
    expect(totals.at(-1)).toMatchObject({ loaded: total, progress: 100 });
    for (const path of INT4) {
      const mine = events.filter((e) => 'file' in e && e.file === path).map((e) => e.status);
      expect(mine[0]).toBe('initiate');
      expect(mine).toContain('download');
      expect(mine.at(-1)).toBe('done');
      const progress = events.filter((e): e is Extract<ProgressInfo, { status: 'progress' }> => e.status === 'progress' && e.file === path);
      expect(progress.at(-1)).toMatchObject({ progress: 100, loaded: progress.at(-1)!.total });
      expect(sha256(readFileSync(stored(path)))).toBe(manifest.files.find((f) => f.path === path)!.sha256);
    }
    expect(events.at(-1)).toEqual({ status: 'ready', name: server.url, key, variant: 'int4', fromCache: false });
    // Only the variant's files (and the manifest) are stored; nothing is left as .part.
    const files = (await store.list())[0]!.files;
    expect(files.map((f) => f.path).sort()).toEqual(['manifest.json', ...INT4].sort());
    expect(files.every((f) => f.complete)).toBe(true);

    // Second load: zero requests.
    server.log.length = 0;
    const warmEvents: ProgressInfo[] = [];
    const start = performance.now();
    const bundle = await loadBundle(source, { store, onProgress: (e) => warmEvents.push(e) });
    const warmMs = performance.now() - start;
    expect(server.log).toEqual([]);
    expect(bundle.variant).toBe('int4');
    expect(bundle.manifest.name).toBe('salmonn-tiny');
    expect(warmEvents.some((e) => e.status === 'verify')).toBe(true);
    expect(warmEvents.at(-1)).toMatchObject({ status: 'ready', fromCache: true });
    expect(await bundle.readJson<{ feature_size: number }>('preprocessor_config.json')).toMatchObject({ feature_size: 80 });
    expect((await bundle.readFile('onnx/connector_q4.onnx')).byteLength).toBe(155973);
    const dataEntry = bundle.manifest.files.find((f) => f.path === 'onnx/decoder_model_merged_q4.onnx_data');
    expect(dataEntry?.size).toBeGreaterThan(0);
    expect((await bundle.readBlob('onnx/decoder_model_merged_q4.onnx_data')).size).toBe(dataEntry?.size);
    await expect(bundle.readFile('onnx/connector.onnx')).rejects.toMatchObject({ code: 'bundle/missing-file' });

    // verifyCached: 'size' skips hashing.
    const sizeOnly: ProgressInfo[] = [];
    await loadBundle(source, { store, verifyCached: 'size', onProgress: (e) => sizeOnly.push(e) });
    expect(sizeOnly.some((e) => e.status === 'verify')).toBe(false);
    expect(server.log).toEqual([]);
    console.info(`[bundleLoader] tiny int4 (${(total / 1e6).toFixed(2)} MB): cold ${coldMs.toFixed(0)} ms, warm (hash-verified) ${warmMs.toFixed(0)} ms`);
  });

  it('re-fetches only a cached file whose bytes were corrupted', async () => {
    await firstLoad();
    const path = 'onnx/connector_q4.onnx';
    const bytes = readFileSync(stored(path));
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(stored(path), bytes); // same size: only the hash can tell
    server.log.length = 0;
    const events: ProgressInfo[] = [];
    await loadBundle(source, { store, onProgress: (e) => events.push(e) });
    expect(server.log).toEqual([{ path, range: undefined, status: 200 }]);
    expect(sha256(readFileSync(stored(path)))).toBe(manifest.files.find((f) => f.path === path)!.sha256);
    expect(events.filter((e) => e.status === 'download').map((e) => 'file' in e && e.file)).toEqual([path]);

    // A truncated file makes the copy incomplete: the manifest is checked again, then the file.
    writeFileSync(stored('tokenizer.json'), bytes.subarray(0, 10));
    server.log.length = 0;
    await loadBundle(source, { store });
    expect(server.log.map((r) => r.path)).toEqual(['manifest.json', 'tokenizer.json']);
  });

  it('resumes a partial file with a Range request', async () => {
    await firstLoad();
    const path = 'onnx/embed_tokens_q4.onnx';
    const full = readFileSync(stored(path));
    rmSync(stored(path));
    writeFileSync(stored(path) + PART_SUFFIX, full.subarray(0, 100_000));
    server.log.length = 0;
    const events: ProgressInfo[] = [];
    await loadBundle(source, { store, onProgress: (e) => events.push(e) });
    expect(server.log).toEqual([
      { path: 'manifest.json', range: undefined, status: 200 },
      { path, range: 'bytes=100000-', status: 206 },
    ]);
    expect(readFileSync(stored(path)).equals(full)).toBe(true);
    expect(statSafe(stored(path) + PART_SUFFIX)).toBe(false);
    const totals = events.filter((e) => e.status === 'progress_total');
    expect(totals.find((t) => t.files[path]!.loaded > 0)!.files[path]!.loaded).toBe(100_000);
  });

  it('restarts a partial file when the server ignores Range (200)', async () => {
    await firstLoad();
    const path = 'tokenizer.json';
    const full = readFileSync(stored(path));
    rmSync(stored(path));
    writeFileSync(stored(path) + PART_SUFFIX, full.subarray(0, 5000));
    server.ignoreRanges = true;
    server.log.length = 0;
    await loadBundle(source, { store });
    expect(server.log.slice(1)).toEqual([{ path, range: 'bytes=5000-', status: 200 }]);
    expect(readFileSync(stored(path)).equals(full)).toBe(true);
  });

  it('retries from zero once when a resumed file fails its hash (stale part)', async () => {
    await firstLoad();
    const path = 'tokenizer.json';
    const full = readFileSync(stored(path));
    rmSync(stored(path));
    const stale = Buffer.from(full.subarray(0, 5000));
    stale[10] = stale[10]! ^ 1;
    writeFileSync(stored(path) + PART_SUFFIX, stale);
    server.log.length = 0;
    await loadBundle(source, { store });
    expect(server.log.slice(1).map((r) => [r.range, r.status])).toEqual([
      ['bytes=5000-', 206],
      [undefined, 200],
    ]);
    expect(readFileSync(stored(path)).equals(full)).toBe(true);
  });

  it('rejects tampered bytes with bundle/hash-mismatch and keeps nothing of the bad file', async () => {
    const path = 'onnx/connector_q4.onnx';
    const tampered = Buffer.from(readFileSync(join(BUNDLE_DIR, path)));
    tampered[500] = tampered[500]! ^ 0x01;
    server.overrides.set(path, tampered);
    const error = await caught(loadBundle(source, { store, concurrency: 1 }));
    expect(error.code).toBe('bundle/hash-mismatch');
    expect(error.details.file).toBe(path);
    expect(error.message).toContain(path);
    expect(statSafe(stored(path))).toBe(false);
    expect(statSafe(stored(path) + PART_SUFFIX)).toBe(false);

    // Longer than the manifest says: stopped as soon as it overflows.
    server.overrides.set(path, Buffer.concat([readFileSync(join(BUNDLE_DIR, path)), Buffer.alloc(100)]));
    const tooLong = await caught(loadBundle(source, { store }));
    expect(tooLong.code).toBe('bundle/hash-mismatch');
    expect(statSafe(stored(path) + PART_SUFFIX)).toBe(false);

    // Once the server is fixed, the next load completes (other files were kept).
    server.overrides.clear();
    server.log.length = 0;
    await loadBundle(source, { store });
    expect(server.log.map((r) => r.path)).toContain(path);
    expect(server.log.length).toBeLessThan(INT4.length + 1);
  });

  it('reports bad manifests, missing bundles and unreachable servers', async () => {
    const json = JSON.parse(readFileSync(join(BUNDLE_DIR, 'manifest.json'), 'utf8'));
    server.overrides.set('manifest.json', Buffer.from(JSON.stringify({ ...json, files: 'nope' })));
    const invalid = await caught(loadBundle(source, { store }));
    expect(invalid.code).toBe('bundle/manifest-invalid');
    expect(invalid.message).toContain('/files');

    server.overrides.set('manifest.json', Buffer.from('{"format": "hark-bundle", '));
    expect((await caught(loadBundle(source, { store }))).code).toBe('bundle/manifest-invalid');

    server.overrides.set('manifest.json', Buffer.from(JSON.stringify({ ...json, formatVersion: 7 })));
    expect((await caught(loadBundle(source, { store }))).code).toBe('bundle/unsupported-version');
    server.overrides.clear();

    const missing = await caught(loadBundle({ kind: 'url', baseUrl: `${server.url}nowhere/` }, { store }));
    expect(missing.code).toBe('bundle/fetch-failed');
    expect(missing.details).toMatchObject({ url: `${server.url}nowhere/manifest.json`, status: 404 });
    expect(missing.message).toMatch(/address right/);

    const refused = await caught(loadBundle({ kind: 'url', baseUrl: 'http://127.0.0.1:9/' }, { store }));
    expect(refused.code).toBe('bundle/fetch-failed');
    expect(refused.message).toMatch(/offline/);
    expect((await store.list()).flatMap((b) => b.files.filter((f) => f.path !== 'manifest.json'))).toEqual([]);
  });

  it('aborts with bundle/aborted, keeps the partial file, and a later load resumes it', async () => {
    server.slowMs = 5;
    const controller = new AbortController();
    const big = 'tokenizer.json';
    const promise = loadBundle(source, {
      store,
      signal: controller.signal,
      onProgress: (e) => {
        if (e.status === 'progress' && e.file === big && e.loaded > 200_000) controller.abort();
      },
    });
    const error = await caught(promise);
    expect(error.code).toBe('bundle/aborted');
    const part = statSync(stored(big) + PART_SUFFIX).size;
    expect(part).toBeGreaterThan(200_000);
    expect(part).toBeLessThan(1_842_768);

    server.slowMs = 0;
    server.log.length = 0;
    await loadBundle(source, { store });
    expect(server.log).toContainEqual({ path: big, range: `bytes=${part}-`, status: 206 });
    expect(sha256(readFileSync(stored(big)))).toBe(manifest.files.find((f) => f.path === big)!.sha256);

    // An already-aborted signal does nothing at all.
    server.log.length = 0;
    const done = new AbortController();
    done.abort();
    expect((await caught(loadBundle(source, { store, signal: done.signal }))).code).toBe('bundle/aborted');
    expect(server.log).toEqual([]);
  });

  it('keeps what arrived before a broken connection and resumes it', async () => {
    const path = 'onnx/decoder_model_merged_q4.onnx_data';
    server.breakAfter = { path, bytes: 300_000 };
    const error = await caught(loadBundle(source, { store }));
    expect(error.code).toBe('bundle/fetch-failed');
    expect(error.details.url).toBe(`${server.url}${path}`);
    expect(statSync(stored(path) + PART_SUFFIX).size).toBe(300_000);
    server.breakAfter = null;
    server.log.length = 0;
    await loadBundle(source, { store });
    expect(server.log).toContainEqual({ path, range: 'bytes=300000-', status: 206 });
  });

  it('says how many bytes are needed and how many the site may still store when the quota runs out, and resumes with room', async () => {
    /** The directory store with a quota: appends past it fail as a browser's do. */
    class QuotaStore extends FsBundleStore {
      quota = 1_500_000;
      /** Bytes appended so far (model files only: the manifest's few KB are left out). */
      used = 0;
      async estimate(): Promise<{ usage: number; quota: number }> {
        return { usage: this.used, quota: this.quota };
      }
      override async openPartial(k: string, path: string, options?: { truncate?: boolean }) {
        const writer = await super.openPartial(k, path, options);
        const self = this;
        return {
          get length() {
            return writer.length;
          },
          async append(chunk: Uint8Array) {
            if (path !== 'manifest.json' && self.used + chunk.byteLength > self.quota) throw Object.assign(new Error('quota'), { name: 'QuotaExceededError' });
            await writer.append(chunk);
            if (path !== 'manifest.json') self.used += chunk.byteLength;
          },
          close: () => writer.close(),
        };
      }
    }
    const quotaStore = new QuotaStore(dir);
    const total = variantBytes(manifest, 'int4');
    const error = await caught(loadBundle(source, { store: quotaStore, variant: 'int4', concurrency: 1 }));
    expect(error.code).toBe('bundle/storage');
    const { usage } = await quotaStore.estimate();
    const keptFiles = (await quotaStore.list())[0]!.files.filter((f) => f.path !== 'manifest.json');
    const kept = keptFiles.reduce((sum, f) => sum + f.bytes, 0);
    expect(error.details).toMatchObject({ quota: true, neededBytes: total - kept, availableBytes: 1_500_000 - usage, quotaBytes: 1_500_000, usageBytes: usage });
    expect(error.message).toMatch(
      /^There is no room to store the model: it needs [\d.]+ MB more, and this site may store only [\d.]+ KB more \([\d.]+ MB of its 1\.50 MB are used\)\. Free disk space or delete other models in the model manager, then load it again: the [\d.]+ MB already downloaded are kept and the download continues from there\.$/,
    );
    // With room, the next load fetches only the rest: complete files stay, the part resumes.
    quotaStore.quota = 1e9;
    server.log.length = 0;
    await loadBundle(source, { store: quotaStore, variant: 'int4' });
    const refetched = server.log.filter((e) => e.path !== 'manifest.json');
    expect(refetched.some((e) => e.range !== undefined && e.status === 206)).toBe(true);
    for (const file of keptFiles.filter((f) => f.complete)) expect(refetched.map((e) => e.path)).not.toContain(file.path);
  });

  it('loads another variant on request and lists/deletes stored bundles', async () => {
    await firstLoad();
    server.log.length = 0;
    const fp32 = await loadBundle(source, { store, variant: (m) => (m.variants.fp32 ? 'fp32' : 'int4') });
    expect(fp32.variant).toBe('fp32');
    // The bundle was complete for int4 only, so the manifest was fetched again, then fp32's own files.
    const shared = new Set(INT4);
    expect(server.log.map((r) => r.path).sort()).toEqual(['manifest.json', ...variantFiles(manifest, 'fp32').filter((p) => !shared.has(p))].sort());

    const [summary] = await listBundles(store);
    expect(summary).toMatchObject({
      key,
      name: 'salmonn-tiny',
      label: manifest.label,
      complete: true,
      completeVariants: ['fp32', 'int4'],
      hasPartialFiles: false,
      randomWeights: true,
    });
    const onDisk = readdirSync(join(dir, storeDirName(key)), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .reduce((sum, e) => sum + statSync(join(e.parentPath, e.name)).size, 0);
    expect(summary!.bytesUsed).toBe(onDisk);

    await expect(loadBundle(source, { store, variant: 'q8' })).rejects.toMatchObject({ code: 'bundle/missing-file' });
    await deleteBundle(store, key);
    expect(await listBundles(store)).toEqual([]);
  });
});

describe('loadBundle from local files (Blobs)', () => {
  async function bundleBlobs(prefix = ''): Promise<Map<string, Blob>> {
    const files = new Map<string, Blob>();
    for (const path of ['manifest.json', ...manifest.files.map((f) => f.path)]) {
      files.set(prefix + path, await openAsBlob(join(BUNDLE_DIR, path)));
    }
    return files;
  }

  it('verifies and copies the files into the store without any fetch', async () => {
    const store = new MemoryBundleStore();
    const fetchImpl = (() => {
      throw new Error('no network for local files');
    }) as unknown as typeof fetch;
    const events: ProgressInfo[] = [];
    const bundle = await loadBundle({ kind: 'files', files: await bundleBlobs('salmonn-tiny/') }, { store, fetchImpl, onProgress: (e) => events.push(e) });
    expect(bundle.key).toBe('files:salmonn-tiny');
    expect(bundle.variant).toBe('int4');
    const listed = await store.list();
    expect(listed[0]!.files.map((f) => f.path).sort()).toEqual(['manifest.json', ...INT4].sort());
    expect(sha256(await bundle.readFile('tokenizer.json'))).toBe(manifest.files.find((f) => f.path === 'tokenizer.json')!.sha256);
    expect(events.filter((e) => e.status === 'progress_total').at(-1)).toMatchObject({ progress: 100 });

    // Loading the same files again verifies the stored copies and copies nothing.
    const again: ProgressInfo[] = [];
    await loadBundle({ kind: 'files', files: await bundleBlobs() }, { store, fetchImpl, onProgress: (e) => again.push(e) });
    expect(again.filter((e) => e.status === 'download')).toEqual([]);
  });

  it('rejects a tampered local file and a missing one', async () => {
    const store = new MemoryBundleStore();
    const files = await bundleBlobs();
    const bytes = new Uint8Array(await files.get('onnx/connector_q4.onnx')!.arrayBuffer());
    bytes[7] = bytes[7]! ^ 0x80;
    files.set('onnx/connector_q4.onnx', new Blob([bytes]));
    const error = await caught(loadBundle({ kind: 'files', files }, { store }));
    expect(error.code).toBe('bundle/hash-mismatch');
    expect(error.details.file).toBe('onnx/connector_q4.onnx');
    expect(await store.size('files:salmonn-tiny', 'onnx/connector_q4.onnx')).toBeNull();
    expect(await store.partialSize('files:salmonn-tiny', 'onnx/connector_q4.onnx')).toBeNull();

    files.delete('onnx/connector_q4.onnx');
    expect((await caught(loadBundle({ kind: 'files', files }, { store }))).code).toBe('bundle/missing-file');
    files.delete('manifest.json');
    expect((await caught(loadBundle({ kind: 'files', files }, { store }))).code).toBe('bundle/missing-file');
  });
});

const contractDirs: string[] = [];
afterAll(() => {
  for (const dir of contractDirs) rmSync(dir, { recursive: true, force: true });
});

describe.each([
  ['MemoryBundleStore', () => new MemoryBundleStore()],
  ['FsBundleStore', () => new FsBundleStore(contractDirs[contractDirs.push(mkdtempSync(join(tmpdir(), 'hark-store-contract-'))) - 1]!)],
])('%s', (_name, makeStore) => {
  it('appends, resumes, completes, reads, lists and deletes files', async () => {
    const store = makeStore();
    const key = 'url:http://h/models/x/';
    const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
    expect(await store.size(key, 'onnx/a.bin')).toBeNull();
    expect(await store.partialSize(key, 'onnx/a.bin')).toBeNull();
    let writer = await store.openPartial(key, 'onnx/a.bin');
    await writer.append(bytes(1000, 1));
    expect(writer.length).toBe(1000);
    await writer.close();
    expect(await store.partialSize(key, 'onnx/a.bin')).toBe(1000);
    expect(await store.size(key, 'onnx/a.bin')).toBeNull();
    writer = await store.openPartial(key, 'onnx/a.bin');
    expect(writer.length).toBe(1000);
    await writer.append(bytes(500, 2));
    await writer.close();
    const partial: Uint8Array[] = [];
    for await (const chunk of store.readChunks(key, 'onnx/a.bin', { partial: true })) partial.push(chunk);
    expect(partial.reduce((n, c) => n + c.byteLength, 0)).toBe(1500);
    await store.completeFile(key, 'onnx/a.bin');
    expect(await store.partialSize(key, 'onnx/a.bin')).toBeNull();
    expect(await store.size(key, 'onnx/a.bin')).toBe(1500);
    const read = await store.readFile(key, 'onnx/a.bin');
    expect(Array.from(read.subarray(0, 1000))).toEqual(Array.from(bytes(1000, 1)));
    expect(Array.from(read.subarray(1000))).toEqual(Array.from(bytes(500, 2)));
    expect(new Uint8Array(await (await store.readBlob(key, 'onnx/a.bin')).arrayBuffer())).toEqual(read);

    writer = await store.openPartial(key, 'b.txt', { truncate: true });
    await writer.append(bytes(10, 3));
    await writer.close();
    writer = await store.openPartial(key, 'b.txt', { truncate: true });
    expect(writer.length).toBe(0);
    await writer.append(bytes(7, 4));
    await writer.close();
    expect(await store.list()).toEqual([
      {
        key,
        bytes: 1507,
        files: [
          { path: 'b.txt', bytes: 7, complete: false },
          { path: 'onnx/a.bin', bytes: 1500, complete: true },
        ],
      },
    ]);
    await expect(store.readFile(key, 'b.txt')).rejects.toMatchObject({ code: 'bundle/missing-file' });
    await expect(store.openPartial(key, '../escape')).rejects.toThrow(/not a valid bundle file path/);
    await store.deleteFile(key, 'b.txt');
    await store.deleteFile(key, 'never-existed');
    expect((await store.list())[0]!.files.map((f) => f.path)).toEqual(['onnx/a.bin']);
    await store.deleteBundle(key);
    expect(await store.list()).toEqual([]);
  });
});
