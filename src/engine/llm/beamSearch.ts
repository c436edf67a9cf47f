/**
 * SALMONN's own decoding: beam search with HF transformers 4.28 semantics, token for token as
 * models/salmonn/beam_search.py states them (step scores = log-softmax in float64; stop ids
 * forbidden at the first step (min_length 1); 2 × beams candidates; a stop-id candidate ranked
 * within the first `beams` finishes a hypothesis scored sum / length ** lengthPenalty; the best
 * `beams` finished hypotheses are kept; done when the set is full and its worst score beats the
 * best candidate's sum / length ** lengthPenalty; at the token limit the running beams join the set).
 * Hand-written (the guide's "generation loop"): it drives our own decoder graph and KV cache.
 *
 * The beams are the decoder's batch. The prompt is run once (batch 1), its cache row is copied to
 * every beam, and each step feeds one token per beam in one graph run. Beams are bound to cache
 * rows ("slots"): a new beam takes its parent's slot when no sibling took it first, else a slot
 * whose beam died, into which the parent's row is copied on the device (KvCache.copyRows). So a
 * step copies only the rows of parents with several children, and nothing goes to the CPU but the
 * logits.
 *
 * Follow-up questions continue from the chosen beam's own cache: a hypothesis that enters the
 * finished set takes a copy of its row (KvCache.selectRows, batch 1), and a running beam that wins
 * at the token limit takes its row at the end.
 *
 * Streaming: after each step the current best hypothesis (what the search would answer if it ended
 * now: the best by normalized score among the finished ones and the running beams) is reported.
 * It may change to a different text, not only grow: such an event has `revised: true`.
 */
import type { KvCache } from './decoder';
import { guarded, yieldToEventLoop, type GenerationRequest, type GenerationResult, type StopReason } from './generate';

interface Beam {
  tokens: number[];
  sumLogProbs: number;
  /** The cache row holding this beam's positions (all its tokens but the last are fed). */
  slot: number;
}

interface Finished {
  tokens: number[];
  score: number;
  /** This hypothesis' own batch-1 cache (every token fed); null until taken (see finish()). */
  cache: KvCache | null;
  /** Ids of `tokens` not in `cache` yet (a running beam's last token). */
  unfed: number[];
  /** For a running beam offered at the end: the cache row holding its fed tokens. */
  slot?: number;
}

interface Candidate {
  score: number;
  beam: number;
  token: number;
}

/** HF's BeamHypotheses: the best `size` finished hypotheses (see the module comment). */
class FinishedSet {
  readonly items: Finished[] = [];
  worstScore = 1e9;

  constructor(
    private readonly size: number,
    private readonly lengthPenalty: number,
  ) {}

  score(tokens: readonly number[], sumLogProbs: number): number {
    return sumLogProbs / tokens.length ** this.lengthPenalty;
  }

  accepts(score: number): boolean {
    return this.items.length < this.size || score > this.worstScore;
  }

