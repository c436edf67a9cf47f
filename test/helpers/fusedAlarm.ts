/**
 * A tiny fused ALARM bundle (ALARM-CA or ALARM-P, format 2) through the engine in Node (wasm),
 * against its PyTorch reference's goldens (models/make_alarm_ca_goldens.py,
 * models/make_alarm_p_goldens.py; the same layout): every encoder's features and per-piece
 * outputs, MuQ's frame masks, every adapter's output (an identity adapter's: the encoder's real
 * frames), the connector's output, the audio embeddings and their times, first-step logits, greedy
 * tokens and a forced-close reasoning run, fp32 and int4.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine } from '../../src/engine/engine';
import { logitError, parseNpy, relativeMaxError } from './npy';
import { tinyBundleFiles } from './tinyBundle';

export const FUSED_ENCODERS = ['whisper', 'w2vbert', 'sslam', 'muq'] as const;
type Encoder = (typeof FUSED_ENCODERS)[number];

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
interface FusedGoldenInput {
  audio: string;
  question: string;
  /** Pieces each encoder ran on. */
  chunks: Record<Encoder, number>;
  realLength: Record<Encoder, number>;
  adapterLengths: Record<Encoder, number>;
  mainLength: number;
  audioTokens: number;
  /** whisper, sslam: per piece; w2vbert: the real stacked frames; muq: the real 24 kHz samples. */
  features: { whisper: ArrayRef[]; w2vbert: ArrayRef; sslam: ArrayRef[]; muq: ArrayRef };
  frameMasks: { muq: ArrayRef[] };
  precisions: Record<
    'fp32' | 'int4',
    {
      stages: { encoderOut: Record<Encoder, ArrayRef[]>; adapted: Record<Encoder, ArrayRef>; fused: ArrayRef; audio: ArrayRef };
      logits: ArrayRef;
      tokens: number[];
      reasoning?: GoldenReasoning;
    }
  >;
}
interface FusedGolden {
  greedyTokens: number;
  inputs: Record<string, FusedGoldenInput>;
}

export interface FusedAlarmCase {
  /** The describe block's title. */
  title: string;
  bundleDir: string;
  goldenDir: string;
  /** The `models` folder the goldens' audio paths are relative to (`golden/<audio>`). */
  modelsDir: string;
  fusion: 'cross-attention' | 'perceiver';
}

/**
 * The tiny MuQ amplifies its input's float32 rounding: encoder.muq on the reference's OWN 24 kHz
 * waveform (ort_run.mjs) is already 9.4e-5 from torch on long_35s' first chunk, and 5.5e-4 on the
 * engine's resampled waveform (itself within 1e-6 of torchaudio's, models/tests/test_engine_features.py).
 */
const tolerance = (encoder: Encoder): number => (encoder === 'muq' ? 2e-3 : 1e-4);
const concat = (parts: Float32Array[]): Float32Array => {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
};

