/**
 * The prefill attention self-check (src/engine/llm/attentionCheck.ts) on onnxruntime-web's wasm
 * backend in Node, whose GroupQueryAttention is exact for any number of new tokens: the check must
 * say so, its graph must compute what the float64 reference of causal GQA computes, and chunks
 * fed with their past must give the same. (On
 * SwiftShader's WebGPU it must say the opposite: test/browser/engine.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import {
  attentionCheckGraph,
  attentionCheckInputs,
  checkPrefillAttention,
  CHECK_NEW_TOKENS,
  describeAttentionCheck,
  referenceAttention,
  relativeDifference,
  type AttentionCheckResult,
} from '../../src/engine/llm/attentionCheck';
import { WEBGPU_ATTENTION_CHUNK } from '../../src/engine/llm/decoder';
import { ort, sessionOptions } from '../../src/engine/ortRuntime';

const GQA = { numHeads: 4, numKvHeads: 2, headDim: 32 };

describe('attention self-check on wasm', () => {
  it('the check graph matches a float64 reference of causal grouped-query attention', async () => {
    const n = 7;
    const inputs = attentionCheckInputs(GQA, n);
    const session = await ort.InferenceSession.create(attentionCheckGraph(GQA), sessionOptions('wasm'));
    try {
      const empty = () => new ort.Tensor('float32', new Float32Array(0), [1, GQA.numKvHeads, 0, GQA.headDim]);
      const { output, present_key } = await session.run({
        query: new ort.Tensor('float32', inputs.query, [1, n, GQA.numHeads * GQA.headDim]),
        key: new ort.Tensor('float32', inputs.key, [1, n, GQA.numKvHeads * GQA.headDim]),
        value: new ort.Tensor('float32', inputs.value, [1, n, GQA.numKvHeads * GQA.headDim]),
        past_key: empty(),
        past_value: empty(),
        seqlens_k: new ort.Tensor('int32', Int32Array.of(n - 1), [1]),
        total_sequence_length: new ort.Tensor('int32', Int32Array.of(n), []),
      });
      expect(present_key!.dims).toEqual([1, GQA.numKvHeads, n, GQA.headDim]);
      expect(relativeDifference((await output!.getData()) as Float32Array, referenceAttention(GQA, inputs, n))).toBeLessThan(1e-5);
    } finally {
      await session.release();
    }
  });

  it('the packed, fused-rotary form (the decoder graph at head sizes divisible by 16) applies the rotary as the reference does', async () => {
    const rotary = { ...GQA, rotaryTheta: 10000 };
    const result = await checkPrefillAttention('wasm', rotary, { compareChunks: true });
    expect(result.failure).toBeUndefined();
    expect(result.maxError).toBeLessThan(1e-5);
    expect(result.chunkedError).toBeLessThan(1e-5);
    // The rotary really moves the numbers: without it the reference is far from the graph's output.
    const n = CHECK_NEW_TOKENS;
    const inputs = attentionCheckInputs(rotary, n);
    expect(relativeDifference(referenceAttention(GQA, inputs, n), referenceAttention(rotary, inputs, n))).toBeGreaterThan(1e-2);
  });

  for (const shape of [GQA, { numHeads: 4, numKvHeads: 4, headDim: 8 }]) {
    it(`reports one run exact (${shape.numHeads} heads, ${shape.numKvHeads} KV heads, head size ${shape.headDim}): no chunking`, async () => {
      const result = await checkPrefillAttention('wasm', shape, { compareChunks: true });
      console.log(`attention self-check on wasm, ${JSON.stringify(shape)}: maxError ${result.maxError.toExponential(2)}, chunked vs reference ${result.chunkedError.toExponential(2)}, ${result.ms.toFixed(0)} ms`);
      expect(result.failure).toBeUndefined();
      expect(result.exact).toBe(true);
      expect(result.chunk).toBe(Number.POSITIVE_INFINITY);
      expect(result.newTokens).toBe(CHECK_NEW_TOKENS);
      expect(result.newTokens).toBeGreaterThanOrEqual(32);
      expect(result.maxError).toBeLessThan(1e-5);
      expect(result.chunkedError).toBeLessThan(1e-5);
      expect(describeAttentionCheck(result)).toMatch(/^Prompts are processed in one run: in the attention self-check \(\d+ ms\), 40 new tokens at once matched the exact result within \d\.\de-\d+\.$/);
      // Without compareChunks only the one run is made.
      expect(Number.isNaN((await checkPrefillAttention('wasm', shape)).chunkedError)).toBe(true);
    });
  }

  it('a check that cannot run keeps the safe chunk and says why', async () => {
    const result = await checkPrefillAttention('wasm', { numHeads: 4, numKvHeads: 3, headDim: 8 });
    expect(result).toMatchObject({ exact: false, chunk: WEBGPU_ATTENTION_CHUNK });
    expect(result.failure).toMatch(/do not group/);
    expect(Number.isNaN(result.maxError)).toBe(true);
    expect(describeAttentionCheck(result)).toMatch(/^The attention self-check could not run \(.*\), so prompts are fed in chunks of 31 tokens/);
  });

  it('describes an inexact device', () => {
    const result: AttentionCheckResult = { exact: false, maxError: 0.23, chunk: 31, chunkedError: 2e-7, newTokens: 40, ms: 900 };
    expect(describeAttentionCheck(result)).toBe(
      'Prompts are fed in chunks of 31 tokens, which is exact but starts answers a little later: in the attention self-check, WebGPU attention over 40 new tokens at once was off by 2.3e-1 on this device.',
    );
  });

  it('counts NaN outputs as a failure, not as a match', () => {
    expect(relativeDifference([1, NaN], [1, 2])).toBe(Infinity);
    expect(relativeDifference([1, 2], [1, 2])).toBe(0);
  });
});
