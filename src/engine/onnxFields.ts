/**
 * onnx.proto's field numbers for the messages the engine reads or edits at the wire level
 * (protobufWire.ts): the decoder rewrite for graph capture (llm/decoderGraphEdit.ts) and the
 * int4 weights unpacked for WebAssembly (int4Unpack.ts).
 */
export const MODEL = { graph: 7, opsetImport: 8 } as const;
export const GRAPH = { node: 1, name: 2, initializer: 5, input: 11, output: 12, valueInfo: 13 } as const;
export const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5, domain: 7 } as const;
/** AttributeProto: its name, a float, an int, a graph, graphs, and the type. */
export const ATTRIBUTE = { name: 1, f: 2, i: 3, g: 6, graphs: 11, type: 20 } as const;
export const VALUE_NAME = 1;
export const TENSOR = { dims: 1, dataType: 2, name: 8, rawData: 9, externalData: 13, dataLocation: 14 } as const;
export const ENTRY = { key: 1, value: 2 } as const;
export const OPSET = { domain: 1, version: 2 } as const;
export const DATA_LOCATION_EXTERNAL = 1n;
