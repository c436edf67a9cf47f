/**
 * Evaluation of event localization (issue 11): how well the engine finds *when* a named sound
 * happens, against two baselines, on three-event clips we make ourselves (so the truth is exact):
 *
 *   npm run localize:eval -- [--bundle models/bundles/salmonn-tiny] [--clips N] [--seed S] [--variant int4|fp32]
 *
 * Each clip holds three of: espeak-ng speech, a sox sine tone, a white/pink noise burst, a click
 * train, separated by silences of random length (8–40 s in all; the first clip is over 30 s, so
 * the two-window time map is exercised). Clips and their truth (truth.json) are written to
 * .bench-cache/localize-eval/seed-S/. For every event of every clip:
 *
 * - ours: engine.localize(event, { widthSeconds: the true width }) — instruction steering
 *   (models/salmonn/localize.py);
 * - random: an interval of the true width placed uniformly in the clip, scored over --draws
 *   placements and averaged (seeded);
 * - direct prompting: a fresh conversation and "When does <event> happen in the audio? …", greedy,
 *   32 new tokens; the first two times in the answer (answerTimes.ts) are the interval.
 *
 * Metrics (scripts/localizeEval/metrics.ts), per query, then averaged over all queries:
 * - overlap = |pred ∩ truth| / |truth| (what the steering paper reports);
 * - IoU = |pred ∩ truth| / |pred ∪ truth|;
 * - hit rate = share of predictions whose centre lies inside the true interval;
 * - parsed (direct prompting) = share of answers with two times; an unparsed answer scores 0.
 * Time per query is the wall time of one localize() or one ask(); encoding each clip's audio
 * (shared by both model methods, once per clip) is reported apart.
 *
 * Prints markdown tables to stdout and progress to stderr; writes results.json next to the clips.
 */
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { FsBundleStore, MemoryBundleStore } from '../src/engine/bundle/store';
import type { BundleSource } from '../src/engine/bundle/source';
import { HarkEngine } from '../src/engine/engine';
import { isHarkError } from '../src/engine/errors';
import { createRng } from '../src/engine/llm/sampling';
import { parseAnswerInterval } from './localizeEval/answerTimes';
import { buildClips, type TruthClip, type TruthEvent } from './localizeEval/clips';
import { EVENT_KINDS, EVENT_QUERIES, type EventKind } from './localizeEval/layout';
import { clampToClip, MISS, meanScores, randomIntervalScores, score, type Scores, type Span } from './localizeEval/metrics';

const ROOT = resolve(import.meta.dirname, '..');
const DEFAULT_BUNDLE = join(ROOT, 'models', 'bundles', 'salmonn-tiny');
const CACHE = join(ROOT, '.bench-cache', 'localize-eval');
/** Fits the 10-minute budget on a 2-core CPU with the tiny bundle, with room to spare. */
const DEFAULT_CLIPS = 24;
const DEFAULT_DRAWS = 100;
const DIRECT_MAX_NEW_TOKENS = 32;

const USAGE = `usage: npm run localize:eval -- [options]
  --bundle DIR|URL|owner/repo   model bundle (default: the bundled tiny test model)
  --variant NAME                fp32 | int4 | … (default: best for the CPU)
  --clips N                     clips of three events each (default ${DEFAULT_CLIPS})
  --seed S                      draws the clips and the random baseline (default 0)
  --draws N                     random-baseline placements per event (default ${DEFAULT_DRAWS})
  --cache DIR                   where downloaded bundles are kept (default ~/.cache/hark)`;

const directQuestion = (event: string) => `When does ${event} happen in the audio? Answer with the start and end time in seconds.`;

type Method = 'ours' | 'random' | 'direct';

const METHOD_LABELS: Record<Method, string> = {
  ours: 'ours: instruction steering (engine.localize)',
  random: 'random interval of the true width',
  direct: 'direct prompting (ask, greedy)',
};

interface QueryRecord {
  clip: string;
  kind: EventKind;
  query: string;
  truth: Span;
  method: Method;
  scores: Scores;
  /** Wall time of the query; null for the random baseline (no model). */
  ms: number | null;
  /** The predicted interval (ours, direct when parsed; none for random, which is many draws). */
  pred?: Span;
  confidence?: number;
  /** Direct prompting: the model's answer and whether it held two times. */
  answer?: string;
  parsed?: boolean;
}

function folderSource(dir: string): BundleSource {
  // As scripts/ask.ts does: every file of the folder, by its path inside the bundle.
  const walk = (d: string): string[] =>
    readdirSync(d).flatMap((name) => (statSync(join(d, name)).isDirectory() ? walk(join(d, name)) : [join(d, name)]));
  return { kind: 'files', files: new Map(walk(dir).map((p) => [relative(dir, p).split('\\').join('/'), new Blob([readFileSync(p)])])) };
}

/**
 * Our method, for one event: the only call of engine.localize. It is told the true width, as the
 * random baseline is, so the two differ only in where they put the interval.
 */
