/**
 * Beam search as people read it, for the chat and local history (pure; test/unit/beams.test.ts):
 * the decoding part of an answer's settings summary, its stats line while and after it is written,
 * and the beams and stats that stored or imported answers may or may not hold.
 */

/** The decoding settings an answer records (see AnswerSettings in conversationStore). */
export interface DecodingSettings {
  doSample: boolean;
  temperature: number;
  topP: number;
  seed: number;
  /** Missing in answers saved before beam search: they were decoded with one beam. */
  numBeams?: number;
}

/**
 * "greedy (always the most likely word)", "4 beams (the best of 4 candidate answers)" or
 * "sampling: temperature …". Sampling draws one sequence whatever the beams are.
 */
export function decodingSummary(settings: DecodingSettings): string {
  if (settings.doSample) return `sampling: temperature ${settings.temperature.toFixed(2)}, top-p ${settings.topP.toFixed(2)}, seed ${settings.seed}`;
  const beams = settings.numBeams ?? 1;
  if (beams > 1) return `${beams} beams (the best of ${beams} candidate answers)`;
  return 'greedy (always the most likely word)';
}

/** What a beam answer says while it is written: the shown text is the best candidate so far. */
export function beamStatus(beams: number): string {
  return `Comparing ${beams} candidate answers…`;
}

/**
 * An answer's stats line (before how it ended): "12 tokens · 20.1 tokens/s · first token 80 ms";
 * a beam answer "Comparing 4 candidate answers… · 5 tokens · …" while written, then "4 beams · 16
 * tokens · 3.1 tokens/s per beam · …".
 */
export function answerStatsParts(
  stats: { tokens: number; tokensPerSecond: number | null; timeToFirstTokenMs: number | null; beams?: number },
  status: 'waiting' | 'streaming' | 'done' | 'stopped' | 'error',
  formatMs: (ms: number) => string,
): string[] {
  const parts: string[] = [];
  const beams = stats.beams ?? 1;
  if (status === 'waiting') parts.push('Reading the question…');
  else if (status === 'streaming' && beams > 1) parts.push(beamStatus(beams));
  else if (beams > 1) parts.push(`${beams} beams`);
  if (stats.tokens > 0) parts.push(`${stats.tokens} token${stats.tokens === 1 ? '' : 's'}`);
  // A beam step extends every beam by one token: its pace is per beam.
  if (stats.tokensPerSecond !== null) parts.push(`${stats.tokensPerSecond.toFixed(1)} tokens/s${beams > 1 ? ' per beam' : ''}`);
  if (stats.timeToFirstTokenMs !== null) parts.push(`first token ${formatMs(stats.timeToFirstTokenMs)}`);
  return parts;
}

/** A stored answer's beams: a whole number of 1 or more, else 1 (answers saved before beam search). */
export function storedBeams(value: unknown): number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 64 ? value : 1;
}

/** A stored answer's beam stats, when it has well-formed ones (none for one-beam and older answers). */
export function storedBeamStats(stats: Record<string, unknown>): { beams?: number; revisions?: number } {
  const beams = storedBeams(stats.beams);
  if (beams === 1) return {};
  const revisions = stats.revisions;
  return { beams, ...(typeof revisions === 'number' && Number.isInteger(revisions) && revisions >= 0 ? { revisions } : {}) };
}
