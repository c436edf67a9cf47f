/**
 * What one decoder job measures, wherever it runs: in a Node job process (job.ts: wasm,
 * webgpu-node) or inside the Chromium page (page/benchPage.ts: chromium-webgpu). Our runtime
 * (warm-up, then one prefill + `steps` decode steps per context, or load + one step for the big
 * models), with transformers.js on the same weights right after the first context.
 *
 * Import it only after `shareOrtWithTransformers` (ours.ts imports the engine's tokenizer, which
 * imports transformers.js, which picks its ORT when first imported).
 */
import * as tjs from '@huggingface/transformers';
import type { ort as OrtModule } from '../../src/engine/ortRuntime';
import { openOurs, runOurs, stepOurs, tokenizerFolder, type ReadFile } from './ours';
import { randomPrompt } from './randomPrompt';
import { openPeer, type PeerRecord } from './peer';
import type { JobSpec, ModelInfo, PeerResult, RunTiming } from './types';

export const SHORT_PROMPT = 16;
export const SHORT_NEW_TOKENS = 4;

/** Prompt length for a decode context: 111 / 1000 (the prefill sizes reported), else fill up. */
export function promptLength(context: number, steps: number): number {
  if (context === 128) return 111;
  if (context === 1024) return 1000;
  return context - steps - 1;
}

export { randomPrompt } from './randomPrompt';

export interface MeasureEnv {
  ort: typeof OrtModule;
  peerRecord: PeerRecord;
  /** Reads a file given by its path on the bench machine (disk in Node, HTTP in the page). */
  read: ReadFile;
  /** The model folder as transformers.js should load it (a file path in Node, a URL path in the page). */
  peerModelDir: string;
  backend: 'wasm' | 'webgpu';
  /** Records the phase reached (saved, so a job stopped at its time limit still reports it). */
  progress(phase: string): void;
  log(line: string): void;
}

/** The measured part of a JobResult. */
export interface Measured {
  loadMs: number;
  runs: RunTiming[];
  warmupIds: number[];
  warmupMs?: number;
  peer?: PeerResult;
  error?: string;
  /** Remarks for the table's notes column (e.g. what of the int4 weights was unpacked). */
  notes?: string[];
}

/** transformers.js on the same weights: a warm-up generation (short prompt), then the first context's prompt. */
async function measurePeer(env: MeasureEnv, spec: Omit<JobSpec, 'resultPath'>, info: ModelInfo, prompt: number[], out: Measured): Promise<PeerResult> {
  const first = out.runs[0]!;
  const peer = await openPeer(env.ort, tjs, env.peerModelDir, info.peer!, spec.precision, env.backend, info.geometry.numLayers);
  env.progress('peer loaded');
  const warm = await peer.generate(prompt.slice(0, SHORT_PROMPT), SHORT_NEW_TOKENS);
  env.progress('peer warm');
  const timed = await peer.generate(prompt.slice(0, first.promptTokens), spec.steps + 1);
  await peer.release();
  const result: PeerResult = {
    loadMs: peer.loadMs,
    prefillMs: timed.prefillMs,
    promptTokens: first.promptTokens,
    decodeSteps: timed.decodeSteps,
    decodeMsPerToken: timed.decodeMs / Math.max(1, timed.decodeSteps),
    ids: timed.ids,
    executionProviders: [...new Set(env.peerRecord.executionProviders)],
    presentLocation: [...env.peerRecord.presentLocations].join('+'),
    sameIdsShort: JSON.stringify(warm.ids) === JSON.stringify(out.warmupIds),
    sameIds: JSON.stringify(timed.ids) === JSON.stringify(first.ids),
  };
  const expected = env.backend === 'webgpu' ? 'gpu-buffer' : 'cpu';
  if (result.executionProviders.join() !== env.backend || result.presentLocation !== expected) {
    throw new Error(`transformers.js did not run on ${env.backend}: providers ${result.executionProviders.join()}, presents on ${result.presentLocation}`);
  }
  env.progress('peer done');
  return result;
}

export function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s+/g, ' ').slice(0, 300);
}

/**
 * Runs the job; `out` is filled in as it goes (and handed to `progress` callers through the
 * caller's reference), so whatever was measured before a failure or a time limit is kept.
 */
export async function measure(env: MeasureEnv, spec: Omit<JobSpec, 'resultPath'>, info: ModelInfo, out: Measured): Promise<void> {
  const files = info.variants[spec.precision];
  if (!files) throw new Error(`${spec.model} has no ${spec.precision} variant`);
  const root = files.fromRepoRoot ? spec.repoRoot : spec.modelDir;
  const g = info.geometry;
  const { backend } = env;
  try {
    const ours = await openOurs(env.read, root, files, info, backend, `${spec.repoRoot}/${tokenizerFolder(info)}`, !spec.loadOnly, true, spec.unpackInt4 !== false);
    out.loadMs = ours.loadMs;
    if (ours.unpacked) (out.notes ??= []).push(ours.unpacked);
    env.progress('ours loaded');
    env.log(`  ${spec.model} ${spec.precision} ${spec.backend}: prefill self-check: ${ours.attentionCheck}`);
    const longest = Math.max(SHORT_PROMPT, spec.loadOnlyPrompt ?? 1, ...spec.contexts.map((c) => promptLength(c, spec.steps)));
    const prompt = randomPrompt(longest, g.vocabSize);
    if (spec.loadOnly) {
      // Load, one decoder run of a few tokens on an empty cache, stop: on a software adapter a
      // 7B prefill of 111 tokens takes longer than any sensible job limit.
      const n = spec.loadOnlyPrompt ?? 1;
      const step = await stepOurs(ours, prompt.slice(0, n), g.loraScale);
      out.runs.push({ context: n, promptTokens: n, prefillMs: step.ms, decodeSteps: 0, decodeMsPerToken: Number.NaN, ids: [step.id] });
      env.progress('ours one step');
      env.log(`  ${spec.model} ${spec.precision} ${spec.backend}: load ${(ours.loadMs / 1000).toFixed(1)} s, one step of ${n} token(s) ${step.ms.toFixed(0)} ms`);
    } else {
      // Warm-up (shader compilation on WebGPU); its ids are also the short-prompt parity check.
      const warmStart = performance.now();
      out.warmupIds = (await runOurs(ours, prompt.slice(0, SHORT_PROMPT), SHORT_NEW_TOKENS, g.loraScale, g.maxPositions)).ids;
      out.warmupMs = performance.now() - warmStart;
      env.progress('ours warm');
      for (const [index, context] of spec.contexts.entries()) {
        const n = promptLength(context, spec.steps);
        const run = await runOurs(ours, prompt.slice(0, n), spec.steps + 1, g.loraScale, g.maxPositions);
        const timing: RunTiming = {
          context,
          promptTokens: n,
          prefillMs: run.prefillMs,
          decodeSteps: run.decodeSteps,
          decodeMsPerToken: run.decodeMs / Math.max(1, run.decodeSteps),
          ids: run.ids,
        };
        out.runs.push(timing);
        env.progress(`ours context ${context}`);
        env.log(`  ${spec.model} ${spec.precision} ${spec.backend} ctx ${context}: prefill ${n} in ${run.prefillMs.toFixed(0)} ms, ${timing.decodeMsPerToken.toFixed(1)} ms/token`);
        // The peer right after the first context (its comparison point), before the longer ones:
        // a job stopped at its time limit during a long context still has the ratio.
        if (index === 0 && spec.peer && info.peer) out.peer = await measurePeer(env, spec, info, prompt, out);
      }
    }
    await ours.release();
  } catch (error) {
    out.error = errorText(error);
  }
}
