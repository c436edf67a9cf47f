/**
 * The whole engine in Node on onnxruntime-web's wasm backend, end to end from WAV bytes, against
 * the PyTorch reference's goldens: features, every stage, first-step logits and 32 greedy tokens
 * at three LoRA scales, fp32 and int4; plus follow-ups, cancellation and bad input.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine } from '../../src/engine/engine';
import { HarkError } from '../../src/engine/errors';
import { goldenArray, GOLDEN_DIR, loadGoldenIndex, type GoldenInput } from '../helpers/golden';
import { logitError, relativeMaxError } from '../helpers/npy';
import { tinyBundleFiles } from '../helpers/tinyBundle';

const golden = loadGoldenIndex();
const inputs = Object.entries(golden.inputs) as [string, GoldenInput][];
/** The goldens' names of the engine's stages (encoder outputs are reported by encoder name). */
const GOLDEN_STAGE: Record<string, 'speech' | 'audio' | 'tokens'> = { whisper: 'speech', beats: 'audio', tokens: 'tokens' };
const wav = (input: GoldenInput) => new Uint8Array(readFileSync(join(GOLDEN_DIR, input.audio)));


for (const precision of ['fp32', 'int4'] as const) {
  describe(`engine (wasm, ${precision}) vs the PyTorch reference`, () => {
    const engine = new HarkEngine({ store: new MemoryBundleStore() });
    beforeAll(async () => {
      const info = await engine.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: precision });
      expect(info.variant).toBe(precision);
      expect(info.randomWeights).toBe(true);
      // WebAssembly's attention is exact for whole prompts: no self-check, no chunking; no GPU in Node.
      expect(info.prefill).toMatchObject({ chunk: null, check: 'not-needed', maxError: null });
      expect(info.backendAdvice).toBeNull();
      // int4 runs with its weights unpacked to fp32 at load (int4Unpack.ts): every MatMulNBits of the variant.
      if (precision === 'int4') expect(info.decode.int4Unpacked).toMatchObject({ graphs: 4, matmuls: 59, overBudget: [] });
      else expect(info.decode.int4Unpacked).toBeNull();
    });
    afterAll(() => engine.unload());

    for (const [name, input] of inputs) {
      it(`${name}: stages within 1e-4, logits within 1e-3, 32 greedy tokens identical at 3 LoRA scales`, async () => {
        const stages = input.precisions[precision].stages;
        const seen: string[] = [];
        engine.inspectAudioStages((chunk, stage, data) => {
          const ref = stage === 'mel' || stage === 'fbank' ? input.features[chunk]![stage] : stages[chunk]![GOLDEN_STAGE[stage]!];
          expect(relativeMaxError(data, goldenArray(ref).data), `${stage} of chunk ${chunk}`).toBeLessThan(1e-4);
          seen.push(`${chunk}:${stage}`);
        });
        const audio = await engine.setAudio(wav(input));
        engine.inspectAudioStages(null);
        expect(seen.length).toBe(5 * input.chunks);
        expect(audio.chunks).toBe(input.chunks);
        expect(Array.from(audio.timeMap, (v) => Math.round(v * 1e6) / 1e6)).toEqual(input.timeMap.flat());

        for (const run of Object.values(input.precisions[precision].runs)) {
          engine.newConversation();
          let first: Float32Array | undefined;
          const answer = await engine.ask(input.prompt, {
            loraScale: run.loraScale,
            maxNewTokens: golden.greedyTokens,
            doSample: false,
            onFirstLogits: (logits) => (first = logits),
          });
          expect(logitError(first!, goldenArray(run.logits).data)).toBeLessThan(1e-3);
          expect(answer.ids).toEqual(run.tokens);
        }
      });
    }

    for (const [name, input] of inputs) {
      const expected = input.precisions[precision].localization;
      if (!expected) continue;
      it(`${name}: localizes "${expected.event}" like the reference: steering vector, Δ curve and interval within 1e-4`, async () => {
        expect(engine.modelInfo?.localization?.layers).toEqual(expected.layers);
        await engine.setAudio(wav(input));
        const stages: string[] = [];
        const found = await engine.localize(expected.event, { captureVector: true, onProgress: (p) => stages.push(`${p.done}/${p.total} ${p.stage}`) });
        expect(relativeMaxError(found.vector!, goldenArray(expected.vector).data)).toBeLessThan(1e-4);
        const delta = goldenArray(expected.delta).data;
        const times = goldenArray(expected.times).data;
        expect(found.curve.length).toBe(delta.length);
        // Δ is a difference of attention weights: compare against its own scale.
        expect(relativeMaxError(Float32Array.from(found.curve, (p) => p.delta), delta)).toBeLessThan(1e-4);
        for (const [i, point] of found.curve.entries()) expect(point.time).toBeCloseTo(times[i]!, 5);
        expect(found.start).toBeCloseTo(expected.start, 4);
        expect(found.end).toBeCloseTo(expected.end, 4);
        expect(found.confidence).toBeCloseTo(expected.confidence, 4);
        expect(stages).toEqual(['0/5 focus prompt', '1/5 neutral prompt', '2/5 steering', '3/5 steering', '4/5 read-out', '5/5 read-out']);
        // the conversation is untouched: the golden answer still comes out
        const run = input.precisions[precision].runs.default;
        const answer = await engine.ask(input.prompt, { loraScale: run.loraScale, maxNewTokens: 4, doSample: false });
        expect(answer.ids).toEqual(run.tokens.slice(0, 4));
      });
    }
  });
}