async function localizeEvent(engine: HarkEngine, event: TruthEvent): Promise<{ pred: Span; confidence: number; ms: number }> {
  const started = performance.now();
  const result = await engine.localize(event.query, { widthSeconds: event.end - event.start });
  return { pred: { start: result.start, end: result.end }, confidence: result.confidence, ms: performance.now() - started };
}

/** Baseline 2, for one event: a fresh conversation (no earlier answer to lean on), one greedy answer. */
async function askEvent(engine: HarkEngine, event: TruthEvent, durationSeconds: number): Promise<{ answer: string; pred: Span | null; ms: number }> {
  const started = performance.now();
  engine.newConversation();
  const { text } = await engine.ask(directQuestion(event.query), { maxNewTokens: DIRECT_MAX_NEW_TOKENS, doSample: false });
  const parsed = parseAnswerInterval(text);
  return { answer: text, pred: parsed && clampToClip(parsed, durationSeconds), ms: performance.now() - started };
}

function positiveInteger(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive whole number, not "${value}"`);
  return n;
}

class UsageError extends Error {}

const fixed = (value: number, digits = 3) => (Number.isFinite(value) ? value.toFixed(digits) : '–');
const percent = (value: number) => (Number.isFinite(value) ? `${(100 * value).toFixed(0)} %` : '–');
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const mean = (values: number[]) => (values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length);

function summaryTable(records: QueryRecord[], methods: Method[]): string {
  const lines = ['| method | mean overlap | mean IoU | hit rate | parsed | time per query |', '| --- | ---: | ---: | ---: | ---: | ---: |'];
  for (const method of methods) {
    const rows = records.filter((r) => r.method === method);
    const m = meanScores(rows.map((r) => r.scores));
    const parsed = method === 'direct' ? `${rows.filter((r) => r.parsed).length}/${rows.length} (${percent(mean(rows.map((r) => (r.parsed ? 1 : 0))))})` : '–';
    const times = rows.flatMap((r) => (r.ms === null ? [] : [r.ms]));
    lines.push(`| ${METHOD_LABELS[method]} | ${fixed(m.overlap)} | ${fixed(m.iou)} | ${percent(m.hit)} | ${parsed} | ${times.length ? seconds(mean(times)) : '–'} |`);
  }
  return lines.join('\n');
}

function perEventTable(records: QueryRecord[], methods: Method[]): string {
  const lines = [
    `| event (query) | n | ${methods.map((m) => `${m} overlap / IoU / hit`).join(' | ')} |`,
    `| --- | ---: | ${methods.map(() => '---:').join(' | ')} |`,
  ];
  for (const kind of EVENT_KINDS) {
    const ofKind = records.filter((r) => r.kind === kind);
    if (ofKind.length === 0) continue;
    const cells = methods.map((method) => {
      const m = meanScores(ofKind.filter((r) => r.method === method).map((r) => r.scores));
      return `${fixed(m.overlap, 2)} / ${fixed(m.iou, 2)} / ${percent(m.hit)}`;
    });
    lines.push(`| ${kind} ("${EVENT_QUERIES[kind]}") | ${ofKind.filter((r) => r.method === methods[0]).length} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<number> {
  const wallStart = performance.now();
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      bundle: { type: 'string' },
      variant: { type: 'string' },
      clips: { type: 'string' },
      seed: { type: 'string' },
      draws: { type: 'string' },
      cache: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length > 0) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const clipCount = positiveInteger(values.clips, DEFAULT_CLIPS, 'clips');
  const draws = positiveInteger(values.draws, DEFAULT_DRAWS, 'draws');
  const seed = values.seed === undefined ? 0 : Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new UsageError(`--seed must be a whole number ≥ 0, not "${values.seed}"`);

  // 1. Clips and their truth.
  const setDir = join(CACHE, `seed-${seed}`);
  console.error(`building ${clipCount} clip${clipCount === 1 ? '' : 's'} (seed ${seed}) in ${relative(process.cwd(), setDir) || setDir} …`);
  let t = performance.now();
  const truth = buildClips(seed, clipCount, setDir);
  const lengths = truth.clips.map((c) => c.durationSeconds);
  console.error(
    `  ${Math.min(...lengths).toFixed(1)}–${Math.max(...lengths).toFixed(1)} s (${lengths.filter((s) => s > 30).length} over 30 s), built in ${seconds(performance.now() - t)}`,
  );

  // 2. The model, on wasm as scripts/ask.ts runs it.
  const bundleArg = values.bundle ?? DEFAULT_BUNDLE;
  const isFolder = existsSync(bundleArg) && statSync(bundleArg).isDirectory();
  const store = isFolder ? new MemoryBundleStore() : new FsBundleStore(values.cache ?? join(homedir(), '.cache', 'hark'));
  const engine = new HarkEngine({ store });
  t = performance.now();
  const model = await engine.loadModel(isFolder ? folderSource(bundleArg) : bundleArg, { backend: 'wasm', variant: values.variant });
  console.error(`model: ${model.label} (${model.variant}, ${model.backend}), loaded in ${seconds(performance.now() - t)}`);
  const randomWeightsNote =
    '**This model has random weights** (manifest `randomWeights: true`): its numbers mean nothing beyond showing that the harness runs end to end.';
  if (model.randomWeights) console.error(`\n${randomWeightsNote.replaceAll('*', '')}\n`);

  // A bundle converted before localization existed has no probe graph: its baselines still run.
  const canLocalize = model.localization !== null;
  const noLocalizationNote = `**This model cannot localize events** (${model.label}): its bundle was converted without localization (no \`localization\` in its manifest, or no probe graph in variant ${model.variant}), so the "ours" row is left out. Convert it again with the current models/convert.py.`;
  if (!canLocalize) console.error(`\n${noLocalizationNote.replaceAll('*', '')}\n`);
  const methods: Method[] = canLocalize ? ['ours', 'random', 'direct'] : ['random', 'direct'];

  // 3. Every event of every clip, by every method.
  const records: QueryRecord[] = [];
  const encodeMs: number[] = [];
  const randomDraws = createRng(seed ^ 0x5eed);
  for (const [c, clip] of truth.clips.entries()) {
    t = performance.now();
    const audio = await engine.setAudio(new Uint8Array(readFileSync(join(setDir, clip.file))));
    encodeMs.push(performance.now() - t);
    console.error(`clip ${c + 1}/${truth.clips.length} ${clip.file}: ${clip.durationSeconds.toFixed(2)} s, ${audio.chunks} window(s), encoded in ${seconds(encodeMs.at(-1)!)}`);
    for (const event of clip.events) records.push(...(await evaluateEvent(engine, canLocalize, clip, event, draws, randomDraws)));
  }
  await engine.unload();

  // 4. Tables.
  const encodeNote = `Audio encoding (features, encoders, connector; once per clip, shared by both model methods, not in the times above): ${seconds(mean(encodeMs))} per clip on average.`;
  const report = [
    `## Event localization: ${model.label} (${model.variant}, ${model.backend}), ${truth.clips.length} clip${truth.clips.length === 1 ? '' : 's'} × 3 events, seed ${seed}`,
    '',
    ...(model.randomWeights ? [randomWeightsNote, ''] : []),
    summaryTable(records, methods),
    '',
    `Random: ${draws} placements per event, averaged. ${encodeNote}`,
    ...(canLocalize ? [] : ['', noLocalizationNote]),
    '',
    '### Per event type',
    '',
    perEventTable(records, methods),
  ].join('\n');
  console.log(report);
  writeFileSync(join(setDir, 'results.json'), `${JSON.stringify({ bundle: bundleArg, model: { label: model.label, variant: model.variant, randomWeights: model.randomWeights }, seed, draws, records }, null, 2)}\n`);
  console.log(`\nTotal wall time: ${seconds(performance.now() - wallStart)} (clips, truth and per-query results in ${relative(process.cwd(), setDir) || setDir}/)`);
  return 0;
}

