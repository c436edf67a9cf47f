/**
 * Hostile files through History → "Import a conversation…" (readConversationExport): random text,
 * random JSON, and a real export with fields replaced (wrong types, huge numbers, lone surrogates,
 * control characters, odd keys, broken base64), under hostile file names. Every input is either
 * imported as a well-formed conversation or refused with an ImportError whose message is a sentence.
 * Valid exports (any text, any number of messages) are imported with their text intact.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EXPORT_FORMAT, EXPORT_VERSION } from '../../../src/storage/history';
import { ImportError, readConversationExport, type ImportedConversation } from '../../../src/storage/importConversation';
import { expectReadable, fuzzParams, fuzzTimeout, guarded, hostileText } from './harness';

const CI_RUNS = 1_000;

function expectImportError(error: unknown): void {
  if (!(error instanceof ImportError)) {
    throw new Error(`expected an ImportError, got ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
  }
  expectReadable(error.message);
}

function checkImported(imported: ImportedConversation): void {
  expect(imported.conversation.recordingId).toBe(imported.recording.id);
  expect(Array.isArray(imported.conversation.messages)).toBe(true);
  for (const m of imported.conversation.messages) {
    expect(['user', 'assistant']).toContain(m.role);
    expect(typeof m.text).toBe('string');
    expect(m.tokenIds).toBeUndefined();
  }
  expect(imported.recording.audio.kind).toBe('file');
}

function throughImport(text: string, fileName: string): ImportedConversation | undefined {
  const result = guarded(() => readConversationExport(text, fileName), expectImportError);
  if (!result.ok) return undefined;
  checkImported(result.value);
  return result.value;
}

const validExport = (): Record<string, unknown> => ({
  format: EXPORT_FORMAT,
  version: EXPORT_VERSION,
  exportedAt: '2026-01-01T00:00:00.000Z',
  conversation: {
    id: 'c1',
    recordingId: 'r1',
    recordingName: 'a.wav',
    modelName: 'Tiny',
    createdAt: 1,
    updatedAt: 2,
    title: 'A title',
    messages: [
      { role: 'user', text: 'What is this?' },
      { role: 'assistant', text: 'A dog.', status: 'done', tokenIds: [1, 2, 3], loraScale: 4, settings: { maxNewTokens: 20 } },
    ],
  },
  recording: { name: 'a.wav', durationSeconds: 1, sampleRate: 16000, mimeType: 'audio/wav', fileName: 'a.wav', encoding: 'base64', data: 'UklGRg==' },
});

function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...prefix, i])));
  else if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...prefix, k]));
  return out;
}
const EXPORT_PATHS = paths(validExport()).filter((p) => p.length > 0);

const hostile: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  hostileText(40),
  fc.constantFrom(-1, 1e308, -1e308, 0.5, NaN, 'x'.repeat(300_000), '', null, [], {}, '====', 'U', '@@@@', 'UklGRg', 'audio/wav;\u0000', 'text/html', '__proto__'),
);

/** The real export with 1–3 fields replaced, deleted or renamed, as JSON text. */
const mutatedExport = fc
  .array(fc.record({ at: fc.nat({ max: EXPORT_PATHS.length - 1 }), op: fc.constantFrom('set', 'set', 'delete', 'rename'), value: hostile, key: fc.oneof(hostileText(8), fc.constantFrom('__proto__', 'constructor')) }), {
    minLength: 1,
    maxLength: 3,
  })
  .map((mutations) => {
    const json = validExport();
    for (const { at, op, value, key } of mutations) {
      const path = EXPORT_PATHS[at]!;
      let parent: Record<string | number, unknown> = json;
      let ok = true;
      for (const k of path.slice(0, -1)) {
        const next = parent[k];
        if (typeof next !== 'object' || next === null) {
          ok = false;
          break;
        }
        parent = next as Record<string | number, unknown>;
      }
      if (!ok) continue;
      const last = path[path.length - 1]!;
      if (op === 'delete' && Array.isArray(parent)) parent.splice(Number(last), 1);
      else if (op === 'delete') delete parent[last];
      else if (op === 'rename' && !Array.isArray(parent) && last in parent) {
        Object.defineProperty(parent, key, { value: parent[last], enumerable: true, configurable: true, writable: true });
        delete parent[last];
      } else parent[last] = value;
    }
    return JSON.stringify(json);
  });

const fileName = fc.oneof(fc.constant('conversation.json'), hostileText(300));

describe('conversation import of hostile input', () => {
  it('random text and random JSON', { timeout: fuzzTimeout(CI_RUNS, 5) }, () => {
    fc.assert(
      fc.property(fc.oneof(hostileText(200), fc.json({ maxDepth: 4 })), fileName, (text, name) => {
        throughImport(text, name);
      }),
      fuzzParams(CI_RUNS),
    );
  });

  it('a real export with fields replaced, deleted or renamed', { timeout: fuzzTimeout(CI_RUNS, 20) }, () => {
    fc.assert(
      fc.property(mutatedExport, fileName, (text, name) => {
        throughImport(text, name);
      }),
      fuzzParams(CI_RUNS),
    );
  });

  it('valid exports with any message text are imported intact', { timeout: fuzzTimeout(CI_RUNS, 5) }, () => {
    const message = fc.record({ role: fc.constantFrom('user', 'assistant'), text: fc.string({ unit: 'binary', maxLength: 200 }) });
    fc.assert(
      fc.property(fc.array(message, { maxLength: 20 }), fc.string({ unit: 'grapheme', maxLength: 50 }), (messages, title) => {
        const json = validExport();
        (json.conversation as Record<string, unknown>).messages = messages;
        (json.conversation as Record<string, unknown>).title = title;
        const imported = throughImport(JSON.stringify(json), 'c.json');
        expect(imported, 'a valid export was refused').toBeDefined();
        expect(imported!.conversation.messages.map((m) => m.text)).toEqual(messages.map((m) => m.text));
        expect(imported!.conversation.title).toBe(title);
      }),
      fuzzParams(CI_RUNS),
    );
  });

  it('quotes a hostile file name escaped and cut short (found by fuzzing)', () => {
    let message = '';
    guarded(() => readConversationExport('0', `a\u0000\u001b[2J${'n'.repeat(1_000)}.json`), (e) => {
      expectImportError(e);
      message = (e as Error).message;
    });
    expect(message).toContain('“a\\u0000\\u001b[2J');
    expect(message.length).toBeLessThan(400);
  });

  it('refuses a key with a lone surrogate with an ImportError, not a URIError (found by fuzzing)', () => {
    const text = JSON.stringify(validExport()).replace('"title":', '"\\udc00":1,"title":');
    const result = guarded(() => readConversationExport(text, 'c.json'), expectImportError);
    expect(result.ok).toBe(false);
  });
});
