/**
 * A graph's int4 weights unpacked to fp32 once, at load, for WebAssembly.
 *
 * Why: in onnxruntime-web's wasm build `MatMulNBits` takes its fallback path, which dequantizes the
 * whole weight to fp32 on every call and then runs the fp32 GEMM (ORT's matmul_nbits.cc,
 * `ComputeBUnpacked`: "TODO: move B dequant to prepack"). A decoder thus unpacks every weight again
 * for every token: medium int4 decoded ~9× slower than the same model in fp32 (BENCHMARKS.md). Each `MatMulNBits` here becomes a matrix product over the same fp32 values,
 * computed once with the kernel's own formula, `(q − zero point) × scale` in one fp32 rounding
 * (MLAS `BlockwiseQuantizer::dequantize`), so the numbers are the kernel's while the download
 * stays int4. The GEMM is then prepacked once instead of packed per call, which changes the order
 * of a few additions: logits move by a few 1e-6 (medium int4), greedy tokens stay. The cost is
 * memory: the wasm heap holds the unpacked weights (×6.4 their int4 bytes), hence a budget.
 *
 * Only what the converter writes is unpacked (4 bits, fp32 scales, uint8 zero points or none, no
 * bias or g_idx, weights that are initializers); any other `MatMulNBits` stays as it is.
 */
import { ATTRIBUTE, DATA_LOCATION_EXTERNAL, ENTRY, GRAPH, MODEL, NODE, TENSOR } from './onnxFields';
import { TensorType } from './onnxBuilder';
import { ProtoWriter, readFields, textOf, varintsOf, type ProtoField } from './protobufWire';

/** External data as onnxruntime-web takes it: bytes by the file name written in the graph. */
export interface ExternalFile {
  path: string;
  data: Uint8Array;
}

export interface UnpackPlan {
  /** `MatMulNBits` nodes that can be unpacked. */
  matmuls: number;
  /** Bytes of their fp32 weights. */
  fp32Bytes: number;
}

export interface UnpackedGraph extends UnpackPlan {
  model: Uint8Array;
  /** The given files, and one more holding the fp32 weights. */
  externalData: ExternalFile[];
}

/** Each unpacked weight starts on this boundary in the new data file. */
const ALIGN_BYTES = 64;

interface Initializer {
  field: ProtoField;
  fields: ProtoField[];
  name: string;
}

/** A `MatMulNBits` node this module can turn into a `FusedMatMul` over fp32 weights. */
interface Unpackable {
  fieldIndex: number;
  node: ProtoField[];
  a: string;
  b: Initializer;
  scales: Initializer;
  zeroPoints: Initializer | null;
  k: number;
  n: number;
  blockSize: number;
}

function bytesOf(field: ProtoField): Uint8Array {
  if (!(field.value instanceof Uint8Array)) throw new Error(`protobuf field ${field.field} is not a message`);
  return field.value;
}

function texts(fields: readonly ProtoField[], field: number): string[] {
  return fields.filter((f) => f.field === field).map((f) => new TextDecoder().decode(bytesOf(f)));
}

/** A node's integer attributes by name; `hasGraph` when one holds a subgraph. */
function attributesOf(node: readonly ProtoField[]): { ints: Map<string, number>; hasGraph: boolean } {
  const ints = new Map<string, number>();
  let hasGraph = false;
  for (const field of node.filter((f) => f.field === NODE.attribute)) {
    const attr = readFields(bytesOf(field));
    if (attr.some((f) => f.field === ATTRIBUTE.g || f.field === ATTRIBUTE.graphs)) hasGraph = true;
    const value = varintsOf(attr, ATTRIBUTE.i)[0];
    if (value !== undefined) ints.set(textOf(attr, ATTRIBUTE.name), Number(value));
  }
  return { ints, hasGraph };
}

function dataTypeOf(tensor: Initializer): number {
  return Number(varintsOf(tensor.fields, TENSOR.dataType)[0] ?? 0);
}

/** An initializer's bytes: inside the graph, or in its external data file. */
function tensorBytes(tensor: Initializer, files: ReadonlyMap<string, Uint8Array>): Uint8Array {
  if (varintsOf(tensor.fields, TENSOR.dataLocation)[0] !== DATA_LOCATION_EXTERNAL) {
    const raw = tensor.fields.find((f) => f.field === TENSOR.rawData);
    if (!raw) throw new Error(`int4 weight ${tensor.name} has no raw data`);
    return bytesOf(raw);
  }
  const where = new Map<string, string>();
  for (const entry of tensor.fields.filter((f) => f.field === TENSOR.externalData)) {
    const kv = readFields(bytesOf(entry));
    where.set(textOf(kv, ENTRY.key), textOf(kv, ENTRY.value));
  }
  const file = files.get(where.get('location') ?? '');
  if (!file) throw new Error(`int4 weight ${tensor.name} is in "${where.get('location') ?? ''}", which was not given`);
  const offset = Number(where.get('offset') ?? 0);
  const length = Number(where.get('length') ?? file.byteLength - offset);
  if (offset + length > file.byteLength) throw new Error(`int4 weight ${tensor.name} runs past the end of its data file`);
  return file.subarray(offset, offset + length);
}

