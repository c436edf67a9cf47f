/** The bench's one markdown table (and its legend) from the job results. */
import type { EncoderJobResult, JobResult } from './types';

const fmt = (value: number | undefined, digits = 1): string =>
  value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits);

/** A rate in tokens/s: whole numbers, but two significant digits below 10 (a software adapter's
 * 0.12 tok/s prefill would otherwise print as 0). */
const fmtRate = (value: number | undefined): string =>
  value === undefined || !Number.isFinite(value) ? '–' : value < 10 ? value.toPrecision(2) : value.toFixed(0);

function backendLabel(r: JobResult): string {
  return `${r.spec.backend} · ${r.device.label}`;
}

function decodeAt(r: JobResult, context: number): number | undefined {
  return r.runs.find((run) => run.context === context && !r.spec.loadOnly)?.decodeMsPerToken;
}

function prefillRate(r: JobResult, tokens: number): number | undefined {
  const run = r.runs.find((x) => x.promptTokens === tokens && !r.spec.loadOnly);
  return run ? (run.promptTokens * 1000) / run.prefillMs : undefined;
}

/** Bytes read per decode step at `context`: every decoder weight + the KV cache. */
function bytesPerToken(r: JobResult, context: number): number {
  return r.decoderBytes + r.kvBytesPerToken * context;
}

function roof(r: JobResult): string {
  const run = r.runs[0];
  if (!run || run.decodeSteps === 0) return '–';
  const achieved = bytesPerToken(r, run.context) / (run.decodeMsPerToken / 1000) / 1e9;
  return `${fmt((100 * achieved) / r.device.bandwidthGBs, 1)} % (${fmt(achieved, 2)} of ${fmt(r.device.bandwidthGBs, 1)} GB/s)`;
}

function memoryMb(r: JobResult): string {
  const maxContext = Math.max(0, ...r.runs.map((run) => run.context));
  return fmt((r.weightBytes + r.kvBytesPerToken * maxContext) / 1e6, 0);
}

function peerColumns(r: JobResult): string[] {
  const p = r.peer;
  const run = r.runs[0];
  if (!p || !run) return ['–', '–', '–', '–', r.spec.peer ? 'not run' : '–'];
  const oursPrefill = (run.promptTokens * 1000) / run.prefillMs;
  const theirsPrefill = (p.promptTokens * 1000) / p.prefillMs;
  const same = `${p.sameIdsShort ? '✓' : '✗'} / ${p.sameIds ? '✓' : '✗'}`;
  return [
    fmtRate(theirsPrefill),
    fmt(p.decodeMsPerToken, 1),
    `${fmt(oursPrefill / theirsPrefill, 2)}×`,
    `${fmt(p.decodeMsPerToken / run.decodeMsPerToken, 2)}×`,
    same,
  ];
}

