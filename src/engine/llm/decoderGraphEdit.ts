/**
 * The converter's decoder graph, rewritten at load for a graph-captured decode step on WebGPU
 * (llm/capturedStep.ts). The same rewrite as models/capture_decoder.py (its reference, with
 * tests there), done here so that every bundle — including those already in a user's cache —
 * gets it without new files:
 *
 * - `prompt`: the decoder as converted, with every external-data initializer (the weights) turned
 *   into a graph input of the same name, type and shape. Prompts, scoring, beams and the probe run
 *   through it uncaptured, exactly as before.
 * - `step`: the decode step onnxruntime-web can capture — no node on the CPU, fixed shapes:
 *   GroupQueryAttention's `seqlens_k` (int32 [batch]) and `total_seq_len` (int32 []) are inputs
 *   the engine writes on the GPU (the converter computes them from `attention_mask` with shape ops
 *   ORT places on the CPU, which refuses capture); `attention_mask` and the unused `position_ids`
 *   are gone (positions follow from `seqlens_k`); `num_logits_to_keep` is the constant 1;
 *   `probe_hidden` is not an output. A head that reads the embedding table (tied embeddings, e.g.
 *   Qwen3) reshapes its rows back with a shape computed from `Shape`/`Concat`, also CPU ops: with
 *   one row kept that shape is the constant [0, 1, -1] (batch as it was, one row, vocab).
 *   Given the embedding graph, the step starts with it: it takes the token id (`input_ids`), so a
 *   generated token is one captured run instead of an uncaptured embedding run and a captured
 *   decoder run. Its weights are inputs too.
 * - `embed`: the embedding graph with its weights as inputs, for the tokens of prompts: the table is
 *   then held once on the GPU for it, the step and a tied head, which reads the same bytes.
 * - `weights`: where each lifted weight's bytes are in the external data files (or the bytes of
 *   a large tensor a small bundle keeps inside the graph file).
 * Every number these graphs compute is the converter's. Why weights as inputs: onnxruntime-web
 * captures one graph per session and shares no initializers between sessions, so a captured step
 * session beside the prompt session would hold the weights twice; as inputs both bind the same
 * GPU buffers, uploaded once (BENCHMARKS.md, session 12).
 */
import { TensorType, valueInfo } from '../onnxBuilder';
import { DATA_LOCATION_EXTERNAL, ENTRY, GRAPH, MODEL, NODE, OPSET, TENSOR, VALUE_NAME } from '../onnxFields';
import { ProtoWriter, readFields, textOf, varintsOf, type ProtoField } from '../protobufWire';

export type WeightType = 'float32' | 'float16' | 'uint8' | 'int32' | 'int64';

/** The graph a weight belongs to (its `file` is named relative to that graph's folder). */
export type WeightGraph = 'decoder' | 'embed';

/**
 * A weight the rewrite made an input: its bytes are `length` bytes at `offset` of `file`, or, for
 * a large tensor stored inside the graph file (a small bundle's embedding table), `inline`.
 */
export interface LiftedWeight {
  name: string;
  dtype: WeightType;
  dims: number[];
  graph: WeightGraph;
  /** The external data file, as named inside the graph (relative to the graph's folder); '' when inline. */
  file: string;
  offset: number;
  length: number;
  inline?: Uint8Array;
}

/** Tensors stored inside a graph file from this size on are lifted too (smaller ones are constants). */
const INLINE_WEIGHT_BYTES = 64 * 1024;

export interface CaptureGraphs {
  prompt: Uint8Array;
  step: Uint8Array;
  /** What a step is fed: the token id (the embedding graph inside the step) or its embedding row. */
  stepInput: 'input_ids' | 'inputs_embeds';
  /** The embedding graph with its weights as inputs; null when none was given or it stays as it is. */
  embed: Uint8Array | null;
  weights: LiftedWeight[];
  /** Why a given embedding graph is not inside the step (null when it is, or none was given). */
  embedNote: string | null;
}

export type CaptureEdit = ({ ok: true } & CaptureGraphs) | { ok: false; reason: string };

/** The converter's nodes that turn `attention_mask` into GroupQueryAttention's lengths (on the CPU). */
const MASK_NODES = new Set([
  '/model/attn_mask/ReduceSum',
  '/model/attn_mask/Sub',
  '/model/attn_mask/seqlens_k/Cast',
  '/model/attn_mask/Shape',
  '/model/attn_mask/Gather',
  '/model/attn_mask/total_seq_len/Cast',
]);
/** A tied head's shape ops (models/salmonn/onnx_decoder.py `_shared_head`, fp32 and fp16 only). */
const HEAD_SHAPE_NODES = new Set(['/lm_head/Shape', '/lm_head/Concat']);
/** The tied head's last node: its rows back to [batch, rows, vocab]. */
const HEAD_RESHAPE = '/lm_head/Reshape_back';
const STEP_DROPPED_INPUTS = new Set(['attention_mask', 'position_ids', 'num_logits_to_keep']);
const STEP_DROPPED_OUTPUTS = new Set(['probe_hidden']);

