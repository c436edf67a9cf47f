/**
 * Test-only page script: exposes the history API (src/storage/history.ts) and a raw view of the
 * `hark` IndexedDB database, read with the plain IndexedDB API (not through the module), so the
 * test can prove what is really stored.
 */
import * as history from '../../../src/storage/history';
import { base64ToBytes } from '../../../src/audio/wavEncode';
import { decodeWav } from '../../../src/engine/audio/wav';

export interface RawStoreDump {
  exists: boolean;
  stores: string[];
  counts: Record<string, number>;
  keys: Record<string, string[]>;
}

/** Reads the `hark` database straight through indexedDB (without creating it when absent). */
async function rawDump(): Promise<RawStoreDump> {
  const names = (await indexedDB.databases()).map((d) => d.name);
  if (!names.includes(history.HISTORY_DB_NAME)) return { exists: false, stores: [], counts: {}, keys: {} };
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const request = indexedDB.open(history.HISTORY_DB_NAME);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  try {
    const stores = Array.from(db.objectStoreNames).sort();
    const counts: Record<string, number> = {};
    const keys: Record<string, string[]> = {};
    for (const store of stores) {
      const tx = db.transaction(store);
      const [count, all] = await Promise.all([
        new Promise<number>((resolve, reject) => {
          const r = tx.objectStore(store).count();
          r.onsuccess = () => resolve(r.result);
          r.onerror = () => reject(r.error);
        }),
        new Promise<IDBValidKey[]>((resolve, reject) => {
          const r = tx.objectStore(store).getAllKeys();
          r.onsuccess = () => resolve(r.result);
          r.onerror = () => reject(r.error);
        }),
      ]);
      counts[store] = count;
      keys[store] = all.map(String).sort();
    }
    return { exists: true, stores, counts, keys };
  } finally {
    db.close();
  }
}

/** A deterministic test signal. */
function tone(length: number, rate: number): Float32Array {
  return Float32Array.from({ length }, (_, i) => 0.5 * Math.sin((2 * Math.PI * 440 * i) / rate) + 0.01 * Math.cos(i));
}

function sameSamples(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
}

/** A checksum of bytes, so only small summaries travel back to the test. */
function digest(bytes: Uint8Array): number {
  let h = 2166136261;
  for (const b of bytes) h = Math.imul(h ^ b, 16777619) >>> 0;
  return h;
}

const harness = {
  ready: true as const,
  history,
  rawDump,
  tone,
  sameSamples,
  digest,
  base64ToBytes,
  decodeWav,
};

declare global {
  interface Window {
    historyHarness: typeof harness;
  }
}

window.historyHarness = harness;
