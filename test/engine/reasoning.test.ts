/**
 * Reasoning traces with a thinking budget (issue 12, ALARM) in Node on the wasm backend, on the
 * tiny reasoning bundle, against the PyTorch reference (models/salmonn/reasoning.py, goldens from
 * models/make_reasoning_goldens.py): token-identical runs for budgets 0, 3, 7 and 1024; the
 * forced closing text fed exactly after N thought tokens; budget 0 skips thinking; the streamed
 * thought and answer channels add up to the final split; bundles without `reasoning` unchanged.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine } from '../../src/engine/engine';
import type { TokenEvent } from '../../src/engine/llm/generate';
import { GOLDEN_DIR, loadGoldenIndex } from '../helpers/golden';
import { loadReasoningGolden, reasoningBundleFiles } from '../helpers/reasoningBundle';
import { tinyBundleFiles } from '../helpers/tinyBundle';

const golden = loadReasoningGolden();
const wav = new Uint8Array(readFileSync(join(GOLDEN_DIR, golden.audio)));

describe('reasoning with a thinking budget (wasm, fp32) vs the PyTorch reference', () => {
  const engine = new HarkEngine({ store: new MemoryBundleStore() });
  beforeAll(async () => {
    await engine.loadModel(reasoningBundleFiles(golden), { backend: 'wasm', variant: golden.precision });
    await engine.setAudio(wav);
  }, 120_000);
  afterAll(() => engine.unload());

  it('loads the bundle’s reasoning template and default budget', () => {
    expect(engine.modelInfo!.reasoning).toEqual(golden.reasoning);
    expect(engine.modelInfo!.defaults.thinkingBudget).toBe(golden.reasoning.defaultThinkingBudget);
    // The markers and the forced text are several tokens each: the split works across tokens.
    expect(golden.thinkOpenIds.length).toBeGreaterThan(1);
    expect(golden.thinkCloseIds.length).toBeGreaterThan(1);
    expect(golden.runs.map((r) => r.forcedClose)).toEqual([true, true, true, false]);
  });

  for (const run of golden.runs) {
    it(`budget ${run.thinkingBudget}: token-identical, ${run.forcedClose ? `forced after exactly ${run.thinkingBudget} thought tokens` : 'thinking ends by itself'}, channels split as the reference`, async () => {
      engine.newConversation();
      const events: TokenEvent[] = [];
      const answer = await engine.ask(golden.prompt, {
        thinkingBudget: run.thinkingBudget, maxNewTokens: golden.maxNewTokens, loraScale: golden.loraScale, doSample: false,
        onToken: (event) => events.push(event),
      });
      expect(answer.ids).toEqual(run.tokens);
      expect(answer.thinkingTokens).toBe(run.thinkingTokens);
      expect(answer.forcedClose).toBe(run.forcedClose);
      expect(answer.thoughts).toBe(run.thoughts);
      expect(answer.text).toBe(run.answer);

      // Mechanics: the forced tokens are the closing text's, right after N thought tokens, marked
      // as forced and in the thought channel; every later token is in the answer channel.
      const forced = events.filter((e) => e.forced).map((e) => e.index);
      if (run.forcedClose) {
        expect(forced).toEqual(golden.forcedCloseIds.map((_, i) => run.thinkingBudget + i));
        expect(answer.ids.slice(run.thinkingBudget, run.thinkingBudget + golden.forcedCloseIds.length)).toEqual(golden.forcedCloseIds);
      } else {
        expect(forced).toEqual([]);
      }
      expect(events.map((e) => e.channel)).toEqual(events.map((e) => (e.index < run.answerStart! ? 'thought' : 'answer')));
      // Budget 0: no thought token was sampled; the first tokens are the forced ones.
      if (run.thinkingBudget === 0) expect(events.slice(0, golden.forcedCloseIds.length).every((e) => e.forced)).toBe(true);
      // The forced closing text is fed in one decoder run, not one per token: every other written
      // token but the last takes one run (the last is never fed).
      const forcedTokens = run.forcedClose ? golden.forcedCloseIds.length : 0;
      expect(answer.stats.decodeRuns).toBe(answer.ids.length - 1 - (forcedTokens > 0 ? forcedTokens - 1 : 0) - (answer.stats.stopReason === 'stop-token' ? -1 : 0));

      // Streaming: the deltas add up to the final split; what is shown never exceeds it.
      const thoughts = events.map((e) => e.thoughtDelta ?? '').join('');
      const answerText = events.map((e) => e.delta).join('');
      expect(run.thoughts.startsWith(thoughts)).toBe(true);
      expect(run.answer.startsWith(answerText)).toBe(true);
      expect(events.at(-1)!.thoughts).toBe(thoughts);
      expect(events.at(-1)!.text).toBe(answerText);
      for (const event of events) expect(event.thoughts).not.toContain(golden.reasoning.thinkClose);
    });
  }

  it('a follow-up continues after thoughts, forced text and answer as the reference; resuming from the stored ids gives the same follow-up', async () => {
    const run = golden.runs.find((r) => r.thinkingBudget === 3)!;
    const options = { thinkingBudget: run.thinkingBudget, maxNewTokens: golden.maxNewTokens, loraScale: golden.loraScale, doSample: false };
    engine.newConversation();
    const first = await engine.ask(golden.prompt, options);
    expect(first.ids).toEqual(run.tokens);
    const expected = run.followUp!;
    const followUp = await engine.ask(expected.question, { ...options, maxNewTokens: expected.maxNewTokens });
    expect(followUp.turn).toBe(2);
    expect(followUp.ids).toEqual(expected.tokens);
    expect(followUp.thinkingTokens).toBe(expected.thinkingTokens);
    expect(followUp.forcedClose).toBe(expected.forcedClose);
    expect(followUp.thoughts).toBe(expected.thoughts);
    expect(followUp.text).toBe(expected.answer);
    const resumed = await engine.resumeConversation([{ question: golden.prompt, answer: first.text, ids: first.ids }], { loraScale: golden.loraScale });
    expect(resumed.exactTurns).toBe(1);
    const again = await engine.ask(expected.question, { ...options, maxNewTokens: expected.maxNewTokens });
    expect(again.ids).toEqual(followUp.ids);
    expect(again.thoughts).toBe(followUp.thoughts);
  });

  it('defaults to the manifest’s budget, and refuses a budget that is not a whole number of tokens', async () => {
    engine.newConversation();
    const answer = await engine.ask(golden.prompt, { maxNewTokens: 2, loraScale: golden.loraScale });
    const large = golden.runs.find((r) => r.thinkingBudget >= golden.reasoning.defaultThinkingBudget)!;
    // The default budget (16) is above the 8 tokens the model thinks, so it ends as the large budget's run.
    expect(answer.thinkingTokens).toBe(large.thinkingTokens);
    expect(answer.ids).toEqual(large.tokens.slice(0, large.answerStart! + 2));
    engine.newConversation();
    await expect(engine.ask(golden.prompt, { thinkingBudget: -1 })).rejects.toThrow(/thinking budget/);
    await expect(engine.ask(golden.prompt, { thinkingBudget: 2.5 })).rejects.toThrow(/thinking budget/);
  });
});

describe('a bundle without reasoning answers as before', () => {
  const engine = new HarkEngine({ store: new MemoryBundleStore() });
  afterAll(() => engine.unload());

  it('has no reasoning, no thoughts and no channels; the greedy golden tokens are unchanged', async () => {
    const input = loadGoldenIndex().inputs[golden.input]!;
    await engine.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: 'fp32' });
    expect(engine.modelInfo!.reasoning).toBeNull();
    expect(engine.modelInfo!.defaults.thinkingBudget).toBeUndefined();
    await engine.setAudio(wav);
    const run = input.precisions.fp32.runs.default!;
    const events: TokenEvent[] = [];
    const answer = await engine.ask(input.prompt, { maxNewTokens: 8, loraScale: run.loraScale, doSample: false, thinkingBudget: 0, onToken: (e) => events.push(e) });
    expect(answer.ids).toEqual(run.tokens.slice(0, 8));
    expect('thoughts' in answer || 'thinkingTokens' in answer || 'forcedClose' in answer).toBe(false);
    expect(events.every((e) => e.channel === undefined && e.thoughts === undefined && e.forced === undefined)).toBe(true);
  });
});
