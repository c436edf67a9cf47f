/**
 * Loads a bundle into a store and hands out its files: offline when the store already holds a
 * complete copy (zero network requests), otherwise manifest first, then only the files the chosen
 * variant needs, streamed to the store while being hashed, resumable with HTTP Range requests.
 *
 * Per file:
 * - complete in the store → re-verified (`verifyCached: 'hash'`: streamed SHA-256; 'size': size
 *   only); a bad copy is deleted and fetched again;
 * - a `.part` in the store → its bytes are re-hashed, then `Range: bytes=N-` fetches the rest
 *   (a 200 answer or a wrong Content-Range restarts the file from zero);
 * - otherwise fetched whole. After the last byte the size and SHA-256 must match the manifest,
 *   else the file is deleted and `bundle/hash-mismatch` names it (a resumed file that fails is
 *   first retried once from zero, since its old part may be stale).
 * Aborting (`signal`) throws `bundle/aborted` and keeps `.part` files for the next load.
 */
import { createSHA256, type IHasher } from 'hash-wasm';
import { modelHostRefusal } from '../../csp';
import { HarkError, isHarkError } from '../errors';
import {
  MANIFEST_FILE,
  parseManifest,
  pickVariant,
  variantFileEntries,
  variantFiles,
  type FileEntry,
  type Manifest,
} from './manifest';
import { bundleKey, fileUrl, sourceLabel, type BundleSource } from './source';
import { writeWholeFile, type BundleStore, type PartialWriter } from './store';

/** transformers.js-shaped progress events, plus `verify` while cached files are re-hashed. */
export type ProgressInfo =
  | { status: 'initiate' | 'download' | 'done'; name: string; file: string }
  | { status: 'progress'; name: string; file: string; progress: number; loaded: number; total: number }
  | { status: 'verify'; name: string; file: string; progress: number; loaded: number; total: number }
  | {
      status: 'progress_total';
      name: string;
      /** 0–100 over every file of the variant (bytes; cached files count as loaded). */
      progress: number;
      loaded: number;
      total: number;
      files: Record<string, { loaded: number; total: number }>;
    }
  | { status: 'ready'; name: string; key: string; variant: string; fromCache: boolean };

export type ProgressCallback = (info: ProgressInfo) => void;

export interface LoadBundleOptions {
  store: BundleStore;
  /** A variant name, or a chooser (default: `pickVariant(m)`, tested and fp32-compute only). */
  variant?: string | ((manifest: Manifest) => string);
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
  fetchImpl?: typeof fetch;
  /** How a cached complete file is checked before use (default 'hash'). */
  verifyCached?: 'hash' | 'size';
  /** Store key (default `bundleKey(source)`). */
  key?: string;
  /** Files downloaded at the same time (default 3). */
  concurrency?: number;
}

export interface LoadedBundle {
  manifest: Manifest;
  variant: string;
  key: string;
  /** The variant's files (paths, sizes, SHA-256). */
  files: FileEntry[];
  readFile(path: string): Promise<Uint8Array>;
  /** A disk-backed Blob where the store allows it: for large files (external data) without a copy. */
  readBlob(path: string): Promise<Blob>;
  readText(path: string): Promise<string>;
  readJson<T>(path: string): Promise<T>;
}

export interface BundleSummary {
  key: string;
  name: string;
  label: string;
  bytesUsed: number;
  /** Some variant has every file stored complete with the manifest's size. */
  complete: boolean;
  /** The variants that are complete. */
  completeVariants: string[];
  /** `.part` files are present (an interrupted download). */
  hasPartialFiles: boolean;
  randomWeights: boolean;
}

/** Minimum time between two progress events of one file (and between two totals). */
const PROGRESS_INTERVAL_MS = 50;

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());

function abortedError(file?: string): HarkError {
  return new HarkError(
    'bundle/aborted',
    'Loading the model was stopped. Files already downloaded are kept: load it again to resume where it stopped.',
    file ? { file } : {},
  );
}

function isAbortError(error: unknown): boolean {
  const name = (error as { name?: string })?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}

