/**
 * Task presets come from the loaded bundle's own task prompts, read as a person reads them: the
 * real manifests of both tiny bundles (SALMONN, format 1; ALARM, format 2), whose prompts mark the
 * recording differently ("<Speech><SpeechHere></Speech> …" and "<AudioHere>…"). A free question
 * ("{}" after the marker: both have a QA task) is no preset; the marker never shows, and a
 * follow-up sends the prompt without it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/engine/bundle/manifest';
import { audioMarkerOf, promptParts } from '../../src/engine/llm/prompt';
import { withoutAudioSlot } from '../../src/stores/conversationStore';
import { fillPrompt, taskPresets } from '../../src/ui/tasks';
import { REPO_ROOT } from '../helpers/golden';

const manifest = (name: string) => parseManifest(JSON.parse(readFileSync(join(REPO_ROOT, 'models', 'bundles', name, 'manifest.json'), 'utf8')));
const salmonn = manifest('salmonn-tiny');
const alarm = manifest('alarm-tiny');

describe('task presets from the bundle’s own prompts', () => {
  it('each model’s audio marker is its userText without the question', () => {
    expect(audioMarkerOf(salmonn.prompt)).toBe('<Speech><SpeechHere></Speech>');
    expect(audioMarkerOf(alarm.prompt)).toBe('<AudioHere>');
    expect(audioMarkerOf({ userText: '{}', audioSlot: '<X>' })).toBe('<X>');
  });

  it('ALARM: its own tasks, shown without <AudioHere>; its free-question QA task is no preset', () => {
    const presets = taskPresets(alarm.tasks, audioMarkerOf(alarm.prompt));
    expect(Object.keys(alarm.tasks).sort()).toEqual(['QA', 'describe']);
    expect(presets.map((p) => [p.key, p.name, p.shown, p.needsInput])).toEqual([['describe', 'Describe', 'Describe the audio content.', false]]);
    // What the preset sends is the manifest's prompt, which the engine's prompt assembly accepts as is.
    expect(presets[0]!.prompt).toBe(alarm.tasks.describe);
    expect(alarm.tasks.describe!.split(alarm.prompt.audioSlot)).toHaveLength(2);
    expect(withoutAudioSlot(presets[0]!.prompt, audioMarkerOf(alarm.prompt))).toBe('Describe the audio content.');
  });

  it('SALMONN: its tasks, shown without <Speech><SpeechHere></Speech>; slot filling still takes input; no free-question presets', () => {
    const marker = audioMarkerOf(salmonn.prompt);
    const presets = taskPresets(salmonn.tasks, marker);
    // QA and gender_QA are both a bare "{}" after the marker
    expect(presets.map((p) => p.key).sort()).toEqual(Object.keys(salmonn.tasks).filter((k) => k !== 'QA' && k !== 'gender_QA').sort());
    expect(presets.find((p) => p.key === 'asr')!.shown).toBe('Recognize the speech and give me the transcription.');
    for (const preset of presets) {
      expect(preset.shown).not.toMatch(/<Speech|SpeechHere|AudioHere/);
      expect(preset.prompt).toBe(salmonn.tasks[preset.key]);
    }
    const slot = presets.find((p) => p.key === 'slot_filling')!;
    expect(slot.needsInput).toBe(true);
    expect(withoutAudioSlot(fillPrompt(slot.prompt, 'the time'), marker)).not.toContain('{}');
  });

  it('an empty marker (no model loaded yet) leaves the text as typed, spaces tidied', () => {
    expect(withoutAudioSlot('  What   is this? ', '')).toBe('What is this?');
  });
});
