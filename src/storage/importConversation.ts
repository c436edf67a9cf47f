/**
 * Reading back a file made by Export (`exportConversation`): untrusted input. The JSON is checked
 * against a schema (sizes bounded, types exact, audio as base64 of an audio MIME type) before
 * anything is stored; token ids are not imported (the engine re-reads imported answers from their
 * text), and everything gets new ids so an import never overwrites what is stored.
 */
import { Validator, type OutputUnit, type Schema } from '@cfworker/json-schema';
import { base64ToBytes } from '../audio/wavEncode';
import { printable } from '../engine/errors';

/** For the stores' own messages about import files (they may not import src/engine themselves). */
export { printable };
import { EXPORT_FORMAT, EXPORT_VERSION, newId, type ConversationExport, type StoredConversation, type StoredMessage, type StoredRecording } from './history';

/** Larger than any export of a 10-minute recording (48 kHz stereo WAV in base64 is ~155 MB). */
export const MAX_IMPORT_BYTES = 256 * 1024 * 1024;

const text = (maxLength: number) => ({ type: 'string', maxLength });
const finite = { type: 'number', minimum: -1e15, maximum: 1e15 };

const MESSAGE = {
  type: 'object',
  required: ['role', 'text'],
  properties: {
    role: { enum: ['user', 'assistant'] },
    text: text(200_000),
    createdAt: finite,
    label: { type: ['string', 'null'], maxLength: 200 },
    status: { enum: ['waiting', 'streaming', 'done', 'stopped', 'error'] },
    error: { type: ['string', 'null'], maxLength: 5_000 },
    model: text(500),
    loraScale: finite,
    prompt: text(200_000),
    settings: { type: 'object', maxProperties: 20, additionalProperties: { type: ['number', 'boolean'] } },
    stats: { type: 'object', maxProperties: 30, additionalProperties: { type: ['number', 'string', 'boolean', 'null'], maxLength: 100 } },
    tokenIds: { type: 'array', maxItems: 100_000, items: { type: 'integer', minimum: 0 } },
    // A reasoning model's thoughts, kept with the answer (shown collapsed under it).
    thoughts: text(400_000),
    thinkingTokens: { type: 'integer', minimum: 0, maximum: 1_000_000 },
    forcedClose: { type: 'boolean' },
    // A "Classify" answer's bars: exported with it, so an imported conversation shows them too.
    choices: {
      type: 'array',
      maxItems: 64,
      items: {
        type: 'object',
        required: ['label', 'probability'],
        properties: { label: text(500), probability: { type: 'number', minimum: 0, maximum: 1 } },
        additionalProperties: false,
      },
    },
  },
  additionalProperties: false,
};

export const CONVERSATION_EXPORT_SCHEMA = {
  type: 'object',
  required: ['format', 'version', 'conversation', 'recording'],
  properties: {
    format: { const: EXPORT_FORMAT },
    version: { const: EXPORT_VERSION },
    exportedAt: text(64),
    conversation: {
      type: 'object',
      required: ['id', 'recordingId', 'modelName', 'createdAt', 'updatedAt', 'messages'],
      properties: {
        id: text(200),
        recordingId: text(200),
        recordingName: text(500),
        modelName: text(500),
        createdAt: finite,
        updatedAt: finite,
        title: text(1_000),
        messages: { type: 'array', maxItems: 2_000, items: MESSAGE },
      },
      additionalProperties: false,
    },
    recording: {
      type: 'object',
      required: ['name', 'durationSeconds', 'sampleRate', 'mimeType', 'fileName', 'encoding', 'data'],
      properties: {
        id: text(200),
        name: text(500),
        createdAt: finite,
        durationSeconds: { type: 'number', minimum: 0, maximum: 600.5 },
        sampleRate: { type: 'number', exclusiveMinimum: 0, maximum: 768_000 },
        mimeType: { type: 'string', maxLength: 100, pattern: '^audio/[A-Za-z0-9.+-]+(;.*)?$' },
        fileName: text(500),
        encoding: { const: 'base64' },
        data: { type: 'string', minLength: 4, pattern: '^[A-Za-z0-9+/]*={0,2}$' },
      },
      additionalProperties: false,
    },
  },
  additionalProperties: false,
};

