/**
 * Test-only page script: the real engine worker through the app's client, plus helpers that
 * compare its outputs with the golden files (fetched from the dev server) inside the page, so
 * only small summaries travel back to the test.
 */
import { createEngineClient } from '../../../src/engineClient';
import type { TokenEvent } from '../../../src/engine/llm/generate';
import { logitError, parseNpy, relativeMaxError } from '../../helpers/npy';
import type { GoldenIndex, GoldenInput } from '../../helpers/golden';
import { reasoningManifest, type ReasoningGolden } from '../../helpers/reasoningManifest';
import { variantFiles, type Manifest } from '../../../src/engine/bundle/manifest';

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

/** The golden recording the engine holds (null: unknown), so a later check need not encode it again. */
let heldAudio: string | null = null;

async function setGoldenAudioOnce(name: string, input: GoldenInput): Promise<void> {
  if (heldAudio === name) return;
  heldAudio = null;
  await client.setAudio(await wavBytes(input));
  heldAudio = name;
}


export interface ParityReport {
  stageErrors: Record<string, number>;
  runs: { loraScale: number; logitError: number; tokens: number[]; expected: number[] }[];
}

/**
 * `tokensAtOtherScales`: greedy tokens generated at LoRA scales other than the default (the
 * first-step logits are always compared); fewer keeps the slow software-GPU runs short.
 * `otherScales` false: the default scale only (one prompt run instead of three).
 */
/** The goldens' names of the engine's stages (encoder outputs are reported by encoder name). */
const GOLDEN_STAGE: Record<string, 'speech' | 'audio' | 'tokens'> = { whisper: 'speech', beats: 'audio', tokens: 'tokens' };

async function parity(name: string, precision: 'fp32' | 'int4', greedyTokens: number, tokensAtOtherScales = greedyTokens, otherScales = true): Promise<ParityReport> {
  const index = await goldenIndex();
  const input = index.inputs[name]!;
  heldAudio = null;
  const { stages } = await client.setAudio(await wavBytes(input), { captureStages: true });
  heldAudio = name;
  const stageErrors: Record<string, number> = {};
  for (const capture of stages) {
    const ref =
      capture.stage === 'mel' || capture.stage === 'fbank'
        ? input.features[capture.chunk]![capture.stage]
        : input.precisions[precision].stages[capture.chunk]![GOLDEN_STAGE[capture.stage]!];
    stageErrors[`${capture.chunk}:${capture.stage}`] = relativeMaxError(capture.data, await goldenArray(ref.file));
  }
  const runs: ParityReport['runs'] = [];
  for (const [scaleName, run] of Object.entries(input.precisions[precision].runs)) {
    if (!otherScales && scaleName !== 'default') continue;
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
  heldAudio = null;
  const { info } = await client.setAudio(await wavBytes(index.inputs[name]!));
  heldAudio = name;
  return info;
}

/** Localizes the golden event in a golden recording (encoded unless the engine holds it) and compares with the reference inside the page. */
async function localizeParity(name: string, precision: 'fp32' | 'int4') {
  const index = await goldenIndex();
  const input = index.inputs[name]!;
  const expected = input.precisions[precision].localization!;
  // Reuses the recording a parity check of the same input left (encoding it again gives the same
  // audio tokens: the encoders are deterministic, and the parity check compared every stage).
  const encoded = heldAudio !== name;
  await setGoldenAudioOnce(name, input);
  const stages: string[] = [];
  let found: Awaited<ReturnType<typeof client.localize>>;
  try {
    found = await client.localize(expected.event, { captureVector: true }, (p) => stages.push(`${p.done}/${p.total} ${p.stage}`));
  } catch (error) {
    // What the store holds, to tell a missing download from a deleted file.
    throw new Error(`${(error as Error).message} | stored: ${JSON.stringify(await client.listModels())}`);
  }
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
    encoded,
  };
}

