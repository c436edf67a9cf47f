/**
 * Our runtime, driven through its own API: `DecoderRunner` + `generate()` (src/engine/llm/) on the
 * decoder and embed_tokens graphs, exactly as the engine opens them (graphs.ts: same session
 * options, KV cache kept on the GPU, 31-token chunks on WebGPU). Kept thin and in one file so a
 * change of those signatures is adapted here only. No Node APIs: the Chromium bench page runs it too
 * (files come through a `ReadFile`).
 */
import { openCapturedDecoder, releaseCapturedDecoder, type CapturedDecoder } from '../../src/engine/decoderCapture';
import type { Backend } from '../../src/engine/device';
import { checkPrefillAttention, describeAttentionCheck, usesFusedRotary } from '../../src/engine/llm/attentionCheck';
import type { CapturedDecodeStep } from '../../src/engine/llm/capturedStep';
import { DecoderRunner, decoderOutputLocations, embedOutputLocations } from '../../src/engine/llm/decoder';
import { generate } from '../../src/engine/llm/generate';
import { argmax } from '../../src/engine/llm/sampling';
import { createTokenizer, type TextTokenizer } from '../../src/engine/llm/tokenizer';
import { Int4Unpacker, type UnpackTotals } from '../../src/engine/int4Unpack';
import { ort, sessionOptions } from '../../src/engine/ortRuntime';
import { WASM_UNPACK_CEILING_BYTES } from '../../src/engine/wasmMemory';
import type { ModelInfo, VariantFiles } from './types';

export interface OursModel {
  decoder: DecoderRunner;
  embed: (ids: number[]) => Promise<Float32Array>;
  tokenizer: TextTokenizer;
  loadMs: number;
  /** What the engine's prefill self-check decided (chunking or not), or why it did not run. */
  attentionCheck: string;
  /** Whether answer tokens' steps are graph-captured, or why not. */
  capture: string;
  /** The captured step, where steps are captured (benchmarks set its switches). */
  capturedStep: CapturedDecodeStep | null;
  /** On wasm, what of the int4 weights was unpacked to fp32 at load (or that they stayed packed); '' otherwise. */
  unpacked: string;
  release(): Promise<void>;
}

export interface OursRun {
  ids: number[];
  /** Embedding the prompt + prefill + first token. */
  prefillMs: number;
  decodeSteps: number;
  decodeMs: number;
}

/** Reads a file by path: from disk in Node, over HTTP in the Chromium page (measure.ts). */
export type ReadFile = (path: string) => Promise<Uint8Array>;

/** The model's tokenizer folder, relative to the repository (LLaMA's for bench.json files that do not name one). */
export function tokenizerFolder(info: ModelInfo): string {
  return info.tokenizer ?? 'models/tokenizer';
}

/** `a/b` + `c` → `a/b/c` (forward slashes: file paths on Linux and URL paths alike). */
export function joinPath(...parts: string[]): string {
  return parts.filter(Boolean).join('/').replace(/\/{2,}/g, '/');
}

export function folderOf(path: string): string {
  return path.slice(0, Math.max(0, path.lastIndexOf('/')));
}

async function openSession(read: ReadFile, path: string, data: string[], options: ort.InferenceSession.SessionOptions, backend: Backend, unpacker?: Int4Unpacker) {
  const bytes = await read(path);
  // ORT matches external data by the file name written inside the graph, next to the graph.
  const given = await Promise.all(data.map(async (name) => ({ path: name, data: await read(joinPath(folderOf(path), name)) })));
  const { model, externalData } = unpacker ? unpacker.apply(path, bytes, given) : { model: bytes, externalData: given };
  return ort.InferenceSession.create(model, sessionOptions(backend, { externalData, ...options }));
}

/**
 * Opens embed_tokens + decoder like the engine does; loadMs covers reading the files and both sessions.
 * `attentionCheck: false` skips the engine's prefill self-check (only for runs that never feed more
 * than 31 tokens at once, where its outcome cannot matter: the 7B/13B load-and-one-step jobs).
 * `capture` (WebGPU): answer tokens' steps graph-captured, as the engine runs them by default.
 * `unpackInt4` (wasm): int4 weights unpacked to fp32 at load, as the engine does by default, within
 * the engine's ceiling (the bench has no manifest for the engine's finer estimate).
 */
