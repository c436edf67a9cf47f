/**
 * The peer: transformers.js (`@huggingface/transformers`) `generate()` on a text-only export of the
 * SAME decoder graph (models/build_bench_models.py writes it: `input_ids` in, LoRA scale constant),
 * on the SAME onnxruntime-web instance, backend and device as our runtime.
 *
 * How transformers.js is pointed at our ORT: before it is imported, `globalThis[Symbol.for(
 * 'onnxruntime')]` is set to an object that is our `ort` module except for
 * `InferenceSession.create`, which (1) reads a model given as a file path into bytes (in Node
 * transformers.js passes paths, which onnxruntime-web's WebGPU build would try to fetch), and
 * (2) records the execution providers and, per run, where the `present.*` outputs live. In that
 * branch transformers.js knows no devices (`supportedDevices` is empty, any named device throws), so
 * it is given `device: 'auto'` (which maps to no providers) and our own
 * `session_options.executionProviders`; on WebGPU also `preferredOutputLocation` = 'gpu-buffer'
 * for every `present.*`, exactly what it sets itself for `device: 'webgpu'` (it disposes old
 * GPU caches by tensor location, not by device). External data is named in
 * `session_options.externalData`, which transformers.js reads from the local model folder: every
 * chunk (`.onnx_data`, `.onnx_data_1`, ...) that config.json's `use_external_data_format` counts.
 */
import type { ort as OrtModule } from '../../src/engine/ortRuntime';

type Ort = typeof OrtModule;

export interface PeerRecord {
  executionProviders: string[];
  presentLocations: Set<string>;
}

/**
 * Registers our ORT for transformers.js; call before importing '@huggingface/transformers'.
 * `read` turns a model path into bytes (Node: from disk; in the browser transformers.js passes bytes).
 */
export function shareOrtWithTransformers(ort: Ort, read: (path: string) => Promise<Uint8Array>): PeerRecord {
  const record: PeerRecord = { executionProviders: [], presentLocations: new Set() };
  const InferenceSession = {
    create: async (model: string | Uint8Array, options: OrtModule.InferenceSession.SessionOptions = {}) => {
      const bytes = typeof model === 'string' ? await read(model) : model;
      for (const ep of options.executionProviders ?? []) record.executionProviders.push(typeof ep === 'string' ? ep : ep.name);
      const session = await ort.InferenceSession.create(bytes, options);
      const run = session.run.bind(session) as (feeds: OrtModule.InferenceSession.FeedsType) => Promise<OrtModule.InferenceSession.ReturnType>;
      Object.assign(session, {
        run: async (feeds: OrtModule.InferenceSession.FeedsType) => {
          const outputs = await run(feeds);
          for (const [name, value] of Object.entries(outputs)) if (name.startsWith('present.')) record.presentLocations.add(value.location);
          return outputs;
        },
      });
      return session;
    },
  };
  (globalThis as Record<symbol, unknown>)[Symbol.for('onnxruntime')] = { ...ort, InferenceSession };
  return record;
}

export interface PeerModel {
  generate(prompt: number[], newTokens: number): Promise<{ ids: number[]; prefillMs: number; decodeMs: number; decodeSteps: number }>;
  loadMs: number;
  release(): Promise<void>;
}

type Transformers = typeof import('@huggingface/transformers');

/** Loads `<modelDir>/<peerFolder>` with transformers.js (`tjs`: imported after shareOrtWithTransformers). */
export async function openPeer(
  ort: Ort,
  tjs: Transformers,
  modelDir: string,
  peerFolder: string,
  precision: 'fp32' | 'int4',
  backend: 'wasm' | 'webgpu',
  numLayers: number,
): Promise<PeerModel> {
  tjs.env.allowRemoteModels = false;
  tjs.env.allowLocalModels = true;
  tjs.env.useBrowserCache = false; // in Chromium: never copy the weights into Cache Storage
  tjs.env.localModelPath = modelDir.endsWith('/') ? modelDir : `${modelDir}/`;
  const suffix = precision === 'int4' ? '_q4' : '';
  const externalData = await peerDataFiles(tjs, peerFolder, `decoder_model_merged${suffix}.onnx`);
  const preferredOutputLocation: Record<string, OrtModule.Tensor.DataLocation> = {};
  if (backend === 'webgpu') {
    for (let i = 0; i < numLayers; i++) {
      preferredOutputLocation[`present.${i}.key`] = 'gpu-buffer';
      preferredOutputLocation[`present.${i}.value`] = 'gpu-buffer';
    }
  }
  const started = performance.now();
  const model = await tjs.AutoModelForCausalLM.from_pretrained(peerFolder, {
    model_file_name: 'decoder_model_merged',
    dtype: precision === 'int4' ? 'q4' : 'fp32',
    device: 'auto',
    // 0: transformers.js then loads the files named in session_options.externalData as bytes (in
    // Node a chunk count would hand ORT file paths, which our InferenceSession.create never sees).
    use_external_data_format: 0,
    session_options: {
      executionProviders: [backend],
      graphOptimizationLevel: 'all',
      externalData,
      ...(backend === 'webgpu' ? { preferredOutputLocation } : {}),
    },
  });
  const loadMs = performance.now() - started;

  return {
    loadMs,
    release: () => model.dispose() as Promise<unknown> as Promise<void>,
    generate: async (prompt, newTokens) => {
      const stamps: number[] = [];
      let calls = 0;
      const streamer = {
        put: () => {
          // The first call carries the prompt; each later one, one new token.
          if (calls++ > 0) stamps.push(performance.now());
        },
        end: () => {},
      };
      const inputIds = new tjs.Tensor('int64', BigInt64Array.from(prompt, (id) => BigInt(id)), [1, prompt.length]);
      const attentionMask = new tjs.Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [1, prompt.length]);
      const started = performance.now();
      const output = await model.generate({
        input_ids: inputIds,
        attention_mask: attentionMask,
        max_new_tokens: newTokens,
        min_new_tokens: newTokens,
        do_sample: false,
        streamer: streamer as unknown as InstanceType<typeof tjs.TextStreamer>,
      });
      const sequences = (output as { tolist(): bigint[][] }).tolist()[0] ?? [];
      const ids = sequences.slice(prompt.length).map(Number);
      const first = stamps[0] ?? started;
      const last = stamps.at(-1) ?? first;
      return { ids, prefillMs: first - started, decodeMs: last - first, decodeSteps: Math.max(0, stamps.length - 1) };
    },
  };
}

/** transformers.js 4.3's name of external-data chunk `i` of `fileName` (getExternalDataChunkNames). */
export function externalDataChunkName(fileName: string, i: number): string {
  return `${fileName}_data${i === 0 ? '' : `_${i}`}`;
}

/**
 * Every external-data file of `onnx/<fileName>` in the peer folder: config.json's
 * `transformers.js_config.use_external_data_format` counts them (a number, or {file name: count});
 * absent there, one file (the SALMONN peers, whose graphs fit in one 1 GiB file).
 */
async function peerDataFiles(tjs: Transformers, peerFolder: string, fileName: string): Promise<{ path: string; data: string }[]> {
  const config = (await tjs.AutoConfig.from_pretrained(peerFolder)) as unknown as Record<string, unknown>;
  const format = (config['transformers.js_config'] as { use_external_data_format?: number | Record<string, number> } | undefined)
    ?.use_external_data_format;
  const chunks = format === undefined ? 1 : typeof format === 'number' ? format : (format[fileName] ?? 1);
  return Array.from({ length: chunks }, (_, i) => {
    const path = externalDataChunkName(fileName, i);
    return { path, data: `onnx/${path}` };
  });
}
