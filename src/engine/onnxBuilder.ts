/**
 * Builds small ONNX models as protobuf bytes in TypeScript, so the engine's self-checks (see
 * llm/attentionCheck.ts) and the smoke tests need no files and no Python. Only the handful of
 * protobuf fields these small graphs use are encoded (field numbers from onnx.proto3); the real
 * model graphs come from the Python exporter under models/.
 */

import { ProtoWriter } from './protobufWire';

export const TensorType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, FLOAT16: 10 } as const;

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  domain?: string;
  attributes?: Record<string, number | number[]>;
}

export interface ValueSpec {
  name: string;
  type: number;
  dims: (number | string)[];
}

export interface InitializerSpec {
  name: string;
  dims: number[];
  /** fp32 values, or uint8 ones (e.g. packed int4 weights). */
  data: Float32Array | Uint8Array;
}

export interface GraphSpec {
  nodes: NodeSpec[];
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  initializers: InitializerSpec[];
  opset?: number;
  /** Opsets of other operator domains the nodes use, e.g. `{ 'com.microsoft': 1 }`. */
  domains?: Record<string, number>;
  /** The graph's name inside the model. */
  name?: string;
}

function attribute(name: string, value: number | number[]): ProtoWriter {
  const attr = new ProtoWriter().stringField(1, name);
  if (Array.isArray(value)) {
    for (const v of value) attr.varintField(8, v);
    return attr.varintField(20, 7); // INTS
  }
  if (Number.isInteger(value)) return attr.varintField(3, value).varintField(20, 2); // INT
  return attr.floatField(2, value).varintField(20, 1); // FLOAT
}

function node(spec: NodeSpec, index: number): ProtoWriter {
  const w = new ProtoWriter();
  for (const input of spec.inputs) w.stringField(1, input);
  for (const output of spec.outputs) w.stringField(2, output);
  w.stringField(3, `${spec.op}_${index}`).stringField(4, spec.op);
  for (const [name, value] of Object.entries(spec.attributes ?? {})) w.messageField(5, attribute(name, value));
  if (spec.domain) w.stringField(7, spec.domain);
  return w;
}

/** A graph input's or output's declaration (ValueInfoProto). */
export function valueInfo(spec: ValueSpec): ProtoWriter {
  const shape = new ProtoWriter();
  for (const dim of spec.dims) {
    const d = new ProtoWriter();
    if (typeof dim === 'number') d.varintField(1, dim);
    else d.stringField(2, dim);
    shape.messageField(1, d);
  }
  const tensorType = new ProtoWriter().varintField(1, spec.type).messageField(2, shape);
  const type = new ProtoWriter().messageField(1, tensorType);
  return new ProtoWriter().stringField(1, spec.name).messageField(2, type);
}

function initializer(spec: InitializerSpec): ProtoWriter {
  const w = new ProtoWriter();
  for (const dim of spec.dims) w.varintField(1, dim);
  w.varintField(2, spec.data instanceof Uint8Array ? TensorType.UINT8 : TensorType.FLOAT).stringField(8, spec.name);
  return w.bytesField(9, new Uint8Array(spec.data.buffer, spec.data.byteOffset, spec.data.byteLength));
}

export function buildOnnxModel(spec: GraphSpec): Uint8Array {
  const graph = new ProtoWriter();
  spec.nodes.forEach((n, i) => graph.messageField(1, node(n, i)));
  graph.stringField(2, spec.name ?? 'hark_graph');
  for (const init of spec.initializers) graph.messageField(5, initializer(init));
  for (const input of spec.inputs) graph.messageField(11, valueInfo(input));
  for (const output of spec.outputs) graph.messageField(12, valueInfo(output));
  const model = new ProtoWriter()
    .varintField(1, 8) // ir_version 8 (opset 17 era)
    .stringField(2, 'hark')
    .messageField(7, graph)
    .messageField(8, new ProtoWriter().stringField(1, '').varintField(2, spec.opset ?? 17));
  for (const [domain, version] of Object.entries(spec.domains ?? {})) {
    model.messageField(8, new ProtoWriter().stringField(1, domain).varintField(2, version));
  }
  return model.finish();
}