async function evaluateEvent(
  engine: HarkEngine,
  canLocalize: boolean,
  clip: TruthClip,
  event: TruthEvent,
  draws: number,
  randomDraws: () => number,
): Promise<QueryRecord[]> {
  const truthSpan: Span = { start: event.start, end: event.end };
  const base = { clip: clip.file, kind: event.kind, query: event.query, truth: truthSpan };
  const records: QueryRecord[] = [];
  const log: string[] = [];

  if (canLocalize) {
    const ours = await localizeEvent(engine, event);
    records.push({ ...base, method: 'ours', scores: score(ours.pred, truthSpan), ms: ours.ms, pred: ours.pred, confidence: ours.confidence });
    log.push(`ours ${ours.pred.start.toFixed(2)}–${ours.pred.end.toFixed(2)} (conf ${ours.confidence.toFixed(2)}, ${seconds(ours.ms)})`);
  }

  records.push({ ...base, method: 'random', scores: randomIntervalScores(truthSpan, clip.durationSeconds, draws, randomDraws), ms: null });

  const direct = await askEvent(engine, event, clip.durationSeconds);
  records.push({
    ...base,
    method: 'direct',
    scores: direct.pred ? score(direct.pred, truthSpan) : MISS,
    ms: direct.ms,
    ...(direct.pred ? { pred: direct.pred } : {}),
    answer: direct.answer,
    parsed: direct.pred !== null,
  });
  const shown = direct.answer.replace(/\s+/g, ' ').trim().slice(0, 60);
  log.push(direct.pred ? `direct ${direct.pred.start.toFixed(2)}–${direct.pred.end.toFixed(2)}` : `direct unparsed ${JSON.stringify(shown)}`);

  console.error(`  ${event.kind.padEnd(6)} ${event.start.toFixed(2)}–${event.end.toFixed(2)}: ${log.join('; ')}`);
  return records;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(`localize:eval: ${error.message}\n${USAGE}`);
      process.exit(2);
    }
    console.error(isHarkError(error) || error instanceof Error ? `localize:eval: ${error.message}` : error);
    if (!isHarkError(error) && error instanceof Error && process.env.HARK_EVAL_VERBOSE) console.error(error.stack);
    process.exit(1);
  },
);
