/**
 * Format 2 (docs/bundle-format-2.md) through parseManifest and modelParts: the tiny SALMONN
 * manifest rewritten as a declared pipeline gives the same parts and files as format 1, an
 * ALARM-shaped pipeline (and SpeechVerse's connector, the same shape) is accepted, and each kind of
 * broken pipeline is refused with a `bundle/manifest-invalid` message that points at it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseManifest, variantFiles, type ManifestV1, type ManifestV2 } from '../../src/engine/bundle/manifest';
import { modelParts, partGraphNames } from '../../src/engine/bundle/parts';
import { frameMask, melFrames, pieceChunks, realFrames, unsupportedParts } from '../../src/engine/audioTokens';
import { HarkError } from '../../src/engine/errors';
import { formatTwoOf } from '../helpers/formatTwo';
import { TINY_BUNDLE_DIR } from '../helpers/golden';
import { featurePieces } from '../../src/engine/features/recordingFeatures';
import { SSLAM_FBANK } from '../../src/engine/features/recordingFbank';
import { W2VBERT_SEAMLESS_FBANK } from '../../src/engine/features/seamlessFbank';
import { MUQ_RESAMPLE } from '../../src/engine/features/sincResample';

const v1 = (): ManifestV1 => JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'manifest.json'), 'utf8')) as ManifestV1;
const v2 = (): ManifestV2 => formatTwoOf(v1());

function refusal(json: unknown): HarkError {
  try {
    parseManifest(json);
  } catch (error) {
    expect(error).toBeInstanceOf(HarkError);
    return error as HarkError;
  }
  throw new Error('expected parseManifest to refuse it');
}

const HIDDEN = 32;
const fakeHash = 'a'.repeat(64);

/**
 * An ALARM-shaped format-2 manifest (single Whisper-v3 encoder, conv-downsampler adapter, sum
 * fusion over one encoder, boundaries, Qwen3 without LoRA) over the tiny bundle's common fields.
 */
