/**
 * What a model is made of, whatever its manifest's format: the parts the engine runs.
 *
 *   per chunk      each encoder: its features (whisper-mel or kaldi-fbank) → its graph
 *   per recording  each adapter over its encoder's chunk outputs (trimmed to the real frames)
 *   fusion         window-qformer per chunk (SALMONN), or over the adapters' outputs
 *   LLM            [boundary start] audio embeddings [boundary end] inside the prompt; LoRA optional
 *
 * A format-2 manifest declares these parts (docs/bundle-format-2.md); a format-1 manifest (SALMONN:
 * Whisper + BEATs → window Q-Former → LLaMA with LoRA) is mapped onto them here, with format 1's
 * graph names, so every SALMONN bundle already made keeps running unchanged.
 */
import type {
  AdapterSpecV2,
  EncoderType,
  FeatureSpecV2,
  LoraSpec,
  Manifest,
  RealFramesSpec,
  ManifestV1,
  ManifestV2,
  TokenCountSpec,
} from './manifest';

export interface EncoderPart {
  name: string;
  type: EncoderType;
  /** Its graph's name, "encoder.<name>" (in a format-1 variant stored as "speechEncoder" / "audioEncoder": see variantGraphKey). */
  graph: string;
  features: FeatureSpecV2;
  input: string;
  output: string;
  /** Channels of one output frame. */
  outputWidth: number;
  /** Frames of one chunk's input features (whisper-mel) and of its output. */
  inputFrames: number | null;
  outputFrames: number | null;
  /** Fewest fbank frames the graph takes (BEATs' patch size); 1 when the manifest does not say. */
  minFeatureFrames: number;
  frameSeconds: number;
  /** Seconds of audio one run of its graph covers; null: audio.chunkSeconds. */
  chunkSeconds: number | null;
  /** The rate its features are computed at; null: audio.sampleRate. */
  sampleRate: number | null;
  /** How its real output frames are counted (fused ALARM); null: the single-encoder rule (audioTokens.realFrames). */
  realFrames: RealFramesSpec | null;
  /** Its graph's frame-mask input (MuQ); null: none. */
  maskInput: string | null;
}

export interface AdapterPart {
  encoder: string;
  type: AdapterSpecV2['type'];
  /** null for identity. */
  graph: string | null;
  input: string;
  output: string;
  downsample: number;
  width: number;
}

export interface FusionPart {
  type: 'window-qformer' | 'sum' | 'cross-attention' | 'perceiver';
  scope: 'chunk' | 'recording';
  /** null: "sum" over a single encoder, i.e. that encoder's (adapted) output as is. */
  graph: string | null;
  /** Encoder name → the fusion graph's input name. */
  inputs: Record<string, string>;
  output: string;
  width: number;
  /** window-qformer's windows, in encoder frames (the per-token time map); null otherwise. */
  window: { frames: number; stride: number } | null;
  tokens: TokenCountSpec;
  /** cross-attention: the encoder whose adapter length masks the attentions; perceiver: the encoder whose rows follow the latents; null otherwise. */
  mainEncoder: string | null;
  /** cross-attention: the graph input (int64 [1]) for that length; null otherwise. */
  lengthInput: string | null;
}

export interface LlmPart {
  type: 'llama' | 'qwen3';
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions: number;
  ropeTheta: number;
  rmsNormEps: number;
  qkNorm: boolean;
  tieWordEmbeddings: boolean;
}

export interface ModelParts {
  encoders: EncoderPart[];
  adapters: AdapterPart[];
  fusion: FusionPart;
  /** float32 LE file of [2, llm.hiddenSize]; null: the audio embeddings stand alone. */
  audioBoundaries: { path: string; shape: [number, number] } | null;
  llm: LlmPart;
  lora: LoraSpec | null;
  /** The decoder and embedding graphs' keys (the same in both formats). */
  decoderGraph: 'decoder';
  embedGraph: 'embedTokens';
}

/** The model's parts: declared by a format-2 manifest, or format 1's fixed SALMONN architecture. */
export function modelParts(manifest: Manifest): ModelParts {
  return manifest.formatVersion === 2 ? partsOfV2(manifest) : partsOfV1(manifest);
}

/** Format 1 stores its encoders' graphs under its own names. */
const FORMAT1_GRAPH_KEYS: Readonly<Record<string, string>> = { 'encoder.whisper': 'speechEncoder', 'encoder.beats': 'audioEncoder' };

/** Where a part's graph is stored in the manifest's variants (`graphs[key]`). */
export function variantGraphKey(manifest: Manifest, graph: string): string {
  return manifest.formatVersion === 1 ? (FORMAT1_GRAPH_KEYS[graph] ?? graph) : graph;
}

