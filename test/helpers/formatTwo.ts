/**
 * A format-2 manifest equivalent to a format-1 (SALMONN) manifest: the same graph files, features,
 * prompt and numbers, declared as a pipeline (docs/bundle-format-2.md's "a format-1 manifest maps
 * to"). Written out independently of src/engine/bundle/parts.ts, so the two can be compared.
 */
import type { GraphSpec, ManifestV1, ManifestV2, VariantV2 } from '../../src/engine/bundle/manifest';

export function formatTwoOf(v1: ManifestV1): ManifestV2 {
  const { architecture: a, features, formatVersion: _v1, variants, ...common } = v1;
  const graphKeys: Record<string, string> = { speechEncoder: 'encoder.whisper', audioEncoder: 'encoder.beats' };
  const v2Variants: ManifestV2['variants'] = {};
  for (const [name, variant] of Object.entries(variants)) {
    if (!variant) continue;
    const graphs: Record<string, GraphSpec> = {};
    for (const [key, graph] of Object.entries(variant.graphs)) if (graph) graphs[graphKeys[key] ?? key] = graph;
    v2Variants[name as keyof ManifestV2['variants']] = { ...variant, graphs: graphs as VariantV2['graphs'] };
  }
  const { type: _speechType, ...speech } = a.speechEncoder;
  const { type: _audioType, ...audio } = a.audioEncoder;
  return {
    ...common,
    formatVersion: 2,
    pipeline: {
      encoders: [
        {
          name: 'whisper',
          type: 'whisper',
          features: { type: 'whisper-mel', ...features.whisper },
          architecture: speech,
          input: 'input_features',
          output: 'speech_embeds',
          outputWidth: a.speechEncoder.width,
          frameSeconds: v1.audio.encoderFrameSeconds,
        },
        {
          name: 'beats',
          type: 'beats',
          features: { type: 'kaldi-fbank', ...features.fbank },
          architecture: audio,
          input: 'fbank',
          output: 'audio_embeds',
          outputWidth: a.audioEncoder.width,
          frameSeconds: v1.audio.encoderFrameSeconds,
        },
      ],
      fusion: {
        type: 'window-qformer',
        scope: 'chunk',
        graph: 'connector',
        inputs: { whisper: 'speech_embeds', beats: 'audio_embeds' },
        output: 'audio_tokens',
        width: a.connector.outputWidth,
        window: { frames: a.connector.windowFrames, stride: a.connector.strideFrames },
        details: { hidden: a.connector.hidden, layers: a.connector.layers, heads: a.connector.heads, ffnDim: a.connector.ffnDim },
        tokens: { perChunk: a.connector.tokensPerChunk },
      },
      llm: { ...a.llm, qkNorm: false, tieWordEmbeddings: false },
      lora: a.lora,
    },
    variants: v2Variants,
  };
}
