/**
 * Test-only module worker: loads a bundle into the OPFS store from a dedicated worker, where the
 * app's engine runs (sync access handles are available here), and reports what happened.
 */
import { loadBundle, type ProgressInfo } from '../../../src/engine/bundle/loader';
import { parseBundleSource } from '../../../src/engine/bundle/source';
import { OpfsBundleStore, type OpfsStoreOptions } from '../../../src/engine/bundle/store';
import { isHarkError } from '../../../src/engine/errors';

export interface LoadRequest {
  id: number;
  address: string;
  writeMode?: OpfsStoreOptions['writeMode'];
  verifyCached?: 'hash' | 'size';
}

export interface LoadReport {
  ok: boolean;
  ms: number;
  variant?: string;
  key?: string;
  fromCache?: boolean;
  /** Files that were downloaded (a `download` event) and re-verified (`verify`). */
  downloaded: string[];
  verified: string[];
  totals: { loaded: number; total: number }[];
  /** The checked file's first bytes read back through LoadedBundle.readFile. */
  check?: { path: string; bytes: number };
  error?: { code: string; message: string };
  /** FileSystemSyncAccessHandle exists here (dedicated workers only): the store's 'auto' mode uses it. */
  syncAccessHandles: boolean;
}

export async function runLoad(request: Omit<LoadRequest, 'id'>): Promise<LoadReport> {
  const events: ProgressInfo[] = [];
  const start = performance.now();
  const store = new OpfsBundleStore({ writeMode: request.writeMode ?? 'auto' });
  const report = (extra: Partial<LoadReport>): LoadReport => ({
    ok: false,
    ms: performance.now() - start,
    downloaded: [...new Set(events.flatMap((e) => (e.status === 'download' ? [e.file] : [])))].sort(),
    verified: [...new Set(events.flatMap((e) => (e.status === 'verify' ? [e.file] : [])))].sort(),
    totals: events.flatMap((e) => (e.status === 'progress_total' ? [{ loaded: e.loaded, total: e.total }] : [])),
    syncAccessHandles: 'FileSystemSyncAccessHandle' in globalThis,
    ...extra,
  });
  try {
    const source = parseBundleSource(request.address, location.href);
    const bundle = await loadBundle(source, {
      store,
      onProgress: (e) => events.push(e),
      verifyCached: request.verifyCached ?? 'hash',
    });
    const ready = events.find((e) => e.status === 'ready');
    const path = bundle.manifest.tokenizer.tokenizerConfig;
    const bytes = (await bundle.readFile(path)).byteLength;
    return report({ ok: true, variant: bundle.variant, key: bundle.key, fromCache: ready?.status === 'ready' && ready.fromCache, check: { path, bytes } });
  } catch (error) {
    return report({ error: isHarkError(error) ? error.toJSON() : { code: 'unknown', message: String(error) } });
  }
}

const scope = globalThis as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent<LoadRequest>) => void) | null;
  document?: unknown;
};

// Only when running as a worker (the page imports runLoad too, to compare with createWritable).
if (typeof scope.document === 'undefined') {
  scope.onmessage = (event) => {
    const { id, ...request } = event.data;
    void runLoad(request).then((result) => scope.postMessage({ id, result }));
  };
}
