/** The golden outputs of the Python reference (models/golden/index.json) and the tiny bundle. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseNpy } from './npy';

export const REPO_ROOT = join(import.meta.dirname, '..', '..');
export const GOLDEN_DIR = join(REPO_ROOT, 'models', 'golden');
export const TINY_BUNDLE_DIR = join(REPO_ROOT, 'models', 'bundles', 'salmonn-tiny');

export interface ArrayRef {
  file: string;
  shape: number[];
}

export interface GoldenRun {
  loraScale: number;
  logits: ArrayRef;
  tokens: number[];
  followUp?: { question: string; turnIds: number[]; tokens: number[] };
}

/** One event localized by the PyTorch reference (localize.py with the bundle's defaults). */
export interface GoldenLocalization {
  event: string;
  layers: number[];
  durationSeconds: number;
  /** [layers, hidden] steering vector (focus − neutral residual, alpha not applied). */
  vector: ArrayRef;
  /** [audio tokens] smoothed Δ. */
  delta: ArrayRef;
  /** [audio tokens] token centres, seconds. */
  times: ArrayRef;
  start: number;
  end: number;
  confidence: number;
}

/** A question answered from a fixed label set by the reference (models/salmonn/classify.py). */
export interface GoldenClassification {
  question: string;
  loraScale: number;
  labels: string[];
  labelIds: number[][];
  /** Each label's score: log p(label tokens, then </s> | prompt), float64. */
  logProbs: number[];
  probabilities: number[];
  label: string;
  /** A follow-up asked after the chosen label, and its greedy tokens. */
  followUp: { question: string; tokens: number[] };
}

/** One beam search of the reference (models/salmonn/beam_search.py, HF 4.28 semantics). */
export interface GoldenBeamRun {
  numBeams: number;
  loraScale: number;
  lengthPenalty: number;
  stopTokenIds: number[];
  /** The chosen hypothesis, without its stop id. */
  tokens: number[];
  /** Its score: sum of log-probs / length ** lengthPenalty. */
  score: number;
  /** Whether it ended with a stop id (else a running beam cut at maxNewTokens). */
  finishedByStop: boolean;
  /** Decoder steps after the prompt. */
  steps: number;
  /** A follow-up question decoded with the same beams after it. */
  followUp?: { question: string; numBeams: number; tokens: number[] };
}

export interface GoldenBeamSearch {
  prompt: string;
  maxNewTokens: number;
  followUpTokens: number;
  runs: GoldenBeamRun[];
}

export interface GoldenInput {
  audio: string;
  samples: number;
  task: string;
  prompt: string;
  chunks: number;
  timeMap: [number, number][];
  promptIds: { before: number[]; after: number[] };
  features: { mel: ArrayRef; fbank: ArrayRef }[];
  precisions: Record<
    'fp32' | 'int4',
    {
      stages: { speech: ArrayRef; audio: ArrayRef; tokens: ArrayRef }[];
      runs: Record<'zero' | 'default' | 'half', GoldenRun>;
      localization?: GoldenLocalization;
      classification?: GoldenClassification;
      beamSearch?: GoldenBeamSearch;
    }
  >;
}

export interface GoldenIndex {
  bundle: string;
  greedyTokens: number;
  inputs: Record<string, GoldenInput>;
}

export function loadGoldenIndex(): GoldenIndex {
  return JSON.parse(readFileSync(join(GOLDEN_DIR, 'index.json'), 'utf8')) as GoldenIndex;
}

export function goldenArray(ref: ArrayRef): { shape: number[]; data: Float32Array } {
  const array = parseNpy(readFileSync(join(GOLDEN_DIR, ref.file)));
  if (!(array.data instanceof Float32Array)) throw new Error(`${ref.file} is not float32`);
  if (array.shape.join() !== ref.shape.join()) throw new Error(`${ref.file}: shape ${array.shape} != index ${ref.shape}`);
  return { shape: array.shape, data: array.data };
}
