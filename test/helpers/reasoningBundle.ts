/**
 * The tiny reasoning bundle (models/make_reasoning_goldens.py): the tiny bundle's files with a
 * `reasoning` section added to its manifest (the section and the golden runs come from
 * models/golden/reasoning.json). Nothing else differs, so the weights are not copied on disk.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BundleSource } from '../../src/engine/bundle/source';
import type { Manifest } from '../../src/engine/bundle/manifest';
import { GOLDEN_DIR, TINY_BUNDLE_DIR } from './golden';
import { reasoningManifest, type ReasoningGolden } from './reasoningManifest';
import { tinyBundleFiles } from './tinyBundle';

export type { ReasoningGolden, ReasoningGoldenRun } from './reasoningManifest';

export function loadReasoningGolden(): ReasoningGolden {
  return JSON.parse(readFileSync(join(GOLDEN_DIR, 'reasoning.json'), 'utf8')) as ReasoningGolden;
}

/** The tiny reasoning bundle as a `files` source. */
export function reasoningBundleFiles(golden = loadReasoningGolden()): BundleSource {
  const source = tinyBundleFiles();
  if (source.kind !== 'files') throw new Error('tinyBundleFiles returns files');
  const base = JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'manifest.json'), 'utf8')) as Manifest;
  source.files.set('manifest.json', new Blob([JSON.stringify(reasoningManifest(base, golden))]));
  return source;
}
