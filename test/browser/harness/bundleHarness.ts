/**
 * Test-only page script: drives the bundle loader in a module Web Worker (bundleWorker.ts), or in
 * the page itself, and reads/corrupts the OPFS store directly from the page.
 */
import { bundleKey, parseBundleSource } from '../../../src/engine/bundle/source';
import { OpfsBundleStore, storeDirName } from '../../../src/engine/bundle/store';
import { listBundles, type BundleSummary } from '../../../src/engine/bundle/loader';
import { runLoad, type LoadReport, type LoadRequest } from './bundleWorker';

const worker = new Worker(new URL('./bundleWorker.ts', import.meta.url), { type: 'module' });
let nextId = 1;
const pending = new Map<number, (report: LoadReport) => void>();
worker.onmessage = (event: MessageEvent<{ id: number; result: LoadReport }>) => {
  pending.get(event.data.id)?.(event.data.result);
  pending.delete(event.data.id);
};

function loadInWorker(address: string, options: Omit<LoadRequest, 'id' | 'address'> = {}): Promise<LoadReport> {
  const id = nextId++;
  return new Promise((resolve) => {
    pending.set(id, resolve);
    worker.postMessage({ id, address, ...options } satisfies LoadRequest);
  });
}

function loadInPage(address: string): Promise<LoadReport> {
  return runLoad({ address, writeMode: 'writable' });
}

/** Flips one byte of a stored file in place (same size), straight through the OPFS API. */
async function corrupt(address: string, path: string, at = 1000): Promise<{ before: number; after: number; size: number }> {
  const key = bundleKey(parseBundleSource(address, location.href));
  let dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('hark-bundles');
  dir = await dir.getDirectoryHandle(storeDirName(key));
  const parts = path.split('/');
  for (const part of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(part);
  const handle = await dir.getFileHandle(parts.at(-1)!);
  const file = await handle.getFile();
  const before = new Uint8Array(await file.slice(at, at + 1).arrayBuffer())[0]!;
  const writable = await handle.createWritable({ keepExistingData: true });
  await writable.write({ type: 'write', position: at, data: new Uint8Array([before ^ 0xff]) });
  await writable.close();
  const after = await handle.getFile();
  return { before, after: new Uint8Array(await after.slice(at, at + 1).arrayBuffer())[0]!, size: after.size };
}

function stored(): Promise<BundleSummary[]> {
  return listBundles(new OpfsBundleStore());
}

async function clear(): Promise<void> {
  await (await navigator.storage.getDirectory()).removeEntry('hark-bundles', { recursive: true }).catch(() => {});
}

const api = { loadInWorker, loadInPage, corrupt, stored, clear, ready: true as const };

declare global {
  interface Window {
    bundleHarness: typeof api;
  }
}

window.bundleHarness = api;
