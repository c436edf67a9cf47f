/**
 * Where in the recording: the localization method (models/salmonn/localize.py documents it and is
 * the reference these steps are tested against), over the engine's decoder and the probe graph.
 *
 *   1. the focus prompt (an instruction naming the event) and the neutral prompt, each run through
 *      the decoder from an empty cache, give the residual entering the first probed layer;
 *   2. the probe, unsteered, gives each prompt's residual at the last position per probed layer:
 *      the steering vector v = focus − neutral;
 *   3. the probe on the neutral prompt again, with alpha·v added at the last position of each probed
 *      layer (rescaled to its norm), and Δ = steered − unsteered attention of the last position on
 *      each audio token, averaged over heads and layers;
 *   4. Δ is smoothed over tokens and the interval of the requested width that holds the most Δ is
 *      the answer (readout.ts).
 * Written by hand: steering a decoder is what no library does.
 */
import type { DecoderRunner } from '../llm/decoder';
import type { ProbeRunner } from './probe';
import { bestInterval, smoothCentred, tokenCentres } from './readout';
import type { CurvePoint, LocalizeProgress } from './types';

export interface LocalizerDeps {
  decoder: DecoderRunner;
  probe: ProbeRunner;
  /** [BOS] + before + audio + after embedded for a question, and where the audio starts. */
  promptEmbeds(question: string): Promise<{ embeds: Float32Array; audioStart: number }>;
  /** Audio tokens in the prompt. */
  numAudio: number;
  /** [start, end] seconds per audio token, flattened. */
  timeMap: Float64Array;
  durationSeconds: number;
}

export interface LocalizeSettings {
  alpha: number;
  widthSeconds: number;
  smoothTokens: number;
  loraScale: number;
  focusInstruction: string;
  neutralInstruction: string;
}

export interface LocalizeOutcome {
  start: number;
  end: number;
  confidence: number;
  curve: CurvePoint[];
  /** alpha-free steering vector per probed layer, [L × H] (parity diagnostics). */
  vector: Float32Array;
}

/** Graph runs of one localization: two prompt runs and three probe runs. */
export const LOCALIZE_STEPS = 5;

/** The focus instruction with the user's words in place of every `{event}`. */
export function focusQuestion(template: string, event: string): string {
  return template.split('{event}').join(event.trim());
}

export async function localizeEvent(
  deps: LocalizerDeps,
  event: string,
  settings: LocalizeSettings,
  signal?: AbortSignal,
  onProgress?: (progress: LocalizeProgress) => void,
): Promise<LocalizeOutcome> {
  const { decoder, probe, numAudio } = deps;
  let done = 0;
  const step = (stage: LocalizeProgress['stage']) => {
    signal?.throwIfAborted();
    onProgress?.({ done, total: LOCALIZE_STEPS, stage });
  };
  const advance = () => {
    done += 1;
  };

  const focus = await deps.promptEmbeds(focusQuestion(settings.focusInstruction, event));
  const neutral = await deps.promptEmbeds(settings.neutralInstruction);
  step('focus prompt');
  const focusHidden = await decoder.prefillHidden(focus.embeds, settings.loraScale, signal);
  advance();
  step('neutral prompt');
  const neutralHidden = await decoder.prefillHidden(neutral.embeds, settings.loraScale, signal);
  advance();

  step('steering');
  const zero = probe.zeroSteer();
  const focusProbe = await probe.run(focusHidden, settings.loraScale, zero);
  advance();
  step('steering');
  const plain = await probe.run(neutralHidden, settings.loraScale, zero);
  advance();
  const vector = new Float32Array(focusProbe.residual.length);
  const steer = new Float32Array(vector.length);
  for (let i = 0; i < vector.length; i++) {
    vector[i] = focusProbe.residual[i]! - plain.residual[i]!;
    steer[i] = settings.alpha * vector[i]!;
  }

  step('read-out');
  const steered = await probe.run(neutralHidden, settings.loraScale, steer);
  advance();
  onProgress?.({ done, total: LOCALIZE_STEPS, stage: 'read-out' });

  const layers = probe.shape.layers;
  const t = plain.attention.length / layers;
  const delta = new Float64Array(numAudio);
  for (let i = 0; i < numAudio; i++) {
    let sum = 0;
    for (let l = 0; l < layers; l++) sum += steered.attention[l * t + neutral.audioStart + i]! - plain.attention[l * t + neutral.audioStart + i]!;
    delta[i] = sum / layers;
  }
  const smoothed = smoothCentred(delta, settings.smoothTokens);
  const centres = tokenCentres(deps.timeMap);
  const interval = bestInterval(smoothed, centres, settings.widthSeconds, deps.durationSeconds);
  return {
    ...interval,
    curve: Array.from(centres, (time, i) => ({ time, delta: smoothed[i]! })),
    vector,
  };
}