/** The parity suite of one fused bundle; skips where its bundle or goldens are absent. */
export function describeFusedAlarm(spec: FusedAlarmCase): void {
  const present = existsSync(join(spec.bundleDir, 'manifest.json')) && existsSync(join(spec.goldenDir, 'index.json'));
  const golden: FusedGolden | null = present ? (JSON.parse(readFileSync(join(spec.goldenDir, 'index.json'), 'utf8')) as FusedGolden) : null;
  const array = (ref: ArrayRef): Float32Array => {
    const parsed = parseNpy(readFileSync(join(spec.goldenDir, ref.file)));
    if (!(parsed.data instanceof Float32Array)) throw new Error(`${ref.file} is not float32`);
    return parsed.data;
  };

  describe.skipIf(!present)(spec.title, () => {
    for (const precision of ['fp32', 'int4'] as const) {
      describe(precision, () => {
        const engine = new HarkEngine({ store: new MemoryBundleStore() });
        beforeAll(async () => {
          const info = await engine.loadModel(tinyBundleFiles(spec.bundleDir), { backend: 'wasm', variant: precision });
          // toMatchObject: the app may add capabilities (e.g. whether it localizes) beside these
          expect(info.capabilities).toMatchObject({
            hasLora: false,
            encoders: [{ name: 'whisper', type: 'whisper' }, { name: 'w2vbert', type: 'w2v-bert' }, { name: 'sslam', type: 'sslam' }, { name: 'muq', type: 'muq' }],
            fusion: spec.fusion,
            llm: 'qwen3',
          });
        }, 180_000);
        afterAll(() => engine.unload());

        for (const [name, input] of Object.entries(golden?.inputs ?? {})) {
          it(`${name}: every encoder's features, masks and pieces, adapters (muq 2e-3), connector and audio embeddings within 1e-4; first-step logits within 1e-3; greedy tokens identical, and the forced-close run where the goldens have one`, async () => {
            const ref = input.precisions[precision];
            const stages = new Map<string, Float32Array>();
            const progress: [number, number][] = [];
            engine.inspectAudioStages((chunk, stage, data) => stages.set(`${chunk}:${stage}`, data.slice()));
            const audio = await engine.setAudio(new Uint8Array(readFileSync(join(spec.modelsDir, 'golden', input.audio))), (done, total) => progress.push([done, total]));
            engine.inspectAudioStages(null);
            expect(audio.chunks).toBe(input.chunks.whisper);
            expect(audio.numTokens).toBe(input.audioTokens);
            // progress stays per 30 s chunk, though sslam runs more pieces
            expect(progress).toEqual(Array.from({ length: input.chunks.whisper + 1 }, (_, i) => [i, input.chunks.whisper]));

            // features: whisper per chunk; the others over the whole recording (compared on their real part)
            for (let c = 0; c < input.chunks.whisper; c++) {
              expect(relativeMaxError(stages.get(`${c}:mel`)!, array(input.features.whisper[c]!)), `mel ${c}`).toBeLessThan(1e-4);
            }
            const w2v = array(input.features.w2vbert);
            expect(relativeMaxError(stages.get('-1:features.w2vbert')!.subarray(0, w2v.length), w2v), 'w2vbert features').toBeLessThan(1e-4);
            const sslam = concat(input.features.sslam.map(array));
            expect(relativeMaxError(stages.get('-1:features.sslam')!, sslam), 'sslam features').toBeLessThan(1e-4);
            const wave = array(input.features.muq);
            expect(stages.get('-1:features.muq')!.length).toBe(input.chunks.muq * 720000);
            expect(relativeMaxError(stages.get('-1:features.muq')!.subarray(0, wave.length), wave), 'muq waveform').toBeLessThan(1e-4);
            for (let c = 0; c < input.chunks.muq; c++) expect(stages.get(`${c}:mask.muq`), `muq mask ${c}`).toEqual(array(input.frameMasks.muq[c]!));

            // every encoder's output per piece, every adapter, the connector and what the LLM reads
            for (const encoder of FUSED_ENCODERS) {
              expect(ref.stages.encoderOut[encoder].length, encoder).toBe(input.chunks[encoder]);
              for (let c = 0; c < input.chunks[encoder]; c++) {
                expect(relativeMaxError(stages.get(`${c}:${encoder}`)!, array(ref.stages.encoderOut[encoder][c]!)), `${encoder} ${c}`).toBeLessThan(tolerance(encoder));
              }
              expect(relativeMaxError(stages.get(`-1:adapter.${encoder}`)!, array(ref.stages.adapted[encoder])), `adapter.${encoder}`).toBeLessThan(tolerance(encoder));
            }
            expect(relativeMaxError(stages.get('-1:connector')!, array(ref.stages.fused)), 'connector').toBeLessThan(1e-4);
            expect(relativeMaxError(stages.get('-1:tokens')!, array(ref.stages.audio)), 'audio embeddings').toBeLessThan(1e-4);
            // a perceiver's leading rows (the reference's count: all but the main encoder's) span the
            // recording; then 25 embeddings per second
            const lead = spec.fusion === 'perceiver' ? input.audioTokens - input.mainLength : 0;
            for (let k = 0; k < lead; k++) expect([audio.timeMap[2 * k], audio.timeMap[2 * k + 1]], `leading row ${k}`).toEqual([0, audio.durationSeconds]);
            expect(Array.from(audio.timeMap.subarray(2 * lead, 2 * lead + 4))).toEqual([0, 0.04, 0.04, 0.08]);

            let first: Float32Array = new Float32Array(0);
            const greedy = await engine.ask(input.question, { maxNewTokens: 1, thinkingBudget: golden!.greedyTokens, doSample: false, onFirstLogits: (l) => (first = l) });
            expect(logitError(first, array(ref.logits))).toBeLessThan(1e-3);
            expect(greedy.ids.slice(0, golden!.greedyTokens)).toEqual(ref.tokens);

            const reasoning = ref.reasoning;
            if (!reasoning) return;
            engine.newConversation();
            const reasoned = await engine.ask(input.question, { maxNewTokens: reasoning.maxAnswerTokens, thinkingBudget: reasoning.thinkingBudget, doSample: false });
            expect(reasoned.ids).toEqual(reasoning.tokens);
            expect(reasoned.thinkingTokens).toBe(reasoning.thinkingTokens);
            expect(reasoned.forcedClose).toBe(reasoning.forcedClose);
            expect(reasoned.thoughts).toBe(reasoning.thoughts);
            expect(reasoned.text).toBe(reasoning.answer);
          }, 300_000);
        }
      });
    }
  });
}
