/** The label list of "Classify": what the form accepts, and what it refuses with which words. */
import { describe, expect, it } from 'vitest';
import { LABEL_PRESETS, formatLabels, formatPercent, parseLabels } from '../../src/ui/classifyLabels';

describe('Classify labels', () => {
  it('reads a comma-separated list, trimmed, in the order typed (one trailing comma is still typing)', () => {
    expect(parseLabels(' neutral, happy ,sad,angry ')).toEqual({ labels: ['neutral', 'happy', 'sad', 'angry'], error: null });
    expect(parseLabels('speech, no speech,')).toEqual({ labels: ['speech', 'no speech'], error: null });
  });

  it('refuses empties, duplicates, a single label and too many, saying what to do', () => {
    expect(parseLabels('').error).toMatch(/at least two labels/);
    expect(parseLabels('happy, , sad').error).toMatch(/empty: remove the extra comma/);
    expect(parseLabels(',happy, sad').error).toMatch(/empty/);
    expect(parseLabels('happy').error).toMatch(/Only one label/);
    expect(parseLabels('happy, sad, happy').error).toBe('The label “happy” is given twice: each label must be different. Remove one of them.');
    expect(parseLabels(Array.from({ length: 65 }, (_, i) => `l${i}`).join(',')).error).toMatch(/At most 64/);
  });

  it('has the four presets of issue 12, each valid and round-tripping through the field', () => {
    expect(LABEL_PRESETS.map((p) => p.key)).toEqual(['emotion', 'speech', 'speakers', 'genre']);
    for (const preset of LABEL_PRESETS) {
      expect(parseLabels(formatLabels(preset.labels))).toEqual({ labels: preset.labels, error: null });
      expect(preset.question).toMatch(/\?$/);
    }
  });

  it('shows whole percents', () => {
    expect(formatPercent(0.7905868336815814)).toBe('79%');
    expect(formatPercent(2.3e-10)).toBe('0%');
    expect(formatPercent(1)).toBe('100%');
  });
});
