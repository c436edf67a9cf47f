/**
 * Our runtime, driven through its own API: `DecoderRunner` + `generate()` (src/engine/llm/) on the
 * decoder and embed_tokens graphs, exactly as the engine opens them (graphs.ts: same session
 * options, KV cache kept on the GPU, 31-token chunks on WebGPU). Kept thin and in one file so a
 * change of those signatures is adapted here only.
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Backend } from '../../src/engine/device';
import { checkPrefillAttention, usesFusedRotary } from '../../src/engine/llm/attentionCheck';
import { DecoderRunner, decoderOutputLocations, embedOutputLocations } from '../../src/engine/llm/decoder';
import { generate } from '../../src/engine/llm/generate';
import { createTokenizer, type TextTokenizer } from '../../src/engine/llm/tokenizer';
import { ort, sessionOptions } from '../../src/engine/ortRuntime';
import type { ModelInfo, VariantFiles } from './types';

export interface OursModel {
  decoder: DecoderRunner;
  embed: (ids: number[]) => Promise<Float32Array>;
  tokenizer: TextTokenizer;
  loadMs: number;
  release(): Promise<void>;
}

export interface OursRun {
  ids: number[];
  /** Embedding the prompt + prefill + first token. */
  prefillMs: number;
  decodeSteps: number;
  decodeMs: number;
}

function externalData(modelPath: string, names: string[]): { path: string; data: Uint8Array }[] {
  return names.map((name) => ({ path: name, data: new Uint8Array(readFileSync(join(dirname(modelPath), name))) }));
}

async function openSession(path: string, data: string[], options: ort.InferenceSession.SessionOptions, backend: Backend) {
  const model = new Uint8Array(readFileSync(path));
  return ort.InferenceSession.create(model, sessionOptions(backend, { externalData: externalData(path, data), ...options }));
}

/** Opens embed_tokens + decoder like the engine does; loadMs covers reading the files and both sessions. */
export async function openOurs(root: string, files: VariantFiles, info: ModelInfo, backend: Backend, tokenizerDir: string): Promise<OursModel> {
  const g = info.geometry;
  const started = performance.now();
  const embedSession = await openSession(join(root, files.embed), files.embedData, embedOutputLocations(backend), backend);
  const decoderSession = await openSession(join(root, files.decoder), files.decoderData, decoderOutputLocations(backend, g.numLayers), backend);
  const loadMs = performance.now() - started;
  // Prompts are chunked exactly where the engine would chunk them: after its attention self-check.
  const check =
    backend === 'webgpu'
      ? await checkPrefillAttention(backend, {
          numHeads: g.numHeads,
          numKvHeads: g.numKvHeads,
          headDim: g.headDim,
          ...(usesFusedRotary(g.headDim) ? { rotaryTheta: g.ropeTheta ?? 10000 } : {}),
        })
      : null;
  const decoder = new DecoderRunner(
    decoderSession,
    { numLayers: g.numLayers, numKvHeads: g.numKvHeads, headDim: g.headDim, hiddenSize: g.hiddenSize, vocabSize: g.vocabSize },
    { backend, embedTokens: embedSession, maxPositions: g.maxPositions, maxChunk: check?.chunk ?? Number.POSITIVE_INFINITY },
  );
  // The same embed function the engine uses (engine.ts): ids -> [n x hidden] rows on the CPU.
  const embed = async (ids: number[]): Promise<Float32Array> => {
    const input = new ort.Tensor('int64', BigInt64Array.from(ids, (id) => BigInt(id)), [1, ids.length]);
    const { inputs_embeds: out } = await embedSession.run({ input_ids: input });
    if (!out) throw new Error('embed_tokens returned no inputs_embeds');
    const data = (await out.getData()) as Float32Array;
    out.dispose();
    return data;
  };
  const tokenizer = createTokenizer(
    JSON.parse(readFileSync(join(tokenizerDir, 'tokenizer.json'), 'utf8')) as object,
    JSON.parse(readFileSync(join(tokenizerDir, 'tokenizer_config.json'), 'utf8')) as object,
  );
  return {
    decoder,
    embed,
    tokenizer,
    loadMs,
    release: async () => {
      await embedSession.release();
      await decoderSession.release();
    },
  };
}

/** Greedy generation of exactly `newTokens` tokens after `prompt` (no stop tokens). */
export async function runOurs(model: OursModel, prompt: number[], newTokens: number, loraScale: number, maxPositions: number): Promise<OursRun> {
  const started = performance.now();
  const prefill = await model.embed(prompt);
  const embedMs = performance.now() - started;
  const result = await generate({
    decoder: model.decoder,
    tokenizer: model.tokenizer,
    prefill,
    cache: model.decoder.emptyCache(),
    params: { maxNewTokens: newTokens, stopTokenIds: [], loraScale, doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 },
    maxPositions,
  });
  result.cache.dispose();
  const { stats } = result;
  return {
    ids: result.ids,
    prefillMs: embedMs + stats.timeToFirstTokenMs,
    decodeSteps: Math.max(0, stats.generatedTokens - 1),
    decodeMs: stats.decodeMs,
  };
}

export function describeFiles(files: VariantFiles): string {
  return `${basename(files.decoder)} + ${basename(files.embed)}`;
}