describe('engine conversation, streaming, cancellation and bad input (wasm, fp32)', () => {
  const engine = new HarkEngine({ store: new MemoryBundleStore(), maxAudioSeconds: 40 });
  const speech = golden.inputs.speech!;
  beforeAll(() => engine.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: 'fp32' }));
  afterAll(() => engine.unload());

  it('answers a follow-up from the KV cache without re-encoding, equal to the reference two-turn output', async () => {
    await engine.setAudio(wav(speech));
    const before = engine.counters;
    const run = speech.precisions.fp32.runs.default;
    const first = await engine.ask(speech.prompt, { maxNewTokens: golden.greedyTokens, loraScale: run.loraScale });
    expect(first.ids).toEqual(run.tokens);
    const second = await engine.ask(run.followUp!.question, { maxNewTokens: 16, loraScale: run.loraScale });
    expect(second.turn).toBe(2);
    expect(second.ids).toEqual(run.followUp!.tokens);
    const after = engine.counters;
    expect([after.speechEncoder, after.audioEncoder, after.connector]).toEqual([before.speechEncoder, before.audioEncoder, before.connector]);
  });

  it('resumes a conversation from its questions and answers (as after a reload): the follow-up equals the reference two-turn output', async () => {
    await engine.setAudio(wav(speech));
    const run = speech.precisions.fp32.runs.default;
    const first = await engine.ask(speech.prompt, { maxNewTokens: golden.greedyTokens, loraScale: run.loraScale });
    let liveLogits: Float32Array = new Float32Array(0);
    await engine.ask(run.followUp!.question, { maxNewTokens: 1, loraScale: run.loraScale, onFirstLogits: (l) => (liveLogits = l) });
    const before = engine.counters;
    // A fresh conversation rebuilt from the stored turn (exact ids), then the follow-up: the same
    // logits as the live conversation's follow-up, and the reference's two-turn tokens.
    const resumed = await engine.resumeConversation([{ question: speech.prompt, answer: first.text, ids: first.ids }], { loraScale: run.loraScale });
    expect(resumed).toMatchObject({ turn: 1, exactTurns: 1 });
    let resumedLogits: Float32Array = new Float32Array(0);
    const second = await engine.ask(run.followUp!.question, { maxNewTokens: 16, loraScale: run.loraScale, onFirstLogits: (l) => (resumedLogits = l) });
    expect(logitError(resumedLogits, liveLogits)).toBeLessThan(1e-5);
    expect(second.turn).toBe(2);
    expect(second.ids).toEqual(run.followUp!.tokens);
    const after = engine.counters;
    expect([after.speechEncoder, after.audioEncoder, after.connector]).toEqual([before.speechEncoder, before.audioEncoder, before.connector]);

    // Ids that do not decode to the stored text are not trusted: the text is encoded instead.
    const fromText = await engine.resumeConversation([{ question: speech.prompt, answer: first.text, ids: [...first.ids].reverse() }], { loraScale: run.loraScale });
    expect(fromText).toMatchObject({ turn: 1, exactTurns: 0 });
    expect((await engine.ask(run.followUp!.question, { maxNewTokens: 4, loraScale: run.loraScale })).turn).toBe(2);
  });

  it('streams one token event per generated token, with text equal to the answer', async () => {
    await engine.setAudio(wav(speech));
    const events: { index: number; text: string }[] = [];
    const answer = await engine.ask('What is said?', { maxNewTokens: 12, onToken: (e) => events.push({ index: e.index, text: e.text }) });
    expect(events.map((e) => e.index)).toEqual(answer.ids.map((_, i) => i));
    expect(events.at(-1)?.text).toBe(answer.text);
    expect(answer.stats.generatedTokens).toBe(answer.ids.length);
  });

  it('cancel stops within one decode step and the next question works', async () => {
    await engine.setAudio(wav(speech));
    let tokens = 0;
    const cancelled = await engine.ask(speech.prompt, {
      maxNewTokens: 30,
      onToken: () => {
        tokens += 1;
        if (tokens === 3) engine.cancel();
      },
    });
    expect(cancelled.stats.stopReason).toBe('cancelled');
    expect(cancelled.ids.length).toBe(3);
    const next = await engine.ask('And then?', { maxNewTokens: 4 });
    expect(next.ids.length).toBeGreaterThan(0);
  });

  it('rejects bad input with specific, readable errors and keeps working', async () => {
    const good = wav(speech);
    const header = good.slice(0, 44);
    const cases: [string, () => Promise<unknown>, string][] = [
      ['empty file', () => engine.setAudio(new Uint8Array(0)), 'audio/empty'],
      ['not audio', () => engine.setAudio(new TextEncoder().encode('this is not a recording at all, just text')), 'audio/unsupported-format'],
      ['truncated WAV', () => engine.setAudio(good.slice(0, 1000)), 'audio/truncated'],
      ['0 samples', () => engine.setAudio(zeroSampleWav(header)), 'audio/no-samples'],
      ['NaN samples', () => engine.setAudio({ sampleRate: 16000, channels: [Float32Array.from({ length: 16000 }, (_, i) => (i === 800 ? NaN : 0))] }), 'audio/invalid-samples'],
      ['too long', () => engine.setAudio({ sampleRate: 16000, channels: [new Float32Array(16000 * 41)] }), 'audio/too-long'],
    ];
    for (const [label, run, code] of cases) {
      const error = await run().then(() => null, (e: unknown) => e);
      expect(error, label).toBeInstanceOf(HarkError);
      expect((error as HarkError).code, label).toBe(code);
      expect((error as HarkError).message.length, label).toBeGreaterThan(20);
      const audio = await engine.setAudio(good);
      expect(audio.chunks).toBe(1);
    }
  });
});

/** The golden WAV's header with the data chunk's size set to 0. */
function zeroSampleWav(header: Uint8Array): Uint8Array {
  const bytes = header.slice();
  const view = new DataView(bytes.buffer);
  view.setUint32(4, bytes.length - 8, true);
  view.setUint32(40, 0, true);
  return bytes;
}

describe('engine context limit (wasm, int4)', () => {
  it('stops at the context limit and reports an overflowing question instead of crashing', async () => {
    const engine = new HarkEngine({ store: new MemoryBundleStore(), maxContextTokens: 140 });
    await engine.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: 'int4' });
    await engine.setAudio(new Uint8Array(readFileSync(join(GOLDEN_DIR, golden.inputs.one_second!.audio))));
    const first = await engine.ask('What is this?', { maxNewTokens: 100, stopTokenIds: [] });
    expect(first.stats.stopReason).toBe('context-full');
    const error = await engine.ask('And then what happened after that, in detail?').then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(HarkError);
    expect((error as HarkError).code).toBe('engine/context-overflow');
    expect((error as HarkError).message).toMatch(/new conversation/);
    engine.newConversation();
    expect((await engine.ask('What is this?', { maxNewTokens: 3 })).ids.length).toBeGreaterThan(0);
    await engine.unload();
  });
});