/** Classifies a golden recording with the reference's label set; compares inside the page. */
async function classifyParity(name: string, precision: 'fp32' | 'int4') {
  const index = await goldenIndex();
  const input = index.inputs[name]!;
  const expected = input.precisions[precision].classification!;
  // Encoding takes most of a minute on a software adapter: reuse the recording a parity check left.
  let started = performance.now();
  await setGoldenAudioOnce(name, input);
  await client.newConversation(); // the label set answers a first question
  const setAudioMs = performance.now() - started;
  const result = await client.classify(expected.question, { choices: expected.labels, loraScale: expected.loraScale });
  const maxDifference = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));
  // The chosen label is the turn's answer: the follow-up continues after it, with the same logits
  // as after the same turn re-read by resumeConversation (no scoring run's positions left behind).
  started = performance.now();
  const next = await client.ask(expected.followUp.question, { loraScale: expected.loraScale, maxNewTokens: 1, doSample: false, captureFirstLogits: true });
  const followUpMs = performance.now() - started;
  started = performance.now();
  await client.resumeConversation([{ question: expected.question, answer: result.text, ids: result.ids }], { loraScale: expected.loraScale });
  const resumed = await client.ask(expected.followUp.question, { loraScale: expected.loraScale, maxNewTokens: 1, doSample: false, captureFirstLogits: true });
  return {
    label: result.label,
    expectedLabel: expected.label,
    labels: result.choices.map((c) => c.label),
    expectedLabels: expected.labels,
    probabilityError: maxDifference(result.choices.map((c) => c.probability), expected.probabilities),
    logProbError: maxDifference(result.choices.map((c) => c.logProb), expected.logProbs),
    stats: result.stats,
    ms: { setAudioIfNeeded: setAudioMs, followUp: followUpMs, resumeAndFollowUp: performance.now() - started },
    turn: result.turn,
    followUp: { turn: next.turn, tokens: next.ids, expected: expected.followUp.tokens.slice(0, 1), logitErrorVsResumed: logitError(next.firstLogits!, resumed.firstLogits!) },
  };
}

/**
 * Beam searches of a golden recording (the golden runs at `runIndices`) compared inside the page:
 * tokens, steps and the follow-up from the chosen beam; plus whether the stream stayed consistent.
 */
async function beamParity(name: string, precision: 'fp32' | 'int4', runIndices: number[]) {
  const index = await goldenIndex();
  const input = index.inputs[name]!;
  const golden = input.precisions[precision].beamSearch!;
  await setGoldenAudioOnce(name, input);
  const reports = [];
  for (const i of runIndices) {
    const run = golden.runs[i]!;
    await client.newConversation();
    const texts: { text: string; delta: string; revised: boolean }[] = [];
    const started = performance.now();
    const answer = await client.ask(
      golden.prompt,
      { numBeams: run.numBeams, loraScale: run.loraScale, lengthPenalty: run.lengthPenalty, stopTokenIds: run.stopTokenIds, maxNewTokens: golden.maxNewTokens, doSample: false },
      (event: TokenEvent) => texts.push({ text: event.text, delta: event.delta, revised: event.revised === true }),
    );
    const ms = performance.now() - started;
    const streamConsistent = texts.every((e, k) => k === 0 || (e.revised ? !e.text.startsWith(texts[k - 1]!.text) : texts[k - 1]!.text + e.delta === e.text));
    let followUp: { tokens: number[]; expected: number[]; turn: number } | null = null;
    if (run.followUp) {
      const next = await client.ask(run.followUp.question, { numBeams: run.followUp.numBeams, loraScale: run.loraScale, maxNewTokens: golden.followUpTokens, doSample: false });
      followUp = { tokens: next.ids, expected: run.followUp.tokens, turn: next.turn };
    }
    reports.push({
      run: i, numBeams: run.numBeams, tokens: answer.ids, expected: run.tokens, steps: answer.stats.beamSteps, expectedSteps: run.steps,
      lastText: texts.at(-1)?.text ?? '', text: answer.text, streamConsistent, revisions: answer.stats.revisions, followUp, ms,
    });
  }
  return reports;
}

/**
 * The tiny reasoning bundle in the page: the tiny bundle's fp32 files fetched from the dev server,
 * with the golden `reasoning` section added to its manifest (as test/helpers/reasoningBundle.ts does
 * in Node), loaded through the worker as a `files` source.
 */
