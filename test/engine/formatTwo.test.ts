/**
 * The engine's parts path, end to end in Node (wasm), before any format-2 model exists: the tiny
 * SALMONN bundle's manifest rewritten as a FORMAT-2 pipeline (test/helpers/formatTwo.ts) in a
 * temporary folder, over the same graph files, must give exactly what the format-1 bundle gives —
 * every audio stage bit for bit, the first-step logits and the greedy tokens — and the goldens.
 *
 * Then format 2's prompt additions on the same graphs: audio boundaries around the audio
 * embeddings, no BOS and a system text, checked against the decoder graph driven directly with
 * the sequence the format describes ([system, before, boundary 0, audio, boundary 1, after]).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManifestV1, ManifestV2 } from '../../src/engine/bundle/manifest';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine } from '../../src/engine/engine';
import { concatFloat32 } from '../../src/engine/llm/conversation';
import { createTokenizer } from '../../src/engine/llm/tokenizer';
import { ort, sessionOptions } from '../../src/engine/ortRuntime';
import { formatTwoOf } from '../helpers/formatTwo';
import { GOLDEN_DIR, goldenArray, loadGoldenIndex, TINY_BUNDLE_DIR, type GoldenInput } from '../helpers/golden';
import { logitError, relativeMaxError } from '../helpers/npy';
import { tinyBundleFiles } from '../helpers/tinyBundle';

const golden = loadGoldenIndex();
const v1 = JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'manifest.json'), 'utf8')) as ManifestV1;
const wav = (input: GoldenInput) => new Uint8Array(readFileSync(join(GOLDEN_DIR, input.audio)));
const GOLDEN_STAGE: Record<string, 'speech' | 'audio' | 'tokens'> = { whisper: 'speech', beats: 'audio', tokens: 'tokens' };

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

/** A folder holding the tiny bundle's files (linked) and `manifest` as its manifest.json, plus `extra` files. */
function bundleFolder(manifest: ManifestV2, extra: Record<string, Uint8Array> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'hark-format2-'));
  for (const path of walk(TINY_BUNDLE_DIR)) {
    const rel = relative(TINY_BUNDLE_DIR, path);
    if (rel === 'manifest.json') continue;
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    symlinkSync(path, join(dir, rel));
  }
  for (const [path, bytes] of Object.entries(extra)) {
    writeFileSync(join(dir, path), bytes);
    manifest.files.push({ path, size: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') });
  }
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

interface Capture {
  stages: Map<string, Float32Array>;
  firstLogits: Float32Array;
  tokens: number[];
  timeMap: number[];
}

async function runOnce(engine: HarkEngine, input: GoldenInput, loraScale: number): Promise<Capture> {
  const stages = new Map<string, Float32Array>();
  engine.inspectAudioStages((chunk, stage, data) => stages.set(`${chunk}:${stage}`, data.slice()));
  const audio = await engine.setAudio(wav(input));
  engine.inspectAudioStages(null);
  let firstLogits: Float32Array = new Float32Array(0);
  const answer = await engine.ask(input.prompt, { loraScale, maxNewTokens: golden.greedyTokens, doSample: false, onFirstLogits: (l) => (firstLogits = l) });
  return { stages, firstLogits, tokens: answer.ids, timeMap: Array.from(audio.timeMap) };
}

describe('a format-2 manifest equivalent to the tiny SALMONN bundle (wasm)', () => {
  const folders: string[] = [];
  afterAll(() => {
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  });

  for (const precision of ['fp32', 'int4'] as const) {
    const names = precision === 'fp32' ? ['speech', 'long_35s'] : ['speech'];
    describe(precision, () => {
      const one = new HarkEngine({ store: new MemoryBundleStore() });
      const two = new HarkEngine({ store: new MemoryBundleStore() });
      beforeAll(async () => {
        const folder = bundleFolder(formatTwoOf(v1));
        folders.push(folder);
        await one.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: precision });
        const info = await two.loadModel(tinyBundleFiles(folder), { backend: 'wasm', variant: precision });
        expect(info.capabilities).toEqual({ hasLora: true, encoders: [{ name: 'whisper', type: 'whisper' }, { name: 'beats', type: 'beats' }], fusion: 'window-qformer', llm: 'llama', localizes: true });
        expect(info.defaults).toEqual(one.modelInfo!.defaults);
        expect(info.localization).toEqual(one.modelInfo!.localization);
      }, 180_000);
      afterAll(async () => {
        await one.unload();
        await two.unload();
      });

      for (const name of names) {
        it(`${name}: identical stages, first-step logits and greedy tokens to format 1, and the goldens'`, async () => {
          const input = golden.inputs[name]!;
          const run = input.precisions[precision].runs.default;
          const a = await runOnce(one, input, run.loraScale);
          const b = await runOnce(two, input, run.loraScale);
          expect([...b.stages.keys()].sort()).toEqual([...a.stages.keys()].sort());
          expect(b.stages.size).toBe(5 * input.chunks);
          for (const [key, data] of a.stages) expect(b.stages.get(key), key).toEqual(data);
          expect(b.firstLogits).toEqual(a.firstLogits);
          expect(b.tokens).toEqual(a.tokens);
          expect(b.timeMap).toEqual(a.timeMap);
          // and both are the reference's
          for (const [key, data] of b.stages) {
            const [chunk, stage] = key.split(':') as [string, string];
            const ref = stage === 'mel' || stage === 'fbank' ? input.features[Number(chunk)]![stage] : input.precisions[precision].stages[Number(chunk)]![GOLDEN_STAGE[stage]!];
            expect(relativeMaxError(data, goldenArray(ref).data), key).toBeLessThan(1e-4);
          }
          expect(logitError(b.firstLogits, goldenArray(run.logits).data)).toBeLessThan(1e-3);
          expect(b.tokens).toEqual(run.tokens);
          // the audio graphs ran once per chunk, counted under their graph names
          expect(two.counters.graphs['encoder.whisper']).toBe(one.counters.speechEncoder);
          expect(two.counters.connector).toBe(one.counters.connector);
        });
      }
    });
  }
});