const WEIGHT_TYPES: Record<number, WeightType> = {
  [TensorType.FLOAT]: 'float32',
  [TensorType.FLOAT16]: 'float16',
  2: 'uint8',
  [TensorType.INT32]: 'int32',
  [TensorType.INT64]: 'int64',
};


function bytesOf(field: ProtoField): Uint8Array {
  if (!(field.value instanceof Uint8Array)) throw new Error(`protobuf field ${field.field} is not a message`);
  return field.value;
}

/** The name a node, value info or tensor field carries. */
function nameOf(field: ProtoField): string {
  const inner = readFields(bytesOf(field));
  if (field.field === GRAPH.node) return textOf(inner, NODE.name);
  return textOf(inner, field.field === GRAPH.initializer ? TENSOR.name : VALUE_NAME);
}

/** An initializer as a lifted weight: one in external data, or a large one inside the graph; null for any other. */
function liftedWeight(tensor: readonly ProtoField[], graph: WeightGraph): LiftedWeight | null {
  const name = textOf(tensor, TENSOR.name);
  const typeCode = Number(varintsOf(tensor, TENSOR.dataType)[0] ?? 0);
  const dtype = WEIGHT_TYPES[typeCode];
  const dims = varintsOf(tensor, TENSOR.dims).map(Number);
  const location = varintsOf(tensor, TENSOR.dataLocation)[0];
  if (location !== DATA_LOCATION_EXTERNAL) {
    const raw = tensor.find((f) => f.field === TENSOR.rawData);
    if (!dtype || !raw || bytesOf(raw).byteLength < INLINE_WEIGHT_BYTES) return null;
    const inline = bytesOf(raw);
    return { name, dtype, dims, graph, file: '', offset: 0, length: inline.byteLength, inline };
  }
  if (!dtype) throw new Error(`weight ${name} has ONNX data type ${typeCode}, which no GPU buffer holds`);
  const where = new Map<string, string>();
  for (const entry of tensor.filter((f) => f.field === TENSOR.externalData)) {
    const kv = readFields(bytesOf(entry));
    where.set(textOf(kv, ENTRY.key), textOf(kv, ENTRY.value));
  }
  const file = where.get('location');
  const length = where.get('length');
  if (!file || length === undefined) throw new Error(`weight ${name} does not say where its bytes are`);
  return { name, dtype, dims, graph, file, offset: Number(where.get('offset') ?? 0), length: Number(length) };
}

/** An int64 initializer of `values` (a scalar when `dims` is empty). */
function int64Tensor(name: string, values: readonly bigint[], dims: readonly number[]): ProtoWriter {
  const raw = new Uint8Array(8 * values.length);
  values.forEach((value, i) => new DataView(raw.buffer).setBigInt64(8 * i, value, true));
  const tensor = new ProtoWriter();
  for (const dim of dims) tensor.varintField(TENSOR.dims, dim);
  return tensor.varintField(TENSOR.dataType, TensorType.INT64).stringField(TENSOR.name, name).bytesField(TENSOR.rawData, raw);
}

/** A node of `op` from `inputs` to `outputs`, named `name` (default domain, no attributes). */
function plainNode(op: string, name: string, inputs: readonly string[], outputs: readonly string[]): ProtoWriter {
  const node = new ProtoWriter();
  for (const input of inputs) node.stringField(NODE.input, input);
  for (const output of outputs) node.stringField(NODE.output, output);
  return node.stringField(NODE.name, name).stringField(NODE.opType, op);
}

/** A node as it was but for its outputs. */
function withOutputs(node: readonly ProtoField[], outputs: readonly string[]): ProtoWriter {
  const out = new ProtoWriter();
  let written = false;
  for (const field of node) {
    if (field.field !== NODE.output) {
      out.copy(field);
    } else if (!written) {
      for (const output of outputs) out.stringField(NODE.output, output);
      written = true;
    }
  }
  return out;
}

interface EditedGraph {
  graph: Uint8Array;
  weights: LiftedWeight[];
}

