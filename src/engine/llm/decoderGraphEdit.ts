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
 *   `probe_hidden` is not an output. Its weights are inputs too.
 * - `weights`: where each lifted weight's bytes are in the external data files.
 * Every number either graph computes is the converter's. Why weights as inputs: onnxruntime-web
 * captures one graph per session and shares no initializers between sessions, so a captured step
 * session beside the prompt session would hold the weights twice; as inputs both bind the same
 * GPU buffers, uploaded once (BENCHMARKS.md, session 12).
 */
import { TensorType, valueInfo } from '../onnxBuilder';
import { ProtoWriter, readFields, textOf, varintsOf, type ProtoField } from '../protobufWire';

export type WeightType = 'float32' | 'float16' | 'uint8' | 'int32' | 'int64';

/** A weight the rewrite made an input: its bytes are `length` bytes at `offset` of `file`. */
export interface LiftedWeight {
  name: string;
  dtype: WeightType;
  dims: number[];
  /** The external data file, as named inside the graph (relative to the graph's folder). */
  file: string;
  offset: number;
  length: number;
}

export interface CaptureGraphs {
  prompt: Uint8Array;
  step: Uint8Array;
  weights: LiftedWeight[];
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
const STEP_DROPPED_INPUTS = new Set(['attention_mask', 'position_ids', 'num_logits_to_keep']);
const STEP_DROPPED_OUTPUTS = new Set(['probe_hidden']);

const WEIGHT_TYPES: Record<number, WeightType> = {
  [TensorType.FLOAT]: 'float32',
  [TensorType.FLOAT16]: 'float16',
  2: 'uint8',
  [TensorType.INT32]: 'int32',
  [TensorType.INT64]: 'int64',
};

// onnx.proto field numbers.
const MODEL_GRAPH = 7;
const GRAPH = { node: 1, initializer: 5, input: 11, output: 12 } as const;
const NODE_NAME = 3;
const VALUE_NAME = 1;
const TENSOR = { dims: 1, dataType: 2, name: 8, rawData: 9, externalData: 13, dataLocation: 14 } as const;
const ENTRY = { key: 1, value: 2 } as const;
const DATA_LOCATION_EXTERNAL = 1n;

function bytesOf(field: ProtoField): Uint8Array {
  if (!(field.value instanceof Uint8Array)) throw new Error(`protobuf field ${field.field} is not a message`);
  return field.value;
}

/** An external-data initializer as a lifted weight; null for one stored inside the graph. */
function externalWeight(tensor: readonly ProtoField[]): LiftedWeight | null {
  const location = varintsOf(tensor, TENSOR.dataLocation)[0];
  if (location !== DATA_LOCATION_EXTERNAL) return null;
  const name = textOf(tensor, TENSOR.name);
  const typeCode = Number(varintsOf(tensor, TENSOR.dataType)[0] ?? 0);
  const dtype = WEIGHT_TYPES[typeCode];
  if (!dtype) throw new Error(`weight ${name} has ONNX data type ${typeCode}, which no GPU buffer holds`);
  const where = new Map<string, string>();
  for (const entry of tensor.filter((f) => f.field === TENSOR.externalData)) {
    const kv = readFields(bytesOf(entry));
    where.set(textOf(kv, ENTRY.key), textOf(kv, ENTRY.value));
  }
  const file = where.get('location');
  const length = where.get('length');
  if (!file || length === undefined) throw new Error(`weight ${name} does not say where its bytes are`);
  return { name, dtype, dims: varintsOf(tensor, TENSOR.dims).map(Number), file, offset: Number(where.get('offset') ?? 0), length: Number(length) };
}

function int64Scalar(name: string, value: bigint): ProtoWriter {
  const raw = new Uint8Array(8);
  new DataView(raw.buffer).setBigInt64(0, value, true);
  return new ProtoWriter().varintField(TENSOR.dataType, TensorType.INT64).stringField(TENSOR.name, name).bytesField(TENSOR.rawData, raw);
}

/** The graph with its weights as inputs, and for the step its capture edits; null if not a converter decoder. */
function editGraph(graph: Uint8Array, step: boolean): { graph: Uint8Array; weights: LiftedWeight[] } | { reason: string } {
  const out = new ProtoWriter();
  const weights: LiftedWeight[] = [];
  const maskNodes = new Set<string>();
  for (const field of readFields(graph)) {
    if (step && field.field === GRAPH.node) {
      const name = textOf(readFields(bytesOf(field)), NODE_NAME);
      if (MASK_NODES.has(name)) {
        maskNodes.add(name);
        continue;
      }
    } else if (field.field === GRAPH.initializer) {
      const weight = externalWeight(readFields(bytesOf(field)));
      if (weight) {
        weights.push(weight);
        continue;
      }
    } else if (step && (field.field === GRAPH.input || field.field === GRAPH.output)) {
      const name = textOf(readFields(bytesOf(field)), VALUE_NAME);
      if ((field.field === GRAPH.input ? STEP_DROPPED_INPUTS : STEP_DROPPED_OUTPUTS).has(name)) continue;
    }
    out.copy(field);
  }
  if (step && maskNodes.size !== MASK_NODES.size) {
    const missing = [...MASK_NODES].filter((name) => !maskNodes.has(name));
    return { reason: `the decoder graph lacks the converter's attention-mask nodes (${missing.join(', ')})` };
  }
  // Inputs in models/capture_decoder.py's order: the lengths, then the weights.
  if (step) {
    out.messageField(GRAPH.input, valueInfo({ name: 'seqlens_k', type: TensorType.INT32, dims: ['batch_size'] }));
    out.messageField(GRAPH.input, valueInfo({ name: 'total_seq_len', type: TensorType.INT32, dims: [] }));
    out.messageField(GRAPH.initializer, int64Scalar('num_logits_to_keep', 1n));
  }
  for (const w of weights) {
    const type = Number(Object.entries(WEIGHT_TYPES).find(([, t]) => t === w.dtype)![0]);
    out.messageField(GRAPH.input, valueInfo({ name: w.name, type, dims: w.dims }));
  }
  return { graph: out.finish(), weights };
}

function withGraph(model: readonly ProtoField[], graph: Uint8Array): Uint8Array {
  const out = new ProtoWriter();
  for (const field of model) {
    if (field.field === MODEL_GRAPH) out.bytesField(MODEL_GRAPH, graph);
    else out.copy(field);
  }
  return out.finish();
}

/** The prompt and step graphs of a converted decoder (`ok: false` with the reason for any other graph). */
export function captureGraphsOf(decoder: Uint8Array): CaptureEdit {
  const model = readFields(decoder);
  const graphField = model.find((f) => f.field === MODEL_GRAPH);
  if (!graphField) return { ok: false, reason: 'the decoder file holds no graph' };
  const prompt = editGraph(bytesOf(graphField), false);
  const step = editGraph(bytesOf(graphField), true);
  if ('reason' in prompt) return { ok: false, reason: prompt.reason };
  if ('reason' in step) return { ok: false, reason: step.reason };
  if (prompt.weights.length === 0) return { ok: false, reason: 'the decoder keeps its weights inside the graph file, not in external data' };
  return { ok: true, prompt: withGraph(model, prompt.graph), step: withGraph(model, step.graph), weights: prompt.weights };
}

/** The input and output names of a graph (for tests and messages). */
export function graphInterface(model: Uint8Array): { inputs: string[]; outputs: string[]; nodes: string[] } {
  const graphField = readFields(model).find((f) => f.field === MODEL_GRAPH);
  if (!graphField) throw new Error('no graph in the model');
  const names = (field: number, nameField: number) =>
    readFields(bytesOf(graphField)).filter((f) => f.field === field).map((f) => textOf(readFields(bytesOf(f)), nameField));
  return { inputs: names(GRAPH.input, VALUE_NAME), outputs: names(GRAPH.output, VALUE_NAME), nodes: names(GRAPH.node, NODE_NAME) };
}
