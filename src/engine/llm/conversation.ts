/**
 * A conversation about one recording. The first question is prefilled as
 * [BOS] + before + audio tokens + after; every follow-up only feeds what is new (the previous
 * answer's unfed last token, [</s>], and the next "USER: …\nASSISTANT:"), on top of the KV
 * cache of the earlier turns — no re-encoding of the audio and no re-prefill of earlier turns.
 *
 * A turn answered from a fixed label set (`chooseAnswer`) is fed the same way and its chosen
 * label's ids become the turn's answer, exactly as if the model had generated them.
 *
 * A format with a `history` rule (Qwen3's chat template, which keeps only the answer of an earlier
 * assistant turn) instead cuts the KV cache back to where the previous turn's generation prompt
 * began, and feeds the previous answer written back as the template writes it, then the next
 * question: the cache then holds exactly what a fresh prompt of the whole conversation would.
 */
import { HarkError } from '../errors';
import type { DecoderRunner, KvCache } from './decoder';
import { generate, type GenerationParams, type GenerationResult, type TokenEvent } from './generate';
import { followUpIds, historyTurnIds, promptParts, type PromptFormat } from './prompt';
import type { ReasoningRun } from './reasoning';
import type { TextTokenizer } from './tokenizer';

export interface ConversationDeps {
  decoder: DecoderRunner;
  tokenizer: TextTokenizer;
  embed: (ids: number[]) => Promise<Float32Array>;
  format: PromptFormat;
  maxPositions: number;
  /**
   * Fed after each asked question's prompt, before generating: a reasoning model's thinkOpen
   * tokens when its prompt template does not open the thoughts itself (none otherwise).
   */
  answerPrefixIds?: number[];
}

/** The state after a question's prompt was fed: what a label-set answer is chosen from. */
export interface PromptState {
  /** The logits after the prompt's last position. */
  logits: Float32Array;
  /** The KV cache through the prompt; the chooser must leave it as it is (score on `scratch()` views). */
  cache: KvCache;
  /** Positions the prompt added. */
  promptTokens: number;
}

/** An earlier question and the token ids of its answer (without any stop token). */
export interface ReplayTurn {
  question: string;
  answerIds: number[];
}