interface GraphScan {
  model: ProtoField[];
  graph: ProtoField[];
  unpackable: Unpackable[];
  /** Names some other node, a graph input or a graph output still reads. */
  stillRead: Set<string>;
  /** A node holds a subgraph, whose reads of outer names are not tracked: nothing is dropped. */
  hasSubgraph: boolean;
}

function scan(modelBytes: Uint8Array): GraphScan | null {
  const model = readFields(modelBytes);
  const graphField = model.find((f) => f.field === MODEL.graph);
  if (!graphField) return null;
  const graph = readFields(bytesOf(graphField));
  const initializers = new Map<string, Initializer>();
  for (const field of graph.filter((f) => f.field === GRAPH.initializer)) {
    const fields = readFields(bytesOf(field));
    const name = textOf(fields, TENSOR.name);
    initializers.set(name, { field, fields, name });
  }
  const unpackable: Unpackable[] = [];
  const stillRead = new Set<string>();
  let hasSubgraph = false;
  graph.forEach((field, fieldIndex) => {
    if (field.field === GRAPH.input || field.field === GRAPH.output) {
      stillRead.add(textOf(readFields(bytesOf(field)), 1));
      return;
    }
    if (field.field !== GRAPH.node) return;
    const node = readFields(bytesOf(field));
    const inputs = texts(node, NODE.input);
    const { ints, hasGraph } = attributesOf(node);
    hasSubgraph ||= hasGraph;
    const found = textOf(node, NODE.opType) === 'MatMulNBits' && textOf(node, NODE.domain) === 'com.microsoft' ? unpackableOf(node, inputs, ints, initializers) : null;
    if (found) unpackable.push({ ...found, fieldIndex });
    else for (const input of inputs) stillRead.add(input);
  });
  return { model, graph, unpackable, stillRead, hasSubgraph };
}

function unpackableOf(
  node: ProtoField[],
  inputs: string[],
  ints: Map<string, number>,
  initializers: ReadonlyMap<string, Initializer>,
): Omit<Unpackable, 'fieldIndex'> | null {
  // A, B, scales and optionally zero points: a g_idx or bias input (5th, 6th) is not unpacked.
  if (inputs.length < 3 || inputs.length > 4) return null;
  const [a, bName, scalesName, zpName] = inputs as [string, string, string, string | undefined];
  const b = initializers.get(bName);
  const scales = initializers.get(scalesName);
  const zeroPoints = zpName ? initializers.get(zpName) ?? null : null;
  if (!b || !scales || (zpName && !zeroPoints)) return null;
  if (dataTypeOf(b) !== TensorType.UINT8 || dataTypeOf(scales) !== TensorType.FLOAT || (zeroPoints && dataTypeOf(zeroPoints) !== TensorType.UINT8)) return null;
  const k = ints.get('K');
  const n = ints.get('N');
  const blockSize = ints.get('block_size');
  if (ints.get('bits') !== 4 || !k || !n || !blockSize || blockSize % 2 !== 0) return null;
  return { node, a, b, scales, zeroPoints, k, n, blockSize };
}

/** What unpacking would do to a graph (nothing is dequantized): for a memory budget. */
export function int4UnpackPlan(model: Uint8Array): UnpackPlan {
  const found = scan(model)?.unpackable ?? [];
  return { matmuls: found.length, fp32Bytes: found.reduce((sum, u) => sum + 4 * u.k * u.n, 0) };
}

/**
 * Writes the weight `[N, K]` that `MatMulNBits` computes with: B is
 * `[N, blocks, blockSize / 2]` bytes, two 4-bit values per byte (low nibble first), scales
 * `[N, blocks]`, zero points two per byte along the blocks (8 where there are none).
 */
