/**
 * ALARM's tiny manifest at the real model's size: Qwen3-4B's geometry and the int4 file sizes of the
 * Qwen3-4B-geometry bench model (BENCHMARKS.md, "Qwen3-4B geometry"), which onnxruntime-web's wasm
 * backend was measured to load and then fail on with `std::bad_alloc`. A manifest is data: this is
 * what a converted real bundle's manifest says, not a stand-in for a model.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './golden';

export const bundleDir = (name: string): string => join(REPO_ROOT, 'models', 'bundles', name);
export const readManifestJson = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(bundleDir(name), 'manifest.json'), 'utf8')) as Record<string, unknown>;

/** Qwen/Qwen3-4B-Thinking-2507's geometry (its config.json). */
export const QWEN3_4B = { vocabSize: 151936, hiddenSize: 2560, intermediateSize: 9728, numLayers: 36, numHeads: 32, numKvHeads: 8, headDim: 128 };
/** The Qwen3-4B-geometry bench model's int4 files (models/build_bench_models.py --model qwen3-4b). */
export const QWEN3_4B_INT4_BYTES = { decoderData: 2_270_000_000, embedData: 240_000_000 };

/** alarm-tiny's manifest (JSON, before parsing) at Qwen3-4B's size. */
export function alarmAtRealSize(): Record<string, unknown> {
  type Json = {
    label: string;
    pipeline: { llm: Record<string, unknown>; fusion: { width: number }; audioBoundaries: { path: string; shape: number[] } };
    files: { path: string; size: number }[];
  };
  const json = readManifestJson('alarm-tiny') as Json;
  json.label = 'ALARM at Qwen3-4B size';
  Object.assign(json.pipeline.llm, QWEN3_4B);
  // What the manifest checks tie to the LLM's width: the audio rows and the boundary rows.
  json.pipeline.fusion.width = QWEN3_4B.hiddenSize;
  json.pipeline.audioBoundaries.shape = [2, QWEN3_4B.hiddenSize];
  for (const file of json.files) {
    if (file.path === json.pipeline.audioBoundaries.path) file.size = 2 * QWEN3_4B.hiddenSize * 4;
    if (file.path === 'onnx/decoder_model_merged_q4.onnx_data') file.size = QWEN3_4B_INT4_BYTES.decoderData;
    if (file.path === 'onnx/embed_tokens_q4.onnx_data') file.size = QWEN3_4B_INT4_BYTES.embedData;
  }
  return json;
}