async function loadReasoningBundle(backend: 'webgpu' | 'wasm') {
  const golden = (await (await fetch('/models/golden/reasoning.json')).json()) as ReasoningGolden;
  const base = (await (await fetch('/models/salmonn-tiny/manifest.json')).json()) as Manifest;
  const files = new Map<string, Blob>();
  const needed = variantFiles(base, golden.precision);
  for (const path of needed) files.set(path, await (await fetch(`/models/salmonn-tiny/${path}`)).blob());
  files.set('manifest.json', new Blob([JSON.stringify(reasoningManifest(base, golden))]));
  heldAudio = null;
  const info = await client.loadModel({ kind: 'files', files }, { backend, variant: golden.precision });
  return { info, golden };
}

/** Reasoning runs of the golden budgets (by index) on the reasoning bundle, answers cut to `answerTokens`; compared in the test. */
async function reasoningParity(runIndices: number[], answerTokens: number, backend: 'webgpu' | 'wasm' = 'webgpu') {
  const { info, golden } = await loadReasoningBundle(backend);
  await client.setAudio(new Uint8Array(await (await fetch(`/models/golden/${golden.audio}`)).arrayBuffer()));
  const reports = [];
  for (const i of runIndices) {
    const run = golden.runs[i]!;
    await client.newConversation();
    const events: TokenEvent[] = [];
    const answer = await client.ask(golden.prompt, { thinkingBudget: run.thinkingBudget, maxNewTokens: answerTokens, loraScale: golden.loraScale, doSample: false }, (e) => events.push(e));
    reports.push({
      run: i, budget: run.thinkingBudget, expected: run,
      ids: answer.ids, thoughts: answer.thoughts, answer: answer.text, thinkingTokens: answer.thinkingTokens, forcedClose: answer.forcedClose,
      forcedIndices: events.filter((e) => e.forced).map((e) => e.index),
      channels: events.map((e) => e.channel),
      streamedThoughts: events.map((e) => e.thoughtDelta ?? '').join(''),
      streamedAnswer: events.map((e) => e.delta).join(''),
    });
  }
  return { backend: info.backend, reasoning: info.reasoning, forcedCloseIds: golden.forcedCloseIds, reports };
}

/** The ALARM goldens' index (models/make_alarm_goldens.py), as far as the page reads it. */
interface AlarmArrayRef {
  file: string;
  shape: number[];
}
interface AlarmGoldenIndex {
  greedyTokens: number;
  inputs: Record<string, {
    audio: string;
    question: string;
    chunks: number;
    audioTokens: number;
    features: AlarmArrayRef[];
    precisions: Record<'fp32' | 'int4', {
      stages: { encoderOut: AlarmArrayRef[]; adapted: AlarmArrayRef; audio: AlarmArrayRef };
      logits: AlarmArrayRef;
      tokens: number[];
      reasoning?: { thinkingBudget: number; maxAnswerTokens: number; forcedCloseIds: number[]; tokens: number[]; thinkingTokens: number; forcedClose: boolean; answerStart: number; thoughts: string; answer: string };
      followUp?: { question: string; logits: AlarmArrayRef; reasoning: { tokens: number[] } };
    }>;
  }>;
}

async function alarmArray(file: string): Promise<Float32Array> {
  return parseNpy(new Uint8Array(await (await fetch(`/models/golden/alarm/${file}`)).arrayBuffer())).data as Float32Array;
}

/**
 * The loaded ALARM bundle against its goldens, in one pass over one recording (the goldens' input
 * with a forced-close run): every audio stage, then one reasoning ask whose first step gives the
 * first-step logits, whose first thought tokens are the greedy run's, and which runs out of its
 * budget, is forced closed and answers `answerTokens` greedy tokens. Compared here; the numbers and
 * token lists go back to the test with the page's timings.
 */