export function concatFloat32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export class Conversation {
  private cache: KvCache | null = null;
  private unfed: number[] = [];
  private turnCount = 0;
  /** History formats: the cache length where the last turn's generation prompt began. */
  private turnStart = 0;
  /** History formats: the ids the last turn answered with (generated, or a chosen label's). */
  private answered: number[] = [];

  constructor(
    private readonly deps: ConversationDeps,
    /** [tokens × hidden] audio embeddings from the connector. */
    readonly audioTokens: Float32Array,
  ) {}

  get turns(): number {
    return this.turnCount;
  }

  /** Positions held in the KV cache. */
  get positions(): number {
    return this.cache?.length ?? 0;
  }

  async ask(
    question: string,
    params: GenerationParams,
    onToken?: (event: TokenEvent) => void,
    signal?: AbortSignal,
    onFirstLogits?: (logits: Float32Array) => void,
    reasoning?: ReasoningRun,
  ): Promise<GenerationResult> {
    const { decoder, tokenizer, maxPositions, answerPrefixIds } = this.deps;
    const questionPart = await this.questionEmbeds(question);
    const turnStart = this.generationPromptStart(questionPart);
    const prefill = answerPrefixIds?.length ? concatFloat32([questionPart, await this.deps.embed(answerPrefixIds)]) : questionPart;
    const prefillLength = prefill.length / decoder.shape.hiddenSize;
    if (this.positions + prefillLength + 1 > maxPositions) {
      throw new HarkError(
        'engine/context-overflow',
        `This conversation is full: the model can attend to ${maxPositions} tokens and ${this.positions} are used, ` +
          `so a question of ${prefillLength} tokens does not fit. Start a new conversation about the recording.`,
        { maxPositions, used: this.positions, needed: prefillLength },
      );
    }
    const cache = this.cache ?? decoder.emptyCache();
    this.cache = null; // generate() consumes the cache; on failure the conversation restarts cleanly
    let result: GenerationResult;
    try {
      result = await generate({ decoder, tokenizer, prefill, cache, params, maxPositions, onToken, signal, onFirstLogits, reasoning });
    } catch (error) {
      this.unfed = [];
      this.turnCount = 0;
      throw error;
    }
    this.cache = result.cache;
    this.unfed = result.unfedIds;
    this.turnStart = turnStart;
    this.answered = result.ids;
    this.turnCount += 1;
    return result;
  }

  /**
   * Feeds `question` as ask() does (a first turn's whole prompt, or a follow-up), lets `choose`
   * pick the answer from the prompt's state, and records the chosen ids as this turn's answer: they
   * are fed before the next question, like a generated answer's last token. `answerRoom` is the
   * most positions `choose` appends on scratch views (the longest label), checked against the
   * context up front. A failure (cancellation included) restarts the conversation, as in ask().
   */
  async chooseAnswer<T>(
    question: string,
    loraScale: number,
    answerRoom: number,
    choose: (prompt: PromptState) => Promise<{ answerIds: number[]; result: T }>,
  ): Promise<T> {
    const { decoder, maxPositions } = this.deps;
    const prefill = await this.questionEmbeds(question);
    const promptTokens = prefill.length / decoder.shape.hiddenSize;
    const turnStart = this.generationPromptStart(prefill);
    if (this.positions + promptTokens + answerRoom > maxPositions) {
      throw new HarkError(
        'engine/context-overflow',
        `This conversation is full: the model can attend to ${maxPositions} tokens and ${this.positions} are used, ` +
          `so a question of ${promptTokens} tokens with answers of up to ${answerRoom} does not fit. Start a new conversation about the recording.`,
        { maxPositions, used: this.positions, needed: promptTokens + answerRoom },
      );
    }
    const past = this.cache ?? decoder.emptyCache();
    this.cache = null; // the prefill consumes it; on failure the conversation restarts cleanly
    let cache: KvCache | null = null;
    try {
      const step = await decoder.step(prefill, past, loraScale);
      cache = step.cache;
      const chosen = await choose({ logits: step.logits, cache, promptTokens });
      this.cache = cache;
      this.unfed = chosen.answerIds;
      this.turnStart = turnStart;
      this.answered = chosen.answerIds;
      this.turnCount += 1;
      return chosen.result;
    } catch (error) {
      past.dispose(); // harmless when the prefill already consumed it
      cache?.dispose();
      this.unfed = [];
      this.turnCount = 0;
      throw error;
    }
  }

  /**
   * Rebuilds the KV cache of earlier turns without generating (a conversation restored after a
   * reload): each question is fed exactly as ask() feeds it, followed by its answer's tokens, in
   * one decoder run per turn. The next ask() then continues as if those answers had just been
   * generated here. Only for a conversation that has no turns yet.
   */
  async replay(turns: ReplayTurn[], loraScale: number): Promise<void> {
    if (this.turnCount > 0) throw new Error('replay() is only for a conversation without turns');
    const { decoder, embed, maxPositions } = this.deps;
    const rewrites = this.deps.format.history !== undefined;
    for (const turn of turns) {
      const question = await this.questionEmbeds(turn.question);
      const turnStart = this.generationPromptStart(question);
      // A history format writes the answer back with the next question (questionEmbeds), not here.
      const embeds = rewrites ? question : concatFloat32([question, await embed(turn.answerIds)]);
      const length = embeds.length / decoder.shape.hiddenSize;
      if (this.positions + length + 1 > maxPositions) {
        throw new HarkError(
          'engine/context-overflow',
          `The earlier conversation does not fit: the model can attend to ${maxPositions} tokens and it needs more than ${this.positions + length}.`,
          { maxPositions, used: this.positions, needed: length },
        );
      }
      const cache = this.cache ?? decoder.emptyCache();
      this.cache = null;
      try {
        const step = await decoder.step(embeds, cache, loraScale);
        this.cache = step.cache;
      } catch (error) {
        this.turnCount = 0;
        throw new HarkError('engine/inference-failed', `The language model failed while reading the earlier conversation (${error instanceof Error ? error.message : String(error)}).`);
      }
      this.unfed = [];
      this.turnStart = turnStart;
      this.answered = turn.answerIds;
      this.turnCount += 1;
    }
  }

  dispose(): void {
    this.cache?.dispose();
    this.cache = null;
  }

  /**
   * What a question feeds: the whole first prompt with the audio, or a follow-up after the unfed
   * tokens — or, for a history format, after cutting the cache back to the previous turn's
   * generation prompt, the previous answer written back and the question.
   */
  private async questionEmbeds(question: string): Promise<Float32Array> {
    if (this.turnCount === 0) return this.firstTurnEmbeds(question);
    const { tokenizer, embed, format } = this.deps;
    const history = format.history;
    if (!history) return embed([...this.unfed, ...followUpIds(tokenizer, question, format)]);
    const ids = historyTurnIds(tokenizer, tokenizer.decode(this.answered), question, { ...format, history });
    if (this.cache) this.cache = await this.cache.truncate(this.turnStart);
    this.unfed = [];
    return embed(ids);
  }

  /**
   * History formats: the cache length at which the generation prompt that ends `question` (a
   * question's fed embeddings, appended at the current length) begins. The template ends with the
   * generation prompt and the added tokens in it split the text, so its tokens are the last ones.
   */
  private generationPromptStart(question: Float32Array): number {
    const history = this.deps.format.history;
    if (!history) return 0;
    const generationPrompt = this.deps.tokenizer.encode(history.generationPrompt).length;
    return this.positions + question.length / this.deps.decoder.shape.hiddenSize - generationPrompt;
  }

  private async firstTurnEmbeds(question: string): Promise<Float32Array> {
    const parts = promptParts(this.deps.tokenizer, question, this.deps.format);
    return concatFloat32([await this.deps.embed(parts.before), this.audioTokens, await this.deps.embed(parts.after)]);
  }
}
