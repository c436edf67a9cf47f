/**
 * Where a bundle comes from: a static folder on any web server (the app's own `models/<name>/`
 * included), a Hugging Face model repo, or files the user picked/dropped (Blobs).
 */
import { HarkError } from '../errors';

export type BundleSource =
  | { kind: 'url'; baseUrl: string }
  | { kind: 'hf'; repo: string; revision?: string }
  | { kind: 'files'; files: Map<string, Blob> };

export const HF_ENDPOINT = 'https://huggingface.co';

const HF_REPO = /^([A-Za-z0-9][A-Za-z0-9._-]*)\/([A-Za-z0-9][A-Za-z0-9._-]*)$/;
const HF_URL = /^https:\/\/huggingface\.co\/([^/]+\/[^/]+?)(?:\/(?:tree|resolve)\/([^/]+))?\/?$/;

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

function badInput(input: string): HarkError {
  return new HarkError(
    'bundle/fetch-failed',
    `"${input}" is not a bundle address. Use a folder URL ("https://example.com/models/x/"), a path on ` +
      `this site ("/models/x/") or a Hugging Face repo ("owner/name" or "owner/name@revision").`,
    { input },
  );
}

/**
 * Parses what a user types as a bundle address:
 * - `https://host/path/` (or `…/manifest.json`) → url (a trailing slash is added);
 * - `https://huggingface.co/owner/name[/tree/rev]` → hf;
 * - `/models/x/`, `./x/`, `../x/` → url relative to `origin` (default: the current location);
 * - `owner/name` or `owner/name@rev` → hf.
 */
export function parseBundleSource(input: string, origin?: string): BundleSource {
  const text = input.trim();
  if (text === '') throw badInput(input);
  const hfUrl = HF_URL.exec(text);
  if (hfUrl) {
    const [, repo, revision] = hfUrl;
    return revision ? { kind: 'hf', repo: repo!, revision: decodeURIComponent(revision) } : { kind: 'hf', repo: repo! };
  }
  if (/^https?:\/\//i.test(text)) {
    return { kind: 'url', baseUrl: withSlash(new URL(text.replace(/\/manifest\.json$/, '/')).href) };
  }
  if (/^\.{0,2}\//.test(text)) {
    const base = origin ?? (globalThis as { location?: { href: string } }).location?.href;
    if (!base) throw badInput(input);
    return { kind: 'url', baseUrl: withSlash(new URL(text.replace(/\/manifest\.json$/, '/'), base).href) };
  }
  const at = text.indexOf('@');
  const repo = at >= 0 ? text.slice(0, at) : text;
  const revision = at >= 0 ? text.slice(at + 1) : undefined;
  if (!HF_REPO.test(repo) || revision === '' || (revision !== undefined && /\s/.test(revision))) throw badInput(input);
  return revision ? { kind: 'hf', repo, revision } : { kind: 'hf', repo };
}

/** The URL of a file of a url/hf bundle. hf: `https://huggingface.co/{repo}/resolve/{revision ?? 'main'}/{path}`. */
export function fileUrl(source: BundleSource, path: string): string {
  switch (source.kind) {
    case 'url':
      return new URL(path, withSlash(source.baseUrl)).href;
    case 'hf':
      return `${HF_ENDPOINT}/${source.repo}/resolve/${encodeURIComponent(source.revision ?? 'main')}/${path}`;
    case 'files':
      throw new HarkError('bundle/missing-file', `A bundle made of local files has no URL for "${path}".`, { path });
  }
}

/**
 * A stable id for the store: the same source always maps to the same key, so a later load finds
 * what an earlier one downloaded. Local files have no address; they are keyed by the manifest's
 * `name` (the loader reads it from the files first).
 */
export function bundleKey(source: BundleSource, manifestName?: string): string {
  switch (source.kind) {
    case 'url':
      return `url:${withSlash(new URL(source.baseUrl).href)}`;
    case 'hf':
      return `hf:${source.repo}@${source.revision ?? 'main'}`;
    case 'files':
      return `files:${manifestName ?? 'local'}`;
  }
}

/** A short description of a source for progress events and messages. */
export function sourceLabel(source: BundleSource): string {
  switch (source.kind) {
    case 'url':
      return source.baseUrl;
    case 'hf':
      return source.revision ? `${source.repo}@${source.revision}` : source.repo;
    case 'files':
      return 'local files';
  }
}
