/**
 * Builds small ONNX models as protobuf bytes in TypeScript, so the engine's self-checks (see
 * llm/attentionCheck.ts) and the smoke tests need no files and no Python. Only the handful of
 * protobuf fields these small graphs use are encoded (field numbers from onnx.proto3); the real
 * model graphs come from the Python exporter under models/.
 */

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

class ProtoWriter {
  private chunks: number[] = [];

  varintField(field: number, value: number | bigint): this {
    this.key(field, WIRE_VARINT);
    this.varint(BigInt(value));
    return this;
  }

  floatField(field: number, value: number): this {
    this.key(field, WIRE_FIXED32);
    const bytes = new Uint8Array(new Float32Array([value]).buffer);
    this.chunks.push(...bytes);
    return this;
  }

  bytesField(field: number, bytes: Uint8Array): this {
    this.key(field, WIRE_LEN);
    this.varint(BigInt(bytes.length));
    for (const b of bytes) this.chunks.push(b);
    return this;
  }

  stringField(field: number, value: string): this {
    return this.bytesField(field, new TextEncoder().encode(value));
  }

  messageField(field: number, message: ProtoWriter): this {
    return this.bytesField(field, message.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }

  private key(field: number, wire: number): void {
    this.varint(BigInt((field << 3) | wire));
  }

  private varint(value: bigint): void {
    // Negative int64 values are encoded as 10-byte two's complement varints.
    let v = value < 0n ? (1n << 64n) + value : value;
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) byte |= 0x80;
      this.chunks.push(byte);
    } while (v > 0n);
  }
}

export const TensorType = { FLOAT: 1, INT32: 6, INT64: 7, FLOAT16: 10 } as const;

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
  data: Float32Array;
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

function valueInfo(spec: ValueSpec): ProtoWriter {
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
  w.varintField(2, TensorType.FLOAT).stringField(8, spec.name);
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
