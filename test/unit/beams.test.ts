/**
 * Beam search in the UI's pure parts: the settings summary and stats line of an answer, the beams
 * setting over the model's default, and answers kept in local history or imported from a file
 * (older ones, saved before beam search, have no beams and still load as one-beam answers).
 */
import { describe, expect, it } from 'vitest';
import { EXPORT_FORMAT, EXPORT_VERSION, type StoredMessage } from '../../src/storage/history';
import { readConversationExport } from '../../src/storage/importConversation';
import { answerStatsParts, decodingSummary, storedBeamStats, storedBeams } from '../../src/stores/beams';
import type { ChatMessage } from '../../src/stores/conversationStore';
import type { GenerationDefaults } from '../../src/stores/engineTypes';
import { toSavedMessages, toStoredMessages } from '../../src/stores/historyStore';
import { effectiveGeneration, type GenerationSettings } from '../../src/stores/settingsStore';

const ms = (value: number) => `${value} ms`;
const decoding = { doSample: false, temperature: 0.7, topP: 0.9, seed: 0 };

describe('what an answer says about its decoding', () => {
  it('one beam keeps the greedy wording; more beams say how many; sampling wins over beams', () => {
    expect(decodingSummary({ ...decoding, numBeams: 1 })).toBe('greedy (always the most likely word)');
    expect(decodingSummary(decoding)).toBe('greedy (always the most likely word)');
    expect(decodingSummary({ ...decoding, numBeams: 4 })).toBe('4 beams (the best of 4 candidate answers)');
    expect(decodingSummary({ ...decoding, numBeams: 4, doSample: true, seed: 7 })).toBe('sampling: temperature 0.70, top-p 0.90, seed 7');
  });

  it('the stats line: unchanged for one beam; a beam answer compares candidates while written, then says its beams', () => {
    const greedy = { tokens: 12, tokensPerSecond: 20.04, timeToFirstTokenMs: 80 };
    expect(answerStatsParts(greedy, 'done', ms).join(' · ')).toBe('12 tokens · 20.0 tokens/s · first token 80 ms');
    expect(answerStatsParts({ tokens: 0, tokensPerSecond: null, timeToFirstTokenMs: null, beams: 4 }, 'waiting', ms)).toEqual(['Reading the question…']);
    const beam = { tokens: 5, tokensPerSecond: null, timeToFirstTokenMs: 120, beams: 4 };
    expect(answerStatsParts(beam, 'streaming', ms).join(' · ')).toBe('Comparing 4 candidate answers… · 5 tokens · first token 120 ms');
    expect(answerStatsParts({ ...beam, tokens: 16, tokensPerSecond: 3.14 }, 'done', ms).join(' · ')).toBe('4 beams · 16 tokens · 3.1 tokens/s per beam · first token 120 ms');
    expect(answerStatsParts({ tokens: 1, tokensPerSecond: null, timeToFirstTokenMs: 9, beams: 2 }, 'stopped', ms).join(' · ')).toBe('2 beams · 1 token · first token 9 ms');
  });
});

describe('the beams setting', () => {
  const defaults = { temperature: 1, topP: 0.9, maxNewTokens: 200, repetitionPenalty: 1, doSample: false, loraScale: 4, topK: 0, seed: 0, stopTokenIds: [], numBeams: 4, lengthPenalty: 1 } as GenerationDefaults;
  const none: GenerationSettings = { temperature: null, topP: null, maxNewTokens: null, repetitionPenalty: null, doSample: null, loraScale: null, numBeams: null };

  it('is the model’s default until chosen, and what was chosen after', () => {
    expect(effectiveGeneration(none, defaults).numBeams).toBe(4);
    expect(effectiveGeneration(none, { ...defaults, numBeams: 1 }).numBeams).toBe(1);
    expect(effectiveGeneration({ ...none, numBeams: 2 }, defaults).numBeams).toBe(2);
  });

  it('settings saved before beams existed (no numBeams) or garbled ones fall back to the model’s default', () => {
    const saved = { temperature: null, topP: null, maxNewTokens: 3, repetitionPenalty: null, doSample: null, loraScale: 0.5 } as unknown as GenerationSettings;
    expect(effectiveGeneration(saved, defaults)).toMatchObject({ numBeams: 4, maxNewTokens: 3, loraScale: 0.5 });
    expect(effectiveGeneration({ ...none, numBeams: 2.5 }, defaults).numBeams).toBe(4);
    expect(effectiveGeneration({ ...none, numBeams: 0 }, defaults).numBeams).toBe(4);
  });
});

