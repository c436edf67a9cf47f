/**
 * The generation loop: prefill, then one token per decoder step, streamed as it is produced.
 * Hand-written (the guide's "generation loop") because it drives our own decoder graph and KV
 * cache; transformers.js' generate() expects its own model classes.
 */
import { HarkError } from '../errors';
import { beamSearch } from './beamSearch';
import type { DecoderRunner, KvCache, StepResult } from './decoder';
import { ReasoningStream, type ReasoningRun } from './reasoning';
import { TokenSampler, type SamplingParams } from './sampling';
import { IncrementalText } from './textStream';
import type { TextTokenizer } from './tokenizer';

export interface GenerationParams extends SamplingParams {
  maxNewTokens: number;
  stopTokenIds: number[];
  /** LoRA scale fed to the decoder (0 = base LLM; the bundle's default is alpha / rank). */
  loraScale: number;
  /**
   * Beams of SALMONN's beam search (beamSearch.ts); 1 = one sequence (greedy, or sampled). With
   * sampling on, one sequence is sampled whatever this says (beam sampling is not implemented).
   */
  numBeams: number;
  /** Beam search's length penalty: a hypothesis scores sum of log-probs / length ** this. */
  lengthPenalty: number;
  /**
   * Reasoning bundles only (manifest `reasoning`): most thought tokens before the closing text is
   * forced (default: the manifest's); 0 skips thinking. Max new tokens then bounds the answer.
   */
  thinkingBudget?: number;
}

export type StopReason = 'stop-token' | 'max-tokens' | 'cancelled' | 'context-full';

export interface TokenEvent {
  type: 'token';
  /** 0-based index of the token within this answer. */
  index: number;
  id: number;
  /** Newly printable text (may be '' while a multi-byte character is incomplete). */
  delta: string;
  /** The whole answer text so far (reasoning bundles: the answer channel only, see `thoughts`). */
  text: string;
  /**
   * Reasoning bundles only: the channel this token belongs to ('thought' until the thoughts are
   * closed, by the model or by the forced closing text), the thought text that became showable,
   * the whole thought text so far, and whether the token was forced (fed, not sampled).
   */
  channel?: 'thought' | 'answer';
  thoughtDelta?: string;
  thoughts?: string;
  forced?: boolean;
  /**
   * Beam search only: the best hypothesis changed to one whose text does not extend the previous
   * event's (`text` replaces what was shown; `delta` is '').
   */
  revised?: boolean;
  /** Milliseconds since the request started. */
  elapsedMs: number;
}

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
  prefillMs: number;
  timeToFirstTokenMs: number;
  decodeMs: number;
  /** Tokens per second over the decode steps after the first token. */
  decodeTokensPerSecond: number;
  totalMs: number;
  stopReason: StopReason;
  /** One sequence only: decoder runs after the prompt (a forced closing text takes one, not one per token). */
  decodeRuns?: number;
  /** Beam search only: beams, decoder steps after the prompt, and times the shown answer was revised. */
  beams?: number;
  beamSteps?: number;
  revisions?: number;
}

export interface GenerationResult {
  ids: number[];
  text: string;
  stats: GenerationStats;
  /** The cache after the last step, and ids produced but not fed yet (continue from here). */
  cache: KvCache;
  unfedIds: number[];
  /** Reasoning bundles only: the thoughts (text is then the answer alone). */
  thoughts?: string;
  /** Reasoning bundles only: thought tokens the model generated (forced ones not counted). */
  thinkingTokens?: number;
  /** Reasoning bundles only: whether the budget ran out and the closing text was forced. */
  forcedClose?: boolean;
}

export interface GenerationRequest {
  decoder: DecoderRunner;
  tokenizer: TextTokenizer;
  /** [n × hidden] rows of the prompt (generated tokens are embedded by decoder.decodeStep). */
  prefill: Float32Array;
  cache: KvCache;
  params: GenerationParams;
  maxPositions: number;
  onToken?: (event: TokenEvent) => void;
  signal?: AbortSignal;
  now?: () => number;
  /** Receives the first step's logits row before sampling (parity tests, debugging). */
  onFirstLogits?: (logits: Float32Array) => void;
  /** A reasoning model's markers and thinking budget (one sequence only: beam search ignores it). */
  reasoning?: ReasoningRun;
}