/** Every graph the parts run, in running order (format 1: its five, in its order). */
export function partGraphNames(parts: ModelParts): string[] {
  const names = [
    ...parts.encoders.map((e) => e.graph),
    ...parts.adapters.flatMap((a) => (a.graph ? [a.graph] : [])),
    ...(parts.fusion.graph ? [parts.fusion.graph] : []),
    parts.embedGraph,
    parts.decoderGraph,
  ];
  return [...new Set(names)];
}

function partsOfV1(manifest: ManifestV1): ModelParts {
  const { speechEncoder, audioEncoder, connector, llm, lora } = manifest.architecture;
  return {
    encoders: [
      {
        name: 'whisper',
        type: 'whisper',
        graph: 'encoder.whisper',
        features: { type: 'whisper-mel', ...manifest.features.whisper },
        input: 'input_features',
        output: 'speech_embeds',
        outputWidth: speechEncoder.width,
        inputFrames: speechEncoder.inputFrames,
        outputFrames: speechEncoder.outputFrames,
        minFeatureFrames: 1,
        frameSeconds: manifest.audio.encoderFrameSeconds,
        chunkSeconds: null,
        sampleRate: null,
        realFrames: null,
        maskInput: null,
      },
      {
        name: 'beats',
        type: 'beats',
        graph: 'encoder.beats',
        features: { type: 'kaldi-fbank', ...manifest.features.fbank },
        input: 'fbank',
        output: 'audio_embeds',
        outputWidth: audioEncoder.width,
        inputFrames: null,
        outputFrames: null,
        minFeatureFrames: audioEncoder.patchSize,
        frameSeconds: manifest.audio.encoderFrameSeconds,
        chunkSeconds: null,
        sampleRate: null,
        realFrames: null,
        maskInput: null,
      },
    ],
    adapters: [],
    fusion: {
      type: 'window-qformer',
      scope: 'chunk',
      graph: 'connector',
      inputs: { whisper: 'speech_embeds', beats: 'audio_embeds' },
      output: 'audio_tokens',
      width: connector.outputWidth,
      window: { frames: connector.windowFrames, stride: connector.strideFrames },
      tokens: { perChunk: connector.tokensPerChunk },
      mainEncoder: null,
      lengthInput: null,
    },
    audioBoundaries: null,
    llm: { ...llm, qkNorm: false, tieWordEmbeddings: false },
    lora,
    decoderGraph: 'decoder',
    embedGraph: 'embedTokens',
  };
}

function partsOfV2(manifest: ManifestV2): ModelParts {
  const { pipeline } = manifest;
  const boundaries = pipeline.audioBoundaries;
  return {
    encoders: pipeline.encoders.map((e) => {
      const frames = (key: string): number | null => (typeof e.architecture[key] === 'number' ? e.architecture[key] : null);
      return {
        name: e.name,
        type: e.type,
        graph: `encoder.${e.name}`,
        features: e.features,
        input: e.input,
        output: e.output,
        outputWidth: e.outputWidth,
        inputFrames: frames('inputFrames'),
        outputFrames: frames('outputFrames'),
        minFeatureFrames: frames('patchSize') ?? 1,
        frameSeconds: e.frameSeconds,
        chunkSeconds: e.chunkSeconds ?? null,
        sampleRate: e.sampleRate ?? null,
        realFrames: e.realFrames ?? null,
        maskInput: e.maskInput ?? null,
      };
    }),
    adapters: (pipeline.adapters ?? []).map((a) => ({
      encoder: a.encoder,
      type: a.type,
      graph: a.type === 'identity' ? null : (a.graph ?? `adapter.${a.encoder}`),
      input: a.input ?? 'frames',
      output: a.output ?? 'adapted',
      downsample: a.downsample ?? 1,
      width: a.width,
    })),
    fusion: {
      type: pipeline.fusion.type,
      scope: pipeline.fusion.scope,
      graph: pipeline.fusion.graph ?? null,
      inputs: pipeline.fusion.inputs ?? {},
      output: pipeline.fusion.output ?? 'audio_tokens',
      width: pipeline.fusion.width,
      window: pipeline.fusion.window ?? null,
      tokens: pipeline.fusion.tokens,
      mainEncoder: pipeline.fusion.mainEncoder ?? null,
      lengthInput: pipeline.fusion.lengthInput ?? null,
    },
    audioBoundaries: boundaries ? { path: boundaries.path, shape: [boundaries.shape[0]!, boundaries.shape[1]!] } : null,
    llm: { ...pipeline.llm },
    lora: pipeline.lora,
    decoderGraph: 'decoder',
    embedGraph: 'embedTokens',
  };
}