const settings = { loraScale: 0.5, maxNewTokens: 8, doSample: false, temperature: 1, topP: 0.9, repetitionPenalty: 1, seed: 0 };

describe('answers in local history and exported files', () => {
  it('an answer saved before beam search loads as a one-beam answer with its settings', () => {
    const old: StoredMessage = { role: 'assistant', text: 'a b c', status: 'done', model: 'Tiny · WebAssembly', loraScale: 0.5, settings: { ...settings }, stats: { tokens: 3, stopReason: 'max-tokens' } };
    const [answer] = toSavedMessages([old]);
    expect(answer).toMatchObject({ role: 'assistant', settings: { ...settings, numBeams: 1 }, stats: { tokens: 3, stopReason: 'max-tokens' } });
    expect(answer?.role === 'assistant' ? answer.stats.beams : 'not an answer').toBeUndefined();
  });

  it('a beam answer keeps its beams, in its settings and its stats, through a save and a load', () => {
    const message: ChatMessage = {
      id: 1,
      role: 'assistant',
      text: 'Lem L Rahmen',
      status: 'done',
      error: null,
      model: 'Tiny · WebAssembly',
      loraScale: 0.5,
      settings: { ...settings, numBeams: 4 },
      stats: { tokens: 8, timeToFirstTokenMs: 40, tokensPerSecond: 3, promptTokens: 120, stopReason: 'max-tokens', totalMs: 900, beams: 4, revisions: 5 },
    };
    const stored = JSON.parse(JSON.stringify(toStoredMessages([message]))) as StoredMessage[];
    const { id: _, ...expected } = message;
    expect(toSavedMessages(stored)).toEqual([expected]);
  });

  it('malformed beams in a stored answer read as one beam, not as an error', () => {
    expect(storedBeams(undefined)).toBe(1);
    expect(storedBeams('4')).toBe(1);
    expect(storedBeams(-2)).toBe(1);
    expect(storedBeams(4)).toBe(4);
    expect(storedBeamStats({ beams: 1, revisions: 3 })).toEqual({});
    expect(storedBeamStats({ beams: 4, revisions: 'x' })).toEqual({ beams: 4 });
    expect(storedBeamStats({ beams: 6, revisions: 0 })).toEqual({ beams: 6, revisions: 0 });
  });

  it('an exported beam answer imports with its beams', () => {
    const file = JSON.stringify({
      format: EXPORT_FORMAT,
      version: EXPORT_VERSION,
      conversation: {
        id: 'c1',
        recordingId: 'r1',
        modelName: 'Tiny',
        createdAt: 1,
        updatedAt: 2,
        messages: [
          { role: 'user', text: 'Describe the audio.' },
          { role: 'assistant', text: 'Lem L', status: 'done', settings: { ...settings, numBeams: 4 }, stats: { tokens: 2, beams: 4, revisions: 1 } },
        ],
      },
      recording: { name: 'a.wav', durationSeconds: 1, sampleRate: 16000, mimeType: 'audio/wav', fileName: 'a.wav', encoding: 'base64', data: 'UklGRg==' },
    });
    const { conversation } = readConversationExport(file, 'a.json');
    const [, answer] = toSavedMessages(conversation.messages);
    expect(answer).toMatchObject({ settings: { numBeams: 4 }, stats: { tokens: 2, beams: 4, revisions: 1 } });
  });
});
