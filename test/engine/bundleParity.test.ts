/**
 * Graph parity: every exported graph of the tiny bundle, run by onnxruntime-web (wasm) in Node,
 * against the golden outputs of the PyTorch reference (models/make_goldens.py). Each stage is fed
 * the reference's own input, so a mismatch points at one graph. int4 graphs are compared with the
 * reference that uses the same dequantized weights.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ort, sessionOptions } from '../../src/engine/ortRuntime';
import { concatFloat32 } from '../../src/engine/llm/conversation';
import { goldenArray, loadGoldenIndex, TINY_BUNDLE_DIR, type GoldenInput } from '../helpers/golden';
import { logitError, relativeMaxError } from '../helpers/npy';

interface GraphSpec {
  path: string;
  externalData: string[];
}
interface Manifest {
  architecture: { llm: { numLayers: number; numKvHeads: number; headDim: number; hiddenSize: number; vocabSize: number } };
  prompt: { bosTokenId: number; eosTokenId: number };
  variants: Record<string, { graphs: Record<'speechEncoder' | 'audioEncoder' | 'connector' | 'embedTokens' | 'decoder', GraphSpec> }>;
}

const manifest = JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'manifest.json'), 'utf8')) as Manifest;
const golden = loadGoldenIndex();
const { llm } = manifest.architecture;
const STAGE_TOLERANCE = 1e-4;
const LOGIT_TOLERANCE = 1e-3;

async function openGraph(spec: GraphSpec): Promise<ort.InferenceSession> {
  const folder = join(TINY_BUNDLE_DIR, spec.path, '..');
  const externalData = spec.externalData.map((name) => ({ path: name, data: readFileSync(join(folder, name)) }));
  return ort.InferenceSession.create(readFileSync(join(TINY_BUNDLE_DIR, spec.path)), sessionOptions('wasm', { externalData }));
}

function f32(data: Float32Array, dims: number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

function i64(values: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(values, BigInt), dims);
}

function argmaxLastRow(logits: ort.Tensor): number {
  const vocab = logits.dims[2]!;
  const data = logits.data as Float32Array;
  const row = data.subarray(data.length - vocab);
  let best = 0;
  for (let i = 1; i < vocab; i++) if (row[i]! > row[best]!) best = i;
  return best;
}


for (const precision of ['fp32', 'int4'] as const) {
  describe(`tiny bundle ${precision} graphs vs the PyTorch reference (wasm)`, () => {
    const sessions = {} as Record<keyof Manifest['variants'][string]['graphs'], ort.InferenceSession>;
    const graphs = manifest.variants[precision]!.graphs;

    beforeAll(async () => {
      for (const [key, spec] of Object.entries(graphs)) sessions[key as keyof typeof graphs] = await openGraph(spec);
    });
    afterAll(async () => {
      for (const session of Object.values(sessions)) await session.release();
    });

    async function embed(ids: number[]): Promise<Float32Array> {
      const { inputs_embeds } = await sessions.embedTokens.run({ input_ids: i64(ids, [1, ids.length]) });
      return inputs_embeds!.data as Float32Array;
    }

    /** Prefill + greedy decode with the KV cache, driving the decoder graph directly. */
    async function greedy(prompt: Float32Array, loraScale: number, maxNew: number): Promise<{ firstLogits: Float32Array; tokens: number[] }> {
      const scale = f32(new Float32Array([loraScale]), []);
      let past: Record<string, ort.Tensor> = {};
      for (let i = 0; i < llm.numLayers; i++) {
        for (const kind of ['key', 'value']) past[`past_key_values.${i}.${kind}`] = f32(new Float32Array(0), [1, llm.numKvHeads, 0, llm.headDim]);
      }
      let embeds = prompt;
      let total = 0;
      let firstLogits = new Float32Array(0);
      const tokens: number[] = [];
      for (let step = 0; step < maxNew; step++) {
        const length = embeds.length / llm.hiddenSize;
        const positions = Array.from({ length }, (_, i) => total + i);
        total += length;
        const out = await sessions.decoder.run({
          inputs_embeds: f32(embeds, [1, length, llm.hiddenSize]),
          attention_mask: i64(new Array(total).fill(1), [1, total]),
          position_ids: i64(positions, [1, length]),
          lora_scale: scale,
          num_logits_to_keep: i64([1], []),
          ...past,
        });
        if (step === 0) firstLogits = (out.logits!.data as Float32Array).slice(-llm.vocabSize);
        const next = argmaxLastRow(out.logits!);
        if (next === manifest.prompt.eosTokenId) break;
        tokens.push(next);
        past = {};
        for (let i = 0; i < llm.numLayers; i++) {
          for (const kind of ['key', 'value']) past[`past_key_values.${i}.${kind}`] = out[`present.${i}.${kind}`]!;
        }
        embeds = await embed([next]);
      }
      return { firstLogits, tokens };
    }

    for (const [name, input] of Object.entries(golden.inputs) as [string, GoldenInput][]) {
      const stages = input.precisions[precision].stages;

      it(`${name}: speech encoder, audio encoder and connector within ${STAGE_TOLERANCE} (relative max)`, async () => {
        for (let c = 0; c < input.chunks; c++) {
          const mel = goldenArray(input.features[c]!.mel);
          const fbank = goldenArray(input.features[c]!.fbank);
          const speech = goldenArray(stages[c]!.speech);
          const audio = goldenArray(stages[c]!.audio);
          const tokens = goldenArray(stages[c]!.tokens);

          const s = await sessions.speechEncoder.run({ input_features: f32(mel.data, [1, ...mel.shape]) });
          expect(relativeMaxError(s.speech_embeds!.data as Float32Array, speech.data)).toBeLessThan(STAGE_TOLERANCE);

          const a = await sessions.audioEncoder.run({ fbank: f32(fbank.data, [1, ...fbank.shape]) });
          expect(a.audio_embeds!.dims).toEqual([1, ...audio.shape]);
          expect(relativeMaxError(a.audio_embeds!.data as Float32Array, audio.data)).toBeLessThan(STAGE_TOLERANCE);

          const t = await sessions.connector.run({
            speech_embeds: f32(speech.data, [1, ...speech.shape]),
            audio_embeds: f32(audio.data, [1, ...audio.shape]),
          });
          expect(t.audio_tokens!.dims).toEqual([1, ...tokens.shape]);
          expect(relativeMaxError(t.audio_tokens!.data as Float32Array, tokens.data)).toBeLessThan(STAGE_TOLERANCE);
        }
      });

      for (const scaleName of ['zero', 'default', 'half'] as const) {
        const run = input.precisions[precision].runs[scaleName];
        it(`${name}: first-step logits within ${LOGIT_TOLERANCE} and ${golden.greedyTokens} greedy tokens identical at LoRA scale ${run.loraScale}`, async () => {
          const audioTokens = concatFloat32(stages.map((s) => goldenArray(s.tokens).data));
          const prompt = concatFloat32([
            await embed([manifest.prompt.bosTokenId, ...input.promptIds.before]),
            audioTokens,
            await embed(input.promptIds.after),
          ]);
          const result = await greedy(prompt, run.loraScale, golden.greedyTokens);
          expect(logitError(result.firstLogits, goldenArray(run.logits).data)).toBeLessThan(LOGIT_TOLERANCE);
          expect(result.tokens).toEqual(run.tokens);
        });
      }
    }
  });
}
