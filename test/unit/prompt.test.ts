import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { followUpIds, historyContent, historyTurnIds, promptParts, userTextFor, type PromptFormat } from '../../src/engine/llm/prompt';
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

describe('ALARM follow-ups as Qwen3’s chat template writes them', () => {
  const ALARM_DIR = join(TINY_BUNDLE_DIR, '..', 'alarm-tiny');
  const alarmManifest = JSON.parse(readFileSync(join(ALARM_DIR, 'manifest.json'), 'utf8'));
  const alarmFormat: PromptFormat = alarmManifest.prompt;
  const qwen3 = createTokenizer(
    JSON.parse(readFileSync(join(ALARM_DIR, 'tokenizer.json'), 'utf8')),
    JSON.parse(readFileSync(join(ALARM_DIR, 'tokenizer_config.json'), 'utf8')),
  );
  const golden = JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, '..', '..', 'golden', 'alarm', 'index.json'), 'utf8'));
  const speech = golden.inputs.speech;

  it('the first turn’s text after the audio, less its generation prompt, then the answer written back and the next question: the reference’s fresh prompt of the conversation', () => {
    const history = alarmFormat.history!;
    expect(history.generationPrompt).toBe('<|im_start|>assistant\n<think>\n');
    const generationPrompt = qwen3.encode(history.generationPrompt);
    const main: number[] = speech.promptIds.main;
    expect(main.slice(-generationPrompt.length)).toEqual(generationPrompt);
    for (const precision of ['fp32', 'int4']) {
      const followUp = speech.precisions[precision].followUp;
      const generated = qwen3.decode(speech.precisions[precision].reasoning.tokens);
      expect(generated).toBe(followUp.history[0].generated);
      const ids = [...main.slice(0, -generationPrompt.length), ...historyTurnIds(qwen3, generated, followUp.question, { ...alarmFormat, history })];
      expect(ids).toEqual(followUp.mainIds);
    }
  });

  it('keeps only what follows the last thoughts marker, leading line breaks removed; all of it without one', () => {
    const history = alarmFormat.history!;
    expect(historyContent('a</think>b</think>\n\nanswer\n', history)).toBe('answer\n');
    expect(historyContent('\n\nno marker', history)).toBe('no marker');
    expect(historyContent(' </think> x', history)).toBe(' x');
  });
});
