/**
 * Prompt assembly, mirroring models/salmonn/prompt.py (SALMONN) and models/alarm/prompt.py (ALARM)
 * token for token:
 *
 *   template.format(userText.format(question))  e.g.  "USER: <Speech><SpeechHere></Speech> Q\nASSISTANT:"
 *
 * is split at the audio slot and each half is tokenized on its own without special tokens (so
 * each gets its own leading "▁"). The LLM input is [BOS] + system + before + audio tokens + after,
 * where BOS is absent when the format has none (Qwen3) and `system` (format 2, e.g. ALARM's
 * "<|im_start|>system\n…<|im_end|>\n") is tokenized on its own too, once before the first turn.
 * SALMONN's task prompts already contain the slot; a free-text question gets the userText prefix.
 *
 * Follow-up turns continue in Vicuna's format: the previous answer, then [</s>], then the next
 * "USER: Q\nASSISTANT:" tokenized on its own; the audio stays in the KV cache. A format with a
 * `history` rule (Qwen3) writes the earlier turn back instead (conversation.ts, `historyTurnIds`).
 */
import type { PromptHistory } from '../bundle/manifest';
import { HarkError } from '../errors';
import type { TextTokenizer } from './tokenizer';

export interface PromptFormat {
  template: string;
  userText: string;
  audioSlot: string;
  /** null: the model has no BOS (Qwen3). */
  bosTokenId: number | null;
  eosTokenId: number;
  /** Text placed once before the first turn, tokenized on its own. */
  system?: string;
  /** How a follow-up writes the earlier turn back; absent: [eos] + template after it (Vicuna). */
  history?: PromptHistory;
}

export interface PromptParts {
  /** [BOS] + the system text's tokens + tokens before the audio slot. */
  before: number[];
  after: number[];
}

function fill(template: string, value: string): string {
  const at = template.indexOf('{}');
  if (at < 0) throw new Error(`prompt template has no {} placeholder: ${JSON.stringify(template)}`);
  return template.slice(0, at) + value + template.slice(at + 2);
}

/**
 * The text that stands for the recording in a model's task prompts: userText without the question
 * ("<Speech><SpeechHere></Speech>" for SALMONN, "<AudioHere>" for ALARM), or the bare slot.
 */
export function audioMarkerOf(format: Pick<PromptFormat, 'userText' | 'audioSlot'>): string {
  return format.userText.replace('{}', '').trim() || format.audioSlot;
}

export function userTextFor(question: string, format: PromptFormat): string {
  const trimmed = question.trim();
  return trimmed.includes(format.audioSlot) ? trimmed : fill(format.userText, trimmed);
}

export function promptParts(tokenizer: TextTokenizer, question: string, format: PromptFormat): PromptParts {
  const text = fill(format.template, userTextFor(question, format));
  const pieces = text.split(format.audioSlot);
  if (pieces.length !== 2) {
    // A question typed with the slot twice (or a task prompt without it): a user's input, so a typed error.
    throw new HarkError(
      'engine/inference-failed',
      `The question contains ${format.audioSlot} ${pieces.length - 1} times; it marks where the recording goes and may appear at most once (a prompt must contain ${format.audioSlot} exactly once). Remove the extra ones and ask again.`,
      { slots: pieces.length - 1 },
    );
  }
  const bos = format.bosTokenId === null ? [] : [format.bosTokenId];
  const system = format.system ? tokenizer.encode(format.system) : [];
  return { before: [...bos, ...system, ...tokenizer.encode(pieces[0]!)], after: tokenizer.encode(pieces[1]!) };
}

/** Tokens that start a follow-up turn: [</s>] + "USER: Q\nASSISTANT:" tokenized alone. */
export function followUpIds(tokenizer: TextTokenizer, question: string, format: PromptFormat): number[] {
  return [format.eosTokenId, ...tokenizer.encode(fill(format.template, question.trim()))];
}

/**
 * What a chat template such as Qwen3's keeps of an earlier assistant turn's generated text: the
 * part after the last `thoughtsEnd`, leading line breaks removed (all of it without one).
 */
export function historyContent(generated: string, history: PromptHistory): string {
  const parts = generated.split(history.thoughtsEnd);
  return parts[parts.length - 1]!.replace(/^\n+/, '');
}

/** The earlier answer written back as `assistantTurn`, then the next question's template. */
export function historyTurnIds(tokenizer: TextTokenizer, generated: string, question: string, format: PromptFormat & { history: PromptHistory }): number[] {
  return [
    ...tokenizer.encode(fill(format.history.assistantTurn, historyContent(generated, format.history))),
    ...tokenizer.encode(fill(format.template, question.trim())),
  ];
}