function fetchFailed(url: string, detail: string, status?: number): HarkError {
  let advice: string;
  if (status === undefined) {
    advice = 'Are you offline, or is the address wrong? Check the connection and the bundle address, then load again; downloaded files are kept and the download resumes.';
  } else if (status === 404 || status === 410) {
    advice = 'The file is not on the server: is the bundle address right (a folder containing manifest.json)?';
  } else if (status === 401 || status === 403) {
    advice = 'The server refused access: the repository may be private or gated.';
  } else if (status === 429 || status >= 500) {
    advice = 'The server is busy or failing: try again in a few minutes; downloaded files are kept.';
  } else {
    advice = 'Check the bundle address and try again.';
  }
  return new HarkError('bundle/fetch-failed', `Could not download ${url} (${detail}). ${advice}`, {
    url,
    ...(status !== undefined ? { status } : {}),
  });
}

/** The manifest's address has no bundle behind it (a 404, or a web page in its place). */
function noBundleAt(url: string, what: string, status: number): HarkError {
  const folder = url.replace(/manifest\.json$/, '');
  return new HarkError(
    'bundle/fetch-failed',
    `There is no model at ${folder}: its manifest.json ${what}. Is the address right? It must be a folder holding a bundle's manifest.json ` +
      '(for example /models/salmonn-tiny/, or a Hugging Face repo as owner/name).',
    { url, status, noBundle: true },
  );
}

function looksLikeHtml(contentType: string | null, bytes: Uint8Array): boolean {
  if (contentType && /\btext\/html\b/i.test(contentType)) return true;
  const start = new TextDecoder().decode(bytes.subarray(0, 64)).trimStart();
  return start.startsWith('<');
}

function storageError(error: unknown, file: string): HarkError {
  if (isHarkError(error)) return error;
  const e = error as { name?: string; code?: string; message?: string };
  const full = e?.name === 'QuotaExceededError' || e?.code === 'ENOSPC';
  return new HarkError(
    'bundle/storage',
    full
      ? `There is no room to store ${file}: free disk space or delete other models in the model manager, then load again.`
      : `Could not store ${file} (${e?.name ?? 'error'}: ${e?.message ?? String(error)}). Check free disk space and the browser's site-data settings, then load again.`,
    { file, quota: full },
  );
}

/** "4.36 MB": decimal units, as the app shows sizes (src/ui/format.ts). */
function bytesText(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`;
}

/**
 * The storage quota ran out: how much the variant still needs, how much this site may still store
 * (the browser's estimate), and that what was downloaded is kept for the next try.
 */
async function quotaError(cause: HarkError, store: BundleStore, needed: number, kept: number): Promise<HarkError> {
  let estimate: { usage: number; quota: number } | null = null;
  try {
    estimate = (await store.estimate?.()) ?? null;
  } catch {
    // No estimate: say what is known.
  }
  const available = estimate ? Math.max(0, estimate.quota - estimate.usage) : null;
  let room: string;
  if (!estimate || available === null) room = 'the browser gives this site no more room';
  else if (available < needed) room = `this site may store only ${bytesText(available)} more (${bytesText(estimate.usage)} of its ${bytesText(estimate.quota)} are used)`;
  // The browser's estimate is only an estimate: the device's disk can fill up before it.
  else room = `the browser refused to store more although it estimates ${bytesText(available)} of room for this site: the device's disk is probably full`;
  return new HarkError(
    'bundle/storage',
    `There is no room to store the model: it needs ${bytesText(needed)} more, and ${room}. ` +
      `Free disk space or delete other models in the model manager, then load it again: ` +
      (kept > 0 ? `the ${bytesText(kept)} already downloaded are kept and the download continues from there.` : 'nothing of it was kept.'),
    { ...cause.details, quota: true, neededBytes: needed, ...(available !== null ? { availableBytes: available, quotaBytes: estimate!.quota, usageBytes: estimate!.usage } : {}) },
  );
}

function hashMismatch(file: string, expected: FileEntry, size: number, sha256: string): HarkError {
  const what = size !== expected.size ? `${size} bytes instead of ${expected.size}` : `SHA-256 ${sha256} instead of ${expected.sha256}`;
  return new HarkError(
    'bundle/hash-mismatch',
    `${file} arrived damaged or changed (${what}); it was deleted and not used. Load again to re-download it; if it keeps happening the bundle on the server does not match its manifest.`,
    { file, expectedSize: expected.size, size, expectedSha256: expected.sha256, sha256 },
  );
}

