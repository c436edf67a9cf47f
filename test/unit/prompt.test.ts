import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { followUpIds, promptParts, userTextFor, type PromptFormat } from '../../src/engine/llm/prompt';
import { IncrementalText } from '../../src/engine/llm/textStream';
import { createTokenizer } from '../../src/engine/llm/tokenizer';
import { loadGoldenIndex, TINY_BUNDLE_DIR } from '../helpers/golden';

const manifest = JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'manifest.json'), 'utf8'));
const format: PromptFormat = manifest.prompt;
const tokenizer = createTokenizer(
  JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'tokenizer.json'), 'utf8')),
  JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'tokenizer_config.json'), 'utf8')),
);

describe('the bundle tokenizer (transformers.js)', () => {
  it('produces LLaMA ids', () => {
    expect(tokenizer.encode('USER:')).toEqual([3148, 1001, 29901]);
    expect(tokenizer.encode('the')).toEqual([278]);
  });
});

describe('SALMONN prompt assembly', () => {
  it('matches the Python reference for every golden input', () => {
    for (const input of Object.values(loadGoldenIndex().inputs)) {
      const parts = promptParts(tokenizer, input.prompt, format);
      expect(parts.before).toEqual([format.bosTokenId, ...input.promptIds.before]);
      expect(parts.after).toEqual(input.promptIds.after);
    }
  });

  it('adds the audio prefix to a free-text question only', () => {
    expect(userTextFor('  What is this? ', format)).toBe('<Speech><SpeechHere></Speech> What is this?');
    expect(userTextFor('<Speech><SpeechHere></Speech> Describe.', format)).toBe('<Speech><SpeechHere></Speech> Describe.');
    expect(() => promptParts(tokenizer, 'a <SpeechHere> b <SpeechHere>', format)).toThrow(/exactly once/);
  });

  it('starts a follow-up with </s> and a freshly tokenized turn', () => {
    const golden = loadGoldenIndex().inputs.speech!.precisions.fp32.runs.default.followUp!;
    expect(followUpIds(tokenizer, golden.question, format)).toEqual(golden.turnIds);
  });
});

describe('IncrementalText', () => {
  it('streams text equal to the final decode and holds back incomplete characters', () => {
    const ids = tokenizer.encode('Héllo 世界 🙂 done');
    const stream = new IncrementalText(tokenizer);
    let streamed = '';
    for (const id of ids) {
      const delta = stream.push(id);
      expect(delta.includes('\uFFFD')).toBe(false);
      streamed += delta;
    }
    streamed += stream.flush();
    expect(streamed).toBe(tokenizer.decode(ids));
    expect(streamed).toBe('Héllo 世界 🙂 done');
  });
});
