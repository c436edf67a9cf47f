/**
 * "Where in the recording?" as people see it: the found span's place on the waveform, the evidence
 * curve as an SVG path on the same time axis, and the words that describe a result, its progress
 * and why Find cannot run. Pure functions (no DOM, no stores), so they are unit-tested directly.
 */

/** A stretch of the recording, in seconds. */
export interface TimeSpan {
  start: number;
  end: number;
}

/** What a found span says about itself (a LocalizationResult has these fields). */
export interface FoundSpan extends TimeSpan {
  event: string;
  /** 0..1 */
  confidence: number;
}

/** One point of the evidence curve (a LocalizationResult's `curve`). */
export interface EvidencePoint {
  time: number;
  delta: number;
}

/** Progress as the engine reports it (a LocalizeProgress has these fields). */
export interface FindProgress {
  done: number;
  total: number;
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}

/**
 * Where a span sits on a track that shows `duration` seconds across its whole width, as
 * percentages of that width (CSS `left`/`width`, so it follows the track when it resizes). The
 * span is clipped to the recording; null when nothing of it is inside.
 */
export function spanPercent(span: TimeSpan, duration: number): { left: number; width: number } | null {
  if (!(duration > 0) || !Number.isFinite(span.start) || !Number.isFinite(span.end)) return null;
  const start = clamp(Math.min(span.start, span.end), 0, duration);
  const end = clamp(Math.max(span.start, span.end), 0, duration);
  if (end <= start) return null;
  return { left: (start / duration) * 100, width: ((end - start) / duration) * 100 };
}

/**
 * 0:12.0, 1:05.3, 1:02:03.4: a clock time to a tenth of a second (the found span is finer than
 * the whole seconds of the waveform's labels). Rounded once, so 59.96 s is 1:00.0, not 0:60.0.
 */
export function formatClockTenths(seconds: number): string {
  const tenths = Math.max(0, Math.round((Number.isFinite(seconds) ? seconds : 0) * 10));
  const whole = Math.floor(tenths / 10);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = `${String(whole % 60).padStart(2, '0')}.${tenths % 10}`;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

export function formatConfidence(confidence: number): string {
  return `${Math.round(clamp(Number.isFinite(confidence) ? confidence : 0, 0, 1) * 100)}%`;
}

/** "Found: a dog barking, 0:12.0 to 0:14.0, confidence 62%" (the highlight's accessible name). */
export function describeFound(found: FoundSpan): string {
  return `Found: ${found.event.trim()}, ${formatClockTenths(found.start)} to ${formatClockTenths(found.end)}, confidence ${formatConfidence(found.confidence)}`;
}

/** "Finding… 3 of 5" once the engine has reported progress, "Finding…" before. */
export function findProgressText(progress: FindProgress | null): string {
  if (!progress || !(progress.total > 0)) return 'Finding…';
  return `Finding… ${Math.min(progress.done, progress.total)} of ${progress.total}`;
}

/**
 * The points of the curve that describe the recording itself, in time order. The model hears the
 * last 30 s window padded with silence, and the engine reports Δ for those tokens too; they lie
 * past the recording's end, off the waveform's time axis, so they are not drawn.
 */
export function curveWithin(curve: readonly EvidencePoint[], duration: number): EvidencePoint[] {
  return curve
    .filter((p) => Number.isFinite(p.time) && Number.isFinite(p.delta) && p.time >= 0 && p.time <= duration)
    .sort((a, b) => a.time - b.time);
}

/**
 * The evidence curve as an SVG path in a viewBox of `0 0 duration 1`: x is the time in seconds,
 * so the path lines up with the waveform above it at any width (drawn with
 * preserveAspectRatio="none"); y runs from the largest Δ (0, top) to the smallest (1, bottom),
 * with a small margin. Only the points within the recording are drawn (see curveWithin). `zero` is where Δ = 0 lies (null when it is outside the curve's range).
 */
export function evidencePath(curve: readonly EvidencePoint[], duration: number, margin = 0.08): { d: string; zero: number | null } {
  const points = curveWithin(curve, duration);
  if (points.length === 0) return { d: '', zero: null };
  let low = Infinity;
  let high = -Infinity;
  for (const p of points) {
    low = Math.min(low, p.delta);
    high = Math.max(high, p.delta);
  }
  const range = high - low;
  // A flat curve (no evidence anywhere) is drawn as a line through the middle.
  const y = (delta: number) => (range > 0 ? margin + ((high - delta) / range) * (1 - 2 * margin) : 0.5);
  const round = (value: number) => Number(value.toFixed(4));
  const d = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${round(p.time)} ${round(y(p.delta))}`).join(' ');
  const zero = range > 0 && low <= 0 && high >= 0 ? round(y(0)) : null;
  return { d, zero };
}

/** The time of the largest Δ (for the curve's accessible description); null for an empty curve. */
export function peakTime(curve: readonly EvidencePoint[]): number | null {
  let best: EvidencePoint | null = null;
  for (const p of curve) if (Number.isFinite(p.delta) && (best === null || p.delta > best.delta)) best = p;
  return best ? best.time : null;
}

/** What Find depends on, as the stores report it. */
export interface FindConditions {
  modelStatus: 'idle' | 'loading' | 'ready' | 'paused' | 'error';
  /** The loaded model can localize (its bundle has a steering probe). */
  modelCanLocalize: boolean;
  hasRecording: boolean;
  audioStatus: 'empty' | 'decoding' | 'waiting-model' | 'encoding' | 'ready' | 'error' | 'stopped';
  /** An answer is being written (the engine does one thing at a time). */
  answering: boolean;
}

export const NO_PROBE_REASON = 'This model’s files have no localization probe; convert it again with the current converter.';

/** Why Find cannot run now, in one line that says what to do; null when it can. */
export function findBlockedReason(c: FindConditions): string | null {
  if (c.modelStatus === 'loading' || c.modelStatus === 'idle') return 'Waiting for the model to finish loading…';
  if (c.modelStatus === 'paused') return 'The model’s download is paused: resume it under Models to find events.';
  if (c.modelStatus === 'error') return 'No model is loaded: load one under Models to find events.';
  if (!c.modelCanLocalize) return NO_PROBE_REASON;
  if (!c.hasRecording) return 'Record, open a file or pick a sample first, then find events in it.';
  if (c.audioStatus === 'error') return 'The model could not listen to this recording: open another one to find events in it.';
  if (c.audioStatus === 'stopped') return 'Listening to the recording was stopped: press “Listen again”, then Find.';
  if (c.audioStatus !== 'ready') return 'The model is still listening to the recording: Find is ready when it has.';
  if (c.answering) return 'An answer is being written: Find is ready when it is finished (or stopped).';
  return null;
}