async function readJsonText(text: string, what: string): Promise<unknown> {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HarkError('bundle/manifest-invalid', `${what} is not valid JSON (${(error as Error).message}). The bundle is damaged: rebuild or re-upload it.`, {
      file: what,
    });
  }
}

/** File paths of a `files` source, relative to the folder holding manifest.json. */
function normalizeFiles(files: Map<string, Blob>): Map<string, Blob> {
  const clean = new Map<string, Blob>();
  for (const [path, blob] of files) clean.set(path.replace(/^\.?\/+/, ''), blob);
  if (clean.has(MANIFEST_FILE)) return clean;
  const nested = [...clean.keys()].filter((p) => p.endsWith(`/${MANIFEST_FILE}`)).sort((a, b) => a.length - b.length)[0];
  if (!nested) {
    throw new HarkError('bundle/missing-file', `The chosen files have no ${MANIFEST_FILE}: choose the bundle's whole folder.`, { file: MANIFEST_FILE });
  }
  const prefix = nested.slice(0, -MANIFEST_FILE.length);
  const out = new Map<string, Blob>();
  for (const [path, blob] of clean) if (path.startsWith(prefix)) out.set(path.slice(prefix.length), blob);
  return out;
}

async function readStoredManifest(store: BundleStore, key: string): Promise<Manifest | null> {
  if ((await store.size(key, MANIFEST_FILE)) === null) return null;
  try {
    return parseManifest(JSON.parse(new TextDecoder().decode(await store.readFile(key, MANIFEST_FILE))));
  } catch {
    return null; // unreadable or from another format: treated as absent and replaced
  }
}

function resolveVariant(manifest: Manifest, choice: LoadBundleOptions['variant']): string {
  const variant = typeof choice === 'function' ? choice(manifest) : (choice ?? pickVariant(manifest));
  variantFiles(manifest, variant); // throws for an unknown variant
  return variant;
}

async function isVariantComplete(store: BundleStore, key: string, manifest: Manifest, variant: string): Promise<boolean> {
  for (const entry of variantFileEntries(manifest, variant)) {
    if ((await store.size(key, entry.path)) !== entry.size) return false;
  }
  return true;
}

/**
 * Loads (downloading what is missing) one variant of a bundle into `options.store`.
 * Errors are HarkErrors: `bundle/fetch-failed`, `bundle/manifest-invalid`,
 * `bundle/unsupported-version`, `bundle/hash-mismatch`, `bundle/missing-file`, `bundle/storage`,
 * `bundle/aborted`.
 */
