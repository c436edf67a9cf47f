/**
 * Where downloaded bundle files live: the Origin Private File System in browsers, a directory in
 * Node, or memory where nothing persists. Each bundle (by `bundleKey`) is a folder holding its
 * files under their bundle paths (`onnx/decoder_model_merged.onnx`); a file still downloading is
 * `<path>.part` until `completeFile` renames it, so a complete file is never half-written.
 *
 * Why OPFS and not Cache Storage (what transformers.js uses):
 * - Resume. A Cache entry is a whole Response: it is written all at once or not at all, so a
 *   download broken at 1.9 of 2 GB starts again from zero. An OPFS file can be appended to, and
 *   its length is exactly how far the download got: the loader re-hashes those bytes and asks the
 *   server for the rest with `Range: bytes=N-`.
 * - Memory. Bytes go from `fetch` to disk chunk by chunk while being hashed; with the Cache API,
 *   verifying a response before storing it means reading it twice (tee) or holding it in memory.
 *   Reading back, `getFile()` gives a disk-backed Blob, sliced without loading GBs into memory.
 * - One copy. A PWA service worker's precache lives in Cache Storage too; keeping model files in
 *   OPFS (and fetching them with `cache: 'no-store'`, so the HTTP cache keeps no copy either)
 *   means gigabytes are stored once, and the service worker can leave `models/` alone.
 * - Plain file semantics: per-file delete and sizes for the model manager, works in a dedicated
 *   worker (where inference runs) and in a page alike.
 */
import { HarkError } from '../errors';

/** A `.part` file opened for appending. */
export interface PartialWriter {
  /** Bytes in the file so far, including those written before this writer was opened. */
  readonly length: number;
  append(chunk: Uint8Array): Promise<void>;
  /** Flushes and releases the file; it stays a `.part` until `completeFile`. Always call it. */
  close(): Promise<void>;
}

export interface StoredFile {
  path: string;
  bytes: number;
  /** False for a `.part` file (a download in progress or interrupted). */
  complete: boolean;
}

export interface StoredBundle {
  key: string;
  bytes: number;
  files: StoredFile[];
}

export interface BundleStore {
  readonly kind: 'opfs' | 'fs' | 'memory';
  /** Size of the complete file, or null when it is not stored complete. */
  size(key: string, path: string): Promise<number | null>;
  /** Length of `<path>.part`, or null when there is none. */
  partialSize(key: string, path: string): Promise<number | null>;
  /** A complete file's bytes; `bundle/missing-file` when absent. */
  readFile(key: string, path: string): Promise<Uint8Array>;
  /** A complete file as a Blob (disk-backed for OPFS and fs: nothing is read yet). */
  readBlob(key: string, path: string): Promise<Blob>;
  /** A complete (or, with `partial`, the `.part`) file in chunks of a few MB, for hashing. */
  readChunks(key: string, path: string, options?: { partial?: boolean }): AsyncIterable<Uint8Array>;
  /** Opens `<path>.part` for appending, creating it (or emptying it, with `truncate`). */
  openPartial(key: string, path: string, options?: { truncate?: boolean }): Promise<PartialWriter>;
  /** Renames `<path>.part` to `<path>`, replacing any older complete file. */
  completeFile(key: string, path: string): Promise<void>;
  /** Deletes the file and its `.part`, if any. */
  deleteFile(key: string, path: string): Promise<void>;
  deleteBundle(key: string): Promise<void>;
  list(): Promise<StoredBundle[]>;
  /** Storage use and quota of this origin, where the store can tell (OPFS). */
  estimate?(): Promise<{ usage: number; quota: number } | null>;
}

export const PART_SUFFIX = '.part';
const READ_CHUNK = 8 << 20;

/** The folder name of a bundle in a store: reversible, one path segment, no `.`/`..`. */
export function storeDirName(key: string): string {
  return encodeURIComponent(key).replace(/\./g, '%2E');
}

function keyFromDirName(name: string): string | null {
  try {
    return decodeURIComponent(name);
  } catch {
    return null;
  }
}

