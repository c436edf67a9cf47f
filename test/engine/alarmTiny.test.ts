/**
 * The tiny ALARM bundle (format 2: Whisper-v3 128-bin features → encoder → conv-downsampler
 * adapter per recording → sum → 25 embeddings per second between learnt boundaries → Qwen3
 * without BOS or LoRA, with a system text and a thinking budget) through the engine in Node
 * (wasm), against the ALARM PyTorch reference's goldens (models/make_alarm_goldens.py): the mel
 * features, every audio stage, the first-step logits, greedy tokens and a forced-close reasoning
 * run, fp32 and int4.
 *
 * The bundle and its goldens are built by models/build_tiny_alarm_bundle.py and
 * models/make_alarm_goldens.py; where they are absent (a checkout without them) this file skips.
 * HARK_ALARM_MODELS points at another `models` folder holding both (e.g. another branch's).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine } from '../../src/engine/engine';
import { REPO_ROOT } from '../helpers/golden';
import { logitError, parseNpy, relativeMaxError } from '../helpers/npy';
import { tinyBundleFiles } from '../helpers/tinyBundle';

const MODELS = process.env.HARK_ALARM_MODELS ?? join(REPO_ROOT, 'models');
const BUNDLE_DIR = join(MODELS, 'bundles', 'alarm-tiny');
const GOLDEN_DIR = join(MODELS, 'golden', 'alarm');
// The recordings are the SALMONN goldens' (models/golden/audio).
const present = existsSync(join(BUNDLE_DIR, 'manifest.json')) && existsSync(join(GOLDEN_DIR, 'index.json'));

interface ArrayRef {
  file: string;
  shape: number[];
}
interface GoldenReasoning {
  thinkingBudget: number;
  maxAnswerTokens: number;
  tokens: number[];
  thinkingTokens: number;
  forcedClose: boolean;
  thoughts: string;
  answer: string;
}
interface AlarmGoldenInput {
  audio: string;
  samples: number;
  taskPrompt: string;
  question: string;
  chunks: number;
  melFrames: number;
  audioTokens: number;
  features: { file: string; shape: number[] }[];
  promptIds: { system: number[]; start: number[]; main: number[] };
  precisions: Record<
    'fp32' | 'int4',
    {
      stages: { encoderOut: ArrayRef[]; adapted: ArrayRef; audio: ArrayRef };
      logits: ArrayRef;
      tokens: number[];
      /** Only some inputs have a forced-close run, and a follow-up after it. */
      reasoning?: GoldenReasoning;
      followUp?: { question: string; mainIds: number[]; promptTokens: number; logits: ArrayRef; reasoning: GoldenReasoning };
    }
  >;
}
interface AlarmGolden {
  greedyTokens: number;
  inputs: Record<string, AlarmGoldenInput>;
}

const golden: AlarmGolden | null = present ? (JSON.parse(readFileSync(join(GOLDEN_DIR, 'index.json'), 'utf8')) as AlarmGolden) : null;
const array = (ref: ArrayRef): Float32Array => {
  const parsed = parseNpy(readFileSync(join(GOLDEN_DIR, ref.file)));
  if (!(parsed.data instanceof Float32Array)) throw new Error(`${ref.file} is not float32`);
  return parsed.data;
};

