/**
 * The load-time rewrite of a converted decoder for graph-captured steps (llm/decoderGraphEdit.ts):
 * what the prompt and step graphs take and give, and where every lifted weight's bytes are. The
 * numbers they compute are checked on WebGPU in test/browser/kvCache.test.ts (captured steps
 * bit-identical to ordinary ones) and by the WebGPU engine parity tests, which run them.
 */
import { readFileSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { captureGraphsOf, graphInterface } from '../../src/engine/llm/decoderGraphEdit';
import { buildOnnxModel, TensorType } from '../../src/engine/onnxBuilder';

const ONNX = new URL('../../models/bundles/salmonn-tiny/onnx/', import.meta.url);
const ITEM_BYTES = { float32: 4, float16: 2, uint8: 1, int32: 4, int64: 8 } as const;

describe('decoder graph edit for captured steps', () => {
  for (const suffix of ['', '_q4', '_fp16']) {
    it(`tiny decoder${suffix}: a prompt graph and a step graph with the weights as inputs`, () => {
      const original = new Uint8Array(readFileSync(new URL(`decoder_model_merged${suffix}.onnx`, ONNX)));
      const edit = captureGraphsOf(original);
      if (!edit.ok) throw new Error(edit.reason);
      const before = graphInterface(original);
      const prompt = graphInterface(edit.prompt);
      const step = graphInterface(edit.step);
      const weightNames = edit.weights.map((w) => w.name);

      // The prompt graph: every input, output and node as converted, plus the weights as inputs.
      expect(prompt.inputs).toEqual([...before.inputs, ...weightNames]);
      expect(prompt.outputs).toEqual(before.outputs);
      expect(prompt.nodes).toEqual(before.nodes);

      // The step graph: lengths instead of the mask, one row of logits, no probe output.
      expect(before.inputs).toEqual(expect.arrayContaining(['attention_mask', 'position_ids', 'num_logits_to_keep']));
      const kept = before.inputs.filter((name) => !['attention_mask', 'position_ids', 'num_logits_to_keep'].includes(name));
      expect(step.inputs).toEqual([...kept, 'seqlens_k', 'total_seq_len', ...weightNames]);
      expect(before.outputs).toContain('probe_hidden');
      expect(step.outputs).toEqual(before.outputs.filter((name) => name !== 'probe_hidden'));
      expect(step.nodes.filter((name) => name.startsWith('/model/attn_mask/'))).toEqual([]);
      expect(step.nodes).toEqual(before.nodes.filter((name) => !name.startsWith('/model/attn_mask/')));
      expect(before.nodes.length - step.nodes.length).toBe(6);

      // Every weight's bytes: its type and shape's size, inside the data file, no two overlapping.
      const dataFile = `decoder_model_merged${suffix}.onnx_data`;
      const size = statSync(new URL(dataFile, ONNX)).size;
      const spans = edit.weights.map((w) => {
        expect(w.file).toBe(dataFile);
        expect(w.length).toBe(w.dims.reduce((a, b) => a * b, 1) * ITEM_BYTES[w.dtype]);
        expect(w.offset + w.length).toBeLessThanOrEqual(size);
        return [w.offset, w.offset + w.length] as const;
      });
      spans.sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
      expect(edit.weights.length).toBeGreaterThan(10);
    });
  }

  it('refuses a graph our converter did not make, saying why', () => {
    const model = buildOnnxModel({
      nodes: [{ op: 'Add', inputs: ['x', 'x'], outputs: ['y'] }],
      inputs: [{ name: 'x', type: TensorType.FLOAT, dims: [2] }],
      outputs: [{ name: 'y', type: TensorType.FLOAT, dims: [2] }],
      initializers: [],
    });
    const edit = captureGraphsOf(model);
    expect(edit.ok).toBe(false);
    if (!edit.ok) expect(edit.reason).toMatch(/lacks the converter's attention-mask nodes \(\/model\/attn_mask\/ReduceSum/);
  });
});
