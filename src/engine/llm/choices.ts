/**
 * Answers from a fixed label set (SpeechVerse-style constrained decoding), mirroring
 * models/salmonn/classify.py, whose docstring states the semantics:
 *
 * - each label (trimmed) is tokenized as the answer text would be: on its own, with
 *   SentencePiece's leading "▁" — the ids the model generates right after "ASSISTANT:";
 * - its score is log p(label tokens, then </s> | prompt), log-softmax of the decoder's logits
 *   summed in float64; </s> is included so a label that is a prefix of another pays for ending
 *   there;
 * - probabilities are the softmax of the scores over the labels; the answer is the most probable.
 *
 * How it is computed: the prompt is prefilled once (by the conversation) and its last logits row
 * scores every label's first token. The labels' token ids form a trie; each root-to-leaf path is
 * one decoder run on a scratch view of the prompt's KV cache (nothing is copied) that returns the
 * logits after each of its tokens, and scores every label on the path: a label that is a prefix of
 * another costs no run of its own. Branches that share a prefix recompute it rather than run it
 * separately, because a decoder run costs about as much for 1 token as for 30 (it is bound by
 * reading the weights), so fewer runs beat fewer tokens.
 */
import { HarkError } from '../errors';
import type { DecoderRunner, KvCache } from './decoder';
import type { TextTokenizer } from './tokenizer';

/** Each label costs up to one decoder run; more than this is a search, not a label set. */
export const MAX_CHOICES = 64;
/** A label is a short answer; 30 tokens keep its run within one exact WebGPU attention chunk (31). */
export const MAX_LABEL_TOKENS = 30;

export interface Choice {
  label: string;
  /** The label's answer token ids (see the module comment). */
  tokens: number[];
}

export interface ChoiceScore extends Choice {
  /** log p(the answer is exactly this label) under the model (float64 sum, </s> included). */
  logProb: number;
  /** Softmax of logProb over the given labels: the probabilities sum to 1. */
  probability: number;
}

/** Trims and tokenizes the labels; refuses sets that cannot be answered from, saying why. */
export function prepareChoices(labels: readonly string[], tokenizer: TextTokenizer): Choice[] {
  if (labels.length === 0) {
    throw new HarkError('engine/inference-failed', 'Give at least one label to choose the answer from.');
  }
  if (labels.length > MAX_CHOICES) {
    throw new HarkError('engine/inference-failed', `At most ${MAX_CHOICES} labels can be compared at once; ${labels.length} were given.`, {
      labels: labels.length, maxLabels: MAX_CHOICES,
    });
  }
  const seen = new Map<string, string>();
  return labels.map((raw) => {
    const label = raw.trim();
    if (label.length === 0) throw new HarkError('engine/inference-failed', 'One of the labels is empty: remove it or type a label.');
    const ids = tokenizer.encode(label);
    if (ids.length > MAX_LABEL_TOKENS) {
      throw new HarkError('engine/inference-failed', `The label “${shorten(label)}” is too long (${ids.length} tokens; at most ${MAX_LABEL_TOKENS}): labels are short answers such as “happy” or “two speakers”.`, {
        label, tokens: ids.length, maxTokens: MAX_LABEL_TOKENS,
      });
    }
    const key = ids.join(',');
    const twin = seen.get(key);
    if (twin !== undefined) {
      throw new HarkError('engine/inference-failed', twin === label ? `The label “${label}” is given twice: each label must be different.` : `The labels “${twin}” and “${label}” are the same to the model: each label must be different.`, { label });
    }
    seen.set(key, label);
    return { label, tokens: ids };
  });
}

/**
 * Token paths to run: one per label that is not a prefix of another label (the trie's leaves).
 * `onPath[i]` is the path that scores choice i (its own, or a longer label's that starts with it).
 */
export function scoringPaths(choices: readonly Choice[]): { paths: number[][]; onPath: number[] } {
  const startsWith = (tokens: number[], prefix: number[]) => prefix.length <= tokens.length && prefix.every((id, i) => tokens[i] === id);
  const leaves = choices.filter((c) => !choices.some((other) => other !== c && startsWith(other.tokens, c.tokens)));
  const paths = leaves.map((leaf) => leaf.tokens);
  const onPath = choices.map((c) => paths.findIndex((path) => startsWith(path, c.tokens)));
  return { paths, onPath };
}

export interface ScoreChoicesRequest {
  decoder: DecoderRunner;
  /** The logits after the prompt's last position. */
  promptLogits: Float32Array;
  /** The prompt's KV cache; left as it is. */
  cache: KvCache;
  loraScale: number;
  eosTokenId: number;
  signal?: AbortSignal;
}

/** Every choice's score and probability; `runs` is the number of decoder runs it took. */
export async function scoreChoices(choices: readonly Choice[], request: ScoreChoicesRequest): Promise<{ scores: ChoiceScore[]; runs: number }> {
  const { decoder, promptLogits, cache, loraScale, eosTokenId, signal } = request;
  const vocab = decoder.shape.vocabSize;
  const { paths, onPath } = scoringPaths(choices);
  const pathRows: LogSoftmaxRows[] = [];
  for (const path of paths) {
    signal?.throwIfAborted();
    const after = await decoder.scoreContinuation(path, cache, loraScale);
    // Row 0: after the prompt; row i: after the path's first i tokens.
    pathRows.push(new LogSoftmaxRows([promptLogits, ...Array.from(path, (_, i) => after.subarray(i * vocab, (i + 1) * vocab))]));
  }
  const logProbs = choices.map((choice, i) => {
    const rows = pathRows[onPath[i]!]!;
    let sum = 0;
    choice.tokens.forEach((id, position) => (sum += rows.logProb(position, id)));
    return sum + rows.logProb(choice.tokens.length, eosTokenId);
  });
  const probabilities = softmax(logProbs);
  return { scores: choices.map((choice, i) => ({ ...choice, logProb: logProbs[i]!, probability: probabilities[i]! })), runs: paths.length };
}

/** The index of the most probable choice (the first of equals). */
export function bestChoice(scores: readonly ChoiceScore[]): number {
  return scores.reduce((best, score, i) => (score.probability > scores[best]!.probability ? i : best), 0);
}

/** Softmax in float64, shifted by the maximum so no term overflows. */
export function softmax(values: readonly number[]): number[] {
  const max = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

/** Log-softmax of logits rows, each row's log-sum-exp computed once, in float64. */
class LogSoftmaxRows {
  private readonly logSumExp: number[];

  constructor(private readonly rows: Float32Array[]) {
    this.logSumExp = rows.map(logSumExp);
  }

  logProb(row: number, id: number): number {
    return this.rows[row]![id]! - this.logSumExp[row]!;
  }
}

function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

function shorten(text: string): string {
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}
