/**
 * Reasoning traces (ALARM, Qwen3-Thinking): a reasoning LLM writes its thoughts, closes them with a
 * marker such as "</think>", then answers (optionally inside "<answer> … </answer>"). This module
 * splits the generated text into the two channels, also while it streams, and describes the
 * thinking budget that the generation loop (generate.ts) enforces.
 *
 * The split of a whole text (models/salmonn/reasoning.py `split_reasoning` is the reference):
 *   - thoughts: the text before the first `thinkClose` (all of it while there is none), without a
 *     leading `thinkOpen`, trimmed;
 *   - answer: the text after the first `thinkClose`; a leading `answerOpen` is dropped, the answer
 *     ends at the first `answerClose`; trimmed. Empty while thinking.
 * "Trimmed" removes spaces, tabs and line breaks (" \t\n\r"), the same set in Python and here.
 *
 * While streaming, a marker can arrive split over several tokens ("</", "think", ">"), so the
 * splitter never shows a tail that could still become a marker, nor trailing whitespace that the
 * final trim could remove: what it shows of each channel is always a prefix of the final split.
 */
import type { ReasoningSpec } from '../bundle/manifest';

/** The markers the split needs (a manifest's ReasoningSpec has them all). */
export type ReasoningMarkers = Pick<ReasoningSpec, 'thinkOpen' | 'thinkClose' | 'answerOpen' | 'answerClose'>;

export interface ReasoningSplit {
  thoughts: string;
  answer: string;
  /** True once the text holds `thinkClose`: the answer channel has begun. */
  thinkingDone: boolean;
}

const WHITESPACE = ' \t\n\r';

function trimStart(text: string): string {
  let i = 0;
  while (i < text.length && WHITESPACE.includes(text[i]!)) i++;
  return text.slice(i);
}

function trimEnd(text: string): string {
  let end = text.length;
  while (end > 0 && WHITESPACE.includes(text[end - 1]!)) end--;
  return text.slice(0, end);
}

/** Length of the longest suffix of `text` that is a proper, non-empty prefix of `marker`. */
function partialMarkerAtEnd(text: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(marker.slice(0, n))) return n;
  }
  return 0;
}

/**
 * `text` without a leading `open` marker (after leading whitespace). While streaming
 * (`final` false), a text that is still a proper prefix of the marker shows nothing yet.
 */
function withoutOpening(text: string, open: string | undefined, final: boolean): string {
  const start = trimStart(text);
  if (!open) return start;
  if (start.startsWith(open)) return trimStart(start.slice(open.length));
  if (!final && start.length > 0 && open.startsWith(start)) return '';
  return start;
}

/** `text` up to a closing marker; while streaming, without a tail that may still become it. */
function upToClosing(text: string, close: string | undefined, final: boolean): string {
  if (close) {
    const at = text.indexOf(close);
    if (at >= 0) return trimEnd(text.slice(0, at));
    if (!final) text = text.slice(0, text.length - partialMarkerAtEnd(text, close));
  }
  return trimEnd(text);
}

/**
 * Splits generated text into thoughts and answer. `final` false (streaming) holds back what may
 * still change: a possible marker prefix at the end, and trailing whitespace.
 */
export function splitReasoning(text: string, markers: ReasoningMarkers, final = true): ReasoningSplit {
  const at = text.indexOf(markers.thinkClose);
  if (at < 0) {
    const thoughts = upToClosing(withoutOpening(text, markers.thinkOpen, final), markers.thinkClose, final);
    return { thoughts, answer: '', thinkingDone: false };
  }
  const thoughts = trimEnd(withoutOpening(text.slice(0, at), markers.thinkOpen, true));
  const rest = text.slice(at + markers.thinkClose.length);
  const answer = upToClosing(withoutOpening(rest, markers.answerOpen, final), markers.answerClose, final);
  return { thoughts, answer, thinkingDone: true };
}

export interface ChannelDeltas {
  /** Thought text that became showable. */
  thoughtDelta: string;
  /** Answer text that became showable. */
  answerDelta: string;
  thoughts: string;
  answer: string;
  thinkingDone: boolean;
}

/**
 * Streams the split: give it the whole generated text after each token (`update`) and it returns
 * what each channel gained. `finish` releases what was held back.
 */
export class ReasoningStream {
  private shown: ReasoningSplit = { thoughts: '', answer: '', thinkingDone: false };

  constructor(private readonly markers: ReasoningMarkers) {}

  update(text: string): ChannelDeltas {
    return this.advance(splitReasoning(text, this.markers, false));
  }

  finish(text: string): ChannelDeltas {
    return this.advance(splitReasoning(text, this.markers, true));
  }

  get thoughts(): string {
    return this.shown.thoughts;
  }

  get answer(): string {
    return this.shown.answer;
  }

  private advance(next: ReasoningSplit): ChannelDeltas {
    const before = this.shown;
    this.shown = next;
    return {
      thoughtDelta: suffixAfter(before.thoughts, next.thoughts),
      answerDelta: suffixAfter(before.answer, next.answer),
      thoughts: next.thoughts,
      answer: next.answer,
      thinkingDone: next.thinkingDone,
    };
  }
}

/** What `next` adds to `shown` (from the first difference, should the detokenizer rewrite a tail). */
function suffixAfter(shown: string, next: string): string {
  if (next.startsWith(shown)) return next.slice(shown.length);
  let common = 0;
  while (common < next.length && next[common] === shown[common]) common++;
  return next.slice(common);
}

/** What the generation loop needs to enforce a thinking budget. */
export interface ReasoningRun {
  markers: ReasoningMarkers;
  /** Most sampled thought tokens before `forcedIds` are fed (0: at once). */
  budget: number;
  /** The tokens of the manifest's `forcedClose`, fed (not sampled) when the budget runs out. */
  forcedIds: number[];
}

/** Checks a thinking budget given by a caller: a whole number of tokens, 0 or more. */
export function validThinkingBudget(budget: number): boolean {
  return Number.isInteger(budget) && budget >= 0;
}