  /** Adds an accepted hypothesis; returns the one it pushed out, if any. */
  add(item: Finished): Finished | null {
    this.items.push(item);
    if (this.items.length > this.size) {
      const ranked = this.items.map((h, i) => [h.score, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      const [removed] = this.items.splice(ranked[0]![1], 1);
      this.worstScore = ranked[1]![0];
      return removed!;
    }
    this.worstScore = Math.min(item.score, this.worstScore);
    return null;
  }

  isDone(bestSumLogProbs: number, curLen: number): boolean {
    if (this.items.length < this.size) return false;
    return this.worstScore >= bestSumLogProbs / curLen ** this.lengthPenalty;
  }

  /** The highest score; of equals the last added (Python's stable sort, then pop()). */
  best(): Finished {
    let best = this.items[0]!;
    for (const item of this.items) if (item.score >= best.score) best = item;
    return best;
  }
}

export async function beamSearch(request: GenerationRequest): Promise<GenerationResult> {
  const { decoder, tokenizer, params, signal } = request;
  const numBeams = params.numBeams;
  const lengthPenalty = params.lengthPenalty;
  if (!(Number.isInteger(numBeams) && numBeams >= 2)) throw new Error(`beam search needs 2 or more beams, got ${numBeams}`);
  const now = request.now ?? (() => performance.now());
  const started = now();
  const stops = new Set(params.stopTokenIds);
  const vocab = decoder.shape.vocabSize;
  const promptTokens = request.prefill.length / decoder.shape.hiddenSize;

  const first = await guarded(() => decoder.step(request.prefill, request.cache, params.loraScale));
  const prefillMs = now() - started;
  request.onFirstLogits?.(first.logits.slice());
  let cache: KvCache = first.cache;
  let logits = first.logits;
  let beams: Beam[] = [{ tokens: [], sumLogProbs: 0, slot: 0 }];
  const finished = new FinishedSet(numBeams, lengthPenalty);
  let stopReason: StopReason = 'max-tokens';
  let done = false;
  let firstTokenAt = 0;
  let steps = 0;
  let shown = '';
  let revisions = 0;

  const report = (best: { tokens: number[] }) => {
    const text = tokenizer.decode(best.tokens);
    if (best.tokens.length === 0 || text === shown) return;
    const revised = !text.startsWith(shown);
    const delta = revised ? '' : text.slice(shown.length);
    shown = text;
    if (revised) revisions += 1;
    request.onToken?.({
      type: 'token', index: best.tokens.length - 1, id: best.tokens[best.tokens.length - 1]!,
      delta, text, elapsedMs: now() - started, ...(revised ? { revised: true } : {}),
    });
  };

  try {
    for (let curLen = 0; curLen < params.maxNewTokens; curLen++) {
      const candidates = topCandidates(logits, beams, vocab, 2 * numBeams, curLen < 1 ? stops : null);
      const chosen: Candidate[] = [];
      for (let rank = 0; rank < candidates.length && chosen.length < numBeams; rank++) {
        const candidate = candidates[rank]!;
        if (!stops.has(candidate.token)) {
          chosen.push(candidate);
          continue;
        }
        if (rank >= numBeams) continue;
        const parent = beams[candidate.beam]!;
        const score = finished.score(parent.tokens, candidate.score);
        if (!finished.accepts(score)) continue;
        // Every token of the parent is fed: its row is this hypothesis' whole cache.
        const own = await cache.selectRows([parent.slot]);
        finished.add({ tokens: parent.tokens, score, cache: own, unfed: [] })?.cache?.dispose();
      }
      if (chosen.length < numBeams) throw new Error(`only ${chosen.length} of ${numBeams} beams could continue`);
      done = curLen > 0 && finished.isDone(candidates[0]!.score, curLen);
      const next = chosen.map((c) => ({ tokens: [...beams[c.beam]!.tokens, c.token], sumLogProbs: c.score, parent: beams[c.beam]! }));
      if (curLen === 0) firstTokenAt = now();
      report(bestNow(finished, next, lengthPenalty));
      if (done) {
        stopReason = 'stop-token';
        break;
      }
      if (curLen + 1 >= params.maxNewTokens || cache.length + 1 > request.maxPositions || signal?.aborted) {
        if (cache.length + 1 > request.maxPositions) stopReason = 'context-full';
        if (signal?.aborted) stopReason = 'cancelled';
        offerRunning(finished, next);
        break;
      }
      await yieldToEventLoop();
      if (signal?.aborted) {
        stopReason = 'cancelled';
        offerRunning(finished, next);
        break;
      }
      // Bind the new beams to cache rows, then feed one token per row.
      if (cache.batch === 1) {
        cache = await expand(cache, numBeams);
        beams = next.map((b, i) => ({ tokens: b.tokens, sumLogProbs: b.sumLogProbs, slot: i }));
      } else {
        const { slots, moves } = assignSlots(next.map((b) => b.parent.slot), numBeams);
        await cache.copyRows(moves);
        beams = next.map((b, i) => ({ tokens: b.tokens, sumLogProbs: b.sumLogProbs, slot: slots[i]! }));
      }
      const ids = new Array<number>(numBeams);
      for (const beam of beams) ids[beam.slot] = beam.tokens[beam.tokens.length - 1]!;
      const past = cache;
      const result = await guarded(() => decoder.decodeBatch(ids, past, params.loraScale));
      cache = result.cache;
      logits = reorderRows(result.logits, beams, vocab);
      steps += 1;
    }
    if (finished.items.length === 0) throw new Error('beam search ended without a hypothesis');
    const best = finished.best();
    // A running beam that joined at the end: its parent's row (all but its unfed last token).
    best.cache ??= await cache.selectRows([best.slot!]);
    const chosenCache = best.cache;
    best.cache = null;
    const finishedAt = now();
    const decodeMs = firstTokenAt > 0 ? finishedAt - firstTokenAt : 0;
    const text = tokenizer.decode(best.tokens);
    if (text !== shown) report(best);
    return {
      ids: best.tokens,
      text,
      cache: chosenCache,
      unfedIds: best.unfed,
      stats: {
        promptTokens,
        generatedTokens: best.tokens.length,
        prefillMs,
        timeToFirstTokenMs: firstTokenAt > 0 ? firstTokenAt - started : 0,
        decodeMs,
        decodeTokensPerSecond: steps > 0 && decodeMs > 0 ? (steps * 1000) / decodeMs : 0,
        totalMs: finishedAt - started,
        stopReason: stopReason === 'max-tokens' && best.unfed.length === 0 ? 'stop-token' : stopReason,
        beams: numBeams,
        beamSteps: steps,
        revisions,
      },
    };
  } finally {
    for (const item of finished.items) item.cache?.dispose();
    cache.dispose();
  }
}

/** Running beams offered to the finished set when the search ends without being done (HF finalize). */
function offerRunning(finished: FinishedSet, running: ReadonlyArray<{ tokens: number[]; sumLogProbs: number; parent: Beam }>): void {
  for (const beam of running) {
    const score = finished.score(beam.tokens, beam.sumLogProbs);
    if (!finished.accepts(score)) continue;
    // Its last token is not fed; its parent's row is copied only if it wins.
    finished.add({ tokens: beam.tokens, score, cache: null, unfed: beam.tokens.slice(-1), slot: beam.parent.slot })?.cache?.dispose();
  }
}

/** The hypothesis the search would answer now: the best normalized score, finished or running. */
function bestNow(finished: FinishedSet, running: Array<{ tokens: number[]; sumLogProbs: number }>, lengthPenalty: number): { tokens: number[] } {
  let best: { tokens: number[] } | null = null;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (const item of finished.items) if (item.score > bestScore) [best, bestScore] = [item, item.score];
  for (const beam of running) {
    const score = beam.sumLogProbs / beam.tokens.length ** lengthPenalty;
    if (score > bestScore) [best, bestScore] = [beam, score];
  }
  return best ?? running[0]!;
}

/**
 * The best `count` (beam, token) candidates by cumulative score, best first; `banned` ids score
 * -Infinity (stop ids at the first step). Log-softmax per row in float64. It runs on every step over
 * beams × vocab logits, so the loops stay plain: a token is looked at only if its logit can beat
 * the worst candidate kept so far.
 */
export function topCandidates(logits: Float32Array, beams: readonly Beam[], vocab: number, count: number, banned: ReadonlySet<number> | null): Candidate[] {
  const top: Candidate[] = [];
  beams.forEach((beam, b) => {
    let row = logits.subarray(b * vocab, (b + 1) * vocab);
    if (banned && banned.size > 0) {
      row = row.slice();
      for (const id of banned) if (id >= 0 && id < vocab) row[id] = Number.NEGATIVE_INFINITY;
    }
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < vocab; i++) if (row[i]! > max) max = row[i]!;
    let sum = 0;
    for (let i = 0; i < vocab; i++) sum += Math.exp(row[i]! - max);
    const offset = beam.sumLogProbs - (max + Math.log(sum)); // score = logit + offset
    let floor = top.length === count ? top[count - 1]!.score - offset : Number.NEGATIVE_INFINITY;
    for (let token = 0; token < vocab; token++) {
      const logit = row[token]!;
      if (!(logit > floor) && top.length === count) continue;
      if (logit === Number.NEGATIVE_INFINITY) continue;
      const score = logit + offset;
      // Insert keeping `top` sorted best first; equal scores keep beam, then token order.
      let at = top.length;
      while (at > 0 && top[at - 1]!.score < score) at--;
      if (at >= count) continue;
      top.splice(at, 0, { score, beam: b, token });
      if (top.length > count) top.pop();
      if (top.length === count) floor = top[count - 1]!.score - offset;
    }
  });
  return top;
}

/**
 * Cache rows for the new beams, given each one's parent row: a beam keeps its parent's row when no
 * earlier sibling took it, else gets a row no new beam's parent holds, filled by a copy of the parent's.
 */
export function assignSlots(parentSlots: readonly number[], batch: number): { slots: number[]; moves: Array<[number, number]> } {
  const slots = new Array<number>(parentSlots.length).fill(-1);
  const taken = new Set<number>();
  parentSlots.forEach((parent, i) => {
    if (!taken.has(parent)) {
      slots[i] = parent;
      taken.add(parent);
    }
  });
  const free = Array.from({ length: batch }, (_, row) => row).filter((row) => !taken.has(row));
  const moves: Array<[number, number]> = [];
  parentSlots.forEach((parent, i) => {
    if (slots[i] !== -1) return;
    const row = free.shift()!;
    slots[i] = row;
    moves.push([parent, row]);
  });
  return { slots, moves };
}

/** The batch-1 prompt cache copied to every beam's row. */
async function expand(cache: KvCache, beams: number): Promise<KvCache> {
  const expanded = await cache.selectRows(new Array<number>(beams).fill(0));
  cache.dispose();
  return expanded;
}

/** Logits rows of a batched run (row = cache slot) in beam order. */
function reorderRows(logits: Float32Array, beams: readonly Beam[], vocab: number): Float32Array {
  const out = new Float32Array(beams.length * vocab);
  beams.forEach((beam, i) => out.set(logits.subarray(beam.slot * vocab, (beam.slot + 1) * vocab), i * vocab));
  return out;
}