function dequantize(u: Unpackable, files: ReadonlyMap<string, Uint8Array>, out: Float32Array): void {
  const { k, n, blockSize } = u;
  const blocks = Math.ceil(k / blockSize);
  const blobBytes = blockSize / 2;
  const quant = tensorBytes(u.b, files);
  const scaleBytes = tensorBytes(u.scales, files);
  const zp = u.zeroPoints ? tensorBytes(u.zeroPoints, files) : null;
  const zpRowBytes = Math.ceil(blocks / 2);
  if (quant.byteLength !== n * blocks * blobBytes) throw new Error(`int4 weight ${u.b.name} has ${quant.byteLength} bytes, not ${n * blocks * blobBytes}`);
  if (scaleBytes.byteLength !== 4 * n * blocks) throw new Error(`int4 scales ${u.scales.name} have ${scaleBytes.byteLength} bytes, not ${4 * n * blocks}`);
  if (zp && zp.byteLength !== n * zpRowBytes) throw new Error(`int4 zero points ${u.zeroPoints!.name} have ${zp.byteLength} bytes, not ${n * zpRowBytes}`);
  // The scales may sit at any byte offset of their file: read them through a DataView.
  const scaleView = new DataView(scaleBytes.buffer, scaleBytes.byteOffset, scaleBytes.byteLength);
  // The 16 values a nibble stands for in one block. (q − zero) is exact, and its product with an
  // fp32 scale is exact in a double: storing it in a Float32Array rounds once, as the kernel's
  // fp32 multiply does.
  const values = new Float32Array(16);
  for (let col = 0; col < n; col++) {
    for (let block = 0; block < blocks; block++) {
      const scale = scaleView.getFloat32(4 * (col * blocks + block), true);
      const zero = zp ? (zp[col * zpRowBytes + (block >> 1)]! >> (4 * (block & 1))) & 0xf : 8;
      for (let q = 0; q < 16; q++) values[q] = (q - zero) * scale;
      const k0 = block * blockSize;
      const rows = Math.min(blockSize, k - k0);
      const from = (col * blocks + block) * blobBytes;
      const to = col * k + k0;
      for (let i = 0; i + 1 < rows; i += 2) {
        const byte = quant[from + (i >> 1)]!;
        out[to + i] = values[byte & 0xf]!;
        out[to + i + 1] = values[byte >> 4]!;
      }
      if (rows % 2 === 1) out[to + rows - 1] = values[quant[from + ((rows - 1) >> 1)]! & 0xf]!;
    }
  }
}

/** A name no file of `taken` has. */
function freshFileName(taken: readonly ExternalFile[]): string {
  const names = new Set(taken.map((f) => f.path));
  let name = 'hark_int4_unpacked.bin';
  for (let i = 2; names.has(name); i++) name = `hark_int4_unpacked_${i}.bin`;
  return name;
}

function externalTensor(name: string, dims: number[], file: string, offset: number, length: number): ProtoWriter {
  const tensor = new ProtoWriter();
  for (const dim of dims) tensor.varintField(TENSOR.dims, dim);
  tensor.varintField(TENSOR.dataType, TensorType.FLOAT).stringField(TENSOR.name, name);
  for (const [key, value] of [['location', file], ['offset', String(offset)], ['length', String(length)]]) {
    tensor.messageField(TENSOR.externalData, new ProtoWriter().stringField(ENTRY.key, key!).stringField(ENTRY.value, value!));
  }
  return tensor.varintField(TENSOR.dataLocation, DATA_LOCATION_EXTERNAL);
}

/**
 * The node as a `FusedMatMul` (ORT's contrib MatMul with attributes) of its input and the unpacked
 * weight, kept `[N, K]` as `MatMulNBits` keeps it and read transposed (`transB`), as the kernel's
 * own GEMM reads its dequantized copy; name and outputs as they were.
 */
function matMulNode(node: readonly ProtoField[], a: string, weight: string): ProtoWriter {
  const out = new ProtoWriter().stringField(NODE.input, a).stringField(NODE.input, weight);
  for (const field of node) if (field.field === NODE.output || field.field === NODE.name) out.copy(field);
  out.stringField(NODE.opType, 'FusedMatMul');
  out.messageField(NODE.attribute, new ProtoWriter().stringField(ATTRIBUTE.name, 'alpha').floatField(ATTRIBUTE.f, 1).varintField(ATTRIBUTE.type, 1));
  out.messageField(NODE.attribute, new ProtoWriter().stringField(ATTRIBUTE.name, 'transB').varintField(ATTRIBUTE.i, 1).varintField(ATTRIBUTE.type, 2));
  return out.stringField(NODE.domain, 'com.microsoft');
}

/**
 * The graph with every unpackable `MatMulNBits` a matrix product over fp32 weights in one new
 * external data file; null when it has none. Initializers only the rewritten nodes read are left out.
 */
