/**
 * Serves the model bundles in `models/bundles/<name>/` as static files at `<base>models/<name>/`:
 * from the dev server (with content types, ETag and HTTP Range support, so the loader's resume
 * path works in development), and copied into the build output as `models/<name>/…` (which
 * `vite preview` and any static host then serve as plain files). Next to them,
 * `<base>models/index.json` lists the bundles for the model manager (see src/modelIndex.ts): made
 * from their manifests on every dev request, and written once into the build.
 */
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, relative, resolve, sep } from 'node:path';
import type { Plugin } from 'vite';
import { parseManifest, variantBytes, type Manifest } from '../src/engine/bundle/manifest';
import { WASM_HEAP_LIMIT_BYTES, wasmMemoryEstimate } from '../src/engine/wasmMemory';
import { MODEL_INDEX_FILE, MODEL_INDEX_FORMAT, MODEL_INDEX_VERSION, type ModelIndex, type ModelIndexEntry } from '../src/modelIndex';

export interface ServeBundlesOptions {
  /** Folder holding one sub-folder per bundle (default `models/bundles`, relative to the root). */
  dir?: string;
  /** Bundle names to serve (default: every sub-folder with a manifest.json). */
  include?: string[];
}

const CONTENT_TYPES: Record<string, string> = {
  '.json': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.model': 'application/octet-stream',
};

export function contentTypeFor(path: string): string {
  const dot = path.lastIndexOf('.');
  return (dot >= 0 && CONTENT_TYPES[path.slice(dot).toLowerCase()]) || 'application/octet-stream';
}

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => {
      if (entry.isDirectory()) return listFiles(join(dir, entry.name), `${prefix}${entry.name}/`);
      return entry.isFile() ? [`${prefix}${entry.name}`] : [];
    })
    .sort();
}

function bundleNames(root: string, include?: string[]): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(root, e.name, 'manifest.json')))
    .map((e) => e.name)
    .filter((name) => !include || include.includes(name))
    .sort();
}

/**
 * The `models/index.json` document for the bundles in `dir` (each sub-folder with a manifest.json,
 * optionally only those in `include`). A bundle whose manifest does not validate is left out and
 * reported through `warn`: listing it would only offer a download that fails.
 */
export function buildModelIndex(dir: string, include?: string[], warn: (message: string) => void = () => {}): ModelIndex {
  const models: ModelIndexEntry[] = [];
  for (const folder of bundleNames(dir, include)) {
    let manifest: Manifest;
    try {
      manifest = parseManifest(JSON.parse(readFileSync(join(dir, folder, 'manifest.json'), 'utf8')));
    } catch (error) {
      warn(`models/${MODEL_INDEX_FILE}: left out ${folder}/ (${(error as Error).message})`);
      continue;
    }
    models.push({
      name: manifest.name,
      path: `${folder}/`,
      label: manifest.label,
      description: manifest.description,
      randomWeights: manifest.randomWeights === true,
      bytes: manifest.files.reduce((sum, file) => sum + file.size, 0),
      variants: Object.fromEntries(
        Object.entries(manifest.variants)
          .filter(([, spec]) => spec !== undefined)
          .map(([variant, spec]) => [
            variant,
            { bytes: variantBytes(manifest, variant), tested: spec!.tested, fitsWasm: wasmMemoryEstimate(manifest, variant).total <= WASM_HEAP_LIMIT_BYTES },
          ]),
      ),
    });
  }
  return { format: MODEL_INDEX_FORMAT, formatVersion: MODEL_INDEX_VERSION, models };
}

