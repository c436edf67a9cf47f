/** An exported conversation with a "Classify" answer imports with its bars; malformed bars are refused. */
import { describe, expect, it } from 'vitest';
import { EXPORT_FORMAT, EXPORT_VERSION } from '../../src/storage/history';
import { ImportError, readConversationExport } from '../../src/storage/importConversation';

function exportWith(choices: unknown): string {
  return JSON.stringify({
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    conversation: {
      id: 'c1',
      recordingId: 'r1',
      modelName: 'Tiny',
      createdAt: 1,
      updatedAt: 2,
      messages: [
        { role: 'user', text: 'What emotion does the speaker express?', label: 'Classify: Emotion' },
        { role: 'assistant', text: 'happy', status: 'done', tokenIds: [9796], choices },
      ],
    },
    recording: { name: 'a.wav', durationSeconds: 1, sampleRate: 16000, mimeType: 'audio/wav', fileName: 'a.wav', encoding: 'base64', data: 'UklGRg==' },
  });
}

describe('import of a Classify answer', () => {
  it('keeps every label’s probability (and drops the token ids, as for any answer)', () => {
    const choices = [
      { label: 'neutral', probability: 0.2 },
      { label: 'happy', probability: 0.8 },
    ];
    const { conversation } = readConversationExport(exportWith(choices), 'a.json');
    expect(conversation.messages[1]!.choices).toEqual(choices);
    expect(conversation.messages[1]!.tokenIds).toBeUndefined();
  });

  it('refuses a probability outside 0…1 or a label without one', () => {
    expect(() => readConversationExport(exportWith([{ label: 'happy', probability: 2 }]), 'a.json')).toThrow(ImportError);
    expect(() => readConversationExport(exportWith([{ label: 'happy' }]), 'a.json')).toThrow(ImportError);
  });
});