export function unpackInt4(model: Uint8Array, externalData: readonly ExternalFile[]): UnpackedGraph | null {
  const found = scan(model);
  if (!found || found.unpackable.length === 0) return null;
  const files = new Map(externalData.map((f) => [f.path, f.data]));
  const file = freshFileName(externalData);
  const offsets: number[] = [];
  let size = 0;
  for (const u of found.unpackable) {
    offsets.push(size);
    size += Math.ceil((4 * u.k * u.n) / ALIGN_BYTES) * ALIGN_BYTES;
  }
  const data = new Uint8Array(size);
  const names = new Set(found.graph.filter((f) => f.field === GRAPH.initializer).map((f) => textOf(readFields(bytesOf(f)), TENSOR.name)));
  const rewritten = new Map<number, ProtoWriter>();
  const added: ProtoWriter[] = [];
  found.unpackable.forEach((u, i) => {
    dequantize(u, files, new Float32Array(data.buffer, offsets[i]!, u.k * u.n));
    let weight = `${u.b.name}/fp32`;
    for (let j = 2; names.has(weight); j++) weight = `${u.b.name}/fp32_${j}`;
    names.add(weight);
    rewritten.set(u.fieldIndex, matMulNode(u.node, u.a, weight));
    added.push(externalTensor(weight, [u.n, u.k], file, offsets[i]!, 4 * u.k * u.n));
  });
  const dropped = new Set<string>();
  if (!found.hasSubgraph) {
    for (const u of found.unpackable) {
      for (const t of [u.b, u.scales, u.zeroPoints]) if (t && !found.stillRead.has(t.name)) dropped.add(t.name);
    }
  }
  const graph = new ProtoWriter();
  found.graph.forEach((field, index) => {
    const node = rewritten.get(index);
    if (node) graph.messageField(GRAPH.node, node);
    else if (field.field === GRAPH.initializer && dropped.has(textOf(readFields(bytesOf(field)), TENSOR.name))) return;
    else graph.copy(field);
  });
  for (const tensor of added) graph.messageField(GRAPH.initializer, tensor);
  const out = new ProtoWriter();
  for (const field of found.model) {
    if (field.field === MODEL.graph) out.bytesField(MODEL.graph, graph.finish());
    else out.copy(field);
  }
  return {
    model: out.finish(),
    externalData: [...externalData, { path: file, data }],
    matmuls: found.unpackable.length,
    fp32Bytes: found.unpackable.reduce((sum, u) => sum + 4 * u.k * u.n, 0),
  };
}

/** What a load unpacked, for the device report. */
export interface UnpackTotals {
  graphs: number;
  matmuls: number;
  fp32Bytes: number;
  ms: number;
  /** Graphs left packed because their fp32 weights would pass the budget. */
  overBudget: string[];
}

/**
 * Heap bytes an unpacked weight costs per fp32 byte: onnxruntime copies the weight into the wasm
 * heap, then prepacks it for its GEMM into a second buffer, and a wasm heap never shrinks. Measured
 * on the medium decoder (517 MiB unpacked): process memory 1.52 GB with the session open, 0.46 GB
 * for the same graph packed.
 */
export const UNPACKED_HEAP_FACTOR = 2;

/**
 * Unpacks the graphs of one model load while what they cost the heap (`UNPACKED_HEAP_FACTOR` × their
 * fp32 bytes) fits `budgetBytes` in all; a graph that would pass it stays int4 (slower, but it fits).
 */
export class Int4Unpacker {
  readonly totals: UnpackTotals = { graphs: 0, matmuls: 0, fp32Bytes: 0, ms: 0, overBudget: [] };

  constructor(private readonly budgetBytes: number) {}

  /** The graph to open: unpacked when it has int4 weights within the budget, else as given. */
  apply(name: string, model: Uint8Array, externalData: ExternalFile[]): { model: Uint8Array; externalData: ExternalFile[] } {
    const started = performance.now();
    const plan = int4UnpackPlan(model);
    if (plan.matmuls === 0) return { model, externalData };
    if (UNPACKED_HEAP_FACTOR * (this.totals.fp32Bytes + plan.fp32Bytes) > this.budgetBytes) {
      this.totals.overBudget.push(name);
      return { model, externalData };
    }
    const unpacked = unpackInt4(model, externalData)!;
    this.totals.graphs += 1;
    this.totals.matmuls += unpacked.matmuls;
    this.totals.fp32Bytes += unpacked.fp32Bytes;
    this.totals.ms += performance.now() - started;
    return unpacked;
  }
}
