/**
 * "Classify": the preset label sets and the checks of a typed label list. The engine refuses the
 * same mistakes (src/engine/llm/choices.ts); checking here first lets the form say what is wrong
 * while the person types, before anything waits in the engine lane.
 */

export interface LabelPreset {
  key: string;
  name: string;
  question: string;
  labels: string[];
}

export const LABEL_PRESETS: readonly LabelPreset[] = [
  { key: 'emotion', name: 'Emotion', question: 'What emotion does the speaker express?', labels: ['neutral', 'happy', 'sad', 'angry'] },
  { key: 'speech', name: 'Speech or not', question: 'Is there speech in this recording?', labels: ['speech', 'no speech'] },
  { key: 'speakers', name: 'Number of speakers', question: 'How many people speak in this recording?', labels: ['1', '2', '3 or more'] },
  {
    key: 'genre',
    name: 'Music genre',
    question: 'What genre is the music?',
    labels: ['classical', 'jazz', 'rock', 'pop', 'electronic', 'hip hop'],
  },
];

/** As many as the engine compares at once (MAX_CHOICES in src/engine/llm/choices.ts). */
export const MAX_LABELS = 64;

/** "neutral, happy, sad" as typed in the labels field. */
export function formatLabels(labels: readonly string[]): string {
  return labels.join(', ');
}

/** The labels of a comma-separated list, or why they cannot be used (in words that say what to do). */
export function parseLabels(text: string): { labels: string[]; error: null } | { labels: null; error: string } {
  // One trailing comma is what typing the next label looks like: not an empty label yet.
  const parts = text.replace(/,\s*$/, '').split(',').map((part) => part.trim());
  if (parts.length === 1 && parts[0] === '') return { labels: null, error: 'Type at least two labels, separated by commas (for example “happy, sad”).' };
  if (parts.includes('')) return { labels: null, error: 'One of the labels is empty: remove the extra comma or type a label there.' };
  if (parts.length < 2) return { labels: null, error: `Only one label (“${parts[0]}”): add another one after a comma, so there is something to choose between.` };
  if (parts.length > MAX_LABELS) return { labels: null, error: `At most ${MAX_LABELS} labels can be compared at once; there are ${parts.length}. Remove some.` };
  const seen = new Set<string>();
  for (const label of parts) {
    if (seen.has(label)) return { labels: null, error: `The label “${label}” is given twice: each label must be different. Remove one of them.` };
    seen.add(label);
  }
  return { labels: parts, error: null };
}

/** A probability as the bars show it: whole percent ("62%"). */
export function formatPercent(probability: number): string {
  return `${Math.round(probability * 100)}%`;
}
