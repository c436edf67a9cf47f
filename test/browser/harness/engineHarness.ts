/**
 * Test-only page script: the real engine worker through the app's client, plus helpers that
 * compare its outputs with the golden files (fetched from the dev server) inside the page, so
 * only small summaries travel back to the test.
 */
import { createEngineClient } from '../../../src/engineClient';
import type { TokenEvent } from '../../../src/engine/llm/generate';
import { logitError, parseNpy, relativeMaxError } from '../../helpers/npy';
import type { GoldenIndex, GoldenInput } from '../../helpers/golden';

const client = createEngineClient();

async function goldenIndex(): Promise<GoldenIndex> {
  return (await fetch('/models/golden/index.json')).json() as Promise<GoldenIndex>;
}

async function goldenArray(file: string): Promise<Float32Array> {
  const array = parseNpy(new Uint8Array(await (await fetch(`/models/golden/${file}`)).arrayBuffer()));
  return array.data as Float32Array;
}

async function wavBytes(input: GoldenInput): Promise<Uint8Array> {
  return new Uint8Array(await (await fetch(`/models/golden/${input.audio}`)).arrayBuffer());
}


export interface ParityReport {
  stageErrors: Record<string, number>;
  runs: { loraScale: number; logitError: number; tokens: number[]; expected: number[] }[];
}

/**
 * `tokensAtOtherScales`: greedy tokens generated at LoRA scales other than the default (the
 * first-step logits are always compared); fewer keeps the slow software-GPU runs short.
 */
async function parity(name: string, precision: 'fp32' | 'int4', greedyTokens: number, tokensAtOtherScales = greedyTokens): Promise<ParityReport> {
  const index = await goldenIndex();
  const input = index.inputs[name]!;
  const { stages } = await client.setAudio(await wavBytes(input), { captureStages: true });
  const stageErrors: Record<string, number> = {};
  for (const capture of stages) {
    const ref =
      capture.stage === 'mel' || capture.stage === 'fbank'
        ? input.features[capture.chunk]![capture.stage]
        : input.precisions[precision].stages[capture.chunk]![capture.stage];
    stageErrors[`${capture.chunk}:${capture.stage}`] = relativeMaxError(capture.data, await goldenArray(ref.file));
  }
  const runs: ParityReport['runs'] = [];
  for (const [scaleName, run] of Object.entries(input.precisions[precision].runs)) {
    await client.newConversation();
    const count = scaleName === 'default' ? greedyTokens : tokensAtOtherScales;
    const answer = await client.ask(input.prompt, { loraScale: run.loraScale, maxNewTokens: count, doSample: false, captureFirstLogits: true });
    runs.push({
      loraScale: run.loraScale,
      logitError: logitError(answer.firstLogits!, await goldenArray(run.logits.file)),
      tokens: answer.ids,
      expected: run.tokens.slice(0, count),
    });
  }
  return { stageErrors, runs };
}

/** Asks and records when each token event arrived relative to when the answer resolved. */
async function streamTimeline(question: string, maxNewTokens: number, cancelAfter?: number) {
  const arrivals: { index: number; at: number }[] = [];
  const started = performance.now();
  const answer = await client.ask(question, { maxNewTokens }, (event: TokenEvent) => {
    arrivals.push({ index: event.index, at: performance.now() - started });
    if (cancelAfter !== undefined && arrivals.length === cancelAfter) void client.cancel();
  });
  return { arrivals, resolvedAt: performance.now() - started, ids: answer.ids, stopReason: answer.stats.stopReason, text: answer.text };
}

async function setGoldenAudio(name: string) {
  const index = await goldenIndex();
  return (await client.setAudio(await wavBytes(index.inputs[name]!))).info;
}

/** Localizes the golden event in a golden recording and compares with the reference inside the page. */
async function localizeParity(name: string, precision: 'fp32' | 'int4') {
  const index = await goldenIndex();
  const input = index.inputs[name]!;
  const expected = input.precisions[precision].localization!;
  await client.setAudio(await wavBytes(input));
  const stages: string[] = [];
  const found = await client.localize(expected.event, { captureVector: true }, (p) => stages.push(`${p.done}/${p.total} ${p.stage}`));
  const times = await goldenArray(expected.times.file);
  return {
    vectorError: relativeMaxError(found.vector!, await goldenArray(expected.vector.file)),
    deltaError: relativeMaxError(Float32Array.from(found.curve, (p) => p.delta), await goldenArray(expected.delta.file)),
    timeError: Math.max(...found.curve.map((p, i) => Math.abs(p.time - times[i]!))),
    points: found.curve.length,
    expectedPoints: times.length,
    found: { start: found.start, end: found.end, confidence: found.confidence, layers: found.layers },
    expected: { start: expected.start, end: expected.end, confidence: expected.confidence, layers: expected.layers },
    stages,
    ms: found.ms,
  };
}

async function errorCode(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return 'no error';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

const harness = {
  client,
  ready: true as const,
  parity,
  localizeParity,
  streamTimeline,
  setGoldenAudio,
  goldenIndex,
  badInputCodes: async () => ({
    empty: await errorCode(() => client.setAudio(new Uint8Array(0))),
    notAudio: await errorCode(() => client.setAudio(new TextEncoder().encode('definitely not a recording, just some text'))),
    nan: await errorCode(() => client.setAudio({ sampleRate: 16000, channels: [Float32Array.from({ length: 16000 }, (_, i) => (i === 5 ? NaN : 0))] })),
  }),
};

declare global {
  interface Window {
    harkEngineHarness: typeof harness;
  }
}

window.harkEngineHarness = harness;