export async function loadBundle(source: BundleSource, options: LoadBundleOptions): Promise<LoadedBundle> {
  if (options.signal?.aborted) throw abortedError();
  // Two tabs (or a page and a worker) loading the same bundle would fight over the same .part
  // files; the Web Locks API (pages and workers; absent in Node) makes the second one wait and
  // then find the bundle complete.
  const locks = (globalThis as unknown as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
  if (!locks || options.store.kind === 'memory') return loadUnlocked(source, options);
  const lockName = `hark-bundle:${options.key ?? (source.kind === 'files' ? 'files' : bundleKey(source))}`;
  try {
    return await locks.request(lockName, options.signal ? { signal: options.signal } : {}, () => loadUnlocked(source, options));
  } catch (error) {
    if (options.signal?.aborted && !isHarkError(error)) throw abortedError();
    throw error;
  }
}

interface LockManagerLike {
  request<T>(name: string, options: { signal?: AbortSignal }, callback: () => Promise<T>): Promise<T>;
}

async function loadUnlocked(source: BundleSource, options: LoadBundleOptions): Promise<LoadedBundle> {
  const { store, signal } = options;
  const verify = options.verifyCached ?? 'hash';
  const fetchImpl = options.fetchImpl ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const name = sourceLabel(source);
  const emit = (info: ProgressInfo): void => {
    try {
      options.onProgress?.(info);
    } catch {
      // A failing progress callback (UI code) must not break a download.
    }
  };
  if (signal?.aborted) throw abortedError();
  // Every request uses `internal`, which aborts on the caller's signal or on the first failure.
  const internal = new AbortController();
  const onAbort = (): void => internal.abort(signal?.reason);
  /** Stops work on the caller's abort, and on another file's failure (that error wins). */
  const throwIfAborted = (file?: string): void => {
    if (signal?.aborted || internal.signal.aborted) throw abortedError(file);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const localFiles = source.kind === 'files' ? normalizeFiles(source.files) : undefined;
    let localManifest: { manifest: Manifest; bytes: Uint8Array } | undefined;
    if (localFiles) {
      const bytes = new Uint8Array(await localFiles.get(MANIFEST_FILE)!.arrayBuffer());
      localManifest = { manifest: parseManifest(await readJsonText(new TextDecoder().decode(bytes), MANIFEST_FILE)), bytes };
    }
    const key = options.key ?? bundleKey(source, localManifest?.manifest.name);

    const request = async (url: string, headers: Record<string, string>, cache: RequestCache): Promise<Response> => {
      throwIfAborted(url);
      let response: Response;
      try {
        // no-store: the bytes go to the bundle store; the HTTP cache must not keep a second copy.
        response = await fetchImpl(url, { headers, cache, signal: internal.signal });
      } catch (error) {
        if (signal?.aborted) throw abortedError(url);
        throwIfAborted(url);
        // The built app's Content-Security-Policy blocks hosts it does not name: say that, not "offline?".
        const self = (globalThis as { location?: { origin: string } }).location?.origin;
        const refusal = self ? modelHostRefusal(url, self) : null;
        if (refusal) throw new HarkError('bundle/host-not-allowed', refusal, { url });
        throw fetchFailed(url, `network error: ${(error as Error)?.message ?? String(error)}`);
      }
      return response;
    };

    // 1. The manifest: from the store when it holds a complete copy, else fetched (or local).
    let manifest: Manifest | undefined;
    let variant: string | undefined;
    const stored = await readStoredManifest(store, key);
    let fromCache = false;
    if (stored && !localManifest) {
      let storedVariant: string | undefined;
      try {
        storedVariant = resolveVariant(stored, options.variant);
      } catch {
        // e.g. a variant the stored (older) manifest lacks: ask the server for the current one.
      }
      if (storedVariant !== undefined && (await isVariantComplete(store, key, stored, storedVariant))) {
        manifest = stored;
        variant = storedVariant;
        fromCache = true;
      }
    }
    if (!manifest) {
      let bytes: Uint8Array;
      if (localManifest) {
        ({ manifest, bytes } = localManifest);
      } else {
        const url = fileUrl(source, MANIFEST_FILE);
        emit({ status: 'initiate', name, file: MANIFEST_FILE });
        const response = await request(url, {}, 'no-cache');
        if (response.status === 404 || response.status === 410) throw noBundleAt(url, `does not exist there (HTTP ${response.status})`, response.status);
        if (!response.ok) throw fetchFailed(url, `HTTP ${response.status} ${response.statusText}`.trim(), response.status);
        try {
          bytes = new Uint8Array(await response.arrayBuffer());
        } catch (error) {
          if (signal?.aborted) throw abortedError(url);
          throw fetchFailed(url, `the connection broke: ${(error as Error)?.message}`);
        }
        // Many hosts (and single-page apps) answer any unknown path with their HTML page: that is
        // an address without a model, not a damaged bundle.
        if (looksLikeHtml(response.headers.get('content-type'), bytes)) throw noBundleAt(url, 'is a web page, not a model manifest', response.status);
        manifest = parseManifest(await readJsonText(new TextDecoder().decode(bytes), url));
        emit({ status: 'done', name, file: MANIFEST_FILE });
      }
      if (stored) {
        // Files the new manifest changed or dropped are stale: delete them (complete or partial).
        const fresh = new Map(manifest.files.map((f) => [f.path, f]));
        for (const old of stored.files) {
          const current = fresh.get(old.path);
          if (!current || current.sha256 !== old.sha256 || current.size !== old.size) await store.deleteFile(key, old.path);
        }
      }
      try {
        await writeWholeFile(store, key, MANIFEST_FILE, bytes);
      } catch (error) {
        throw storageError(error, MANIFEST_FILE);
      }
      variant = resolveVariant(manifest, options.variant);
    }
    const m = manifest;
    const v = variant!;
    const entries = variantFileEntries(m, v);

    // 2. Progress bookkeeping: bytes per file, monotonic (a restarted file does not go backwards).
    const files: Record<string, { loaded: number; total: number }> = {};
    for (const e of entries) files[e.path] = { loaded: 0, total: e.size };
    const total = entries.reduce((sum, e) => sum + e.size, 0);
    let lastTotalAt = -Infinity;
    const emitTotal = (force = false): void => {
      const t = now();
      if (!force && t - lastTotalAt < PROGRESS_INTERVAL_MS) return;
      lastTotalAt = t;
      const loaded = Object.values(files).reduce((sum, f) => sum + f.loaded, 0);
      const snapshot = Object.fromEntries(Object.entries(files).map(([p, f]) => [p, { ...f }]));
      emit({ status: 'progress_total', name, progress: total === 0 ? 100 : (loaded / total) * 100, loaded, total, files: snapshot });
    };
    const setLoaded = (path: string, loaded: number, force = false): void => {
      const f = files[path]!;
      f.loaded = Math.max(f.loaded, Math.min(loaded, f.total));
      emitTotal(force);
    };
    const throttle = (): ((force: boolean) => boolean) => {
      let last = -Infinity;
      return (force) => {
        const t = now();
        if (!force && t - last < PROGRESS_INTERVAL_MS) return false;
        last = t;
        return true;
      };
    };

    /** SHA-256 over stored bytes (`partial`: the .part), reporting `verify` progress. */
    const hashStored = async (entry: FileEntry, hasher: IHasher, partial: boolean): Promise<number> => {
      const due = throttle();
      const of = partial ? ((await store.partialSize(key, entry.path)) ?? 0) : entry.size;
      let bytes = 0;
      try {
        for await (const chunk of store.readChunks(key, entry.path, { partial })) {
          throwIfAborted(entry.path);
          hasher.update(chunk);
          bytes += chunk.byteLength;
          if (due(bytes >= of)) emit({ status: 'verify', name, file: entry.path, progress: of ? (bytes / of) * 100 : 100, loaded: bytes, total: of });
        }
      } catch (error) {
        throw isHarkError(error) ? error : storageError(error, entry.path);
      }
      return bytes;
    };

    /** Streams `body` into `writer` and `hasher`; returns the bytes written by this call. */
    const pump = async (entry: FileEntry, body: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>, writer: PartialWriter, hasher: IHasher, url: string): Promise<void> => {
      const due = throttle();
      const reader = 'getReader' in body ? body.getReader() : undefined;
      const iterator = reader ? undefined : (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
      // Cancel the body ourselves on abort: a pending read then ends at once. (Node 20's fetch
      // was seen to leave a read pending forever when the request's signal fired mid-body.)
      const cancelBody = (): void => {
        if (reader) void reader.cancel().catch(() => {});
        else void iterator?.return?.().catch(() => {});
      };
      internal.signal.addEventListener('abort', cancelBody, { once: true });
      try {
        for (;;) {
          let step: IteratorResult<Uint8Array> | ReadableStreamReadResult<Uint8Array>;
          try {
            step = reader ? await reader.read() : await iterator!.next();
          } catch (error) {
            throwIfAborted(entry.path);
            if (isAbortError(error)) throw abortedError(entry.path);
            throw fetchFailed(url, `the connection broke after ${writer.length} of ${entry.size} bytes: ${(error as Error)?.message ?? String(error)}`);
          }
          throwIfAborted(entry.path);
          if (step.done) break;
          const chunk = step.value;
          if (writer.length + chunk.byteLength > entry.size) {
            throw hashMismatch(entry.path, entry, writer.length + chunk.byteLength, 'unknown (more bytes than expected)');
          }
          hasher.update(chunk);
          try {
            await writer.append(chunk);
          } catch (error) {
            throw storageError(error, entry.path);
          }
          // The final 100 % event comes from ensureFile, once the file is verified and complete.
          setLoaded(entry.path, writer.length, writer.length === entry.size);
          if (due(false) && writer.length < entry.size) emit({ status: 'progress', name, file: entry.path, progress: (writer.length / entry.size) * 100, loaded: writer.length, total: entry.size });
        }
      } finally {
        internal.signal.removeEventListener('abort', cancelBody);
        if (reader) await reader.cancel().catch(() => {});
        else await iterator?.return?.().catch(() => {});
      }
    };

    /** Checks a finished `.part` and makes it the complete file, or deletes it. */
    const finish = async (entry: FileEntry, hasher: IHasher, size: number): Promise<HarkError | null> => {
      const sha256 = hasher.digest('hex');
      if (size === entry.size && sha256 === entry.sha256) {
        try {
          await store.completeFile(key, entry.path);
        } catch (error) {
          throw storageError(error, entry.path);
        }
        return null;
      }
      await store.deleteFile(key, entry.path);
      return hashMismatch(entry.path, entry, size, sha256);
    };

    /**
     * Appends `body` to the file's `.part` (emptied first when `offset` is 0), then checks it.
     * Returns the mismatch error instead of throwing it, so a resumed file can retry.
     */
    const writeAndFinish = async (
      entry: FileEntry,
      body: ReadableStream<Uint8Array> | null | undefined,
      offset: number,
      hasher: IHasher,
      url: string,
    ): Promise<HarkError | null> => {
      emit({ status: 'download', name, file: entry.path });
      let writer: PartialWriter;
      try {
        writer = await store.openPartial(key, entry.path, { truncate: offset === 0 });
      } catch (error) {
        await body?.cancel().catch(() => {});
        throw storageError(error, entry.path);
      }
      let tooLong = false;
      try {
        if (writer.length !== offset) throw storageError(new Error(`its partial file has ${writer.length} bytes, expected ${offset}`), entry.path);
        if (body) await pump(entry, body, writer, hasher, url);
      } catch (error) {
        tooLong = isHarkError(error) && error.code === 'bundle/hash-mismatch';
        throw error;
      } finally {
        await writer.close();
        if (tooLong) await store.deleteFile(key, entry.path);
      }
      return finish(entry, hasher, writer.length);
    };

    const copyFromBlob = async (entry: FileEntry): Promise<void> => {
      const blob = localFiles!.get(entry.path);
      if (!blob) {
        throw new HarkError('bundle/missing-file', `The chosen files have no ${entry.path}, which the "${v}" variant needs: choose the bundle's whole folder.`, { file: entry.path });
      }
      const failure = await writeAndFinish(entry, blob.stream() as ReadableStream<Uint8Array>, 0, await createSHA256(), entry.path);
      if (failure) throw failure;
    };

    const download = async (entry: FileEntry, fromScratch: boolean): Promise<void> => {
      const url = fileUrl(source, entry.path);
      const hasher = await createSHA256();
      let offset = 0;
      const partial = fromScratch ? null : await store.partialSize(key, entry.path);
      if (partial !== null && partial > 0 && partial <= entry.size) {
        offset = await hashStored(entry, hasher, true);
        setLoaded(entry.path, offset, true);
      }
      const resumed = offset > 0;
      let response: Response | undefined;
      if (offset < entry.size) {
        response = await request(url, resumed ? { Range: `bytes=${offset}-` } : {}, 'no-store');
        if (resumed) {
          const range = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(response.headers.get('content-range') ?? '');
          if (response.status !== 206 || Number(range?.[1]) !== offset) {
            // No (usable) range support: start this file again from byte 0.
            offset = 0;
            hasher.init();
            if (response.status !== 200) {
              await response.body?.cancel().catch(() => {});
              response = await request(url, {}, 'no-store');
            }
          }
        }
        if (!response.ok) {
          await response.body?.cancel().catch(() => {});
          throw fetchFailed(url, `HTTP ${response.status} ${response.statusText}`.trim(), response.status);
        }
      }
      const failure = await writeAndFinish(entry, response?.body, offset, hasher, url);
      if (failure) {
        // The old part may predate a change on the server: one clean retry before giving up.
        if (resumed) return download(entry, true);
        throw failure;
      }
    };

    const ensureFile = async (entry: FileEntry): Promise<void> => {
      throwIfAborted(entry.path);
      emit({ status: 'initiate', name, file: entry.path });
      const have = await store.size(key, entry.path);
      if (have !== null) {
        let good = have === entry.size;
        if (good && verify === 'hash') {
          const hasher = await createSHA256();
          const bytes = await hashStored(entry, hasher, false);
          good = bytes === entry.size && hasher.digest('hex') === entry.sha256;
        }
        if (good) {
          setLoaded(entry.path, entry.size, true);
          emit({ status: 'done', name, file: entry.path });
          return;
        }
        await store.deleteFile(key, entry.path);
      }
      if (localFiles) await copyFromBlob(entry);
      else await download(entry, false);
      emit({ status: 'progress', name, file: entry.path, progress: 100, loaded: entry.size, total: entry.size });
      emit({ status: 'done', name, file: entry.path });
    };

    // 3. The variant's files, a few at a time; the first failure stops the others.
    emitTotal(true);
    const queue = [...entries];
    let failure: unknown;
    const worker = async (): Promise<void> => {
      while (queue.length > 0 && failure === undefined) {
        const entry = queue.shift()!;
        try {
          await ensureFile(entry);
        } catch (error) {
          failure ??= error;
          internal.abort();
        }
      }
    };
    const concurrency = Math.max(1, Math.min(options.concurrency ?? 3, entries.length));
    await Promise.all(Array.from({ length: concurrency }, worker));
    if (failure !== undefined) {
      if (signal?.aborted) throw abortedError();
      if (isHarkError(failure) && failure.code === 'bundle/storage' && failure.details?.quota === true) {
        // What is really on disk now (bytes in flight when a write failed may not be).
        let stored = 0;
        for (const entry of entries) {
          try {
            const size = await store.size(key, entry.path);
            stored += size === entry.size ? size : Math.min(entry.size, (await store.partialSize(key, entry.path)) ?? 0);
          } catch {
            // Unreadable: counted as not kept.
          }
        }
        throw await quotaError(failure, store, total - stored, stored);
      }
      if (isHarkError(failure)) throw failure;
      throw storageError(failure, 'a bundle file');
    }
    emitTotal(true);
    emit({ status: 'ready', name, key, variant: v, fromCache });
    return openedBundle(store, key, m, v);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

function openedBundle(store: BundleStore, key: string, manifest: Manifest, variant: string): LoadedBundle {
  const readFile = (path: string): Promise<Uint8Array> => store.readFile(key, path);
  return {
    manifest,
    variant,
    key,
    files: variantFileEntries(manifest, variant),
    readFile,
    readBlob: (path) => store.readBlob(key, path),
    readText: async (path) => new TextDecoder().decode(await readFile(path)),
    readJson: async <T>(path: string) => (await readJsonText(new TextDecoder().decode(await readFile(path)), path)) as T,
  };
}

/** Opens a bundle already complete in the store, without any network access (or null). */
export async function openStoredBundle(store: BundleStore, key: string, variant?: LoadBundleOptions['variant']): Promise<LoadedBundle | null> {
  const manifest = await readStoredManifest(store, key);
  if (!manifest) return null;
  const v = resolveVariant(manifest, variant);
  return (await isVariantComplete(store, key, manifest, v)) ? openedBundle(store, key, manifest, v) : null;
}

/** Deletes every stored file of a bundle (model manager). */
export async function deleteBundle(store: BundleStore, key: string): Promise<void> {
  await store.deleteBundle(key);
}

/** Stored bundles with their label, bytes used and completeness (model manager). */
export async function listBundles(store: BundleStore): Promise<BundleSummary[]> {
  const summaries: BundleSummary[] = [];
  for (const bundle of await store.list()) {
    const manifest = bundle.files.some((f) => f.path === MANIFEST_FILE && f.complete) ? await readStoredManifest(store, bundle.key) : null;
    const sizes = new Map(bundle.files.filter((f) => f.complete).map((f) => [f.path, f.bytes]));
    const completeVariants = manifest
      ? Object.keys(manifest.variants).filter((variant) => variantFileEntries(manifest, variant).every((e) => sizes.get(e.path) === e.size))
      : [];
    summaries.push({
      key: bundle.key,
      name: manifest?.name ?? bundle.key,
      label: manifest?.label ?? bundle.key,
      bytesUsed: bundle.bytes,
      complete: completeVariants.length > 0,
      completeVariants,
      hasPartialFiles: bundle.files.some((f) => !f.complete),
      randomWeights: manifest?.randomWeights === true,
    });
  }
  return summaries;
}
