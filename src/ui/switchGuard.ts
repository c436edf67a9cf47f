/**
 * Opening another recording while an answer is still being written would cut that answer off
 * without a word. Ask first; if the person goes ahead, stop the answer cleanly (so what was
 * written is saved in History) and say so at the top of the new conversation.
 */
import { useConversationStore } from '../stores/conversationStore';

export async function mayReplaceRecording(nextName: string): Promise<boolean> {
  const conversation = useConversationStore.getState();
  if (conversation.phase === 'idle') return true;
  const question = conversation.messages.filter((m) => m.role === 'user').at(-1)?.text ?? 'the last question';
  if (!window.confirm(`An answer is still being written. Stop it and open “${nextName}”? What it has written so far stays in History.`)) return false;
  await conversation.stopAndWait();
  conversation.noteForNextRecording(`The answer to “${question}” was stopped when you opened “${nextName}”; what it wrote is kept in History.`);
  return true;
}