describe('format 2 prompt additions on the tiny graphs: audio boundaries, no BOS, a system text (wasm, fp32)', () => {
  const SYSTEM = 'You are a careful listener.\n';
  const hidden = v1.architecture.llm.hiddenSize;
  // Two arbitrary rows of the size of the embeddings (what ALARM learns as audio_start / audio_end).
  const boundaries = Float32Array.from({ length: 2 * hidden }, (_, i) => 0.05 * Math.sin(1 + i * 0.7));
  const engine = new HarkEngine({ store: new MemoryBundleStore() });
  let folder = '';
  beforeAll(async () => {
    const manifest = formatTwoOf(v1);
    manifest.pipeline.audioBoundaries = { path: 'audio_boundaries.f32', shape: [2, hidden] };
    manifest.prompt = { ...manifest.prompt, bosTokenId: null, system: SYSTEM };
    const bytes = new Uint8Array(boundaries.length * 4);
    const view = new DataView(bytes.buffer);
    boundaries.forEach((v, i) => view.setFloat32(i * 4, v, true));
    folder = bundleFolder(manifest, { 'audio_boundaries.f32': bytes });
    await engine.loadModel(tinyBundleFiles(folder), { backend: 'wasm', variant: 'fp32' });
  }, 120_000);
  afterAll(async () => {
    await engine.unload();
    rmSync(folder, { recursive: true, force: true });
  });

  it('feeds [system, before, boundary 0, audio, boundary 1, after]: the first-step logits of that sequence through the decoder graph', async () => {
    const input = golden.inputs.speech!;
    const run = input.precisions.fp32.runs.default;
    let engineLogits: Float32Array = new Float32Array(0);
    await engine.setAudio(wav(input));
    await engine.ask(input.prompt, { loraScale: run.loraScale, maxNewTokens: 1, onFirstLogits: (l) => (engineLogits = l) });

    // The reference sequence, built here from the goldens' prompt ids and audio tokens.
    const tokenizer = createTokenizer(
      JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, v1.tokenizer.tokenizerJson), 'utf8')) as object,
      JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, v1.tokenizer.tokenizerConfig), 'utf8')) as object,
    );
    const graphs = v1.variants.fp32!.graphs;
    const open = (path: string, external: string[]) =>
      ort.InferenceSession.create(readFileSync(join(TINY_BUNDLE_DIR, path)), sessionOptions('wasm', {
        externalData: external.map((file) => ({ path: file, data: readFileSync(join(TINY_BUNDLE_DIR, dirname(path), file)) })),
      }));
    const embedTokens = await open(graphs.embedTokens.path, graphs.embedTokens.externalData);
    const decoder = await open(graphs.decoder.path, graphs.decoder.externalData);
    try {
      const embed = async (ids: number[]) =>
        (await embedTokens.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]) })).inputs_embeds!.data as Float32Array;
      const audio = concatFloat32(input.precisions.fp32.stages.map((s) => goldenArray(s.tokens).data));
      const sequence = concatFloat32([
        await embed([...tokenizer.encode(SYSTEM), ...input.promptIds.before]),
        boundaries.subarray(0, hidden),
        audio,
        boundaries.subarray(hidden),
        await embed(input.promptIds.after),
      ]);
      const { numLayers, numKvHeads, headDim } = v1.architecture.llm;
      const n = sequence.length / hidden;
      const feeds: Record<string, ort.Tensor> = {
        inputs_embeds: new ort.Tensor('float32', sequence, [1, n, hidden]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
        position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(i)), [1, n]),
        lora_scale: new ort.Tensor('float32', new Float32Array([run.loraScale]), []),
        num_logits_to_keep: new ort.Tensor('int64', BigInt64Array.of(1n), []),
      };
      for (let i = 0; i < numLayers; i++) {
        for (const kind of ['key', 'value']) feeds[`past_key_values.${i}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, numKvHeads, 0, headDim]);
      }
      const reference = (await decoder.run(feeds)).logits!.data as Float32Array;
      expect(logitError(engineLogits, reference.slice(-v1.architecture.llm.vocabSize))).toBeLessThan(1e-5);
      // the boundaries and the system text matter: the format-1 prompt gives other logits
      expect(logitError(engineLogits, goldenArray(run.logits).data)).toBeGreaterThan(1e-2);
    } finally {
      await embedTokens.release();
      await decoder.release();
    }
  });
});

/**
 * The recording-scoped path (ALARM's shape) on the tiny graphs: the Whisper encoder per chunk,
 * then a conv-downsampler adapter graph (built here: Conv1d 64→32, kernel 2, stride 2, one zero
 * frame of end padding, so T' = ceil(T / 2)) over the concatenated chunk outputs trimmed to the
 * real frames, "sum" fusion over one encoder, and the melFrames / 4 token rule. Checked against the
 * same computation done here in plain TypeScript from the goldens' encoder outputs.
 */
describe('format 2, recording scope: encoder per chunk → adapter per recording → sum → melFrames rule (wasm, fp32)', () => {
  const ENC = v1.architecture.speechEncoder.width; // 64
  const hidden = v1.architecture.llm.hiddenSize; // 32
  const weight = Float32Array.from({ length: hidden * ENC * 2 }, (_, i) => 0.05 * Math.cos(0.3 + i * 1.7));
  const bias = Float32Array.from({ length: hidden }, (_, i) => 0.01 * i);
  const engine = new HarkEngine({ store: new MemoryBundleStore() });
  let folder = '';

  beforeAll(async () => {
    const { buildOnnxModel, TensorType } = await import('../helpers/onnxBuilder');
    const adapter = buildOnnxModel({
      nodes: [
        { op: 'Transpose', inputs: ['frames'], outputs: ['channels'], attributes: { perm: [0, 2, 1] } },
        { op: 'Conv', inputs: ['channels', 'W', 'B'], outputs: ['down'], attributes: { kernel_shape: [2], strides: [2], pads: [0, 1] } },
        { op: 'Transpose', inputs: ['down'], outputs: ['adapted'], attributes: { perm: [0, 2, 1] } },
      ],
      inputs: [{ name: 'frames', type: TensorType.FLOAT, dims: [1, 'T', ENC] }],
      outputs: [{ name: 'adapted', type: TensorType.FLOAT, dims: [1, 'U', hidden] }],
      initializers: [
        { name: 'W', dims: [hidden, ENC, 2], data: weight },
        { name: 'B', dims: [hidden], data: bias },
      ],
    });
    const manifest = formatTwoOf(v1);
    const whisper = manifest.pipeline.encoders[0]!;
    manifest.pipeline.encoders = [whisper];
    manifest.pipeline.adapters = [{ encoder: 'whisper', type: 'conv-downsampler', graph: 'adapter.whisper', input: 'frames', output: 'adapted', downsample: 2, width: hidden }];
    manifest.pipeline.fusion = { type: 'sum', scope: 'recording', inputs: { whisper: 'adapted' }, width: hidden, tokens: { perSecond: 25, from: 'melFrames', divisor: 4, min: 1 } };
    for (const variant of Object.values(manifest.variants)) {
      if (!variant) continue;
      delete variant.graphs['encoder.beats'];
      delete variant.graphs.connector;
      variant.graphs['adapter.whisper'] = { path: 'onnx/adapter_whisper.onnx', externalData: [] };
    }
    folder = bundleFolder(manifest, { 'onnx/adapter_whisper.onnx': adapter });
    const info = await engine.loadModel(tinyBundleFiles(folder), { backend: 'wasm', variant: 'fp32' });
    expect(info.capabilities).toMatchObject({ encoders: [{ name: 'whisper', type: 'whisper' }], fusion: 'sum' });
  }, 120_000);
  afterAll(async () => {
    await engine.unload();
    rmSync(folder, { recursive: true, force: true });
  });

  /** The adapter in plain TypeScript: [T × ENC] → [ceil(T / 2) × hidden]. */
  function adapt(frames: Float32Array, t: number): Float32Array {
    const rows = Math.ceil(t / 2);
    const out = new Float32Array(rows * hidden);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < hidden; o++) {
        let sum = bias[o]!;
        for (let k = 0; k < 2; k++) {
          const f = 2 * r + k;
          if (f >= t) continue;
          for (let c = 0; c < ENC; c++) sum += weight[(o * ENC + c) * 2 + k]! * frames[f * ENC + c]!;
        }
        out[r * hidden + o] = sum;
      }
    }
    return out;
  }

  for (const name of ['one_second', 'long_35s']) {
    it(`${name}: chunk outputs concatenated and trimmed, adapted once, cut to max(1, floor(melFrames / 4)) rows`, async () => {
      const input = golden.inputs[name]!;
      const before = engine.counters.graphs;
      const captured = new Map<string, Float32Array>();
      engine.inspectAudioStages((chunk, stage, data) => captured.set(`${chunk}:${stage}`, data.slice()));
      const audio = await engine.setAudio(wav(input));
      engine.inspectAudioStages(null);

      // the reference: melFrames from the chunk lengths (30 s pieces, a short last one padded to 1 s)
      const chunkLengths = Array.from({ length: input.chunks }, (_, c) => Math.max(16000, Math.min(480000, input.samples - c * 480000)));
      const melFrames = chunkLengths.reduce((n, len) => n + Math.ceil(len / 160), 0);
      const real = Math.floor(melFrames / 2);
      const encoded = concatFloat32(input.precisions.fp32.stages.map((s) => goldenArray(s.speech).data)).subarray(0, real * ENC);
      const expected = adapt(encoded, real).subarray(0, Math.max(1, Math.floor(melFrames / 4)) * hidden);

      expect(audio.numTokens).toBe(Math.max(1, Math.floor(melFrames / 4)));
      expect(audio.timeMap.length).toBe(2 * audio.numTokens);
      expect(audio.timeMap[2 * audio.numTokens - 1]).toBeCloseTo(audio.numTokens / 25, 9);
      const tokens = captured.get('-1:tokens')!;
      expect(tokens.length).toBe(expected.length);
      expect(relativeMaxError(tokens, expected)).toBeLessThan(1e-4);
      expect(captured.get('-1:adapter.whisper')!.length).toBe(Math.ceil(real / 2) * hidden);
      const after = engine.counters.graphs;
      expect((after['encoder.whisper'] ?? 0) - (before['encoder.whisper'] ?? 0)).toBe(input.chunks);
      expect((after['adapter.whisper'] ?? 0) - (before['adapter.whisper'] ?? 0)).toBe(1);

      // and the LLM answers from them
      const answer = await engine.ask(input.prompt, { maxNewTokens: 3 });
      expect(answer.stats.promptTokens).toBe(1 + input.promptIds.before.length + audio.numTokens + input.promptIds.after.length);
    });
  }
});
