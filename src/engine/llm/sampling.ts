/**
 * Picking the next token from logits: greedy, or temperature / top-k / top-p sampling with a
 * seedable RNG, after a repetition penalty. Hand-written because it runs on one logits row per
 * step in the generation loop (see generate.ts); transformers.js' processors need its Tensor type.
 */

export interface SamplingParams {
  /** false: greedy (argmax). */
  doSample: boolean;
  temperature: number;
  /** 0 disables top-k. */
  topK: number;
  /** 1 disables nucleus sampling. */
  topP: number;
  /** 1 disables; HF/CTRL style: positive logits divided, negative multiplied. */
  repetitionPenalty: number;
  seed: number;
}

/** mulberry32: small, fast, and reproducible across Node and browsers. */
export function createRng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** In place: penalize every token that already occurs in `previous` (each once). */
export function applyRepetitionPenalty(row: Float32Array, previous: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(previous)) {
    const value = row[id]!;
    row[id] = value > 0 ? value / penalty : value * penalty;
  }
}

export class TokenSampler {
  private readonly rng: () => number;

  constructor(private readonly params: SamplingParams) {
    if (!(params.temperature > 0)) throw new Error('temperature must be > 0');
    if (!(params.topP > 0 && params.topP <= 1)) throw new Error('top-p must be in (0, 1]');
    if (!(params.repetitionPenalty > 0)) throw new Error('repetition penalty must be > 0');
    this.rng = createRng(params.seed);
  }

  /** Next token id; `row` (one logits row, a copy the caller owns) is modified in place. */
  next(row: Float32Array, previous: readonly number[]): number {
    applyRepetitionPenalty(row, previous, this.params.repetitionPenalty);
    if (!this.params.doSample) return argmax(row);
    return this.sample(row);
  }

  private sample(row: Float32Array): number {
    const { temperature, topK, topP } = this.params;
    // Candidates sorted by logit; top-k first limits the sort for big vocabularies.
    let order = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]!);
    if (topK > 0) order = order.slice(0, topK);
    const max = row[order[0]!]!;
    const weights = order.map((id) => Math.exp((row[id]! - max) / temperature));
    const total = weights.reduce((s, w) => s + w, 0);
    let keep = order.length;
    if (topP < 1) {
      let cumulative = 0;
      for (let i = 0; i < order.length; i++) {
        cumulative += weights[i]! / total;
        if (cumulative >= topP) {
          keep = i + 1;
          break;
        }
      }
    }
    const kept = weights.slice(0, keep);
    let threshold = this.rng() * kept.reduce((s, w) => s + w, 0);
    for (let i = 0; i < keep; i++) {
      threshold -= kept[i]!;
      if (threshold <= 0) return order[i]!;
    }
    return order[keep - 1]!;
  }
}
