/**
 * The thoughts/answer split (src/engine/llm/reasoning.ts): the rules on whole texts, and the
 * streaming split fed in pieces cut at every point (markers arriving over several "tokens"):
 * what it shows of each channel is always a prefix of the final split, and it ends with it.
 */
import { describe, expect, it } from 'vitest';
import { ReasoningStream, splitReasoning, type ReasoningMarkers } from '../../src/engine/llm/reasoning';

const ALARM: ReasoningMarkers = { thinkOpen: '<think>', thinkClose: '</think>', answerOpen: '<answer>', answerClose: '</answer>' };
const BARE: ReasoningMarkers = { thinkOpen: '<think>', thinkClose: '</think>' };
const FORCED = '\n\nConsidering the limited time by the user, I have to give the solution based on the thinking directly now.\n</think>\n\n';

describe('splitReasoning (whole texts)', () => {
  it('splits at the first close marker, strips the answer wrapper and trims', () => {
    expect(splitReasoning('A dog barks twice.\n</think>\n\n<answer> a dog </answer>', ALARM)).toEqual({ thoughts: 'A dog barks twice.', answer: 'a dog', thinkingDone: true });
    expect(splitReasoning('<think>\nhmm</think>yes</think>', ALARM)).toEqual({ thoughts: 'hmm', answer: 'yes</think>', thinkingDone: true });
    // No wrapper: the whole rest is the answer; text after the close of the answer is not shown.
    expect(splitReasoning('x</think> plain answer', ALARM).answer).toBe('plain answer');
    expect(splitReasoning('x</think><answer>B</answer> trailing', ALARM).answer).toBe('B');
    expect(splitReasoning('x</think>B</answer> trailing', ALARM).answer).toBe('B');
    // A wrapper that is not at the start of the answer stays (only a leading one is a wrapper).
    expect(splitReasoning('x</think>so <answer>B', ALARM).answer).toBe('so <answer>B');
    expect(splitReasoning('x</think><answer>B</answer>', BARE).answer).toBe('<answer>B</answer>');
  });

  it('is all thoughts while the close marker has not come', () => {
    expect(splitReasoning('  still thinking </thi', ALARM)).toEqual({ thoughts: 'still thinking </thi', answer: '', thinkingDone: false });
    expect(splitReasoning('', ALARM)).toEqual({ thoughts: '', answer: '', thinkingDone: false });
  });

  it('ends the thoughts with the forced closing text, whose sentence stays in the thoughts', () => {
    const split = splitReasoning(`so far so good${FORCED}<answer>B</answer>`, ALARM);
    expect(split.thoughts).toBe('so far so good\n\nConsidering the limited time by the user, I have to give the solution based on the thinking directly now.');
    expect(split.answer).toBe('B');
    expect(splitReasoning(FORCED, ALARM)).toEqual({ thoughts: 'Considering the limited time by the user, I have to give the solution based on the thinking directly now.', answer: '', thinkingDone: true });
  });

  it('trims only spaces, tabs and line breaks (as the Python reference)', () => {
    expect(splitReasoning('\u00a0a\u00a0</think>\u3000b\u3000', ALARM)).toEqual({ thoughts: '\u00a0a\u00a0', answer: '\u3000b\u3000', thinkingDone: true });
  });
});

/** Feeds `text` cut at `cuts` and checks every shown state against the final split. */
function stream(text: string, markers: ReasoningMarkers, cuts: number[]): { thoughts: string; answer: string } {
  const split = new ReasoningStream(markers);
  const final = splitReasoning(text, markers);
  let thoughts = '';
  let answer = '';
  for (const end of [...cuts, text.length]) {
    const step = split.update(text.slice(0, end));
    thoughts += step.thoughtDelta;
    answer += step.answerDelta;
    expect(step.thoughts).toBe(thoughts);
    expect(step.answer).toBe(answer);
    expect(final.thoughts.startsWith(thoughts), `thoughts shown at ${end}: ${JSON.stringify(thoughts)}`).toBe(true);
    expect(final.answer.startsWith(answer), `answer shown at ${end}: ${JSON.stringify(answer)}`).toBe(true);
    // Nothing of a marker is ever shown.
    for (const marker of ['</think>', '<answer>', '</answer>', '</', '</th', '<ans']) {
      if (!final.thoughts.includes(marker)) expect(thoughts).not.toContain(marker);
      if (!final.answer.includes(marker)) expect(answer).not.toContain(marker);
    }
  }
  const last = split.finish(text);
  thoughts += last.thoughtDelta;
  answer += last.answerDelta;
  return { thoughts, answer };
}

describe('ReasoningStream (streaming chunks)', () => {
  const texts = [
    '<think>\nThe clip has a dog.\n</think>\n\n<answer>A dog barks.</answer>',
    `I hear rain${FORCED}<answer>rain</answer>`,
    'a</think>b',
    'no close marker yet </think',
    '<thin',
    'x </think> <ans',
    'x</think> </answer> after',
  ];

  for (const text of texts) {
    it(`every single cut of ${JSON.stringify(text)} gives the final split`, () => {
      const final = splitReasoning(text, ALARM);
      for (let cut = 0; cut <= text.length; cut++) {
        expect(stream(text, ALARM, [cut]), `cut at ${cut}`).toEqual({ thoughts: final.thoughts, answer: final.answer });
      }
    });
  }

  it('one character at a time, and marker text cut at every point inside a marker', () => {
    const text = texts[0]!;
    const final = splitReasoning(text, ALARM);
    expect(stream(text, ALARM, Array.from({ length: text.length }, (_, i) => i))).toEqual({ thoughts: final.thoughts, answer: final.answer });
    const close = text.indexOf('</think>');
    for (let a = close; a <= close + 8; a++) {
      for (let b = a; b <= close + 8; b++) {
        expect(stream(text, ALARM, [a, b])).toEqual({ thoughts: final.thoughts, answer: final.answer });
      }
    }
  });

  it('holds back a possible marker and trailing whitespace, then releases them', () => {
    const split = new ReasoningStream(ALARM);
    expect(split.update('thinking </').thoughts).toBe('thinking');
    expect(split.update('thinking </b').thoughts).toBe('thinking </b');
    expect(split.update('thinking </b</think>\n').answer).toBe('');
    expect(split.update('thinking </b</think>\n<ans').answer).toBe('');
    expect(split.update('thinking </b</think>\n<answer>Yes </').answer).toBe('Yes');
    const done = split.finish('thinking </b</think>\n<answer>Yes </');
    expect(done.answer).toBe('Yes </');
    expect(done.answerDelta).toBe(' </');
  });
});