/** The graph with its weights as inputs, and for the step its capture edits; a reason if not a converter decoder. */
function editGraph(graph: Uint8Array, which: WeightGraph, step: boolean): EditedGraph | { reason: string } {
  const out = new ProtoWriter();
  const weights: LiftedWeight[] = [];
  const maskNodes = new Set<string>();
  const headNodes = new Map<string, readonly ProtoField[]>();
  for (const field of readFields(graph)) {
    if (step && field.field === GRAPH.node) {
      const node = readFields(bytesOf(field));
      const name = textOf(node, NODE.name);
      if (MASK_NODES.has(name)) {
        maskNodes.add(name);
        continue;
      }
      if (HEAD_SHAPE_NODES.has(name)) {
        headNodes.set(name, node);
        continue;
      }
      if (name === HEAD_RESHAPE && textOf(node, NODE.output) === 'logits') {
        // A graph output written by a Reshape is a buffer copy, which ORT leaves out of the
        // captured commands: replays would return the first run's logits (measured on the tiny
        // ALARM decoder). The reshape writes an inner tensor; `logits` comes from a kernel (+ 0).
        out.messageField(GRAPH.node, withOutputs(node, [`${HEAD_RESHAPE}/output_0`]));
        out.messageField(GRAPH.node, plainNode('Add', '/lm_head/write_logits', [`${HEAD_RESHAPE}/output_0`, '/lm_head/zero'], ['logits']));
        out.messageField(GRAPH.initializer, new ProtoWriter().varintField(TENSOR.dataType, TensorType.FLOAT).stringField(TENSOR.name, '/lm_head/zero').bytesField(TENSOR.rawData, new Uint8Array(4)));
        continue;
      }
    } else if (field.field === GRAPH.initializer) {
      const weight = liftedWeight(readFields(bytesOf(field)), which);
      if (weight) {
        weights.push(weight);
        continue;
      }
    } else if (step && (field.field === GRAPH.input || field.field === GRAPH.output)) {
      if ((field.field === GRAPH.input ? STEP_DROPPED_INPUTS : STEP_DROPPED_OUTPUTS).has(nameOf(field))) continue;
    }
    out.copy(field);
  }
  if (step && maskNodes.size !== MASK_NODES.size) {
    const missing = [...MASK_NODES].filter((name) => !maskNodes.has(name));
    return { reason: `the decoder graph lacks the converter's attention-mask nodes (${missing.join(', ')})` };
  }
  if (step && headNodes.size === 1) return { reason: `the decoder graph's tied head has ${[...headNodes.keys()][0]} without its partner` };
  // Inputs in models/capture_decoder.py's order: the lengths, then the weights.
  if (step) {
    out.messageField(GRAPH.input, valueInfo({ name: 'seqlens_k', type: TensorType.INT32, dims: ['batch_size'] }));
    out.messageField(GRAPH.input, valueInfo({ name: 'total_seq_len', type: TensorType.INT32, dims: [] }));
    out.messageField(GRAPH.initializer, int64Tensor('num_logits_to_keep', [1n], []));
    const concat = headNodes.get('/lm_head/Concat');
    // The head's rows back to [batch, 1, vocab]: one row kept, so no shape op is needed.
    if (concat) out.messageField(GRAPH.initializer, int64Tensor(textOf(concat, NODE.output), [0n, 1n, -1n], [3]));
  }
  for (const w of weights) {
    const type = Number(Object.entries(WEIGHT_TYPES).find(([, t]) => t === w.dtype)![0]);
    out.messageField(GRAPH.input, valueInfo({ name: w.name, type, dims: w.dims }));
  }
  return { graph: out.finish(), weights };
}

/** Every name a graph gives a node, an initializer, an input or a node's output. */
function namesIn(fields: readonly ProtoField[]): Set<string> {
  const names = new Set<string>();
  for (const field of fields) {
    if (field.field === GRAPH.node) {
      const node = readFields(bytesOf(field));
      names.add(`node:${textOf(node, NODE.name)}`);
      for (const output of node.filter((f) => f.field === NODE.output)) names.add(new TextDecoder().decode(bytesOf(output)));
    } else if (field.field === GRAPH.initializer || field.field === GRAPH.input) {
      names.add(nameOf(field));
    }
  }
  return names;
}

/**
 * The step graph with the embedding graph in front of it: `input_ids` in place of
 * `inputs_embeds`, the embedding's nodes first (topological order), its initializers and weight
 * inputs added. A reason instead where the two graphs do not fit together.
 */
function withEmbedding(step: Uint8Array, embed: Uint8Array): Uint8Array | { reason: string } {
  const stepFields = readFields(step);
  const embedFields = readFields(embed);
  const embedOutputs = embedFields.filter((f) => f.field === GRAPH.output).map(nameOf);
  if (embedOutputs.join() !== 'inputs_embeds') return { reason: `the embedding graph's outputs are ${embedOutputs.join(', ') || 'none'}, not inputs_embeds` };
  const stepNames = namesIn(stepFields);
  const clash = [...namesIn(embedFields)].find((name) => name !== 'inputs_embeds' && stepNames.has(name));
  if (clash) return { reason: `the embedding and decoder graphs both name "${clash.replace(/^node:/, '')}"` };
  const out = new ProtoWriter();
  let nodesWritten = false;
  for (const field of stepFields) {
    if (field.field === GRAPH.node && !nodesWritten) {
      for (const node of embedFields.filter((f) => f.field === GRAPH.node)) out.copy(node);
      nodesWritten = true;
    }
    if (field.field === GRAPH.input && nameOf(field) === 'inputs_embeds') {
      for (const input of embedFields.filter((f) => f.field === GRAPH.input)) out.copy(input);
      continue;
    }
    out.copy(field);
  }
  for (const field of embedFields) if (field.field === GRAPH.initializer || field.field === GRAPH.valueInfo) out.copy(field);
  return out.finish();
}