/** Parses a single `bytes=` range against a size: [start, end] inclusive, 'invalid', or null (ignore). */
export function parseRange(header: string | undefined, size: number): [number, number] | 'unsatisfiable' | null {
  if (!header) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return null; // multiple or malformed ranges: answer with the whole file
  const [, a, b] = match;
  if (a === '' && b === '') return null;
  let start: number;
  let end: number;
  if (a === '') {
    const suffix = Number(b);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return [start, end];
}

/** Sends one static file with Range support (used by the dev middleware). */
export function sendFile(req: IncomingMessage, res: ServerResponse, file: string): void {
  const stat = statSync(file);
  const etag = `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
  res.setHeader('Content-Type', contentTypeFor(file));
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('ETag', etag);
  res.setHeader('Last-Modified', stat.mtime.toUTCString());
  if (req.headers['if-none-match'] === etag && !req.headers.range) {
    res.statusCode = 304;
    res.end();
    return;
  }
  const ifRange = req.headers['if-range'];
  const range = ifRange && ifRange !== etag ? null : parseRange(req.headers.range, stat.size);
  if (range === 'unsatisfiable') {
    res.statusCode = 416;
    res.setHeader('Content-Range', `bytes */${stat.size}`);
    res.end();
    return;
  }
  const [start, end] = range ?? [0, stat.size - 1];
  res.statusCode = range ? 206 : 200;
  if (range) res.setHeader('Content-Range', `bytes ${start}-${end}/${stat.size}`);
  res.setHeader('Content-Length', String(Math.max(0, end - start + 1)));
  if (req.method === 'HEAD' || stat.size === 0) {
    res.end();
    return;
  }
  const stream = createReadStream(file, { start, end });
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

export function serveBundles(options: ServeBundlesOptions = {}): Plugin {
  let base = '/';
  let root = process.cwd();
  const bundlesDir = (): string => resolve(root, options.dir ?? 'models/bundles');
  return {
    name: 'hark-serve-bundles',
    configResolved(config) {
      base = config.base;
      root = config.root;
    },
    configureServer(server) {
      server.middlewares.use((req, res, next) => {
        if (req.method !== 'GET' && req.method !== 'HEAD') return next();
        const prefix = `${base}models/`;
        let url: string;
        try {
          url = decodeURIComponent((req.url ?? '').split('?')[0] ?? '');
        } catch {
          return next();
        }
        if (!url.startsWith(prefix)) return next();
        const dir = bundlesDir();
        if (url === `${prefix}${MODEL_INDEX_FILE}`) {
          const body = JSON.stringify(buildModelIndex(dir, options.include, (message) => server.config.logger.warn(message)));
          res.setHeader('Content-Type', contentTypeFor(MODEL_INDEX_FILE));
          res.setHeader('Cache-Control', 'no-cache');
          res.setHeader('Content-Length', String(Buffer.byteLength(body)));
          res.end(req.method === 'HEAD' ? undefined : body);
          return;
        }
        const [name, ...rest] = url.slice(prefix.length).split('/');
        // Only bundle folders are ours; anything else under /models/ is left to Vite.
        if (!name || !bundleNames(dir, options.include).includes(name)) return next();
        const bundleDir = join(dir, name);
        const file = resolve(bundleDir, rest.join('/'));
        const inside = relative(bundleDir, file);
        if (inside === '' || inside.startsWith('..') || inside.split(sep).includes('..') || !existsSync(file) || !statSync(file).isFile()) {
          res.statusCode = 404;
          res.setHeader('Content-Type', 'text/plain; charset=utf-8');
          res.end(`Not found: ${url}`);
          return;
        }
        sendFile(req, res, file);
      });
    },
    generateBundle() {
      const dir = bundlesDir();
      const index = buildModelIndex(dir, options.include, (message) => this.warn(message));
      this.emitFile({ type: 'asset', fileName: `models/${MODEL_INDEX_FILE}`, source: `${JSON.stringify(index, null, 2)}\n` });
      for (const name of bundleNames(dir, options.include)) {
        for (const path of listFiles(join(dir, name))) {
          this.emitFile({ type: 'asset', fileName: `models/${name}/${path}`, source: readFileSync(join(dir, name, path)) });
        }
      }
    },
  };
}
