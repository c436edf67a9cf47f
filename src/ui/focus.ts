/**
 * Where keyboard focus goes when the control a person pressed disappears or is disabled (a sample
 * chip replaced by the recording view, a task chip disabled while answering): the question box,
 * where they continue. Without this, focus falls back to <body> and a keyboard user starts over.
 */
import { useAudioStore } from '../stores/audioStore';

export const QUESTION_BOX_ID = 'question';

export function focusQuestionBox(): void {
  document.getElementById(QUESTION_BOX_ID)?.focus();
}

/**
 * Focuses the question box once the recording being opened has replaced the current one (the
 * chip that opened it is gone by then). If opening fails, focus stays where it is.
 */
export function focusQuestionBoxWhenOpened(): void {
  const before = useAudioStore.getState().recording;
  let sawDecoding = false;
  const unsubscribe = useAudioStore.subscribe((state) => {
    if (state.recording !== before) {
      unsubscribe();
      // After React has rendered the recording view (the question box is always mounted).
      requestAnimationFrame(() => focusQuestionBox());
    } else if (state.status === 'decoding') {
      sawDecoding = true;
    } else if (sawDecoding) {
      unsubscribe();
    }
  });
}