async function alarmParity(name: string, precision: 'fp32' | 'int4', answerTokens: number) {
  const index = (await (await fetch('/models/golden/alarm/index.json')).json()) as AlarmGoldenIndex;
  const input = index.inputs[name]!;
  const ref = input.precisions[precision];
  const reasoning = ref.reasoning!;
  heldAudio = null;
  let started = performance.now();
  const { info, stages } = await client.setAudio(new Uint8Array(await (await fetch(`/models/golden/${input.audio}`)).arrayBuffer()), { captureStages: true });
  const setAudioMs = performance.now() - started;
  const expectedStage = (chunk: number, stage: string): AlarmArrayRef | null => {
    if (stage === 'mel') return input.features[chunk]!;
    if (stage === 'whisper') return ref.stages.encoderOut[chunk]!;
    if (stage === 'adapter.whisper') return ref.stages.adapted;
    if (stage === 'tokens') return ref.stages.audio;
    return null;
  };
  const stageErrors: Record<string, number> = {};
  for (const capture of stages) {
    const expected = expectedStage(capture.chunk, capture.stage);
    if (!expected) throw new Error(`no golden for stage ${capture.chunk}:${capture.stage}`);
    const data = await alarmArray(expected.file);
    // the adapter's output may hold one more row than the reference kept (ceil vs floor)
    stageErrors[`${capture.chunk}:${capture.stage}`] = relativeMaxError(capture.stage === 'adapter.whisper' ? capture.data.subarray(0, data.length) : capture.data, data);
  }

  const events: TokenEvent[] = [];
  started = performance.now();
  const answer = await client.ask(input.question, { thinkingBudget: reasoning.thinkingBudget, maxNewTokens: answerTokens, doSample: false, captureFirstLogits: true }, (e) => events.push(e));
  const askMs = performance.now() - started;
  // A follow-up (only when the first answer ran as long as the golden's: its text is written back):
  // the fixed KV cache cut back to the first generation prompt, the answer written back, the question.
  let followUp: { logitError: number; firstId: number; expectedFirstId: number; ms: number } | null = null;
  if (ref.followUp && answerTokens === reasoning.maxAnswerTokens) {
    started = performance.now();
    const next = await client.ask(ref.followUp.question, { thinkingBudget: 1, maxNewTokens: 1, doSample: false, captureFirstLogits: true });
    followUp = {
      logitError: logitError(next.firstLogits!, await alarmArray(ref.followUp.logits.file)),
      firstId: next.ids[0]!,
      expectedFirstId: ref.followUp.reasoning.tokens[0]!,
      ms: performance.now() - started,
    };
  }
  return {
    followUp,
    chunks: info.chunks,
    numTokens: info.numTokens,
    expectedChunks: input.chunks,
    expectedNumTokens: input.audioTokens,
    stageErrors,
    logitError: logitError(answer.firstLogits!, await alarmArray(ref.logits.file)),
    ids: answer.ids,
    greedy: ref.tokens,
    expected: reasoning,
    thoughts: answer.thoughts,
    answer: answer.text,
    thinkingTokens: answer.thinkingTokens,
    forcedClose: answer.forcedClose,
    forcedIndices: events.filter((e) => e.forced).map((e) => e.index),
    channels: events.map((e) => e.channel),
    streamedThoughts: events.map((e) => e.thoughtDelta ?? '').join(''),
    streamedAnswer: events.map((e) => e.delta).join(''),
    ms: { setAudio: setAudioMs, ask: askMs, ...info.timings, prefill: answer.stats.prefillMs, decode: answer.stats.decodeMs },
    decodeRuns: answer.stats.decodeRuns,
  };
}

/**
 * A fused ALARM bundle's goldens' index (models/make_alarm_ca_goldens.py,
 * models/make_alarm_p_goldens.py: the same layout), as far as the page reads it.
 */
interface FusedAlarmGoldenIndex {
  inputs: Record<string, {
    audio: string;
    question: string;
    /** Rows of Whisper's the LLM reads; a perceiver's leading rows come before them. */
    mainLength: number;
    audioTokens: number;
    precisions: Record<'fp32' | 'int4', {
      stages: { adapted: Record<string, AlarmArrayRef>; fused: AlarmArrayRef; audio: AlarmArrayRef };
      logits: AlarmArrayRef;
      tokens: number[];
    }>;
  }>;
}

