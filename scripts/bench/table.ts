/** The bench's one markdown table (and its legend) from the job results. */
import type { JobResult } from './types';

const fmt = (value: number | undefined, digits = 1): string =>
  value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits);

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
    fmt(theirsPrefill, 0),
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
    const note = r.error ? r.error.slice(0, 160).replace(/\|/g, '/') : '';
    if (r.error && r.loadMs === 0) {
      return [r.spec.model, r.spec.precision, backendLabel(r), ...Array(header.length - 4).fill('–'), `failed: ${note}`];
    }
    if (r.spec.loadOnly) {
      const run = r.runs[0];
      return [
        r.spec.model,
        r.spec.precision,
        backendLabel(r),
        fmt(r.loadMs / 1000, 1),
        '–',
        run ? `${fmt((run.promptTokens * 1000) / run.prefillMs, 1)} (${run.promptTokens} tok)` : '–',
        '–',
        ...contexts.map((_, i) => (i === 0 && run ? `${fmt(run.decodeMsPerToken, 0)} @${run.context}` : '–')),
        run ? String(run.decodeSteps) : '–',
        memoryMb(r),
        roof(r),
        '–', '–', '–', '–', '–',
        note || 'load + one prefill + one decode step only',
      ];
    }
    return [
      r.spec.model,
      r.spec.precision,
      backendLabel(r),
      fmt(r.loadMs / 1000, 1),
      fmt(r.warmupMs === undefined ? undefined : r.warmupMs / 1000, 1),
      fmt(prefillRate(r, 111), 0),
      fmt(prefillRate(r, 1000), 0),
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