let validator: Validator | undefined;

/** Why a file could not be imported, in words for the person who chose it. */
export class ImportError extends Error {
  override readonly name = 'ImportError';
}

function describe(errors: readonly OutputUnit[]): string {
  // The deepest errors say the most ("/conversation/messages/0/role: …"); list a few.
  const leaves = errors.filter((e) => !errors.some((f) => f !== e && f.keywordLocation.startsWith(`${e.keywordLocation}/`)));
  const shown = leaves
    .slice(0, 3)
    .map((e) => `${printable(e.instanceLocation.replace(/^#/, ''), 120) || '(the whole file)'}: ${printable(e.error.replace(/\.$/, ''), 200)}`);
  return shown.join('; ') + (leaves.length > 3 ? ` (and ${leaves.length - 3} more)` : '');
}

/** What an import stores: a conversation and its recording, with fresh ids. */
export interface ImportedConversation {
  conversation: StoredConversation;
  recording: StoredRecording;
}

/** Checks an export file's text and turns it into records to store; throws ImportError. */
export function readConversationExport(fileText: string, rawFileName: string): ImportedConversation {
  // The name is quoted in messages: escaped and cut short, whatever the file is called.
  const fileName = printable(rawFileName, 120);
  let json: unknown;
  try {
    json = JSON.parse(fileText);
  } catch {
    throw new ImportError(`“${fileName}” is not a Hark conversation file (it is not JSON). Choose a file saved with Export in Hark’s History.`);
  }
  if (typeof json === 'object' && json !== null && (json as { format?: unknown }).format !== EXPORT_FORMAT) {
    throw new ImportError(`“${fileName}” is not a Hark conversation file (it is some other JSON). Choose a file saved with Export in Hark’s History.`);
  }
  if (typeof json === 'object' && json !== null && (json as { recording?: unknown }).recording === null) {
    throw new ImportError(`“${fileName}” has no recording in it (it was deleted before the export), so there is nothing to reopen.`);
  }
  validator ??= new Validator(CONVERSATION_EXPORT_SCHEMA as unknown as Schema, '2020-12', false);
  let result: ReturnType<Validator['validate']>;
  try {
    result = validator.validate(json);
  } catch {
    // cfworker's validator throws on some JSON.parse output (a key with a lone surrogate, which it
    // cannot URI-encode into an error location).
    throw new ImportError(`“${fileName}” is damaged or was changed (it holds text that is not valid Unicode), so it was not imported. Export the conversation again and import that file.`);
  }
  if (!result.valid) {
    throw new ImportError(`“${fileName}” is damaged or was changed, so it was not imported (${describe(result.errors)}). Export the conversation again and import that file.`);
  }
  const data = json as ConversationExport & { recording: NonNullable<ConversationExport['recording']> };
  let bytes: Uint8Array;
  try {
    bytes = base64ToBytes(data.recording.data);
  } catch {
    throw new ImportError(`The recording inside “${fileName}” is damaged, so nothing was imported. Export the conversation again and import that file.`);
  }
  const recordingId = newId();
  const now = Date.now();
  const recording: StoredRecording = {
    id: recordingId,
    name: data.recording.name,
    createdAt: now,
    durationSeconds: data.recording.durationSeconds,
    sampleRate: data.recording.sampleRate,
    audio: { kind: 'file', blob: new Blob([bytes as BlobPart], { type: data.recording.mimeType }), mimeType: data.recording.mimeType },
    source: 'file',
  };
  // Token ids are left out: they would be fed to the model as they are. Its text is re-read instead.
  const messages: StoredMessage[] = data.conversation.messages.map(({ tokenIds: _ignored, ...message }) => message);
  const conversation: StoredConversation = {
    id: newId(),
    recordingId,
    recordingName: data.recording.name,
    modelName: data.conversation.modelName,
    createdAt: data.conversation.createdAt,
    updatedAt: now,
    messages,
    ...(data.conversation.title !== undefined ? { title: data.conversation.title } : {}),
  };
  return { conversation, recording };
}