/**
 * The loaded fused ALARM bundle (ALARM-CA or ALARM-P) against its goldens in
 * `/models/golden/<goldenDir>/` on one recording: each adapter's output (an identity adapter's:
 * its encoder's real frames), the connector's, the audio embeddings, then one ask of
 * `thoughtTokens` greedy thought tokens (the budget) and one answer token: its first-step logits
 * and thought tokens against the golden run. The time rows go back as they are: the test checks
 * the leading rows (`audioTokens - mainLength`: a perceiver's latents, none for cross-attention)
 * and the first two of Whisper's.
 */
async function fusedAlarmParity(goldenDir: string, name: string, precision: 'fp32' | 'int4', thoughtTokens: number) {
  const goldenArray = async (file: string): Promise<Float32Array> =>
    parseNpy(new Uint8Array(await (await fetch(`/models/golden/${goldenDir}/${file}`)).arrayBuffer())).data as Float32Array;
  const index = (await (await fetch(`/models/golden/${goldenDir}/index.json`)).json()) as FusedAlarmGoldenIndex;
  const input = index.inputs[name]!;
  const ref = input.precisions[precision];
  heldAudio = null;
  let started = performance.now();
  const { info, stages } = await client.setAudio(new Uint8Array(await (await fetch(`/models/golden/${input.audio}`)).arrayBuffer()), { captureStages: true });
  const setAudioMs = performance.now() - started;
  const stageErrors: Record<string, number> = {};
  for (const capture of stages) {
    const adapter = capture.stage.startsWith('adapter.') ? ref.stages.adapted[capture.stage.slice('adapter.'.length)] : undefined;
    const expected = adapter ?? (capture.stage === 'connector' ? ref.stages.fused : capture.stage === 'tokens' ? ref.stages.audio : undefined);
    if (!expected) continue; // features and per-piece encoder outputs: checked in Node (test/helpers/fusedAlarm.ts)
    const data = await goldenArray(expected.file);
    // an adapter's or the connector's output may hold more rows than the reference kept
    stageErrors[`${capture.chunk}:${capture.stage}`] = relativeMaxError(capture.data.subarray(0, data.length), data);
  }
  const leading = input.audioTokens - input.mainLength;
  started = performance.now();
  const answer = await client.ask(input.question, { thinkingBudget: thoughtTokens, maxNewTokens: 1, doSample: false, captureFirstLogits: true });
  return {
    numTokens: info.numTokens,
    expectedNumTokens: input.audioTokens,
    stageErrors,
    leading,
    durationSeconds: info.durationSeconds,
    /** [start, end] seconds of the leading rows and of Whisper's first two. */
    timeRows: Array.from({ length: leading + 2 }, (_, k) => [info.timeMap[2 * k]!, info.timeMap[2 * k + 1]!]),
    logitError: logitError(answer.firstLogits!, await goldenArray(ref.logits.file)),
    thoughtIds: answer.ids.slice(0, thoughtTokens),
    expectedThoughtIds: ref.tokens.slice(0, thoughtTokens),
    ms: { setAudio: setAudioMs, ask: performance.now() - started, ...info.timings },
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
  classifyParity,
  beamParity,
  reasoningParity,
  alarmParity,
  fusedAlarmParity,
  streamTimeline,
  setGoldenAudio,
  goldenIndex,
  badInputCodes: async () => {
    heldAudio = null;
    return {
      empty: await errorCode(() => client.setAudio(new Uint8Array(0))),
      notAudio: await errorCode(() => client.setAudio(new TextEncoder().encode('definitely not a recording, just some text'))),
      nan: await errorCode(() => client.setAudio({ sampleRate: 16000, channels: [Float32Array.from({ length: 16000 }, (_, i) => (i === 5 ? NaN : 0))] })),
    };
  },
};

declare global {
  interface Window {
    harkEngineHarness: typeof harness;
  }
}

window.harkEngineHarness = harness;
