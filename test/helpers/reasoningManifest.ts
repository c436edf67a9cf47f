/**
 * The tiny reasoning bundle's golden runs (models/golden/reasoning.json, from
 * models/make_reasoning_goldens.py) and its manifest: the tiny bundle's with the golden
 * `reasoning` section. No Node imports: the Chromium harness uses it too.
 */
import type { Manifest, ReasoningSpec } from '../../src/engine/bundle/manifest';

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
  /** A follow-up question after this run (thoughts, forced text and answer stay in the context). */
  followUp?: { question: string; maxNewTokens: number; turnIds: number[]; tokens: number[]; thinkingTokens: number; forcedClose: boolean; thoughts: string; answer: string };
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

/** The tiny bundle's manifest renamed, with the golden `reasoning` section (as the Python side writes it). */
export function reasoningManifest(base: Manifest, golden: ReasoningGolden): Manifest {
  return { ...base, name: golden.bundle, label: golden.label, description: golden.bundleDescription, reasoning: golden.reasoning };
}

