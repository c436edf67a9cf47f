/** The engine's ONNX builder, re-exported for tests that build small graphs (one implementation). */
export { buildOnnxModel, TensorType, type GraphSpec, type InitializerSpec, type NodeSpec, type ValueSpec } from '../../src/engine/onnxBuilder';
