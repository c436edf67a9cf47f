/**
 * Hostile questions through the engine's prompt building (promptParts for a first question,
 * followUpIds for a follow-up) with the tiny bundle's real LLaMA tokenizer: emoji and ZWJ
 * sequences, RTL text and bidi overrides, control characters, lone surrogates, the audio slot
 * typed by the user, and 100 kB questions. Every question gives token ids the embedding graph
 * accepts (integers in [0, vocabSize)) with BOS first, or a HarkError whose message is a sentence;
 * decoding the ids gives the question back (up to what UTF-8 cannot carry); streaming an answer of
 * those ids never shows half a character. No call takes longer than MAX_CALL_MS.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { followUpIds, promptParts, type PromptFormat } from '../../../src/engine/llm/prompt';
import { IncrementalText } from '../../../src/engine/llm/textStream';
import { createTokenizer } from '../../../src/engine/llm/tokenizer';
import { TINY_BUNDLE_DIR } from '../../helpers/golden';
import { expectHarkError, fuzzParams, fuzzTimeout, guarded, hostileText } from './harness';

const CI_RUNS = 1_000;
const manifest = JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'manifest.json'), 'utf8')) as { prompt: PromptFormat; architecture: { llm: { vocabSize: number } } };
const format = manifest.prompt;
const VOCAB = manifest.architecture.llm.vocabSize;
const tokenizer = createTokenizer(
  JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'tokenizer.json'), 'utf8')) as object,
  JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'tokenizer_config.json'), 'utf8')) as object,
);

function expectIds(ids: readonly number[]): void {
  for (const id of ids) if (!(Number.isInteger(id) && id >= 0 && id < VOCAB)) throw new Error(`token id ${id} is outside [0, ${VOCAB})`);
}

/** What survives UTF-8: lone surrogates become U+FFFD. */
function wellFormed(text: string): string {
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

function throughPrompt(question: string, limitMs?: number): void {
  const first = guarded(() => promptParts(tokenizer, question, format), (e) => expectHarkError(e, ['engine/inference-failed']), limitMs);
  if (first.ok) {
    expect(first.value.before[0]).toBe(format.bosTokenId);
    expectIds(first.value.before);
    expectIds(first.value.after);
  }
  const follow = guarded(() => followUpIds(tokenizer, question, format), (e) => expectHarkError(e, ['engine/inference-failed']), limitMs);
  if (follow.ok) {
    expect(follow.value[0]).toBe(format.eosTokenId);
    expectIds(follow.value);
  }
}

const pieces = fc.constantFrom(
  '👩‍👩‍👧‍👦', '🏳️‍🌈', '🇺🇳', '👍🏽', '\u{1F600}', 'é', 'e\u0301', 'ﬁ', '世界', '한국어', 'ไทย',
  'مرحبا بالعالم', 'שלום', '\u202eevil\u202c', '\u200f', '\u200e', '\u2066x\u2069',
  '\u0000', '\u0007', '\u001b[31m', '\r\n', '\t', '\u000b', '\u0085', '\u2028', '\ufeff', '\ufffd', '\uffff',
  '\ud800', '\udfff', '\udbff\udfff', '<SpeechHere>', '<Speech>', '</s>', '<s>', '<unk>', 'USER:', 'ASSISTANT:', '{}', '{event}',
  '▁', ' ', '  ', '<0x00>', '\\u0000', '%s', '${x}', '<img src=x onerror=alert(1)>',
);

const question = fc.oneof(
  hostileText(200),
  fc.array(fc.oneof(pieces, fc.string({ unit: 'grapheme', maxLength: 8 })), { maxLength: 40 }).map((p) => p.join('')),
  fc.string({ unit: 'binary', maxLength: 200 }),
);

describe('prompt building with hostile questions', () => {
  it('gives valid token ids or a typed error', { timeout: fuzzTimeout(CI_RUNS, 20) }, () => {
    fc.assert(fc.property(question, (q) => throughPrompt(q)), fuzzParams(CI_RUNS));
  });

  it('decodes a question back to its text, and streams it without half characters', { timeout: fuzzTimeout(CI_RUNS, 20) }, () => {
    fc.assert(
      fc.property(question, (q) => {
        const ids = tokenizer.encode(q);
        expectIds(ids);
        const stream = new IncrementalText(tokenizer);
        let streamed = '';
        for (const id of ids) {
          const delta = stream.push(id);
          expect(delta).not.toMatch(/[\ud800-\udbff]$/); // never the first half of a surrogate pair
          streamed += delta;
        }
        streamed += stream.flush();
        expect(streamed).toBe(tokenizer.decode(ids));
        // SentencePiece adds one leading "▁" (dropped again when decoding); special-token text the
        // user typed ("</s>", as SALMONN's own tokenizer reads it too) decodes to nothing, and
        // whitespace, "▁" and control characters may be normalized; every other character comes back.
        const back = tokenizer.decode(ids);
        expect(back.length).toBeLessThanOrEqual(wellFormed(q).length + 1);
        if (!/[\u0000-\u001f\u007f-\u009f▁]|\s|<\/?s>|<unk>/.test(q)) expect(back.replace(/^ /, '')).toBe(wellFormed(q).replace(/^ /, ''));
      }),
      fuzzParams(CI_RUNS),
    );
  });

  it.each([
    ['100 kB of one repeated word', 'a'.repeat(100_000)],
    ['100 kB without spaces, mixed scripts', '世界👩‍👩‍👧‍👦مرحبا'.repeat(5_000).slice(0, 100_000)],
    ['100 kB of words', 'the quick brown fox jumps over the lazy dog '.repeat(2_300)],
    ['100 kB of lone surrogates and controls', '\ud800\u0000\u202e\udfff\u001b'.repeat(20_000)],
    ['100 kB of audio slots', '<SpeechHere>'.repeat(8_400)],
  ])('%s', { timeout: 60_000 }, (_name, q) => {
    // Tokenizing is linear: 100 kB takes 1–3.5 s here (2 shared cores); the bound leaves room for
    // a loaded CI machine, while a quadratic blow-up would take minutes.
    throughPrompt(q, 15_000);
  });

  it('refuses a question with the audio slot twice with a typed error (found by fuzzing)', () => {
    const r = guarded(() => promptParts(tokenizer, 'a <SpeechHere> b <SpeechHere>', format), (e) => expectHarkError(e, ['engine/inference-failed']));
    expect(r.ok).toBe(false);
  });
});