export function renderTable(results: JobResult[], contexts: number[]): string {
  const header = [
    'model',
    'precision',
    'backend · device',
    'load s',
    'first run s',
    'prefill 111 tok/s',
    'prefill 1000 tok/s',
    ...contexts.map((c) => `decode ms/tok @${c >= 1024 ? `${c / 1024}k` : c}`),
    'steps',
    'weights+KV MB',
    '% of roof @128',
    'tjs prefill 111 tok/s',
    'tjs decode ms/tok @128',
    'ours÷tjs prefill',
    'ours÷tjs decode',
    'same ids (16 / 111-tok prompt)',
    'notes',
  ];
  const rows = results.map((r) => {
    const note = [r.error ? r.error.slice(0, 160) : '', ...(r.notes ?? [])].filter(Boolean).join('; ').replace(/\|/g, '/');
    if (r.error && r.loadMs === 0) {
      return [r.spec.model, r.spec.precision, backendLabel(r), ...Array(header.length - 4).fill('–'), `failed: ${note}`];
    }
    if (r.spec.loadOnly) {
      // Load + one decoder run of a few tokens on an empty cache (its first run: shader
      // compilation included), then stop: shown in the "first run" column.
      const run = r.runs[0];
      return [
        r.spec.model,
        r.spec.precision,
        backendLabel(r),
        fmt(r.loadMs / 1000, 1),
        run ? `${fmt(run.prefillMs / 1000, 1)} (one step, ${run.promptTokens} tok)` : '–',
        '–',
        '–',
        ...contexts.map(() => '–'),
        '–',
        memoryMb(r),
        '–',
        '–', '–', '–', '–', '–',
        r.error ? note : [`load + one decoder step of ${r.spec.loadOnlyPrompt ?? 1} token(s) on an empty cache, then stop`, note].filter(Boolean).join('; '),
      ];
    }
    return [
      r.spec.model,
      r.spec.precision,
      backendLabel(r),
      fmt(r.loadMs / 1000, 1),
      fmt(r.warmupMs === undefined ? undefined : r.warmupMs / 1000, 1),
      fmtRate(prefillRate(r, 111)),
      fmtRate(prefillRate(r, 1000)),
      ...contexts.map((c) => fmt(decodeAt(r, c), 1)),
      String(r.runs[0]?.decodeSteps ?? '–'),
      memoryMb(r),
      roof(r),
      ...peerColumns(r),
      note,
    ];
  });
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function renderLegend(results: JobResult[]): string {
  const devices = new Map<string, string>();
  for (const r of results) {
    devices.set(`${r.spec.backend} · ${r.device.label}`, `${fmt(r.device.bandwidthGBs, 1)} GB/s (${r.device.bandwidthMethod})`);
  }
  const errors = results.filter((r) => r.error).map((r) => `- ${r.spec.model} ${r.spec.precision} ${r.spec.backend}: ${r.error}`);
  return [
    'Columns: load = reading the graph files + creating the embed_tokens and decoder sessions; first run = the warm-up',
    'generation (16-token prompt, 4 tokens), on WebGPU mostly shader compilation; prefill = embedding the',
    'prompt + decoder prefill + first token; decode = mean ms per generated token over `steps` steps after a prefill',
    'that ends near that context; weights+KV = graph files + fp32 KV cache at the largest context measured;',
    '% of roof = (decoder weight bytes + KV cache bytes read per decode step at @128) ÷ ms/token, against the',
    'copy bandwidth measured in the same job; tjs = transformers.js generate() on the same weights, same ORT,',
    'same backend; ours÷tjs > 1 means ours is faster (prefill tok/s ratio; decode: their ms/token ÷ ours);',
    'same ids: greedy ids identical for a 16-token and for the 111-token prompt. Greedy, random prompt ids (seed 1234).',
    '',
    'Measured roofs:',
    ...[...devices].map(([device, bw]) => `- ${device}: ${bw}`),
    ...(errors.length ? ['', 'Errors:', ...errors] : []),
  ].join('\n');
}

/**
 * Time to first token for a 30 s clip: the engine's features + Whisper-large-v2 encoder + BEATs +
 * window Q-Former (last encode of the clip) + the LLM's prefill of the 30 s prompt to its first token.
 */
export function renderEncoderTable(results: EncoderJobResult[]): string {
  const header = [
    'audio side',
    'backend · device',
    'load s',
    'weights MB',
    'encodes',
    'first encode s',
    'features ms',
    'Whisper-large-v2 enc. ms',
    'BEATs ms',
    'Q-Former ms',
    'audio side s',
    'prefill (LLM, tokens) ms',
    'time to first token s',
    'notes',
  ];
  const rows = results.map((r) => {
    const last = r.encodes.at(-1);
    const first = r.encodes[0];
    const audioMs = last ? last.featuresMs + last.speechEncoderMs + last.audioEncoderMs + last.connectorMs : undefined;
    const prefill = r.prefill ? `${fmt(r.prefill.ms, 0)} (${r.prefill.model}, ${r.prefill.promptTokens} tok)` : '–';
    const ttft = audioMs !== undefined && r.prefill ? fmt((audioMs + r.prefill.ms) / 1000, 2) : audioMs !== undefined ? `≥ ${fmt(audioMs / 1000, 1)} (no prefill)` : '–';
    const notes = [r.error ? `failed: ${r.error}` : '', r.prefillSkipped ? `prefill not run: ${r.prefillSkipped}` : '']
      .filter(Boolean)
      .join('; ')
      .replace(/\|/g, '/');
    return [
      r.spec.precision,
      `${r.spec.backend} · ${r.device.label}`,
      fmt(r.loadMs ? r.loadMs / 1000 : undefined, 1),
      fmt(r.weightBytes / 1e6, 0),
      String(r.encodes.length),
      fmt(first ? first.totalMs / 1000 : undefined, 1),
      fmt(last?.featuresMs, 0),
      fmt(last?.speechEncoderMs, 0),
      fmt(last?.audioEncoderMs, 0),
      fmt(last?.connectorMs, 0),
      fmt(audioMs === undefined ? undefined : audioMs / 1000, 1),
      prefill,
      ttft,
      notes,
    ];
  });
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [
    'Time to first token, 30 s clip (SALMONN audio side at real geometry, random weights: Whisper-large-v2 encoder',
    '32 layers d 1280, BEATs iter3+ 12 layers d 768, window Q-Former 2 layers → 88 tokens of 4096):',
    '',
    line(header),
    line(header.map(() => '---')),
    ...rows.map(line),
    '',
    'load = reading the files + creating the three sessions; features = Whisper log-mel + kaldi fbank in JS; the stage',
    'columns are the last encode (the first includes shader compilation on WebGPU); time to first token = features +',
    'encoders + connector + the LLM prefill of the 30 s prompt ([BOS] + text + 88 audio tokens + text) to its first token.',
  ].join('\n');
}
