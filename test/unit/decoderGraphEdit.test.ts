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
const ALARM_ONNX = new URL('../../models/bundles/alarm-tiny/onnx/', import.meta.url);
const read = (file: string, folder = ONNX) => new Uint8Array(readFileSync(new URL(file, folder)));
const ITEM_BYTES = { float32: 4, float16: 2, uint8: 1, int32: 4, int64: 8 } as const;

describe('decoder graph edit for captured steps', () => {
  for (const suffix of ['', '_q4', '_fp16']) {
    it(`tiny decoder${suffix}: a prompt graph and a step graph with the weights as inputs`, () => {
      const original = new Uint8Array(readFileSync(new URL(`decoder_model_merged${suffix}.onnx`, ONNX)));
      const edit = captureGraphsOf(original);
      if (!edit.ok) throw new Error(edit.reason);
      expect(edit).toMatchObject({ stepInput: 'inputs_embeds', embed: null, embedNote: null });
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
        expect(w.graph).toBe('decoder');
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

  for (const suffix of ['', '_q4']) {
    it(`tiny decoder${suffix} with its embedding graph: the step takes token ids, the embedding graph its weights as inputs`, () => {
      const decoder = read(`decoder_model_merged${suffix}.onnx`);
      const embedBytes = read(`embed_tokens${suffix}.onnx`);
      const edit = captureGraphsOf(decoder, embedBytes);
      if (!edit.ok) throw new Error(edit.reason);
      expect(edit.stepInput).toBe('input_ids');
      expect(edit.embedNote).toBeNull();
      const plain = captureGraphsOf(decoder);
      if (!plain.ok) throw new Error(plain.reason);
      const before = graphInterface(embedBytes);
      const embed = graphInterface(edit.embed!);
      const embedWeights = edit.weights.filter((w) => w.graph === 'embed').map((w) => w.name);
      // This bundle keeps its (small) tables inside the graph file: the large ones are lifted with their bytes.
      expect(embedWeights.length).toBeGreaterThan(0);
      for (const w of edit.weights.filter((w) => w.graph === 'embed')) {
        expect(w.inline?.byteLength).toBe(w.dims.reduce((a, b) => a * b, 1) * ITEM_BYTES[w.dtype]);
      }
      expect(embed.inputs).toEqual([...before.inputs, ...embedWeights]);
      expect(embed.outputs).toEqual(['inputs_embeds']);
      expect(embed.nodes).toEqual(before.nodes);
      // The step: the embedding's nodes, then the step's; input_ids where inputs_embeds was.
      const rowsStep = graphInterface(plain.step);
      const step = graphInterface(edit.step);
      expect(step.nodes).toEqual([...before.nodes, ...rowsStep.nodes]);
      expect(step.inputs).toEqual(rowsStep.inputs.flatMap((name) => (name === 'inputs_embeds' ? embed.inputs : [name])));
      expect(step.outputs).toEqual(rowsStep.outputs);
      expect(edit.weights.filter((w) => w.graph === 'decoder')).toEqual(plain.weights);
    });
  }

  it("the tiny ALARM decoder (tied head): no shape op left, logits written by a kernel, the table's bytes named by both graphs", () => {
    const decoder = read('decoder_model_merged.onnx', ALARM_ONNX);
    const embedBytes = read('embed_tokens.onnx', ALARM_ONNX);
    const edit = captureGraphsOf(decoder, embedBytes);
    if (!edit.ok) throw new Error(edit.reason);
    const before = graphInterface(decoder).nodes;
    const prompt = graphInterface(edit.prompt).nodes;
    const step = graphInterface(edit.step).nodes;
    expect(before).toEqual(expect.arrayContaining(['/lm_head/Shape', '/lm_head/Concat', '/lm_head/Reshape_back']));
    expect(prompt).toEqual(before); // prompts keep the converter's head
    expect(step).not.toContain('/lm_head/Shape');
    expect(step).not.toContain('/lm_head/Concat');
    expect(step.slice(-3)).toEqual(['/lm_head/Gemm', '/lm_head/Reshape_back', '/lm_head/write_logits']);
    const head = edit.weights.find((w) => w.name === 'lm_head.shared_weight')!;
    const table = edit.weights.find((w) => w.name === 'model.embed_tokens.weight')!;
    expect(head).toMatchObject({ graph: 'decoder', file: 'embed_tokens.onnx_data' });
    expect(table).toMatchObject({ graph: 'embed', file: 'embed_tokens.onnx_data', offset: head.offset, length: head.length });
  });

  it('keeps the step fed embedding rows when the embedding graph cannot join it, saying why', () => {
    const decoder = read('decoder_model_merged.onnx');
    const edit = captureGraphsOf(decoder, decoder);
    if (!edit.ok) throw new Error(edit.reason);
    expect(edit).toMatchObject({ stepInput: 'inputs_embeds', embed: null });
    expect(edit.embedNote).toMatch(/^the embedding graph's outputs are logits, present\.0\.key/);
  });

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