export async function generate(request: GenerationRequest): Promise<GenerationResult> {
  if (request.params.numBeams > 1 && !request.params.doSample) return beamSearch(request);
  const { decoder, tokenizer, params, signal } = request;
  const now = request.now ?? (() => performance.now());
  const started = now();
  const sampler = new TokenSampler(params);
  const stops = new Set(params.stopTokenIds);
  const text = new IncrementalText(tokenizer);
  const promptTokens = request.prefill.length / decoder.shape.hiddenSize;

  let { logits, cache } = await guarded(() => decoder.step(request.prefill, request.cache, params.loraScale, signal));
  const prefillMs = now() - started;
  // A Stop sent while the prompt was read (on WebAssembly the run does not return to the event
  // loop) is let in before the first token, so it is not written.
  if (signal) await yieldToEventLoop();
  request.onFirstLogits?.(logits.slice());
  let firstTokenAt = 0;
  const ids: number[] = [];
  let unfed: number[] = [];
  let stopReason: StopReason = 'max-tokens';
  let decodeRuns = 0;
  // Reasoning: sampled tokens count against the budget until the text holds the closing marker;
  // at the budget the closing text's tokens are all written (one event each) and fed to the decoder
  // in one run: the same as one step per token, which cost a whole decode step each (24 for ALARM's
  // closing sentence; on SwiftShader ~2 s per step). Max new tokens then counts the answer's
  // tokens, from where the thoughts ended.
  const { reasoning } = request;
  const channels = reasoning ? new ReasoningStream(reasoning.markers) : null;
  let thinking = reasoning !== undefined;
  let thinkingTokens = 0;
  let forcedClose = false;
  const forcedQueue: number[] = [];
  let answerStart = reasoning ? -1 : 0;

  /** Writes one id: its text, the thinking count and its event; `pendingForced`: forced ids still to come. */
  const write = (id: number, forced: boolean, pendingForced: number): void => {
    ids.push(id);
    if (ids.length === 1) firstTokenAt = now();
    const delta = text.push(id);
    if (thinking) {
      thinkingTokens += 1;
      if (text.text.includes(reasoning!.markers.thinkClose)) thinking = false;
    }
    if (answerStart < 0 && !thinking && pendingForced === 0) answerStart = ids.length;
    if (channels) {
      const split = channels.update(text.text);
      request.onToken?.({
        type: 'token', index: ids.length - 1, id, delta: split.answerDelta, text: split.answer, elapsedMs: now() - started,
        channel: answerStart >= 0 && answerStart < ids.length ? 'answer' : 'thought', thoughtDelta: split.thoughtDelta, thoughts: split.thoughts, forced,
      });
    } else {
      request.onToken?.({ type: 'token', index: ids.length - 1, id, delta, text: text.text, elapsedMs: now() - started });
    }
  };

  while (true) {
    if (signal?.aborted) {
      stopReason = 'cancelled';
      break;
    }
    if (thinking && thinkingTokens >= reasoning!.budget) {
      forcedQueue.push(...reasoning!.forcedIds);
      thinking = false;
      forcedClose = true;
    }
    // The forced closing text goes out whole: every id is written (one event each), then fed at once.
    const forced = forcedQueue.length > 0;
    const written = forced ? forcedQueue.splice(0) : [sampler.next(logits, ids)];
    if (!forced && stops.has(written[0]!)) {
      stopReason = 'stop-token';
      break;
    }
    for (const [k, id] of written.entries()) write(id, forced, written.length - 1 - k);
    unfed = written;
    if (answerStart >= 0 && ids.length - answerStart >= params.maxNewTokens) break;
    if (cache.length + written.length > request.maxPositions) {
      stopReason = 'context-full';
      break;
    }
    // On the WebAssembly backend a decode step can finish without this thread ever returning to
    // its event loop, so a cancel message sent to the worker would wait until the whole answer is
    // done: let waiting messages in once per step.
    await yieldToEventLoop();
    if (signal?.aborted) {
      stopReason = 'cancelled';
      break;
    }
    const past = cache;
    decodeRuns += 1;
    ({ logits, cache } = await guarded(() => (written.length === 1 ? decoder.decodeStep(written[0]!, past, params.loraScale) : decoder.decodeTokens(written, past, params.loraScale))));
    unfed = [];
  }

  const finished = now();
  const decodeSteps = Math.max(0, ids.length - 1);
  const decodeMs = ids.length > 0 ? finished - firstTokenAt : 0;
  text.flush(); // a trailing incomplete character is shown as U+FFFD rather than dropped
  const split = channels?.finish(text.text);
  return {
    ids,
    text: split ? split.answer : text.text,
    ...(split ? { thoughts: split.thoughts, thinkingTokens, forcedClose } : {}),
    cache,
    unfedIds: unfed,
    stats: {
      promptTokens,
      generatedTokens: ids.length,
      prefillMs,
      timeToFirstTokenMs: ids.length > 0 ? firstTokenAt - started : 0,
      decodeMs,
      decodeTokensPerSecond: decodeSteps > 0 && decodeMs > 0 ? (decodeSteps * 1000) / decodeMs : 0,
      totalMs: finished - started,
      stopReason,
      decodeRuns,
    },
  };
}

/** Resolves after the messages already queued for this thread have been handled (no timer clamping). */
export function yieldToEventLoop(): Promise<void> {
  if (typeof MessageChannel === 'undefined') return new Promise((resolve) => setTimeout(resolve, 0));
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

export async function guarded(run: () => Promise<StepResult>): Promise<StepResult> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof HarkError) throw error;
    throw new HarkError(
      'engine/inference-failed',
      `The language model failed while generating (${error instanceof Error ? error.message : String(error)}). ` +
        'Try again; if it keeps failing, switch the backend to WebAssembly in Settings.',
    );
  }
}