/** Bundle paths are relative, '/'-separated, with no empty, '.' or '..' segments. */
export function pathSegments(path: string): string[] {
  const parts = path.split('/');
  if (path === '' || parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\\'))) {
    throw new HarkError('bundle/manifest-invalid', `"${path}" is not a valid bundle file path.`, { path });
  }
  return parts;
}

function missing(key: string, path: string): HarkError {
  return new HarkError('bundle/missing-file', `"${path}" of bundle ${key} is not in the store: load the bundle again.`, { key, path });
}

/** Writes a small file (the manifest) in one go: `.part`, then complete. */
export async function writeWholeFile(store: BundleStore, key: string, path: string, bytes: Uint8Array): Promise<void> {
  const writer = await store.openPartial(key, path, { truncate: true });
  try {
    await writer.append(bytes);
  } finally {
    await writer.close();
  }
  await store.completeFile(key, path);
}

function concat(chunks: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

function sumBytes(files: StoredFile[]): number {
  return files.reduce((sum, f) => sum + f.bytes, 0);
}

function toStoredFile(path: string, bytes: number): StoredFile {
  const complete = !path.endsWith(PART_SUFFIX);
  return { path: complete ? path : path.slice(0, -PART_SUFFIX.length), bytes, complete };
}

// ------------------------------------------------------------------------------------------------
// Memory

interface MemoryFile {
  chunks: Uint8Array[];
  length: number;
}

/** A real store in memory (lost with the page/worker): for environments without persistent storage. */
export class MemoryBundleStore implements BundleStore {
  readonly kind = 'memory' as const;
  private readonly bundles = new Map<string, Map<string, MemoryFile>>();

  private files(key: string, create = false): Map<string, MemoryFile> | undefined {
    let files = this.bundles.get(key);
    if (!files && create) this.bundles.set(key, (files = new Map()));
    return files;
  }

  private get(key: string, path: string): MemoryFile | undefined {
    pathSegments(path);
    return this.files(key)?.get(path);
  }

  async size(key: string, path: string): Promise<number | null> {
    return this.get(key, path)?.length ?? null;
  }

  async partialSize(key: string, path: string): Promise<number | null> {
    return this.get(key, path + PART_SUFFIX)?.length ?? null;
  }

  async readFile(key: string, path: string): Promise<Uint8Array> {
    const file = this.get(key, path);
    if (!file) throw missing(key, path);
    if (file.chunks.length !== 1) file.chunks = [concat(file.chunks, file.length)];
    return file.chunks[0]!.slice();
  }

  async readBlob(key: string, path: string): Promise<Blob> {
    const file = this.get(key, path);
    if (!file) throw missing(key, path);
    return new Blob(file.chunks as Uint8Array<ArrayBuffer>[]);
  }

  async *readChunks(key: string, path: string, options: { partial?: boolean } = {}): AsyncIterable<Uint8Array> {
    const name = options.partial ? path + PART_SUFFIX : path;
    const file = this.get(key, name);
    if (!file) throw missing(key, name);
    for (const chunk of [...file.chunks]) yield chunk;
  }

  async openPartial(key: string, path: string, options: { truncate?: boolean } = {}): Promise<PartialWriter> {
    pathSegments(path);
    const files = this.files(key, true)!;
    const name = path + PART_SUFFIX;
    let file = files.get(name);
    if (!file || options.truncate) files.set(name, (file = { chunks: [], length: 0 }));
    const target = file;
    return {
      get length() {
        return target.length;
      },
      async append(chunk: Uint8Array) {
        target.chunks.push(chunk.slice());
        target.length += chunk.byteLength;
      },
      async close() {},
    };
  }

  async completeFile(key: string, path: string): Promise<void> {
    const files = this.files(key);
    const part = files?.get(path + PART_SUFFIX);
    if (!files || !part) throw missing(key, path + PART_SUFFIX);
    files.delete(path + PART_SUFFIX);
    files.set(path, part);
  }

  async deleteFile(key: string, path: string): Promise<void> {
    const files = this.files(key);
    files?.delete(path);
    files?.delete(path + PART_SUFFIX);
  }

  async deleteBundle(key: string): Promise<void> {
    this.bundles.delete(key);
  }

  async list(): Promise<StoredBundle[]> {
    return [...this.bundles]
      .map(([key, files]) => {
        const stored = [...files].map(([path, file]) => toStoredFile(path, file.length)).sort((a, b) => a.path.localeCompare(b.path));
        return { key, bytes: sumBytes(stored), files: stored };
      })
      .sort((a, b) => a.key.localeCompare(b.key));
  }
}

// ------------------------------------------------------------------------------------------------
// Node: a directory

type NodeFs = typeof import('node:fs/promises');
type NodeFsSync = typeof import('node:fs');
// A non-literal specifier keeps bundlers from trying to pack node:fs into the browser build.
const FS_PROMISES = 'node:fs/promises';
const FS_SYNC = 'node:fs';

function isNotFound(error: unknown): boolean {
  const e = error as { code?: string; name?: string };
  return e?.code === 'ENOENT' || e?.name === 'NotFoundError';
}

/** A store in a directory (Node: tests and the CLI). One sub-directory per bundle. */
export class FsBundleStore implements BundleStore {
  readonly kind = 'fs' as const;
  private fsPromise: Promise<NodeFs> | undefined;

  constructor(readonly root: string) {}

  private fs(): Promise<NodeFs> {
    this.fsPromise ??= import(/* @vite-ignore */ FS_PROMISES) as Promise<NodeFs>;
    return this.fsPromise;
  }

  private dir(key: string): string {
    return `${this.root.replace(/\/+$/, '')}/${storeDirName(key)}`;
  }

  private file(key: string, path: string): string {
    return `${this.dir(key)}/${pathSegments(path).join('/')}`;
  }

  private async statSize(file: string): Promise<number | null> {
    const fs = await this.fs();
    try {
      const stat = await fs.stat(file);
      return stat.isFile() ? stat.size : null;
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  size(key: string, path: string): Promise<number | null> {
    return this.statSize(this.file(key, path));
  }

  partialSize(key: string, path: string): Promise<number | null> {
    return this.statSize(this.file(key, path) + PART_SUFFIX);
  }

  async readFile(key: string, path: string): Promise<Uint8Array> {
    const fs = await this.fs();
    try {
      const buffer = await fs.readFile(this.file(key, path));
      return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    } catch (error) {
      if (isNotFound(error)) throw missing(key, path);
      throw error;
    }
  }

  async readBlob(key: string, path: string): Promise<Blob> {
    const file = this.file(key, path);
    if ((await this.statSize(file)) === null) throw missing(key, path);
    const fsSync = (await import(/* @vite-ignore */ FS_SYNC)) as NodeFsSync;
    if (typeof fsSync.openAsBlob === 'function') return fsSync.openAsBlob(file);
    return new Blob([(await this.readFile(key, path)) as Uint8Array<ArrayBuffer>]);
  }

  async *readChunks(key: string, path: string, options: { partial?: boolean } = {}): AsyncIterable<Uint8Array> {
    const fs = await this.fs();
    const name = options.partial ? path + PART_SUFFIX : path;
    let handle;
    try {
      handle = await fs.open(this.file(key, name), 'r');
    } catch (error) {
      if (isNotFound(error)) throw missing(key, name);
      throw error;
    }
    try {
      for (;;) {
        const buffer = new Uint8Array(READ_CHUNK);
        const { bytesRead } = await handle.read(buffer, 0, READ_CHUNK, null);
        if (bytesRead === 0) break;
        yield bytesRead === READ_CHUNK ? buffer : buffer.subarray(0, bytesRead);
      }
    } finally {
      await handle.close();
    }
  }

  async openPartial(key: string, path: string, options: { truncate?: boolean } = {}): Promise<PartialWriter> {
    const fs = await this.fs();
    const file = this.file(key, path) + PART_SUFFIX;
    await fs.mkdir(file.slice(0, file.lastIndexOf('/')), { recursive: true });
    const handle = await fs.open(file, options.truncate ? 'w' : 'a');
    let length = (await handle.stat()).size;
    return {
      get length() {
        return length;
      },
      async append(chunk: Uint8Array) {
        let offset = 0;
        while (offset < chunk.byteLength) {
          const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
          offset += bytesWritten;
        }
        length += chunk.byteLength;
      },
      async close() {
        await handle.close();
      },
    };
  }

  async completeFile(key: string, path: string): Promise<void> {
    const fs = await this.fs();
    const file = this.file(key, path);
    try {
      await fs.rename(file + PART_SUFFIX, file);
    } catch (error) {
      if (isNotFound(error)) throw missing(key, path + PART_SUFFIX);
      throw error;
    }
  }

  async deleteFile(key: string, path: string): Promise<void> {
    const fs = await this.fs();
    const file = this.file(key, path);
    await fs.rm(file, { force: true });
    await fs.rm(file + PART_SUFFIX, { force: true });
  }

  async deleteBundle(key: string): Promise<void> {
    const fs = await this.fs();
    await fs.rm(this.dir(key), { recursive: true, force: true });
  }

  async list(): Promise<StoredBundle[]> {
    const fs = await this.fs();
    let names: string[];
    try {
      names = await fs.readdir(this.root);
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
    const bundles: StoredBundle[] = [];
    for (const name of names.sort()) {
      const key = keyFromDirName(name);
      const dir = `${this.root.replace(/\/+$/, '')}/${name}`;
      if (key === null || !(await fs.stat(dir)).isDirectory()) continue;
      const files: StoredFile[] = [];
      const walk = async (folder: string, prefix: string): Promise<void> => {
        for (const entry of await fs.readdir(folder, { withFileTypes: true })) {
          const full = `${folder}/${entry.name}`;
          if (entry.isDirectory()) await walk(full, `${prefix}${entry.name}/`);
          else if (entry.isFile()) files.push(toStoredFile(prefix + entry.name, (await fs.stat(full)).size));
        }
      };
      await walk(dir, '');
      files.sort((a, b) => a.path.localeCompare(b.path));
      bundles.push({ key, bytes: sumBytes(files), files });
    }
    return bundles;
  }
}

// ------------------------------------------------------------------------------------------------
// Browser: the Origin Private File System

/** The parts of the File System API used here (typed locally: lib.dom lags behind, e.g. `move`). */
interface OpfsDir {
  kind: 'directory';
  name: string;
  getDirectoryHandle(name: string, options?: { create?: boolean }): Promise<OpfsDir>;
  getFileHandle(name: string, options?: { create?: boolean }): Promise<OpfsFile>;
  removeEntry(name: string, options?: { recursive?: boolean }): Promise<void>;
  entries(): AsyncIterableIterator<[string, OpfsDir | OpfsFile]>;
}

interface SyncAccessHandle {
  getSize(): number;
  truncate(size: number): void;
  write(buffer: Uint8Array, options?: { at?: number }): number;
  flush(): void;
  close(): void;
}

interface Writable {
  seek(position: number): Promise<void>;
  write(data: Uint8Array<ArrayBuffer>): Promise<void>;
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
}

interface OpfsFile {
  kind: 'file';
  name: string;
  getFile(): Promise<File>;
  createWritable?(options?: { keepExistingData?: boolean }): Promise<Writable>;
  createSyncAccessHandle?(): Promise<SyncAccessHandle>;
  move?(newName: string): Promise<void>;
}

interface StorageManagerLike {
  getDirectory(): Promise<OpfsDir>;
  estimate?(): Promise<{ usage?: number; quota?: number }>;
  persist?(): Promise<boolean>;
  persisted?(): Promise<boolean>;
}

function storageManager(): StorageManagerLike | undefined {
  const nav = (globalThis as unknown as { navigator?: { storage?: StorageManagerLike } }).navigator;
  return typeof nav?.storage?.getDirectory === 'function' ? nav.storage : undefined;
}

export function opfsAvailable(): boolean {
  return storageManager() !== undefined;
}

function isOpfsNotFound(error: unknown): boolean {
  const name = (error as { name?: string })?.name;
  return name === 'NotFoundError' || name === 'TypeMismatchError';
}

/** Writes are batched into blocks of this size before they reach a `createWritable` stream. */
const WRITABLE_BLOCK = 4 << 20;

export interface OpfsStoreOptions {
  /** Top-level OPFS folder (default `hark-bundles`). */
  folder?: string;
  /**
   * How `.part` files are written. `auto` (default): a sync access handle where one exists (only
   * in dedicated workers: writes in place, nothing lost but unflushed bytes if the tab dies), else
   * `createWritable` (pages too; Chromium writes to a swap file that replaces the file on close,
   * so a crash loses what this writer wrote, but an abort still keeps it).
   */
  writeMode?: 'auto' | 'sync' | 'writable';
}

/** Browser store in the Origin Private File System; works in a dedicated worker and in a page. */
export class OpfsBundleStore implements BundleStore {
  readonly kind = 'opfs' as const;
  private readonly folder: string;
  private readonly writeMode: 'auto' | 'sync' | 'writable';
  private rootPromise: Promise<OpfsDir> | undefined;

  constructor(options: OpfsStoreOptions = {}) {
    this.folder = options.folder ?? 'hark-bundles';
    this.writeMode = options.writeMode ?? 'auto';
  }

  private root(): Promise<OpfsDir> {
    this.rootPromise ??= (async () => {
      const storage = storageManager();
      if (!storage) {
        throw new HarkError(
          'bundle/storage',
          'This browser has no Origin Private File System, so models cannot be stored: use a current Chrome, Edge, Firefox or Safari (not a private window in older versions).',
        );
      }
      return (await storage.getDirectory()).getDirectoryHandle(this.folder, { create: true });
    })();
    return this.rootPromise;
  }

  /** The folder holding `path` (created with `create`), and the file's own name. */
  private async locate(key: string, path: string, create: boolean): Promise<{ dir: OpfsDir; name: string } | null> {
    const parts = pathSegments(path);
    try {
      let dir = await (await this.root()).getDirectoryHandle(storeDirName(key), { create });
      for (const part of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(part, { create });
      return { dir, name: parts[parts.length - 1]! };
    } catch (error) {
      if (!create && isOpfsNotFound(error)) return null;
      throw error;
    }
  }

  private async fileHandle(key: string, path: string): Promise<OpfsFile | null> {
    const at = await this.locate(key, path, false);
    if (!at) return null;
    try {
      return await at.dir.getFileHandle(at.name);
    } catch (error) {
      if (isOpfsNotFound(error)) return null;
      throw error;
    }
  }

  private async fileSize(key: string, path: string): Promise<number | null> {
    const handle = await this.fileHandle(key, path);
    return handle ? (await handle.getFile()).size : null;
  }

  size(key: string, path: string): Promise<number | null> {
    return this.fileSize(key, path);
  }

  partialSize(key: string, path: string): Promise<number | null> {
    return this.fileSize(key, path + PART_SUFFIX);
  }

  async readBlob(key: string, path: string): Promise<Blob> {
    const handle = await this.fileHandle(key, path);
    if (!handle) throw missing(key, path);
    return handle.getFile();
  }

  async readFile(key: string, path: string): Promise<Uint8Array> {
    return new Uint8Array(await (await this.readBlob(key, path)).arrayBuffer());
  }

  async *readChunks(key: string, path: string, options: { partial?: boolean } = {}): AsyncIterable<Uint8Array> {
    const name = options.partial ? path + PART_SUFFIX : path;
    const file = await this.readBlob(key, name);
    for (let offset = 0; offset < file.size; offset += READ_CHUNK) {
      yield new Uint8Array(await file.slice(offset, offset + READ_CHUNK).arrayBuffer());
    }
  }

  async openPartial(key: string, path: string, options: { truncate?: boolean } = {}): Promise<PartialWriter> {
    const at = (await this.locate(key, path, true))!;
    const handle = await at.dir.getFileHandle(at.name + PART_SUFFIX, { create: true });
    const useSync =
      this.writeMode === 'sync' || (this.writeMode === 'auto' && typeof handle.createSyncAccessHandle === 'function');
    if (useSync) {
      if (typeof handle.createSyncAccessHandle !== 'function') {
        throw new HarkError('bundle/storage', 'Sync access handles exist only in dedicated workers: use writeMode "writable" here.');
      }
      return syncWriter(await handle.createSyncAccessHandle(), options.truncate === true);
    }
    if (typeof handle.createWritable !== 'function') {
      throw new HarkError('bundle/storage', 'This browser cannot write files in the Origin Private File System from here: load models in a worker or update the browser.');
    }
    const existing = options.truncate ? 0 : (await handle.getFile()).size;
    const writable = await handle.createWritable({ keepExistingData: !options.truncate });
    await writable.seek(existing);
    return writableWriter(writable, existing);
  }

  async completeFile(key: string, path: string): Promise<void> {
    const at = await this.locate(key, path, false);
    const part = at && (await at.dir.getFileHandle(at.name + PART_SUFFIX).catch(() => null));
    if (!at || !part) throw missing(key, path + PART_SUFFIX);
    await at.dir.removeEntry(at.name).catch((error: unknown) => {
      if (!isOpfsNotFound(error)) throw error;
    });
    if (typeof part.move === 'function') {
      await part.move(at.name);
      return;
    }
    // No FileSystemHandle.move (older browsers): copy, then delete the .part.
    const file = await part.getFile();
    const target = await at.dir.getFileHandle(at.name, { create: true });
    const writer = target.createSyncAccessHandle
      ? syncWriter(await target.createSyncAccessHandle(), true)
      : writableWriter(await target.createWritable!({ keepExistingData: false }), 0);
    try {
      for (let offset = 0; offset < file.size; offset += READ_CHUNK) {
        await writer.append(new Uint8Array(await file.slice(offset, offset + READ_CHUNK).arrayBuffer()));
      }
    } finally {
      await writer.close();
    }
    await at.dir.removeEntry(at.name + PART_SUFFIX);
  }

  async deleteFile(key: string, path: string): Promise<void> {
    const at = await this.locate(key, path, false);
    if (!at) return;
    for (const name of [at.name, at.name + PART_SUFFIX]) {
      await at.dir.removeEntry(name).catch((error: unknown) => {
        if (!isOpfsNotFound(error)) throw error;
      });
    }
  }

  async deleteBundle(key: string): Promise<void> {
    await (await this.root()).removeEntry(storeDirName(key), { recursive: true }).catch((error: unknown) => {
      if (!isOpfsNotFound(error)) throw error;
    });
  }

  async list(): Promise<StoredBundle[]> {
    const bundles: StoredBundle[] = [];
    for await (const [name, handle] of (await this.root()).entries()) {
      const key = keyFromDirName(name);
      if (key === null || handle.kind !== 'directory') continue;
      const files: StoredFile[] = [];
      const walk = async (dir: OpfsDir, prefix: string): Promise<void> => {
        for await (const [entryName, entry] of dir.entries()) {
          if (entry.kind === 'directory') await walk(entry, `${prefix}${entryName}/`);
          else files.push(toStoredFile(prefix + entryName, (await entry.getFile()).size));
        }
      };
      await walk(handle, '');
      files.sort((a, b) => a.path.localeCompare(b.path));
      bundles.push({ key, bytes: sumBytes(files), files });
    }
    return bundles.sort((a, b) => a.key.localeCompare(b.key));
  }

  /** Storage use and quota of this origin (`navigator.storage.estimate()`), when available. */
  async estimate(): Promise<{ usage: number; quota: number } | null> {
    const estimate = await storageManager()?.estimate?.();
    return estimate ? { usage: estimate.usage ?? 0, quota: estimate.quota ?? 0 } : null;
  }

  /**
   * Asks the browser not to evict stored models under storage pressure. `persist()` exists only
   * in pages; in a worker this reports the current state.
   */
  async persist(): Promise<boolean> {
    const storage = storageManager();
    if (typeof storage?.persist === 'function') return storage.persist();
    return (await storage?.persisted?.()) ?? false;
  }
}

function syncWriter(access: SyncAccessHandle, truncate: boolean): PartialWriter {
  if (truncate) access.truncate(0);
  let length = access.getSize();
  let closed = false;
  return {
    get length() {
      return length;
    },
    async append(chunk: Uint8Array) {
      let offset = 0;
      while (offset < chunk.byteLength) {
        const written = access.write(chunk.subarray(offset), { at: length + offset });
        if (written <= 0) throw new HarkError('bundle/storage', 'The browser refused to write a model file (disk full?).');
        offset += written;
      }
      length += chunk.byteLength;
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        access.flush();
      } finally {
        access.close();
      }
    },
  };
}

function writableWriter(writable: Writable, initialLength: number): PartialWriter {
  let length = initialLength;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let closed = false;
  const flush = async (): Promise<void> => {
    if (pendingBytes === 0) return;
    const block = pending.length === 1 ? pending[0]! : concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    await writable.write(block as Uint8Array<ArrayBuffer>);
  };
  return {
    get length() {
      return length;
    },
    async append(chunk: Uint8Array) {
      pending.push(chunk);
      pendingBytes += chunk.byteLength;
      length += chunk.byteLength;
      if (pendingBytes >= WRITABLE_BLOCK) await flush();
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        await flush();
      } finally {
        await writable.close();
      }
    },
  };
}

// ------------------------------------------------------------------------------------------------
// The worker's store: OPFS where the browser allows it, else memory

/**
 * The Origin Private File System when this browser lets the site use it, else memory: some
 * private windows and older browsers have no OPFS, or refuse it (`getDirectory()` rejects). Then
 * models still load and answer, but live only as long as the worker; `persistent()` says which.
 */
export class DeviceBundleStore implements BundleStore {
  private current: BundleStore | null = null;
  private readonly chosen: Promise<BundleStore>;

  constructor(options: OpfsStoreOptions = {}) {
    this.chosen = (async (): Promise<BundleStore> => {
      if (opfsAvailable()) {
        const opfs = new OpfsBundleStore(options);
        try {
          await opfs.list(); // opens (creates) the store's folder: fails where OPFS is refused
          return opfs;
        } catch {
          // Refused (e.g. SecurityError in a private window): fall through to memory.
        }
      }
      return new MemoryBundleStore();
    })().then((store) => (this.current = store));
  }

  /** 'opfs' until the check has answered otherwise. */
  get kind(): 'opfs' | 'fs' | 'memory' {
    return this.current?.kind ?? 'opfs';
  }

  /** Whether models are kept on the device (false: in memory, until the worker ends). */
  async persistent(): Promise<boolean> {
    return (await this.chosen).kind !== 'memory';
  }

  async size(key: string, path: string): Promise<number | null> {
    return (await this.chosen).size(key, path);
  }
  async partialSize(key: string, path: string): Promise<number | null> {
    return (await this.chosen).partialSize(key, path);
  }
  async readFile(key: string, path: string): Promise<Uint8Array> {
    return (await this.chosen).readFile(key, path);
  }
  async readBlob(key: string, path: string): Promise<Blob> {
    return (await this.chosen).readBlob(key, path);
  }
  async *readChunks(key: string, path: string, options?: { partial?: boolean }): AsyncIterable<Uint8Array> {
    yield* (await this.chosen).readChunks(key, path, options);
  }
  async openPartial(key: string, path: string, options?: { truncate?: boolean }): Promise<PartialWriter> {
    return (await this.chosen).openPartial(key, path, options);
  }
  async completeFile(key: string, path: string): Promise<void> {
    return (await this.chosen).completeFile(key, path);
  }
  async deleteFile(key: string, path: string): Promise<void> {
    return (await this.chosen).deleteFile(key, path);
  }
  async deleteBundle(key: string): Promise<void> {
    return (await this.chosen).deleteBundle(key);
  }
  async list(): Promise<StoredBundle[]> {
    return (await this.chosen).list();
  }
  async estimate(): Promise<{ usage: number; quota: number } | null> {
    const store = await this.chosen;
    return store instanceof OpfsBundleStore ? store.estimate() : null;
  }
}
