/** Task presets from a bundle's own task prompts; friendly names for SALMONN's, and which ones are shown first. */
import { withoutAudioSlot } from '../stores/conversationStore';

const TASK_NAMES: Record<string, string> = {
  asr: 'Transcribe',
  audiocaption: 'Describe',
  audio_story_telling: 'Tell a story',
  speech_query: 'Answer the question',
  emotion_recognition: 'Emotion',
  music_description: 'Describe the music',
  speech_audio_coreasoning: 'Reason about speech + sound',
  keywords: 'Keywords',
  audiocaption_v2: 'What do you hear?',
  audio_speech_description: 'Speech and background',
  fluent_speech_audio: 'Describe in one sentence',
  speech_audio_query: 'Answer with the background sound',
  lyrics_recognition: 'Lyrics',
  speaker_verification: 'Only one speaker?',
  speech_separation: 'Who says what',
  speaker_diarization_asr: 'Transcribe each speaker',
  phone_recognition: 'Phonetic transcription',
  asr_zh: 'Transcribe (Chinese)',
  asr_de: 'Transcribe (German)',
  translation_ec: 'Translate to Chinese',
  translation_en2ja: 'Translate to Japanese',
  translation_en2de: 'Translate to German',
  slot_filling: 'Find a detail…',
};

/** Shown as chips; the rest sit behind "More tasks". */
const PRIMARY = [
  'asr',
  'audiocaption',
  'audio_story_telling',
  'speech_query',
  'emotion_recognition',
  'music_description',
  'speech_audio_coreasoning',
  'keywords',
];

export interface TaskPreset {
  key: string;
  name: string;
  prompt: string;
  /** The prompt as a person reads it: without the model's audio marker. */
  shown: string;
  /** The prompt has a "{}" the user fills in (e.g. slot filling). */
  needsInput: boolean;
  primary: boolean;
}

function humanize(key: string): string {
  const text = key.replace(/[_-]+/g, ' ').trim();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function taskName(key: string): string {
  return TASK_NAMES[key] ?? humanize(key);
}

/**
 * Presets from a bundle's tasks, whose prompts hold `audioMarker` (ModelInfo.audioMarker: the
 * text that stands for the recording). Prompts that are only a "{}" placeholder (free questions
 * such as SALMONN's or ALARM's QA) are left out: the question box already does that.
 */
export function taskPresets(tasks: Record<string, string>, audioMarker: string): TaskPreset[] {
  const presets: TaskPreset[] = [];
  for (const [key, prompt] of Object.entries(tasks)) {
    const shown = withoutAudioSlot(prompt, audioMarker);
    if (shown === '{}' || shown === '') continue;
    presets.push({ key, name: taskName(key), prompt, shown, needsInput: prompt.includes('{}'), primary: PRIMARY.includes(key) });
  }
  const rank = (p: TaskPreset) => (p.primary ? PRIMARY.indexOf(p.key) : PRIMARY.length + (p.key in TASK_NAMES ? Object.keys(TASK_NAMES).indexOf(p.key) : 1000));
  return presets.sort((a, b) => rank(a) - rank(b));
}

export function fillPrompt(prompt: string, value: string): string {
  const at = prompt.indexOf('{}');
  return at < 0 ? prompt : prompt.slice(0, at) + value.trim() + prompt.slice(at + 2);
}
