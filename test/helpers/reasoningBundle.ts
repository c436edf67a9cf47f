/**
 * The tiny reasoning bundle (models/make_reasoning_goldens.py): the tiny bundle's files with a
 * `reasoning` section added to its manifest (the section and the golden runs come from
 * models/golden/reasoning.json). Nothing else differs, so the weights are not copied on disk.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BundleSource } from '../../src/engine/bundle/source';
import type { Manifest, ReasoningSpec } from '../../src/engine/bundle/manifest';
import { GOLDEN_DIR, TINY_BUNDLE_DIR } from './golden';
import { tinyBundleFiles } from './tinyBundle';

export interface ReasoningGoldenRun {
  thinkingBudget: number;
  /** Every generated or forced id (no stop id). */
  tokens: number[];
  thinkingTokens: number;
  forcedClose: boolean;
  /** Index of the first forced id (null: not forced). */
  forcedAt: number | null;
  /** Index where the answer's tokens begin (null: still thinking). */
  answerStart: number | null;
  thoughts: string;
  answer: string;
}

export interface ReasoningGolden {
  bundle: string;
  baseBundle: string;
  label: string;
  bundleDescription: string;
  reasoning: ReasoningSpec;
  input: string;
  audio: string;
  prompt: string;
  precision: 'fp32';
  loraScale: number;
  maxNewTokens: number;
  thinkOpenIds: number[];
  thinkCloseIds: number[];
  forcedCloseIds: number[];
  runs: ReasoningGoldenRun[];
}

export function loadReasoningGolden(): ReasoningGolden {
  return JSON.parse(readFileSync(join(GOLDEN_DIR, 'reasoning.json'), 'utf8')) as ReasoningGolden;
}

/** The tiny bundle's manifest renamed, with the golden `reasoning` section (as the Python side writes it). */
export function reasoningManifest(base: Manifest, golden: ReasoningGolden): Manifest {
  return { ...base, name: golden.bundle, label: golden.label, description: golden.bundleDescription, reasoning: golden.reasoning };
}

/** The tiny reasoning bundle as a `files` source. */
export function reasoningBundleFiles(golden = loadReasoningGolden()): BundleSource {
  const source = tinyBundleFiles();
  if (source.kind !== 'files') throw new Error('tinyBundleFiles returns files');
  const base = JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'manifest.json'), 'utf8')) as Manifest;
  source.files.set('manifest.json', new Blob([JSON.stringify(reasoningManifest(base, golden))]));
  return source;
}
