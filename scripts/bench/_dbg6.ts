import { readFileSync } from 'node:fs';
import { setupNodeWebGpu, withSwiftShaderFallback, configureOrtForNodeWebGpu } from './nodeWebgpu';
const t0 = performance.now();
const log = (m: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1)}] ${m}\n`);
withSwiftShaderFallback();
await setupNodeWebGpu();
const ort = await import('onnxruntime-web/webgpu');
configureOrtForNodeWebGpu(ort.env);
const dir = 'models/bundles/salmonn-tiny/onnx/';
const name = process.argv[2] ?? 'decoder_model_merged_q4';
const s = await ort.InferenceSession.create(new Uint8Array(readFileSync(dir + name + '.onnx')), { executionProviders: ['webgpu'], externalData: [{ path: name + '.onnx_data', data: new Uint8Array(readFileSync(dir + name + '.onnx_data')) }] });
log('open');
const n = Number(process.argv[3] ?? 3);
for (let it = 0; it < 3; it++) {
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
    inputs_embeds: new ort.Tensor('float32', new Float32Array(n * 32).fill(0.1), [1, n, 32]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(i)), [1, n]),
    lora_scale: new ort.Tensor('float32', new Float32Array([4]), []),
  };
  for (let i = 0; i < 2; i++) for (const k of ['key', 'value']) feeds[`past_key_values.${i}.${k}`] = new ort.Tensor('float32', new Float32Array(0), [1, 4, 0, 8]);
  const t = performance.now();
  const out = await s.run(feeds);
  log('run ' + (performance.now() - t).toFixed(0) + ' ms ' + out.logits!.dims.join('x'));
}
process.exit(0);
