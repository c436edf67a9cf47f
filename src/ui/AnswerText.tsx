/**
 * An answer's text as it streams. With beam search the text shown is the best candidate so far,
 * which may be replaced by a different one (a revision): the new text fades in (no animation with
 * prefers-reduced-motion), and while the answer is written its box never shrinks, so a shorter
 * candidate does not make the thread jump. Nothing here is a live region: screen readers hear
 * "Answering…" and "Answer complete." (noticeStore), never each revision.
 */
import { useLayoutEffect, useRef, useState } from 'react';
import type { ChatMessage } from '../stores/conversationStore';

type Assistant = Extract<ChatMessage, { role: 'assistant' }>;

export function AnswerText({ message, testId }: { message: Assistant; testId: string }) {
  const box = useRef<HTMLParagraphElement>(null);
  const largest = useRef({ width: 0, height: 0 });
  const writing = message.status === 'waiting' || message.status === 'streaming';
  const beams = message.stats.beams ?? 1;
  const revisions = message.stats.revisions ?? 0;
  // Revisions made before this answer was shown (a restored one) are not faded in again.
  const [revisionsAtMount] = useState(revisions);

  useLayoutEffect(() => {
    const element = box.current;
    if (!element) return;
    if (!writing || beams === 1) {
      largest.current = { width: 0, height: 0 };
      element.style.minWidth = '';
      element.style.minHeight = '';
      return;
    }
    const { width, height } = element.getBoundingClientRect();
    if (width > largest.current.width || height > largest.current.height) {
      largest.current = { width: Math.max(width, largest.current.width), height: Math.max(height, largest.current.height) };
      // Never wider than the bubble allows (the window may have narrowed meanwhile).
      element.style.minWidth = `min(${largest.current.width}px, 100%)`;
      element.style.minHeight = `${largest.current.height}px`;
    }
  });

  return (
    <p ref={box} className="bubble-text answer-text" data-testid={testId} data-state={message.status} data-tokens={message.stats.tokens} data-prompt-tokens={message.stats.promptTokens ?? undefined} data-revisions={revisions}>
      {message.text !== '' && (
        // A new key per revision restarts the fade on the replaced text.
        <span key={revisions} className={revisions > revisionsAtMount ? 'answer-revised' : undefined}>
          {message.text}
        </span>
      )}
      {writing && <span className="cursor" aria-hidden="true" />}
    </p>
  );
}
