/**
 * Reading a start and an end time out of a model's free-text answer (the direct-prompting
 * baseline): the first two times mentioned, in order, whatever the wording around them —
 * "2.5 s to 4", "from 00:03 to 00:05", "between 3 and 5 seconds", "1:05–1:10", "1 min 5 s",
 * "500 ms". Fewer than two times: null (scored as a miss and counted as a parse failure).
 *
 * Deliberately literal: a number that is not a time ("the 2 beeps …") is still taken, because a
 * model that answers that way did not answer the question asked.
 */

export interface AnswerInterval {
  /** Seconds, in the order the answer gave them (not swapped, not clipped). */
  start: number;
  end: number;
}

// One time, in the first form that matches at a position:
//  1. minutes and seconds with units: "1 min 5 s", "1m05s", "2 minutes and 3.5 seconds";
//  2. a clock: "mm:ss", "h:mm:ss", with optional fractional seconds ("00:03.5");
//  3. a plain number, optionally in ms or minutes ("500 ms", "1.5 min"); seconds otherwise.
// A number glued to letters or a dot before it ("mp3", "v2") is not a time.
const NUMBER = String.raw`(?:\d+(?:\.\d+)?|\.\d+)`;
const MIN_UNIT = String.raw`(?:minutes?|mins?|m)`;
const SEC_UNIT = String.raw`(?:seconds?|secs?|s)`;
const TIME = new RegExp(
  [
    String.raw`(?<mins>\d+)\s*${MIN_UNIT}\s*(?:and\s+)?(?<secs>${NUMBER})\s*${SEC_UNIT}(?![a-z])`,
    String.raw`(?<c1>\d+):(?<c2>\d{1,2}(?:\.\d+)?)(?::(?<c3>\d{1,2}(?:\.\d+)?))?`,
    String.raw`(?<num>${NUMBER})(?:\s*(?<unit>milliseconds?|ms|minutes?|mins?)(?![a-z]))?`,
  ]
    .map((alternative) => String.raw`(?<![A-Za-z\d.])${alternative}`)
    .join('|'),
  'gi',
);

/** Every time mentioned in `text`, in seconds, in order. */
export function parseTimes(text: string): number[] {
  const times: number[] = [];
  for (const match of text.matchAll(TIME)) {
    const g = match.groups ?? {};
    if (g.mins !== undefined && g.secs !== undefined) {
      times.push(Number(g.mins) * 60 + Number(g.secs));
    } else if (g.c1 !== undefined && g.c2 !== undefined) {
      // Two fields are minutes:seconds (what a model means by "00:03"); three are h:mm:ss.
      times.push(g.c3 !== undefined ? Number(g.c1) * 3600 + Number(g.c2) * 60 + Number(g.c3) : Number(g.c1) * 60 + Number(g.c2));
    } else if (g.num !== undefined) {
      const unit = (g.unit ?? '').toLowerCase();
      const factor = unit.startsWith('m') ? (unit === 'ms' || unit.startsWith('milli') ? 0.001 : 60) : 1;
      times.push(Number(g.num) * factor);
    }
  }
  return times;
}

/** The first two times of the answer as (start, end), or null when it names fewer than two. */
export function parseAnswerInterval(text: string): AnswerInterval | null {
  const [start, end] = parseTimes(text);
  return start === undefined || end === undefined ? null : { start, end };
}
