/**
 * What the schema cannot say about a format-2 pipeline: that its parts refer to each other
 * correctly (an adapter's encoder exists, the fusion's inputs name encoders, the boundaries are
 * [2, llm.hiddenSize], every variant has exactly the graphs the parts run). Each problem is one
 * "JSON pointer: what is wrong" line for parseManifest's `bundle/manifest-invalid` message.
 */
import { printable } from '../errors';
import type { ManifestV2 } from './manifest';

export function pipelineProblems(manifest: ManifestV2): string[] {
  const problems: string[] = [];
  const { encoders, fusion, llm, audioBoundaries } = manifest.pipeline;
  const adapters = manifest.pipeline.adapters ?? [];
  const names = new Set<string>();
  encoders.forEach((encoder, i) => {
    if (names.has(encoder.name)) problems.push(`/pipeline/encoders/${i}/name: "${encoder.name}" is used by two encoders (names must be unique)`);
    names.add(encoder.name);
  });

  // Recording-scoped features (ALARM-CA's w2v-BERT, SSLAM, MuQ): they read the prepared audio at
  // the bundle's rate, and a padded spec must leave whole encoder pieces (fixed-shape graphs).
  encoders.forEach((encoder, i) => {
    const f = encoder.features;
    const at = `/pipeline/encoders/${i}/features`;
    if (f.type === 'seamless-fbank' || f.type === 'kaldi-fbank-recording' || f.type === 'resampled-waveform') {
      const rate = f.type === 'seamless-fbank' ? f.samplingRate : f.type === 'kaldi-fbank-recording' ? f.sampleFrequency : f.inputRate;
      if (rate !== manifest.audio.sampleRate) problems.push(`${at}: takes ${rate} Hz audio, but the bundle's audio is ${manifest.audio.sampleRate} Hz (audio.sampleRate)`);
      if (f.type !== 'seamless-fbank' && f.padToMultiple % f.splitFrames !== 0) {
        problems.push(`${at}/padToMultiple: ${f.padToMultiple} is not a multiple of splitFrames (${f.splitFrames}): the last encoder piece would be cut short`);
      }
    }
  });

  const adapted = new Set<string>();
  adapters.forEach((adapter, i) => {
    const at = `/pipeline/adapters/${i}`;
    if (!names.has(adapter.encoder)) problems.push(`${at}/encoder: there is no encoder "${printable(adapter.encoder)}" (encoders: ${[...names].join(', ')})`);
    if (adapted.has(adapter.encoder)) problems.push(`${at}/encoder: encoder "${printable(adapter.encoder)}" has two adapters`);
    adapted.add(adapter.encoder);
    if (adapter.type === 'identity' && adapter.graph !== undefined) problems.push(`${at}/graph: an identity adapter has no graph`);
    if (adapter.type !== 'identity' && adapter.graph !== undefined && adapter.graph !== `adapter.${adapter.encoder}`) {
      problems.push(`${at}/graph: must be "adapter.${printable(adapter.encoder)}" (the graph is named after its encoder)`);
    }
  });

  // A fusion graph names its input per encoder; "sum" over one encoder (no graph) needs none.
  const inputs = fusion.inputs ?? {};
  for (const input of Object.keys(inputs)) {
    if (!names.has(input)) problems.push(`/pipeline/fusion/inputs: names encoder "${printable(input)}", which the pipeline does not have (encoders: ${[...names].join(', ')})`);
  }
  if (fusion.graph !== undefined || fusion.inputs !== undefined) {
    for (const name of names) {
      if (!(name in inputs)) problems.push(`/pipeline/fusion/inputs: encoder "${name}" feeds nothing (every encoder must be one of the fusion's inputs)`);
    }
  }
  if (fusion.graph === undefined && !(fusion.type === 'sum' && encoders.length === 1)) {
    problems.push('/pipeline/fusion/graph: missing; only "sum" over a single encoder runs without a graph');
  }
  if (fusion.type === 'window-qformer' && fusion.window === undefined) problems.push('/pipeline/fusion/window: window-qformer needs its window frames and stride');
  if (fusion.scope === 'chunk' && adapters.length > 0) {
    problems.push('/pipeline/fusion/scope: "chunk" fusion reads the encoders\' chunk outputs, so adapters (which run per recording) cannot precede it: use scope "recording"');
  }
  if ('perChunk' in fusion.tokens && fusion.scope !== 'chunk') problems.push('/pipeline/fusion/tokens: perChunk needs scope "chunk"');
  if ('from' in fusion.tokens) {
    const rule = fusion.tokens.from;
    if (fusion.scope !== 'recording') problems.push(`/pipeline/fusion/tokens: the ${rule} rule needs scope "recording"`);
    if (rule === 'melFrames' && !encoders.some((e) => e.features.type === 'whisper-mel')) problems.push('/pipeline/fusion/tokens: the melFrames rule needs an encoder with whisper-mel features');
    if ('divisor' in fusion.tokens && rule !== 'melFrames') problems.push(`/pipeline/fusion/tokens/divisor: only the melFrames rule has a divisor (${rule} divides by each adapter's downsample)`);
  }

  // Fused ALARM: each encoder's real frames are counted its own way (ALARM's calc_length).
  encoders.forEach((encoder, i) => {
    const rule = encoder.realFrames;
    const at = `/pipeline/encoders/${i}`;
    const type = encoder.features.type;
    if (rule) {
      const perChunk = type === 'whisper-mel' || type === 'kaldi-fbank';
      if (rule.from === 'melFrames' && type !== 'whisper-mel') problems.push(`${at}/realFrames/from: melFrames needs whisper-mel features (this encoder's are "${type}")`);
      if (rule.from !== 'melFrames' && perChunk) problems.push(`${at}/realFrames/from: ${rule.from} counts the real length of features computed per recording, not of "${type}"`);
      if (rule.from === 'samples' && type !== 'resampled-waveform') problems.push(`${at}/realFrames/from: samples needs waveform features (this encoder's are "${type}")`);
    }
    if (encoder.maskInput !== undefined) {
      if (type !== 'resampled-waveform' || rule?.from !== 'samples') problems.push(`${at}/maskInput: a frame mask is built from real samples: it needs waveform features and realFrames from "samples"`);
      if (encoder.maskInput === encoder.input) problems.push(`${at}/maskInput: "${printable(encoder.maskInput)}" is also the features' input`);
    }
  });
  const fused = fusion.type === 'cross-attention' || fusion.type === 'perceiver';
  if (fused) {
    const main = fusion.type === 'cross-attention' ? 'the encoder whose rows are the queries' : 'the encoder whose rows follow the latents';
    if (fusion.mainEncoder === undefined) problems.push(`/pipeline/fusion/mainEncoder: ${fusion.type} needs ${main}`);
    else if (!names.has(fusion.mainEncoder)) problems.push(`/pipeline/fusion/mainEncoder: there is no encoder "${printable(fusion.mainEncoder)}" (encoders: ${[...names].join(', ')})`);
    encoders.forEach((encoder, i) => {
      if (!encoder.realFrames && encoder.features.type !== 'whisper-mel') {
        problems.push(`/pipeline/encoders/${i}/realFrames: a fused encoder with "${encoder.features.type}" features must say how its real frames are counted`);
      }
    });
  } else if (fusion.mainEncoder !== undefined) {
    problems.push('/pipeline/fusion/mainEncoder: only a cross-attention or perceiver fusion has a main encoder');
  }
  if (fusion.type === 'cross-attention') {
    if (fusion.lengthInput === undefined) problems.push("/pipeline/fusion/lengthInput: cross-attention needs the graph input that takes the main encoder's length");
    else if (Object.values(inputs).includes(fusion.lengthInput)) problems.push(`/pipeline/fusion/lengthInput: "${printable(fusion.lengthInput)}" is also an encoder's input`);
    if (fusion.scope === 'recording' && !('from' in fusion.tokens && fusion.tokens.from === 'adapterLengths')) {
      problems.push('/pipeline/fusion/tokens: a recording-scoped cross-attention reads max(min, max adapter length) rows: use from "adapterLengths"');
    }
  } else if (fusion.lengthInput !== undefined) {
    problems.push('/pipeline/fusion/lengthInput: only a cross-attention fusion takes a length');
  }
  if (fusion.type === 'perceiver' && fusion.scope === 'recording' && !('from' in fusion.tokens && fusion.tokens.from === 'mainLength')) {
    problems.push("/pipeline/fusion/tokens: a recording-scoped perceiver reads its leading rows and the main encoder's rows: use from \"mainLength\"");
  }
  if ('from' in fusion.tokens && fusion.tokens.from === 'mainLength' && fusion.type !== 'perceiver') {
    problems.push('/pipeline/fusion/tokens: the mainLength rule belongs to a perceiver fusion');
  }
  if (fusion.width !== llm.hiddenSize) problems.push(`/pipeline/fusion/width: ${fusion.width}, but the LLM's hiddenSize is ${llm.hiddenSize} (the audio embeddings are the LLM's inputs)`);

  if (audioBoundaries) {
    const [rows, width] = audioBoundaries.shape;
    if (rows !== 2 || width !== llm.hiddenSize) {
      problems.push(`/pipeline/audioBoundaries/shape: [${audioBoundaries.shape.join(', ')}], expected [2, ${llm.hiddenSize}] (start and end rows of llm.hiddenSize)`);
    }
    const file = manifest.files.find((f) => f.path === audioBoundaries.path);
    if (file && file.size !== 2 * llm.hiddenSize * 4) {
      problems.push(`/pipeline/audioBoundaries/path: "${printable(audioBoundaries.path)}" has ${file.size} bytes, expected ${2 * llm.hiddenSize * 4} (float32 [2, ${llm.hiddenSize}])`);
    }
  }
  if (manifest.prompt.bosTokenId !== null && manifest.prompt.bosTokenId >= llm.vocabSize) {
    problems.push(`/prompt/bosTokenId: ${manifest.prompt.bosTokenId} is outside the vocabulary (${llm.vocabSize} tokens)`);
  }
  const history = manifest.prompt.history;
  if (history) {
    if (!manifest.prompt.template.endsWith(history.generationPrompt)) {
      problems.push(`/prompt/history/generationPrompt: the template does not end with it (a follow-up cuts it off the previous prompt)`);
    }
    if (history.assistantTurn.split('{}').length !== 2) {
      problems.push(`/prompt/history/assistantTurn: needs exactly one {} for the earlier answer`);
    }
  }

  // Exactly the graphs the parts run (plus the optional probe): a missing one could not be
  // opened, an extra one would be downloaded for nothing.
  const wanted = new Set(['embedTokens', 'decoder', ...encoders.map((e) => `encoder.${e.name}`)]);
  for (const a of adapters) if (a.type !== 'identity') wanted.add(`adapter.${a.encoder}`);
  if (fusion.graph !== undefined) wanted.add(fusion.graph);
  for (const [variant, spec] of Object.entries(manifest.variants)) {
    if (!spec) continue;
    const have = Object.keys(spec.graphs);
    for (const name of wanted) if (!have.includes(name)) problems.push(`/variants/${variant}/graphs: has no "${name}" graph, which the pipeline runs`);
    for (const name of have) {
      if (name !== 'probe' && !wanted.has(name)) problems.push(`/variants/${variant}/graphs/${printable(name)}: the pipeline does not run this graph`);
    }
  }
  return problems;
}