/** domain → version of a model's operator sets. */
function opsetsOf(model: readonly ProtoField[]): Map<string, bigint> {
  const opsets = new Map<string, bigint>();
  for (const field of model.filter((f) => f.field === MODEL.opsetImport)) {
    const opset = readFields(bytesOf(field));
    opsets.set(textOf(opset, OPSET.domain), varintsOf(opset, OPSET.version)[0] ?? 0n);
  }
  return opsets;
}

function withGraph(model: readonly ProtoField[], graph: Uint8Array): Uint8Array {
  const out = new ProtoWriter();
  for (const field of model) {
    if (field.field === MODEL.graph) out.bytesField(MODEL.graph, graph);
    else out.copy(field);
  }
  return out.finish();
}

function graphOf(model: readonly ProtoField[]): Uint8Array | null {
  const field = model.find((f) => f.field === MODEL.graph);
  return field ? bytesOf(field) : null;
}

/** The embedding graph lifted and joined to the step, or why it stays apart (the step then takes rows). */
function joinEmbedding(decoderModel: readonly ProtoField[], step: Uint8Array, embedBytes: Uint8Array):
  { embed: Uint8Array; step: Uint8Array; weights: LiftedWeight[] } | { reason: string } {
  const embedModel = readFields(embedBytes);
  const graph = graphOf(embedModel);
  if (!graph) return { reason: 'the embedding file holds no graph' };
  const decoderOpsets = opsetsOf(decoderModel);
  for (const [domain, version] of opsetsOf(embedModel)) {
    if (decoderOpsets.get(domain) !== version) return { reason: `the embedding graph imports ${domain || 'ai.onnx'} ${version}, the decoder ${decoderOpsets.get(domain) ?? 'none'}` };
  }
  const lifted = editGraph(graph, 'embed', false);
  if ('reason' in lifted) return lifted;
  const joined = withEmbedding(step, lifted.graph);
  if (!(joined instanceof Uint8Array)) return joined;
  return { embed: withGraph(embedModel, lifted.graph), step: joined, weights: lifted.weights };
}

/**
 * The prompt and step graphs of a converted decoder (`ok: false` with the reason for any other
 * graph); given its embedding graph, the step takes token ids and `embed` is that graph lifted.
 */
export function captureGraphsOf(decoder: Uint8Array, embedTokens?: Uint8Array): CaptureEdit {
  const model = readFields(decoder);
  const graph = graphOf(model);
  if (!graph) return { ok: false, reason: 'the decoder file holds no graph' };
  const prompt = editGraph(graph, 'decoder', false);
  const step = editGraph(graph, 'decoder', true);
  if ('reason' in prompt) return { ok: false, reason: prompt.reason };
  if ('reason' in step) return { ok: false, reason: step.reason };
  if (!prompt.weights.some((w) => !w.inline)) return { ok: false, reason: 'the decoder keeps its weights inside the graph file, not in external data' };
  const joined = embedTokens ? joinEmbedding(model, step.graph, embedTokens) : null;
  if (joined && !('reason' in joined)) {
    return {
      ok: true,
      prompt: withGraph(model, prompt.graph),
      step: withGraph(model, joined.step),
      stepInput: 'input_ids',
      embed: joined.embed,
      weights: [...prompt.weights, ...joined.weights],
      embedNote: null,
    };
  }
  return {
    ok: true,
    prompt: withGraph(model, prompt.graph),
    step: withGraph(model, step.graph),
    stepInput: 'inputs_embeds',
    embed: null,
    weights: prompt.weights,
    embedNote: joined ? joined.reason : null,
  };
}

/** The input and output names of a graph (for tests and messages). */
export function graphInterface(model: Uint8Array): { inputs: string[]; outputs: string[]; nodes: string[] } {
  const graph = graphOf(readFields(model));
  if (!graph) throw new Error('no graph in the model');
  const fields = readFields(graph);
  const names = (field: number) => fields.filter((f) => f.field === field).map(nameOf);
  return { inputs: names(GRAPH.input), outputs: names(GRAPH.output), nodes: names(GRAPH.node) };
}