export async function openOurs(
  read: ReadFile,
  root: string,
  files: VariantFiles,
  info: ModelInfo,
  backend: Backend,
  tokenizerDir: string,
  attentionCheck = true,
  capture = true,
  unpackInt4 = true,
): Promise<OursModel> {
  const g = info.geometry;
  const shape = { numLayers: g.numLayers, numKvHeads: g.numKvHeads, headDim: g.headDim, hiddenSize: g.hiddenSize, vocabSize: g.vocabSize };
  const started = performance.now();
  let captured: CapturedDecoder | null = null;
  let captureNote = backend === 'webgpu' ? 'off' : 'not on wasm';
  if (backend === 'webgpu' && capture) {
    const embedFiles = { path: joinPath(root, files.embed), externalData: files.embedData };
    const opened = await openCapturedDecoder({ readFile: read }, { path: joinPath(root, files.decoder), externalData: files.decoderData }, shape, embedFiles);
    if (opened.ok) captured = opened.decoder;
    captureNote = opened.ok
      ? `on, ${opened.decoder.embed ? 'token id in' : `embedding rows in (${opened.decoder.embedNote})`} (weights uploaded in ${opened.decoder.upload.ms.toFixed(0)} ms)`
      : `refused: ${opened.reason}`;
  }
  const unpacker = backend === 'wasm' && unpackInt4 ? new Int4Unpacker(WASM_UNPACK_CEILING_BYTES) : undefined;
  // With capture the embedding graph takes its weights as inputs, shared with the step.
  const embedSession = captured?.embed?.session ?? (await openSession(read, joinPath(root, files.embed), files.embedData, embedOutputLocations(backend), backend, unpacker));
  const embedWeights = captured?.embed?.weights;
  const decoderSession =
    captured?.session ?? (await openSession(read, joinPath(root, files.decoder), files.decoderData, decoderOutputLocations(backend, g.numLayers), backend, unpacker));
  const loadMs = performance.now() - started;
  // Prompts are chunked exactly where the engine would chunk them: after its attention self-check.
  const check =
    backend === 'webgpu' && attentionCheck
      ? await checkPrefillAttention(backend, {
          numHeads: g.numHeads,
          numKvHeads: g.numKvHeads,
          headDim: g.headDim,
          ...(usesFusedRotary(g.headDim) ? { rotaryTheta: g.ropeTheta ?? 10000 } : {}),
        })
      : null;
  const decoder = new DecoderRunner(decoderSession, shape, {
    backend,
    embedTokens: embedSession,
    maxPositions: g.maxPositions,
    maxChunk: check?.chunk ?? Number.POSITIVE_INFINITY,
    ...(captured ? { weights: captured.weights, captured: captured.step, kvBuffers: captured.step, embedWeights } : {}),
  });
  // The same embed function the engine uses (engine.ts): ids -> [n x hidden] rows on the CPU.
  const embed = async (ids: number[]): Promise<Float32Array> => {
    const input = new ort.Tensor('int64', BigInt64Array.from(ids, (id) => BigInt(id)), [1, ids.length]);
    const { inputs_embeds: out } = await embedSession.run({ input_ids: input, ...embedWeights });
    if (!out) throw new Error('embed_tokens returned no inputs_embeds');
    const data = (await out.getData()) as Float32Array;
    out.dispose();
    return data;
  };
  const json = async (name: string) => JSON.parse(new TextDecoder().decode(await read(joinPath(tokenizerDir, name)))) as object;
  const tokenizer = createTokenizer(await json('tokenizer.json'), await json('tokenizer_config.json'));
  return {
    decoder,
    embed,
    tokenizer,
    loadMs,
    attentionCheck: check ? describeAttentionCheck(check) : backend === 'webgpu' ? 'not run (load-and-one-step job)' : 'not needed (wasm)',
    capture: captureNote,
    capturedStep: captured?.step ?? null,
    unpacked: unpackNote(backend, unpackInt4, unpacker?.totals),
    release: async () => {
      if (captured) await releaseCapturedDecoder(captured);
      await embedSession.release();
      await decoderSession.release();
    },
  };
}

/** The bench table's note on int4 unpacking (wasm only; nothing for a graph without int4 weights). */
function unpackNote(backend: Backend, wanted: boolean, totals: UnpackTotals | undefined): string {
  if (backend !== 'wasm') return '';
  if (!wanted) return 'int4 left packed (--no-unpack)';
  if (!totals || totals.matmuls + totals.overBudget.length === 0) return '';
  const kept = totals.overBudget.length > 0 ? `; packed (over budget): ${totals.overBudget.length} graph(s)` : '';
  return `int4 unpacked at load: ${totals.matmuls} matrices, ${(totals.fp32Bytes / 2 ** 20).toFixed(0)} MiB in ${(totals.ms / 1000).toFixed(1)} s${kept}`;
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
    params: { maxNewTokens: newTokens, stopTokenIds: [], loraScale, doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0, numBeams: 1, lengthPenalty: 1 },
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

/**
 * One decoder run on a fresh cache: the prompt embedded, fed in one `DecoderRunner.step`, and the
 * greedy next id read from its logits. What the big-model jobs time (load, then this, then stop).
 */
export async function stepOurs(model: OursModel, prompt: number[], loraScale: number): Promise<{ ms: number; id: number }> {
  const started = performance.now();
  const embeds = await model.embed(prompt);
  const { logits, cache } = await model.decoder.step(embeds, model.decoder.emptyCache(), loraScale);
  const ms = performance.now() - started;
  cache.dispose();
  return { ms, id: argmax(logits) };
}
