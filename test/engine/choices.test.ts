/**
 * Answers from a fixed label set (HarkEngine.classify) in Node on the wasm backend, against the
 * PyTorch reference (models/salmonn/classify.py): every label's probability within 1e-4 for fp32
 * and int4, the follow-up after the chosen label, and the label rules' errors.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine } from '../../src/engine/engine';
import { HarkError } from '../../src/engine/errors';
import { GOLDEN_DIR, loadGoldenIndex, type GoldenInput } from '../helpers/golden';
import { logitError } from '../helpers/npy';
import { tinyBundleFiles } from '../helpers/tinyBundle';

const golden = loadGoldenIndex();
const classified = Object.entries(golden.inputs).filter(([, input]) => input.precisions.fp32.classification);
const wav = (input: GoldenInput) => new Uint8Array(readFileSync(join(GOLDEN_DIR, input.audio)));

function maxAbsDifference(a: readonly number[], b: readonly number[]): number {
  expect(a.length).toBe(b.length);
  return Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));
}

for (const precision of ['fp32', 'int4'] as const) {
  describe(`classify (wasm, ${precision}) vs the PyTorch reference`, () => {
    const engine = new HarkEngine({ store: new MemoryBundleStore() });
    beforeAll(() => engine.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: precision }));
    afterAll(() => engine.unload());

    it('has golden label sets with a label that is a prefix of another', () => {
      expect(classified.map(([name]) => name).length).toBeGreaterThan(0);
      const { labelIds } = classified[0]![1].precisions[precision].classification!;
      expect(labelIds.some((ids, i) => labelIds.some((other, j) => i !== j && other.length > ids.length && ids.every((id, k) => other[k] === id)))).toBe(true);
    });

    for (const [name, input] of classified) {
      const expected = input.precisions[precision].classification!;
      it(`${name}: every label's probability within 1e-4, the reference's label, and the follow-up after it`, async () => {
        await engine.setAudio(wav(input));
        const result = await engine.classify(expected.question, { choices: expected.labels, loraScale: expected.loraScale });
        const probabilityError = maxAbsDifference(result.choices.map((c) => c.probability), expected.probabilities);
        const logProbError = maxAbsDifference(result.choices.map((c) => c.logProb), expected.logProbs);
        console.log(`classify ${precision} ${name}: probability error ${probabilityError.toExponential(1)}, log-prob error ${logProbError.toExponential(1)}, ` +
          `prefill ${result.stats.prefillMs.toFixed(0)} ms, ${result.stats.scoringRuns} scoring runs ${result.stats.scoringMs.toFixed(0)} ms`);
        expect(probabilityError).toBeLessThan(1e-4);
        expect(logProbError).toBeLessThan(1e-4);
        expect(result.choices.map((c) => c.label)).toEqual(expected.labels);
        expect(result.choices.map((c) => c.tokens)).toEqual(expected.labelIds);
        expect(result.label).toBe(expected.label);
        expect(result.text).toBe(expected.label);
        expect(result.ids).toEqual(expected.labelIds[expected.labels.indexOf(expected.label)]);
        expect(result.turn).toBe(1);
        // "speech" is scored on the run of "speech and music": one run fewer than labels.
        expect(result.stats.scoringRuns).toBe(expected.labels.length - 1);

        // The chosen label is the turn's answer: the follow-up continues after it as in the reference.
        const next = await engine.ask(expected.followUp.question, { loraScale: expected.loraScale, maxNewTokens: expected.followUp.tokens.length, doSample: false });
        expect(next.turn).toBe(2);
        expect(next.ids).toEqual(expected.followUp.tokens);
      });
    }
  });
}

describe('classify: label order, prefixes, follow-up turns and label rules (wasm, fp32)', () => {
  const engine = new HarkEngine({ store: new MemoryBundleStore() });
  const [name, input] = classified[0]!;
  const expected = input.precisions.fp32.classification!;
  beforeAll(async () => {
    await engine.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: 'fp32' });
    await engine.setAudio(wav(input));
  });
  afterAll(() => engine.unload());

  it(`${name}: a label's score does not depend on the other labels, their order, or which run scored it`, async () => {
    const reversed = await engine.classify(expected.question, { choices: [...expected.labels].reverse(), loraScale: expected.loraScale });
    expect(reversed.choices.map((c) => c.label)).toEqual([...expected.labels].reverse());
    expect(maxAbsDifference(reversed.choices.map((c) => c.logProb).reverse(), expected.logProbs)).toBeLessThan(1e-3);
    // Alone, the prefix label gets a run of its own; in the set it was read off the longer label's run.
    engine.newConversation();
    const prefix = expected.labels.find((label, i) => expected.labels.some((other, j) => i !== j && other.startsWith(`${label} `)))!;
    const alone = await engine.classify(expected.question, { choices: [prefix], loraScale: expected.loraScale });
    expect(alone.choices[0]!.probability).toBe(1);
    expect(alone.stats.scoringRuns).toBe(1);
    expect(Math.abs(alone.choices[0]!.logProb - expected.logProbs[expected.labels.indexOf(prefix)]!)).toBeLessThan(1e-3);
  });

  it(`${name}: the chosen label enters the conversation exactly like a stored answer of the same tokens`, async () => {
    engine.newConversation();
    const chosen = await engine.classify(expected.question, { choices: expected.labels, loraScale: expected.loraScale });
    let afterLabel: Float32Array = new Float32Array(0);
    await engine.ask(expected.followUp.question, { loraScale: expected.loraScale, maxNewTokens: 1, onFirstLogits: (l) => (afterLabel = l) });
    // The same turn re-read by resumeConversation (its own, separately tested path), then the same follow-up.
    await engine.resumeConversation([{ question: expected.question, answer: chosen.text, ids: chosen.ids }], { loraScale: expected.loraScale });
    let afterResume: Float32Array = new Float32Array(0);
    await engine.ask(expected.followUp.question, { loraScale: expected.loraScale, maxNewTokens: 1, onFirstLogits: (l) => (afterResume = l) });
    expect(logitError(afterLabel, afterResume)).toBeLessThan(1e-5);
    // …and differs from a conversation whose answer was another label.
    const other = expected.labels.findIndex((label) => label !== chosen.label);
    await engine.resumeConversation([{ question: expected.question, answer: expected.labels[other]!, ids: expected.labelIds[other]! }], { loraScale: expected.loraScale });
    let afterOther: Float32Array = new Float32Array(0);
    await engine.ask(expected.followUp.question, { loraScale: expected.loraScale, maxNewTokens: 1, onFirstLogits: (l) => (afterOther = l) });
    expect(logitError(afterLabel, afterOther)).toBeGreaterThan(1e-3);
  });

  it('answers a follow-up question from labels, on top of the conversation', async () => {
    engine.newConversation();
    await engine.ask('What do you hear?', { maxNewTokens: 4 });
    const second = await engine.classify('How many speakers are there?', { choices: ['1', '2', '3+'] });
    expect(second.turn).toBe(2);
    expect(second.choices.map((c) => c.tokens)).toEqual([[29871, 29896], [29871, 29906], [29871, 29941, 29974]]);
    expect(second.choices.reduce((sum, c) => sum + c.probability, 0)).toBeCloseTo(1, 12);
    expect(second.stats.scoringRuns).toBe(3);
    const third = await engine.ask('Why?', { maxNewTokens: 2 });
    expect(third.turn).toBe(3);
  });

  it('stops on cancel() or an aborted signal with engine/cancelled; the next question starts afresh', async () => {
    engine.newConversation();
    await engine.ask('What do you hear?', { maxNewTokens: 2 });
    const pending = engine.classify(expected.question, { choices: expected.labels });
    engine.cancel();
    const cancelled = await pending.then(() => null, (e: unknown) => e);
    expect((cancelled as HarkError).code).toBe('engine/cancelled');
    const aborted = await engine.classify(expected.question, { choices: expected.labels, signal: AbortSignal.abort() }).then(() => null, (e: unknown) => e);
    expect((aborted as HarkError).code).toBe('engine/cancelled');
    const next = await engine.classify(expected.question, { choices: expected.labels, loraScale: expected.loraScale });
    expect(next.turn).toBe(1);
    expect(maxAbsDifference(next.choices.map((c) => c.probability), expected.probabilities)).toBeLessThan(1e-4);
  });

  it('refuses unusable label sets with clear errors and keeps working', async () => {
    const cases: [string, string[], RegExp][] = [
      ['no labels', [], /at least one label/],
      ['an empty label', ['happy', '  '], /empty/],
      ['the same label twice', ['happy', 'sad', ' happy '], /“happy” is given twice/],
      ['an over-long label', ['happy', 'a very long label '.repeat(8)], /too long \(\d+ tokens; at most 30\)/],
      ['too many labels', Array.from({ length: 65 }, (_, i) => `label ${i}`), /At most 64 labels/],
    ];
    for (const [what, choices, message] of cases) {
      const error = await engine.classify(expected.question, { choices }).then(() => null, (e: unknown) => e);
      expect(error, what).toBeInstanceOf(HarkError);
      expect((error as HarkError).code, what).toBe('engine/inference-failed');
      expect((error as HarkError).message, what).toMatch(message);
    }
    const empty = await engine.classify('  ', { choices: ['a'] }).then(() => null, (e: unknown) => e);
    expect((empty as HarkError).message).toMatch(/question is empty/);
    const fresh = new HarkEngine({ store: new MemoryBundleStore() });
    await fresh.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: 'fp32' });
    expect(((await fresh.classify('Which?', { choices: ['a'] }).then(() => null, (e: unknown) => e)) as HarkError).code).toBe('engine/no-audio');
    await fresh.unload();
    const ok = await engine.classify(expected.question, { choices: expected.labels, loraScale: expected.loraScale });
    expect(ok.label).toBe(expected.label);
  });
});
