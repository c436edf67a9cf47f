/**
 * Protocol Buffers at the wire level: what the engine needs to build small ONNX graphs
 * (onnxBuilder.ts) and to edit a few fields of a converted one (llm/decoderGraphEdit.ts) while
 * every other field is copied byte for byte.
 *
 * Why by hand: a schema-driven library (protobufjs with onnx.proto) would decode and re-encode
 * the whole model, and adds a schema and a codec to the worker bundle for two dozen lines of
 * varints. Field numbers are onnx.proto's.
 */

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_FIXED32 = 5;

/** One field of a message: its number, wire type, value, and where its bytes (key included) are. */
export interface ProtoField {
  field: number;
  wire: number;
  /** A varint's value, or the bytes of a length-delimited field (a view into the message). */
  value: bigint | Uint8Array;
  /** The whole field as it was encoded (key and value), for copying it unchanged. */
  raw: Uint8Array;
}

function readVarint(bytes: Uint8Array, at: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (;;) {
    if (at >= bytes.length) throw new Error('truncated protobuf varint');
    const byte = bytes[at++]!;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [value, at];
    shift += 7n;
  }
}

/** The fields of one message, in order. Groups (wire types 3 and 4, unused by ONNX) are refused. */
export function readFields(bytes: Uint8Array): ProtoField[] {
  const fields: ProtoField[] = [];
  let at = 0;
  while (at < bytes.length) {
    const start = at;
    const [key, afterKey] = readVarint(bytes, at);
    at = afterKey;
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    let value: bigint | Uint8Array;
    if (wire === WIRE_VARINT) {
      [value, at] = readVarint(bytes, at);
    } else if (wire === WIRE_LEN) {
      const [length, afterLength] = readVarint(bytes, at);
      at = afterLength + Number(length);
      if (at > bytes.length) throw new Error('truncated protobuf field');
      value = bytes.subarray(afterLength, at);
    } else if (wire === WIRE_FIXED64 || wire === WIRE_FIXED32) {
      const size = wire === WIRE_FIXED64 ? 8 : 4;
      value = bytes.subarray(at, at + size);
      at += size;
    } else {
      throw new Error(`protobuf wire type ${wire} is not supported`);
    }
    fields.push({ field, wire, value, raw: bytes.subarray(start, at) });
  }
  return fields;
}

/** A length-delimited field's bytes as UTF-8 text. */
export function fieldText(field: ProtoField): string {
  if (!(field.value instanceof Uint8Array)) throw new Error(`protobuf field ${field.field} is not a string`);
  return new TextDecoder().decode(field.value);
}

/** The first `field` of a message as text ('' when absent: proto's default). */
export function textOf(fields: readonly ProtoField[], field: number): string {
  const found = fields.find((f) => f.field === field);
  return found ? fieldText(found) : '';
}

/** Every value of a repeated integer field, packed or not. */
export function varintsOf(fields: readonly ProtoField[], field: number): bigint[] {
  const values: bigint[] = [];
  for (const f of fields) {
    if (f.field !== field) continue;
    if (typeof f.value === 'bigint') {
      values.push(f.value);
    } else {
      // A packed repeated field: varints back to back.
      for (let at = 0; at < f.value.length; ) {
        const [value, next] = readVarint(f.value, at);
        values.push(value);
        at = next;
      }
    }
  }
  return values;
}

export class ProtoWriter {
  /** Finished pieces: copied fields and values are kept as views, not byte by byte. */
  private parts: Uint8Array[] = [];
  /** Keys, varints and other small bytes not yet made a piece. */
  private pending: number[] = [];

  varintField(field: number, value: number | bigint): this {
    this.key(field, WIRE_VARINT);
    this.varint(BigInt(value));
    return this;
  }

  floatField(field: number, value: number): this {
    this.key(field, WIRE_FIXED32);
    const bytes = new Uint8Array(new Float32Array([value]).buffer);
    this.pending.push(...bytes);
    return this;
  }

  bytesField(field: number, bytes: Uint8Array): this {
    this.key(field, WIRE_LEN);
    this.varint(BigInt(bytes.length));
    this.piece(bytes);
    return this;
  }

  stringField(field: number, value: string): this {
    return this.bytesField(field, new TextEncoder().encode(value));
  }

  messageField(field: number, message: ProtoWriter): this {
    return this.bytesField(field, message.finish());
  }

  /** A field read elsewhere, copied as it was encoded. */
  copy(field: ProtoField): this {
    this.piece(field.raw);
    return this;
  }

  finish(): Uint8Array {
    this.flush();
    const out = new Uint8Array(this.parts.reduce((sum, part) => sum + part.byteLength, 0));
    let at = 0;
    for (const part of this.parts) {
      out.set(part, at);
      at += part.byteLength;
    }
    return out;
  }

  /** Bytes kept as a view (the caller must not change them before `finish`). */
  private piece(bytes: Uint8Array): void {
    if (bytes.byteLength < 64) {
      for (const b of bytes) this.pending.push(b);
      return;
    }
    this.flush();
    this.parts.push(bytes);
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    this.parts.push(Uint8Array.from(this.pending));
    this.pending = [];
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
      this.pending.push(byte);
    } while (v > 0n);
  }
}