function alarmLike(): ManifestV2 {
  const base = v2();
  const graph = (path: string) => ({ path, externalData: [] });
  const files = ['onnx/encoder_whisper.onnx', 'onnx/adapter_whisper.onnx', 'onnx/embed_tokens.onnx', 'onnx/decoder.onnx', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json'];
  return {
    ...base,
    family: 'alarm',
    pipeline: {
      encoders: [
        {
          name: 'whisper',
          type: 'whisper',
          features: { type: 'whisper-mel', preprocessorConfig: 'preprocessor_config.json', featureSize: 128, samplingRate: 16000, nFft: 400, hopLength: 160, chunkLength: 30 },
          architecture: { numMelBins: 128, inputFrames: 3000, outputFrames: 1500, width: 64, layers: 4, heads: 4, ffnDim: 128 },
          hiddenLayers: [1, 2, 3],
          input: 'input_features',
          output: 'encoder_out',
          outputWidth: 64,
          frameSeconds: 0.02,
        },
      ],
      adapters: [
        { encoder: 'whisper', type: 'conv-downsampler', graph: 'adapter.whisper', input: 'frames', output: 'adapted', downsample: 2, width: HIDDEN, details: { norm: 'batch', depth: 1, llmProj: true } },
      ],
      // as models/alarm/bundle.py writes it: "sum" over one encoder has no graph, inputs or output
      fusion: { type: 'sum', scope: 'recording', width: HIDDEN, tokens: { perSecond: 25, from: 'melFrames', divisor: 4, min: 1 } },
      audioBoundaries: { path: 'audio_boundaries.f32', shape: [2, HIDDEN] },
      llm: { type: 'qwen3', vocabSize: 151936, hiddenSize: HIDDEN, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, maxPositions: 40960, ropeTheta: 5e6, rmsNormEps: 1e-6, qkNorm: true, tieWordEmbeddings: true },
      lora: null,
    },
    prompt: {
      template: '<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n',
      userText: '<AudioHere>{}',
      audioSlot: '<AudioHere>',
      bosTokenId: null,
      eosTokenId: 151645,
      system: '<|im_start|>system\nYou are an audio-understanding model. Listen to the audio and respond to the query.<|im_end|>\n',
    },
    localization: undefined,
    variants: {
      fp32: {
        tested: true,
        graphs: { 'encoder.whisper': graph(files[0]!), 'adapter.whisper': graph(files[1]!), embedTokens: graph(files[2]!), decoder: graph(files[3]!) },
      },
    },
    files: [...files.map((path) => ({ path, size: 1, sha256: fakeHash })), { path: 'audio_boundaries.f32', size: 2 * HIDDEN * 4, sha256: fakeHash }],
  };
}

/** JSON round trip: what parseManifest gets from a file (undefined fields dropped). */
const asJson = (m: unknown): unknown => JSON.parse(JSON.stringify(m));

describe('format 2: the tiny SALMONN bundle declared as a pipeline', () => {
  it('parses, and modelParts(v1) equals modelParts(equivalent v2)', () => {
    const one = parseManifest(v1());
    const two = parseManifest(asJson(v2()));
    expect(two.formatVersion).toBe(2);
    expect(modelParts(two)).toEqual(modelParts(one));
    expect(partGraphNames(modelParts(one))).toEqual(['encoder.whisper', 'encoder.beats', 'connector', 'embedTokens', 'decoder']);
    expect(unsupportedParts(modelParts(two))).toBeNull();
  });

  it('needs the same files, in the same order, for every variant', () => {
    const one = parseManifest(v1());
    const two = parseManifest(asJson(v2()));
    for (const variant of Object.keys(one.variants)) expect(variantFiles(two, variant)).toEqual(variantFiles(one, variant));
  });

  it('differs from format 1 where it must: a changed number shows in the parts', () => {
    const changed = v2();
    changed.pipeline.fusion.tokens = { perChunk: 44 };
    expect(modelParts(parseManifest(asJson(changed)))).not.toEqual(modelParts(parseManifest(v1())));
  });
});

describe('format 2: an ALARM-shaped pipeline', () => {
  it('is accepted: Qwen3 without BOS or LoRA, a system text, boundaries, the adapter graph in the files', () => {
    const m = parseManifest(asJson(alarmLike()));
    const parts = modelParts(m);
    expect(parts.lora).toBeNull();
    expect(parts.llm).toMatchObject({ type: 'qwen3', qkNorm: true, tieWordEmbeddings: true });
    expect(parts.adapters).toEqual([{ encoder: 'whisper', type: 'conv-downsampler', graph: 'adapter.whisper', input: 'frames', output: 'adapted', downsample: 2, width: HIDDEN }]);
    expect(parts.fusion).toMatchObject({ type: 'sum', scope: 'recording', graph: null });
    expect(parts.audioBoundaries).toEqual({ path: 'audio_boundaries.f32', shape: [2, HIDDEN] });
    expect(partGraphNames(parts)).toEqual(['encoder.whisper', 'adapter.whisper', 'embedTokens', 'decoder']);
    expect(variantFiles(m, 'fp32')).toEqual([
      'onnx/encoder_whisper.onnx', 'onnx/adapter_whisper.onnx', 'onnx/embed_tokens.onnx', 'onnx/decoder.onnx',
      'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json', 'audio_boundaries.f32',
    ]);
    expect(unsupportedParts(parts)).toBeNull();
  });

  it("expresses SpeechVerse's connector (weighted layer sum in the encoder graph, Conv1d + LayerNorm downsampling, no boundaries)", () => {
    const speechVerse = alarmLike();
    speechVerse.pipeline.encoders[0]!.type = 'w2v-bert';
    speechVerse.pipeline.encoders[0]!.features = { type: 'kaldi-fbank', waveformScale: 32768, numMelBins: 80, sampleFrequency: 16000, frameLengthMs: 25, frameShiftMs: 10, mean: 0, std: 1, stdMultiplier: 1 };
    speechVerse.pipeline.encoders[0]!.hiddenLayers = [0, 1, 2, 3, 4, 5];
    speechVerse.pipeline.adapters![0]!.details = { norm: 'layer', depth: 2, llmProj: true };
    speechVerse.pipeline.adapters![0]!.downsample = 4;
    speechVerse.pipeline.fusion.tokens = { perSecond: 12.5, from: 'melFrames', divisor: 8, min: 1 };
    // the melFrames rule needs whisper-mel features: SpeechVerse counts what its adapter gives
    expect(refusal(asJson(speechVerse)).message).toContain('/pipeline/fusion/tokens: the melFrames rule needs an encoder with whisper-mel features');
    speechVerse.pipeline.encoders[0]!.features = alarmLike().pipeline.encoders[0]!.features;
    delete speechVerse.pipeline.audioBoundaries;
    speechVerse.files = speechVerse.files.filter((f) => f.path !== 'audio_boundaries.f32');
    const parts = modelParts(parseManifest(asJson(speechVerse)));
    expect(parts.adapters[0]).toMatchObject({ type: 'conv-downsampler', downsample: 4 });
    expect(parts.audioBoundaries).toBeNull();
  });

  it('refuses fusions this app cannot run yet at load (unsupportedParts), though the manifest is valid', () => {
    const qformer = alarmLike();
    qformer.pipeline.fusion = { ...qformer.pipeline.fusion, type: 'window-qformer', graph: 'connector', inputs: { whisper: 'adapted' }, window: { frames: 17, stride: 17 } };
    qformer.variants.fp32!.graphs.connector = { path: 'onnx/decoder.onnx', externalData: [] };
    const parts = modelParts(parseManifest(asJson(qformer)));
    expect(unsupportedParts(parts)).toMatch(/"window-qformer" fusion over a whole recording is not supported/);
  });
});

describe('format 2: broken pipelines are refused, each with a pointer to the problem', () => {
  const cases: [string, (m: ManifestV2) => void, string][] = [
    ['an unknown encoder type', (m) => ((m.pipeline.encoders[0] as { type: string }).type = 'hubert'), '/pipeline/encoders/0/type'],
    ['an unknown feature type', (m) => ((m.pipeline.encoders[0]!.features as { type: string }).type = 'mfcc'), '/pipeline/encoders/0/features/type'],
    ['an adapter for a missing encoder', (m) => (m.pipeline.adapters![0]!.encoder = 'beats'), '/pipeline/adapters/0/encoder: there is no encoder "beats"'],
    ['a fusion input naming an unknown encoder', (m) => (m.pipeline.fusion.inputs = { whisper: 'adapted', muq: 'x' }), '/pipeline/fusion/inputs: names encoder "muq"'],
    ['an encoder feeding no fusion input', (m) => (m.pipeline.fusion.inputs = {}), '/pipeline/fusion/inputs'],
    ['boundaries of the wrong shape', (m) => (m.pipeline.audioBoundaries!.shape = [2, 64]), '/pipeline/audioBoundaries/shape: [2, 64], expected [2, 32]'],
    ['boundaries of three rows', (m) => (m.pipeline.audioBoundaries!.shape = [3, HIDDEN]), '/pipeline/audioBoundaries/shape: [3, 32], expected [2, 32]'],
    ['a boundaries file of the wrong size', (m) => (m.files.at(-1)!.size = 100), '/pipeline/audioBoundaries/path: "audio_boundaries.f32" has 100 bytes'],
    ['a boundaries file missing from /files', (m) => m.files.pop(), 'needs "audio_boundaries.f32", which is not in /files'],
    ['two encoders of one name', (m) => m.pipeline.encoders.push({ ...m.pipeline.encoders[0]! }), '/pipeline/encoders/1/name: "whisper" is used by two encoders'],
    ['a fusion width other than the LLM\'s', (m) => (m.pipeline.fusion.width = 31), '/pipeline/fusion/width: 31'],
    ['a variant without the adapter graph', (m) => delete m.variants.fp32!.graphs['adapter.whisper'], '/variants/fp32/graphs: has no "adapter.whisper" graph'],
    ['a variant with a graph nothing runs', (m) => (m.variants.fp32!.graphs.connector = { path: 'onnx/decoder.onnx', externalData: [] }), '/variants/fp32/graphs/connector: the pipeline does not run this graph'],
    ['a bad graph name', (m) => (m.variants.fp32!.graphs['encoder.Whisper!'] = { path: 'onnx/decoder.onnx', externalData: [] }), '/variants/fp32/graphs'],
    ['perChunk over a recording', (m) => (m.pipeline.fusion.tokens = { perChunk: 10 }), '/pipeline/fusion/tokens: perChunk needs scope "chunk"'],
    ['adapters before a chunk fusion', (m) => (m.pipeline.fusion.scope = 'chunk'), '/pipeline/fusion/scope'],
    ['a fused graph missing for two encoders', (m) => {
      m.pipeline.encoders.push({ ...m.pipeline.encoders[0]!, name: 'beats' });
      m.pipeline.fusion.inputs = { whisper: 'adapted', beats: 'b' };
    }, '/pipeline/fusion/graph: missing'],
    ['a window Q-Former without its window', (m) => (m.pipeline.fusion = { ...m.pipeline.fusion, type: 'window-qformer', graph: 'connector', inputs: { whisper: 'adapted' } }), '/pipeline/fusion/window'],
    ['a fusion graph without its inputs', (m) => (m.pipeline.fusion = { ...m.pipeline.fusion, type: 'perceiver', graph: 'connector' }), '/pipeline/fusion/inputs: encoder "whisper" feeds nothing'],
    ['an unknown LLM type', (m) => ((m.pipeline.llm as { type: string }).type = 'mistral'), '/pipeline/llm/type'],
    ['an LLM without qkNorm', (m) => delete (m.pipeline.llm as Partial<ManifestV2['pipeline']['llm']>).qkNorm, '/pipeline/llm'],
    ['a missing lora (null must be said)', (m) => delete (m.pipeline as Partial<ManifestV2['pipeline']>).lora, '/pipeline'],
    ['an unknown pipeline property', (m) => ((m.pipeline as unknown as Record<string, unknown>).postprocessing = 'identity'), '/pipeline/postprocessing: unknown property "postprocessing"'],
    ['format 1\'s architecture in format 2', (m) => ((m as unknown as Record<string, unknown>).architecture = v1().architecture), '/architecture: unknown property "architecture"'],
    ['a BOS outside the vocabulary', (m) => (m.prompt.bosTokenId = 200000), '/prompt/bosTokenId: 200000 is outside the vocabulary'],
    ['a history whose generation prompt does not end the template', (m) => (m.prompt.history = { generationPrompt: '<|im_start|>assistant\n', assistantTurn: '<|im_start|>assistant\n{}<|im_end|>\n', thoughtsEnd: '</think>' }), '/prompt/history/generationPrompt: the template does not end with it'],
    ['a history whose assistant turn has no slot', (m) => (m.prompt.history = { generationPrompt: '<think>\n', assistantTurn: '<|im_start|>assistant\n<|im_end|>\n', thoughtsEnd: '</think>' }), '/prompt/history/assistantTurn'],
  ];
  it.each(cases)('%s', (_name, breakIt, expected) => {
    const m = alarmLike();
    breakIt(m);
    const error = refusal(asJson(m));
    expect(error.code).toBe('bundle/manifest-invalid');
    expect(error.message).toContain(expected);
    expect(error.message).toMatch(/^The manifest of bundle "salmonn-tiny" is not valid: .*\. The bundle is damaged/);
  });

  it('format 1 still refuses format 2 fields (bosTokenId null, system)', () => {
    const one = v1() as unknown as { prompt: Record<string, unknown> };
    one.prompt.bosTokenId = null;
    one.prompt.system = 'x';
    const error = refusal(one);
    expect(error.message).toContain('/prompt/bosTokenId');
    expect(error.message).toContain('/prompt/system: unknown property "system"');
  });
});

/**
 * ALARM-CA's four encoders (whisper per chunk; w2v-BERT, SSLAM and MuQ with features of the whole
 * recording) into a cross-attention fusion graph, over alarmLike's common fields.
 */
function alarmCaLike(): ManifestV2 {
  const m = alarmLike();
  const whisper = m.pipeline.encoders[0]!;
  whisper.realFrames = { from: 'melFrames', divisor: 2 };
  const extra = [
    { name: 'w2vbert', type: 'w2v-bert' as const, features: { type: 'seamless-fbank' as const, ...W2VBERT_SEAMLESS_FBANK }, input: 'input_features', realFrames: { from: 'featureFrames' as const, divisor: 1 }, downsample: 2 },
    { name: 'sslam', type: 'sslam' as const, features: { type: 'kaldi-fbank-recording' as const, ...SSLAM_FBANK }, input: 'input_features', realFrames: { from: 'fbankFrames' as const, divisor: 2 }, downsample: 2, chunkSeconds: 10.24 },
    { name: 'muq', type: 'muq' as const, features: { type: 'resampled-waveform' as const, ...MUQ_RESAMPLE }, input: 'input_values', realFrames: { from: 'samples' as const, divisor: 960 }, downsample: 1, sampleRate: 24000, maskInput: 'frame_mask' },
  ];
  for (const { downsample, ...e } of extra) {
    m.pipeline.encoders.push({ ...whisper, ...e, architecture: { width: 64 }, frameSeconds: e.name === 'muq' ? 0.04 : 0.02 });
    m.pipeline.adapters!.push({ encoder: e.name, type: downsample === 1 ? 'mlp' : 'conv-downsampler', graph: `adapter.${e.name}`, input: 'frames', output: 'adapted', downsample, width: HIDDEN });
    for (const graph of [`encoder.${e.name}`, `adapter.${e.name}`]) {
      const path = `onnx/${graph.replace('.', '_')}.onnx`;
      m.variants.fp32!.graphs[graph] = { path, externalData: [] };
      m.files.push({ path, size: 1, sha256: fakeHash });
    }
  }
  // as models/alarm/bundle_ca.py writes it
  m.pipeline.fusion = {
    type: 'cross-attention', scope: 'recording', graph: 'connector', mainEncoder: 'whisper', lengthInput: 'main_length', output: 'audio_tokens', width: HIDDEN,
    inputs: { whisper: 'adapted_whisper', w2vbert: 'adapted_w2vbert', muq: 'adapted_muq', sslam: 'adapted_sslam' },
    details: { hidden: 24, ffn: 40, heads: 4, layers: '1,1,1', order: 'w2vbert,muq,sslam' },
    tokens: { perSecond: 25, from: 'adapterLengths', min: 1 },
  };
  m.variants.fp32!.graphs.connector = { path: 'onnx/connector.onnx', externalData: [] };
  m.files.push({ path: 'onnx/connector.onnx', size: 1, sha256: fakeHash });
  return m;
}

/** ALARM-P (docs/bundle-format-2.md, "ALARM-P in format 2"): ALARM-CA's encoders, identity adapters but Whisper's, a perceiver. */
function alarmPLike(): ManifestV2 {
  const m = alarmCaLike();
  for (const adapter of m.pipeline.adapters!) {
    if (adapter.encoder === 'whisper') continue;
    const graph = adapter.graph!;
    delete m.variants.fp32!.graphs[graph];
    m.files = m.files.filter((f) => f.path !== `onnx/${graph.replace('.', '_')}.onnx`);
    for (const key of ['graph', 'input', 'output', 'details'] as const) delete adapter[key];
    Object.assign(adapter, { type: 'identity', downsample: 1, width: 64 });
  }
  delete m.pipeline.fusion.lengthInput;
  m.pipeline.fusion.type = 'perceiver';
  m.pipeline.fusion.details = { latents: '20,20,20', latentWidth: '768,768,768', order: 'w2vbert,muq,sslam' };
  m.pipeline.fusion.tokens = { perSecond: 25, from: 'mainLength', leading: 62, min: 0 };
  return m;
}

describe("format 2: features of the whole recording (ALARM-CA's w2v-BERT, SSLAM, MuQ)", () => {
  it('are accepted as declared, need no extra file, and run (cross-attention over the four adapters)', () => {
    const m = parseManifest(asJson(alarmCaLike()));
    const parts = modelParts(m);
    expect(parts.encoders.map((e) => e.features.type)).toEqual(['whisper-mel', 'seamless-fbank', 'kaldi-fbank-recording', 'resampled-waveform']);
    expect(parts.encoders[2]!.features).toEqual({ type: 'kaldi-fbank-recording', ...SSLAM_FBANK });
    // no config file of their own: the spec carries every number (whisper's preprocessor config stays)
    expect(variantFiles(m, 'fp32').filter((f) => !f.startsWith('onnx/'))).toEqual(['tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json', 'audio_boundaries.f32']);
    expect(variantFiles(m, 'fp32').filter((f) => f.startsWith('onnx/encoder_'))).toEqual(['onnx/encoder_whisper.onnx', 'onnx/encoder_w2vbert.onnx', 'onnx/encoder_sslam.onnx', 'onnx/encoder_muq.onnx']);
    expect(unsupportedParts(parts)).toBeNull();
    expect(parts.fusion).toMatchObject({ type: 'cross-attention', scope: 'recording', graph: 'connector', mainEncoder: 'whisper', lengthInput: 'main_length', tokens: { from: 'adapterLengths', min: 1 } });
    expect(parts.encoders.map((e) => [e.name, e.realFrames, e.maskInput, e.sampleRate, e.chunkSeconds])).toEqual([
      ['whisper', { from: 'melFrames', divisor: 2 }, null, null, null],
      ['w2vbert', { from: 'featureFrames', divisor: 1 }, null, null, null],
      ['sslam', { from: 'fbankFrames', divisor: 2 }, null, null, 10.24],
      ['muq', { from: 'samples', divisor: 960 }, 'frame_mask', 24000, null],
    ]);
    expect(partGraphNames(parts)).toEqual([
      'encoder.whisper', 'encoder.w2vbert', 'encoder.sslam', 'encoder.muq',
      'adapter.whisper', 'adapter.w2vbert', 'adapter.sslam', 'adapter.muq', 'connector', 'embedTokens', 'decoder',
    ]);
    // a per-chunk fusion cannot pair pieces of the whole recording with chunks
    const perChunk = modelParts(m);
    perChunk.fusion = { ...perChunk.fusion, type: 'window-qformer', scope: 'chunk' };
    expect(unsupportedParts(perChunk)).toMatch(/w2v-bert encoder takes features of the whole recording/);
  });

  const fused: [string, (m: ManifestV2) => void, string][] = [
    ['cross-attention without a main encoder', (m) => delete m.pipeline.fusion.mainEncoder, '/pipeline/fusion/mainEncoder: cross-attention needs the encoder'],
    ['a main encoder that does not exist', (m) => (m.pipeline.fusion.mainEncoder = 'beats'), '/pipeline/fusion/mainEncoder: there is no encoder "beats"'],
    ['cross-attention without its length input', (m) => delete m.pipeline.fusion.lengthInput, '/pipeline/fusion/lengthInput: cross-attention needs'],
    ['a length input that is also an encoder input', (m) => (m.pipeline.fusion.lengthInput = 'adapted_muq'), '/pipeline/fusion/lengthInput: "adapted_muq" is also an encoder\'s input'],
    ['the melFrames rule for a fused model', (m) => (m.pipeline.fusion.tokens = { perSecond: 25, from: 'melFrames', divisor: 4, min: 1 }), 'use from "adapterLengths"'],
    ['adapterLengths with a divisor', (m) => (m.pipeline.fusion.tokens = { perSecond: 25, from: 'adapterLengths', min: 1, divisor: 2 } as never), '/pipeline/fusion/tokens/divisor: only the melFrames rule'],
    ['a fused encoder without its real-frame rule', (m) => delete m.pipeline.encoders[2]!.realFrames, '/pipeline/encoders/2/realFrames: a fused encoder with "kaldi-fbank-recording" features'],
    ['mel frames counted on fbank features', (m) => (m.pipeline.encoders[2]!.realFrames = { from: 'melFrames', divisor: 2 }), '/pipeline/encoders/2/realFrames/from: melFrames needs whisper-mel features'],
    ['fbank frames counted on whisper-mel', (m) => (m.pipeline.encoders[0]!.realFrames = { from: 'fbankFrames', divisor: 2 }), '/pipeline/encoders/0/realFrames/from: fbankFrames counts the real length of features computed per recording'],
    ['samples counted on fbank features', (m) => (m.pipeline.encoders[1]!.realFrames = { from: 'samples', divisor: 960 }), '/pipeline/encoders/1/realFrames/from: samples needs waveform features'],
    ['a frame mask on fbank features', (m) => (m.pipeline.encoders[2]!.maskInput = 'frame_mask'), '/pipeline/encoders/2/maskInput: a frame mask is built from real samples'],
    ['a length input on a perceiver', (m) => (m.pipeline.fusion = { ...m.pipeline.fusion, type: 'perceiver', tokens: { perSecond: 25, from: 'mainLength', leading: 62, min: 0 } }), '/pipeline/fusion/lengthInput: only a cross-attention fusion takes a length'],
    ['the mainLength rule on a cross-attention', (m) => (m.pipeline.fusion.tokens = { perSecond: 25, from: 'mainLength', leading: 62, min: 0 }), '/pipeline/fusion/tokens: the mainLength rule belongs to a perceiver fusion'],
    ['the mainLength rule without its leading rows', (m) => (m.pipeline.fusion.tokens = { perSecond: 25, from: 'mainLength', min: 0 } as never), '/pipeline/fusion/tokens'],
    ['leading rows on another rule', (m) => (m.pipeline.fusion.tokens = { perSecond: 25, from: 'adapterLengths', min: 1, leading: 2 } as never), '/pipeline/fusion/tokens'],
    ['a main encoder on a sum', (m) => {
      m.pipeline.fusion.type = 'sum';
      delete m.pipeline.fusion.lengthInput;
    }, '/pipeline/fusion/mainEncoder: only a cross-attention or perceiver fusion has a main encoder'],
  ];
  it.each(fused)('refuses %s', (_name, breakIt, expected) => {
    const m = alarmCaLike();
    breakIt(m);
    const error = refusal(asJson(m));
    expect(error.code).toBe('bundle/manifest-invalid');
    expect(error.message).toContain(expected);
  });

  it("ALARM-P's perceiver over identity adapters is accepted and runs (no adapter graphs but Whisper's)", () => {
    const parts = modelParts(parseManifest(asJson(alarmPLike())));
    expect(unsupportedParts(parts)).toBeNull();
    expect(parts.adapters.map((a) => [a.encoder, a.type, a.graph, a.downsample])).toEqual([
      ['whisper', 'conv-downsampler', 'adapter.whisper', 2],
      ['w2vbert', 'identity', null, 1],
      ['sslam', 'identity', null, 1],
      ['muq', 'identity', null, 1],
    ]);
    expect(parts.fusion).toMatchObject({ type: 'perceiver', mainEncoder: 'whisper', lengthInput: null, tokens: { from: 'mainLength', leading: 62, min: 0 } });
    expect(partGraphNames(parts)).toEqual(['encoder.whisper', 'encoder.w2vbert', 'encoder.sslam', 'encoder.muq', 'adapter.whisper', 'connector', 'embedTokens', 'decoder']);
  });

  const perceiverCases: [string, (m: ManifestV2) => void, string][] = [
    ['a perceiver without a main encoder', (m) => delete m.pipeline.fusion.mainEncoder, '/pipeline/fusion/mainEncoder: perceiver needs the encoder whose rows follow the latents'],
    ['a perceiver counting adapter lengths', (m) => (m.pipeline.fusion.tokens = { perSecond: 25, from: 'adapterLengths', min: 1 }), 'use from "mainLength"'],
    ['an identity adapter with a graph', (m) => (m.pipeline.adapters![1]!.graph = 'adapter.w2vbert'), '/pipeline/adapters/1/graph: an identity adapter has no graph'],
  ];
  it.each(perceiverCases)('refuses %s', (_name, breakIt, expected) => {
    const m = alarmPLike();
    breakIt(m);
    const error = refusal(asJson(m));
    expect(error.code).toBe('bundle/manifest-invalid');
    expect(error.message).toContain(expected);
  });

  const cases: [string, (m: ManifestV2) => void, string][] = [
    ['a recording spec without its scope', (m) => delete (m.pipeline.encoders[1]!.features as { scope?: string }).scope, '/pipeline/encoders/1/features'],
    ['a recording spec claiming chunk scope', (m) => ((m.pipeline.encoders[2]!.features as { scope: string }).scope = 'chunk'), '/pipeline/encoders/2/features/scope'],
    ['a zero split', (m) => ((m.pipeline.encoders[3]!.features as { splitFrames: number }).splitFrames = 0), '/pipeline/encoders/3/features/splitFrames'],
    ['an unknown window', (m) => ((m.pipeline.encoders[2]!.features as { window: string }).window = 'hamming'), '/pipeline/encoders/2/features/window'],
    ['an unknown field', (m) => ((m.pipeline.encoders[3]!.features as unknown as Record<string, unknown>).beta = 14.7), '/pipeline/encoders/3/features/beta: unknown property "beta"'],
    ['a seamless extractor at 24 kHz', (m) => ((m.pipeline.encoders[1]!.features as { samplingRate: number }).samplingRate = 24000), '/pipeline/encoders/1/features/samplingRate'],
    ['a resampler from another rate than the audio\'s', (m) => ((m.pipeline.encoders[3]!.features as { inputRate: number }).inputRate = 44100), '/pipeline/encoders/3/features: takes 44100 Hz audio, but the bundle\'s audio is 16000 Hz'],
    ['padding that leaves a short last piece', (m) => ((m.pipeline.encoders[2]!.features as { padToMultiple: number }).padToMultiple = 1000), '/pipeline/encoders/2/features/padToMultiple: 1000 is not a multiple of splitFrames (1024)'],
  ];
  it.each(cases)('refuses %s', (_name, breakIt, expected) => {
    const m = alarmCaLike();
    breakIt(m);
    const error = refusal(asJson(m));
    expect(error.code).toBe('bundle/manifest-invalid');
    expect(error.message).toContain(expected);
  });

  it('featurePieces cuts the time axis every splitFrames steps, with each piece\'s real steps', () => {
    // SSLAM-like: 3500 real frames padded to 4096, pieces of 1024 (two bins per frame here)
    const sslam = { data: Float32Array.from({ length: 4096 * 2 }, (_, i) => i), dims: [1, 4096, 2], realLength: 3500 };
    const pieces = featurePieces(sslam, 1024);
    expect(pieces.map((p) => [p.start, p.dims, p.realLength])).toEqual([
      [0, [1, 1024, 2], 1024], [1024, [1, 1024, 2], 1024], [2048, [1, 1024, 2], 1024], [3072, [1, 1024, 2], 428],
    ]);
    expect(pieces[3]!.data[0]).toBe(3072 * 2);
    expect(pieces[3]!.data.buffer).toBe(sslam.data.buffer); // views, not copies
    // w2v-BERT-like: 1750 stacked frames, not padded: the last piece is shorter
    const w2v = featurePieces({ data: new Float32Array(1750 * 3), dims: [1, 1750, 3], realLength: 1749 }, 1500);
    expect(w2v.map((p) => [p.dims[1], p.realLength])).toEqual([[1500, 1500], [250, 249]]);
    // MuQ-like: a waveform [1, samples]
    const muq = featurePieces({ data: new Float32Array(1440000), dims: [1, 1440000], realLength: 840000 }, 720000);
    expect(muq.map((p) => [p.dims, p.realLength])).toEqual([[[1, 720000], 720000], [[1, 720000], 120000]]);
    expect(() => featurePieces(sslam, 0)).toThrow(RangeError);
  });
});

describe("fused ALARM's per-recording arithmetic (audioTokens.ts)", () => {
  const parts = modelParts(parseManifest(asJson(alarmCaLike())));
  const encoder = (name: string) => parts.encoders.find((e) => e.name === name)!;

  it("counts each encoder's real frames by its rule (ALARM's calc_length), as the ALARM-CA goldens do", () => {
    // models/golden/alarm-ca's speech clip: 86924 samples → whisper 544 attended mel frames (272),
    // w2vbert 271 stacked frames, sslam 543 fbank frames (271), muq 130386 samples at 24 kHz (135)
    const chunks = [new Float32Array(86924)];
    expect(melFrames(chunks, 160)).toBe(544);
    expect(realFrames(encoder('whisper'), chunks, 16000)).toBe(272);
    expect(realFrames(encoder('w2vbert'), chunks, 16000, 271)).toBe(271);
    expect(realFrames(encoder('sslam'), chunks, 16000, 543)).toBe(271);
    expect(realFrames(encoder('muq'), chunks, 16000, 130386)).toBe(135);
    expect(() => realFrames(encoder('muq'), chunks, 16000)).toThrow(/without per-recording features/);
  });

  it("builds MuQ's frame mask from a piece's real samples: frame t is real iff 960 t < n", () => {
    const mask = frameMask(720000, 130386, 960);
    expect(mask.length).toBe(750);
    expect(mask.reduce((a, b) => a + b, 0)).toBe(Math.ceil(130386 / 960));
    expect([mask[135], mask[136]]).toEqual([1, 0]);
    expect(frameMask(720000, 720000, 960).every((v) => v === 1)).toBe(true);
  });

  it('spreads pieces over the chunks in order, every chunk index valid (progress per chunk)', () => {
    expect(pieceChunks(4, 2)).toEqual([0, 0, 1, 1]); // sslam's 10.24 s pieces of a 35 s clip
    expect(pieceChunks(2, 2)).toEqual([0, 1]);
    expect(pieceChunks(3, 1)).toEqual([0, 0, 0]);
    expect(pieceChunks(1, 2)).toEqual([0]);
  });
});
