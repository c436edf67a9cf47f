/**
 * Runs the steering probe graph (`decoder_probe`, models/salmonn/onnx_probe.py): from the residual
 * stream entering the first probed layer at every prompt position, it returns per probed layer
 * the residual at the last position (before steering) and that position's attention onto every
 * position, per head (after steering).
 *
 * Graph I/O: hidden_in f32 [1, T, H], position_ids i64 [1, T], lora_scale f32 [], steer f32
 * [L, H] → residual_last f32 [L, H], attention_last f32 [L, heads, T].
 */
import { ort } from '../ortRuntime';

export interface ProbeShape {
  /** Probed layers (consecutive). */
  layers: number;
  hiddenSize: number;
  numHeads: number;
}

export interface ProbeOutput {
  /** [L × H] residual entering each probed layer at the last position. */
  residual: Float32Array;
  /** [L × T] attention of the last position onto every position, mean over heads, per layer. */
  attention: Float64Array;
}

export class ProbeRunner {
  /** Graph runs so far. */
  runs = 0;

  constructor(
    private readonly session: ort.InferenceSession,
    readonly shape: ProbeShape,
  ) {}

  /** No steering: a zero `steer` input leaves each row exactly as it was. */
  zeroSteer(): Float32Array {
    return new Float32Array(this.shape.layers * this.shape.hiddenSize);
  }

  async run(hidden: Float32Array, loraScale: number, steer: Float32Array): Promise<ProbeOutput> {
    const { layers, hiddenSize, numHeads } = this.shape;
    const t = hidden.length / hiddenSize;
    if (!Number.isInteger(t) || t < 1) throw new Error(`probe input length ${hidden.length} is not a multiple of ${hiddenSize}`);
    if (steer.length !== layers * hiddenSize) throw new Error(`steer has ${steer.length} values, the probe takes ${layers} × ${hiddenSize}`);
    const outputs = await this.session.run({
      hidden_in: new ort.Tensor('float32', hidden, [1, t, hiddenSize]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: t }, (_, i) => BigInt(i)), [1, t]),
      lora_scale: new ort.Tensor('float32', Float32Array.of(loraScale), []),
      steer: new ort.Tensor('float32', steer, [layers, hiddenSize]),
    });
    this.runs += 1;
    const residual = outputs.residual_last;
    const attention = outputs.attention_last;
    if (!residual || !attention) throw new Error('the probe graph did not return residual_last and attention_last');
    const residualData = ((await residual.getData()) as Float32Array).slice();
    const perHead = (await attention.getData()) as Float32Array;
    residual.dispose();
    attention.dispose();
    return { residual: residualData, attention: meanOverHeads(perHead, layers, numHeads, t) };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** [L, heads, T] → [L, T], averaged over heads (in float64: the order of the sum does not matter). */
export function meanOverHeads(values: Float32Array, layers: number, heads: number, t: number): Float64Array {
  if (values.length !== layers * heads * t) throw new Error(`attention has ${values.length} values, expected ${layers} × ${heads} × ${t}`);
  const out = new Float64Array(layers * t);
  for (let l = 0; l < layers; l++) {
    for (let h = 0; h < heads; h++) {
      const row = (l * heads + h) * t;
      for (let i = 0; i < t; i++) out[l * t + i]! += values[row + i]!;
    }
    for (let i = 0; i < t; i++) out[l * t + i]! /= heads;
  }
  return out;
}
