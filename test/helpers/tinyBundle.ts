/** The tiny bundle as a `files` source (Blobs), as if a user picked its folder. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { BundleSource } from '../../src/engine/bundle/source';
import { TINY_BUNDLE_DIR } from './golden';

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

export function tinyBundleFiles(dir = TINY_BUNDLE_DIR): BundleSource {
  const files = new Map<string, Blob>();
  for (const path of walk(dir)) files.set(relative(dir, path).split('\\').join('/'), new Blob([readFileSync(path)]));
  return { kind: 'files', files };
}