describe.skipIf(!present)('the tiny ALARM bundle (format 2) vs the ALARM PyTorch reference (wasm)', () => {
  for (const precision of ['fp32', 'int4'] as const) {
    describe(precision, () => {
      const engine = new HarkEngine({ store: new MemoryBundleStore() });
      beforeAll(async () => {
        const info = await engine.loadModel(tinyBundleFiles(BUNDLE_DIR), { backend: 'wasm', variant: precision });
        expect(info.capabilities).toEqual({ hasLora: false, encoders: [{ name: 'whisper', type: 'whisper' }], fusion: 'sum', llm: 'qwen3', localizes: false });
        expect(info.reasoning).not.toBeNull();
      }, 180_000);
      afterAll(() => engine.unload());

      for (const [name, input] of Object.entries(golden?.inputs ?? {})) {
        it(`${name}: mel, encoder, adapter and audio embeddings within 1e-4; first-step logits within 1e-3; greedy tokens identical, and the forced-close run where the goldens have one`, async () => {
          const ref = input.precisions[precision];
          const stages = new Map<string, Float32Array>();
          engine.inspectAudioStages((chunk, stage, data) => stages.set(`${chunk}:${stage}`, data.slice()));
          const audio = await engine.setAudio(new Uint8Array(readFileSync(join(MODELS, 'golden', input.audio))));
          engine.inspectAudioStages(null);
          expect(audio.chunks).toBe(input.chunks);
          expect(audio.numTokens).toBe(input.audioTokens);
          for (let c = 0; c < input.chunks; c++) {
            expect(relativeMaxError(stages.get(`${c}:mel`)!, array(input.features[c]!)), `mel ${c}`).toBeLessThan(1e-4);
            expect(relativeMaxError(stages.get(`${c}:whisper`)!, array(ref.stages.encoderOut[c]!)), `encoder ${c}`).toBeLessThan(1e-4);
          }
          const adapted = stages.get('-1:adapter.whisper')!;
          const expectedAdapted = array(ref.stages.adapted);
          // the adapter's output may hold one more row than the reference kept (ceil vs floor)
          expect(relativeMaxError(adapted.subarray(0, expectedAdapted.length), expectedAdapted), 'adapter').toBeLessThan(1e-4);
          expect(relativeMaxError(stages.get('-1:tokens')!, array(ref.stages.audio)), 'audio embeddings').toBeLessThan(1e-4);

          // greedy: the first thought tokens (the budget is the bundle's, above the golden count)
          let first: Float32Array = new Float32Array(0);
          const greedy = await engine.ask(input.question, { maxNewTokens: 1, thinkingBudget: golden!.greedyTokens, doSample: false, onFirstLogits: (l) => (first = l) });
          expect(logitError(first, array(ref.logits))).toBeLessThan(1e-3);
          expect(greedy.ids.slice(0, golden!.greedyTokens)).toEqual(ref.tokens);

          // reasoning: the budget runs out and the closing text is forced, as the reference does
          const reasoning = ref.reasoning;
          if (!reasoning) return;
          engine.newConversation();
          const reasoned = await engine.ask(input.question, { maxNewTokens: reasoning.maxAnswerTokens, thinkingBudget: reasoning.thinkingBudget, doSample: false });
          expect(reasoned.ids).toEqual(reasoning.tokens);
          expect(reasoned.thinkingTokens).toBe(reasoning.thinkingTokens);
          expect(reasoned.forcedClose).toBe(reasoning.forcedClose);
          expect(reasoned.thoughts).toBe(reasoning.thoughts);
          expect(reasoned.text).toBe(reasoning.answer);

          // a follow-up: the KV cache cut back to the first turn's generation prompt, its answer
          // written back as Qwen3's chat template does, against the reference's fresh prompt of
          // the whole conversation
          const followUp = ref.followUp;
          if (!followUp) return;
          let followFirst: Float32Array = new Float32Array(0);
          const next = await engine.ask(followUp.question, {
            maxNewTokens: followUp.reasoning.maxAnswerTokens, thinkingBudget: followUp.reasoning.thinkingBudget, doSample: false,
            onFirstLogits: (l) => (followFirst = l),
          });
          expect(logitError(followFirst, array(followUp.logits)), 'follow-up first-step logits').toBeLessThan(1e-3);
          expect(next.ids).toEqual(followUp.reasoning.tokens);
          expect(next.thoughts).toBe(followUp.reasoning.thoughts);
          expect(next.text).toBe(followUp.reasoning.answer);

          // the same after a reload: the first turn re-read from its ids, then the follow-up
          engine.newConversation();
          const resumed = await engine.resumeConversation([{ question: input.question, answer: reasoned.text, ids: reasoned.ids }]);
          expect(resumed.exactTurns).toBe(1);
          let resumedFirst: Float32Array = new Float32Array(0);
          const again = await engine.ask(followUp.question, {
            maxNewTokens: followUp.reasoning.maxAnswerTokens, thinkingBudget: followUp.reasoning.thinkingBudget, doSample: false,
            onFirstLogits: (l) => (resumedFirst = l),
          });
          expect(logitError(resumedFirst, array(followUp.logits)), 'resumed follow-up first-step logits').toBeLessThan(1e-3);
          expect(again.ids).toEqual(followUp.reasoning.tokens);
        });
      }
    });
  }
});
