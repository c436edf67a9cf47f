/**
 * `models/index.json`: the list of model bundles a Hark site serves under its `models/` path, so
 * the model manager can offer them. It is generated from the bundles' manifests by
 * vite/serveBundles.ts (served by the dev server, written into the build) and fetched by the page
 * from the network only: the service worker never caches anything under `models/`.
 *
 * ```json
 * {
 *   "format": "hark-model-index",
 *   "formatVersion": 1,
 *   "models": [
 *     {
 *       "name": "salmonn-tiny",
 *       "path": "salmonn-tiny/",
 *       "label": "Tiny test model, random weights",
 *       "description": "…",
 *       "randomWeights": true,
 *       "bytes": 19884906,
 *       "variants": { "int4": { "bytes": 4168913, "tested": true, "fitsWasm": true }, "fp32": { … } }
 *     }
 *   ]
 * }
 * ```
 * `path` is the bundle's folder relative to index.json; `bytes` is every file the manifest lists
 * (all variants) and `variants[v].bytes` what loading variant `v` downloads. Plain data with no
 * engine dependency: the page reads it without loading the engine.
 */

import { HarkError } from './engine/errors';

export const MODEL_INDEX_FORMAT = 'hark-model-index';
export const MODEL_INDEX_VERSION = 1;
export const MODEL_INDEX_FILE = 'index.json';

export interface ModelIndexVariant {
  /** Bytes that loading this variant downloads (its graphs, tokenizer and feature config). */
  bytes: number;
  /** The bundle maker ran this variant (untested ones are not picked automatically). */
  tested: boolean;
  /**
   * Whether it fits WebAssembly's 4 GiB heap (src/engine/wasmMemory.ts, computed when the index is
   * built): false lets the list say "needs a GPU" before anyone clicks. Absent in older indexes.
   */
  fitsWasm?: boolean;
}

export interface ModelIndexEntry {
  /** The manifest's `name`, which is also the bundle's folder name. */
  name: string;
  /** The bundle's folder relative to index.json, with a trailing slash. */
  path: string;
  label: string;
  description: string;
  randomWeights: boolean;
  /** Every file the manifest lists, all variants together. */
  bytes: number;
  variants: Record<string, ModelIndexVariant>;
}

export interface ModelIndex {
  format: typeof MODEL_INDEX_FORMAT;
  formatVersion: typeof MODEL_INDEX_VERSION;
  models: ModelIndexEntry[];
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const isSize = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value) && value >= 0;

/**
 * Reads a fetched index leniently: entries that are malformed (or whose `path` leaves the
 * `models/` folder) are dropped rather than failing the whole list. Throws `bundle/manifest-invalid`
 * only when the document is not a version-1 index at all. (errors.ts has no dependencies, so the
 * page still reads the index without loading the engine.)
 */
export function readModelIndex(json: unknown): ModelIndexEntry[] {
  if (!isRecord(json) || json.format !== MODEL_INDEX_FORMAT || json.formatVersion !== MODEL_INDEX_VERSION || !Array.isArray(json.models)) {
    throw new HarkError(
      'bundle/manifest-invalid',
      `This site's list of models (${MODEL_INDEX_FILE}) is not a ${MODEL_INDEX_FORMAT} version ${MODEL_INDEX_VERSION} document, so no bundles are offered from it.`,
    );
  }
  const entries: ModelIndexEntry[] = [];
  for (const item of json.models) {
    if (!isRecord(item)) continue;
    const { name, path, label, description, randomWeights, bytes, variants } = item;
    if (typeof name !== 'string' || typeof path !== 'string' || typeof label !== 'string' || !isSize(bytes) || !isRecord(variants)) continue;
    if (!/^[a-z0-9][a-z0-9._-]*\/$/.test(path)) continue;
    // Object.fromEntries defines own properties: a variant named "__proto__" stays data instead
    // of replacing the object's prototype (as `cleanVariants[name] = …` would).
    const cleanVariants: Record<string, ModelIndexVariant> = Object.fromEntries(
      Object.entries(variants)
        .filter((e): e is [string, Record<string, unknown> & { bytes: number }] => isRecord(e[1]) && isSize(e[1].bytes))
        .map(([variant, spec]) => [variant, { bytes: spec.bytes, tested: spec.tested === true, ...(typeof spec.fitsWasm === 'boolean' ? { fitsWasm: spec.fitsWasm } : {}) }]),
    );
    entries.push({
      name,
      path,
      label,
      description: typeof description === 'string' ? description : '',
      randomWeights: randomWeights === true,
      bytes,
      variants: cleanVariants,
    });
  }
  return entries;
}
