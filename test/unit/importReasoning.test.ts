/** An exported reasoning answer imports with its thoughts (length, forced close); malformed thoughts are refused. */
import { describe, expect, it } from 'vitest';
import { EXPORT_FORMAT, EXPORT_VERSION } from '../../src/storage/history';
import { ImportError, readConversationExport } from '../../src/storage/importConversation';

function exportWith(answer: Record<string, unknown>): string {
  return JSON.stringify({
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    conversation: {
      id: 'c1',
      recordingId: 'r1',
      modelName: 'Tiny reasoning',
      createdAt: 1,
      updatedAt: 2,
      messages: [
        { role: 'user', text: 'What do you hear?', label: null },
        { role: 'assistant', text: 'rain', status: 'done', tokenIds: [1, 2, 3], settings: { loraScale: 4, thinkingBudget: 3 }, ...answer },
      ],
    },
    recording: { name: 'a.wav', durationSeconds: 1, sampleRate: 16000, mimeType: 'audio/wav', fileName: 'a.wav', encoding: 'base64', data: 'UklGRg==' },
  });
}

describe('import of a reasoning answer', () => {
  it('keeps the thoughts, their length and whether the budget closed them', () => {
    const { conversation } = readConversationExport(exportWith({ thoughts: 'It sounds like rain.\n\nConsidering the limited time…', thinkingTokens: 3, forcedClose: true }), 'a.json');
    const answer = conversation.messages[1]!;
    expect(answer.thoughts).toBe('It sounds like rain.\n\nConsidering the limited time…');
    expect(answer.thinkingTokens).toBe(3);
    expect(answer.forcedClose).toBe(true);
    expect(answer.settings).toEqual({ loraScale: 4, thinkingBudget: 3 });
  });

  it('refuses thoughts that are not text, or a length that is not a whole number of tokens', () => {
    expect(() => readConversationExport(exportWith({ thoughts: 42 }), 'a.json')).toThrow(ImportError);
    expect(() => readConversationExport(exportWith({ thoughts: 'x', thinkingTokens: 1.5 }), 'a.json')).toThrow(ImportError);
    expect(() => readConversationExport(exportWith({ thoughts: 'x', forcedClose: 'yes' }), 'a.json')).toThrow(ImportError);
  });
});
