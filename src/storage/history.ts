/**
 * Local history: recordings and the conversations about them, kept in IndexedDB (database `hark`)
 * so a reload restores them. Nothing here touches the network.
 *
 * Stores (schema version 1):
 * - `recordings` (key `id`; index `createdAt`): a recording's metadata plus its audio, either as
 *   mono Float32 PCM at `sampleRate` (microphone captures, decoded files) or as the original file
 *   Blob with its MIME type (dropped/picked files — kept byte for byte).
 * - `conversations` (key `id`; indexes `updatedAt`, `recordingId`): the chat thread about one
 *   recording with the model that answered.
 *
 * Typical UI use:
 *   - after a recording is captured or a file is chosen: `saveRecording({...})` → keep its id;
 *   - after each question and again when each answer completes: `saveConversation(conv)` (upsert);
 *   - at start-up: `restoreLatest()` → `{ conversation, recording }` or undefined;
 *   - history list: `listConversations()`; delete: `deleteConversation(id, { withRecording: true })`;
 *   - "Delete everything": `deleteAll()`; export: `exportConversation(id)` → a JSON Blob.
 *
 * All functions reject when IndexedDB is unavailable (e.g. some private-browsing modes); the UI
 * should catch that and carry on without history.
 */
import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { GenerationStats } from '../engine/llm/generate';
import { bytesToBase64, encodeWav } from '../audio/wavEncode';

export const HISTORY_DB_NAME = 'hark';
export const HISTORY_DB_VERSION = 1;

/** The audio of a stored recording. */
export type StoredAudio =
  /** Mono samples at the recording's `sampleRate`. */
  | { kind: 'pcm'; samples: Float32Array }
  /** The original file, byte for byte. */
  | { kind: 'file'; blob: Blob; mimeType: string };

export interface StoredRecording {
  id: string;
  /** A display name: the file name, or e.g. "Recording 14:02". */
  name: string;
  /** ms since the epoch. */
  createdAt: number;
  durationSeconds: number;
  /** The rate of `audio.samples` (pcm), or the file's native rate when known (file). */
  sampleRate: number;
  audio: StoredAudio;
  /** Where it came from (restores the UI's label/icon). */
  source?: 'file' | 'recording' | 'sample';
}

/**
 * Generation statistics of an answer: any plain, structured-cloneable data (e.g. the engine's
 * GenerationStats, or the UI's own tokens/s, time to first token, stop reason; nulls allowed).
 */
export type MessageStats = Partial<Record<keyof GenerationStats, unknown>> & Record<string, unknown>;

export interface StoredMessage {
  role: 'user' | 'assistant';
  text: string;
  stats?: MessageStats;
  /** ms since the epoch. */
  createdAt?: number;
  /** A preset's name shown on a question ("Transcribe"), if any. */
  label?: string | null;
  /** How an answer ended ('done', 'stopped', 'error', …); an answer still streaming at save time is saved as is. */
  status?: string;
  /** The error shown with a failed answer. */
  error?: string | null;
  /** The model that answered this message (label · backend), when it differs per message. */
  model?: string;
  /** The LoRA scale the answer used. */
  loraScale?: number;
  /** Every setting the answer used (LoRA scale, decoding, seed). */
  settings?: Record<string, unknown>;
  /** A question: what the engine was asked (a task prompt with its audio placeholder), when it differs from `text`. */
  prompt?: string;
  /** An answer: its generated token ids (the engine re-reads a restored conversation exactly with them). */
  tokenIds?: number[];
  /** An answer chosen from a label set ("Classify"): every label's probability, in the order given. */
  choices?: { label: string; probability: number }[];
  /** A reasoning model's answer: its thoughts, their length in tokens, and whether the thinking budget closed them. */
  thoughts?: string;
  thinkingTokens?: number;
  forcedClose?: boolean;
}

export interface StoredConversation {
  id: string;
  recordingId: string;
  /** The recording's display name, so that a history list need not read any audio. */
  recordingName?: string;
  /** The model that answered (its label or bundle name). */
  modelName: string;
  createdAt: number;
  updatedAt: number;
  messages: StoredMessage[];
  /** Optional title (default in the UI: the first question). */
  title?: string;
}

/** What `saveConversation` accepts: timestamps are filled in when missing. */
export type ConversationInput = Omit<StoredConversation, 'createdAt' | 'updatedAt'> & { createdAt?: number; updatedAt?: number };
export type RecordingInput = Omit<StoredRecording, 'id' | 'createdAt'> & { id?: string; createdAt?: number };

interface HarkHistoryDb extends DBSchema {
  recordings: { key: string; value: StoredRecording; indexes: { createdAt: number } };
  conversations: { key: string; value: StoredConversation; indexes: { updatedAt: number; recordingId: string } };
}

let dbPromise: Promise<IDBPDatabase<HarkHistoryDb>> | undefined;

function db(): Promise<IDBPDatabase<HarkHistoryDb>> {
  dbPromise ??= openDB<HarkHistoryDb>(HISTORY_DB_NAME, HISTORY_DB_VERSION, {
    upgrade(database, oldVersion) {
      if (oldVersion < 1) {
        const recordings = database.createObjectStore('recordings', { keyPath: 'id' });
        recordings.createIndex('createdAt', 'createdAt');
        const conversations = database.createObjectStore('conversations', { keyPath: 'id' });
        conversations.createIndex('updatedAt', 'updatedAt');
        conversations.createIndex('recordingId', 'recordingId');
      }
    },
    blocking() {
      // A newer version of the app (another tab) wants to upgrade the schema: let it.
      closeHistory();
    },
    terminated() {
      dbPromise = undefined;
    },
  }).catch((error: unknown) => {
    dbPromise = undefined;
    throw error;
  });
  return dbPromise;
}

/** Closes the connection (the next call reopens it). */
export function closeHistory(): void {
  const pending = dbPromise;
  dbPromise = undefined;
  void pending?.then((database) => database.close()).catch(() => undefined);
}

/** A fresh random id (UUID v4). */
export function newId(): string {
  return crypto.randomUUID();
}

function checkRecording(recording: StoredRecording): void {
  const { audio } = recording;
  if (audio.kind === 'pcm' && !(audio.samples instanceof Float32Array)) throw new TypeError('recording.audio.samples must be a Float32Array');
  if (audio.kind === 'file' && !(audio.blob instanceof Blob)) throw new TypeError('recording.audio.blob must be a Blob');
  if (!(recording.sampleRate > 0)) throw new RangeError(`invalid sample rate: ${recording.sampleRate}`);
}

/** Stores a recording (insert or replace by id); returns the stored record with its id. */
export async function saveRecording(input: RecordingInput): Promise<StoredRecording> {
  const recording: StoredRecording = { ...input, id: input.id ?? newId(), createdAt: input.createdAt ?? Date.now() };
  checkRecording(recording);
  await (await db()).put('recordings', recording);
  return recording;
}

export async function getRecording(id: string): Promise<StoredRecording | undefined> {
  return (await db()).get('recordings', id);
}

/** Every recording, newest first. */
export async function listRecordings(): Promise<StoredRecording[]> {
  return (await (await db()).getAllFromIndex('recordings', 'createdAt')).reverse();
}

/** Deletes a recording and every conversation about it. */
export async function deleteRecording(id: string): Promise<void> {
  const tx = (await db()).transaction(['recordings', 'conversations'], 'readwrite');
  const conversations = tx.objectStore('conversations');
  for (const key of await conversations.index('recordingId').getAllKeys(id)) await conversations.delete(key);
  await tx.objectStore('recordings').delete(id);
  await tx.done;
}

/**
 * Inserts or updates a conversation. `createdAt` is kept from the stored copy (or set now);
 * `updatedAt` is set to now unless given. Returns the stored record.
 */
export async function saveConversation(input: ConversationInput): Promise<StoredConversation> {
  const tx = (await db()).transaction('conversations', 'readwrite');
  const existing = await tx.store.get(input.id);
  const now = Date.now();
  const conversation: StoredConversation = {
    ...input,
    messages: input.messages.map((m) => ({ ...m })),
    createdAt: input.createdAt ?? existing?.createdAt ?? now,
    updatedAt: input.updatedAt ?? Math.max(now, (existing?.updatedAt ?? 0) + 1),
  };
  await tx.store.put(conversation);
  await tx.done;
  return conversation;
}

export async function getConversation(id: string): Promise<StoredConversation | undefined> {
  return (await db()).get('conversations', id);
}

/** Every conversation, most recently updated first (optionally only those about one recording). */
export async function listConversations(options: { recordingId?: string } = {}): Promise<StoredConversation[]> {
  const database = await db();
  if (options.recordingId !== undefined) {
    const list = await database.getAllFromIndex('conversations', 'recordingId', options.recordingId);
    return list.sort((a, b) => b.updatedAt - a.updatedAt);
  }
  return (await database.getAllFromIndex('conversations', 'updatedAt')).reverse();
}

/** The most recently updated conversation, if any. */
export async function getLatestConversation(): Promise<StoredConversation | undefined> {
  const cursor = await (await db()).transaction('conversations').store.index('updatedAt').openCursor(null, 'prev');
  return cursor?.value;
}

/** The latest conversation with its recording (what a reload restores), if any. */
export async function restoreLatest(): Promise<{ conversation: StoredConversation; recording: StoredRecording | undefined } | undefined> {
  const conversation = await getLatestConversation();
  if (!conversation) return undefined;
  return { conversation, recording: await getRecording(conversation.recordingId) };
}

/**
 * Deletes a conversation. With `withRecording`, its recording goes too — unless another
 * conversation still refers to it (then it is kept; `recordingDeleted` says which happened).
 */
export async function deleteConversation(id: string, options: { withRecording?: boolean } = {}): Promise<{ deleted: boolean; recordingDeleted: boolean }> {
  const tx = (await db()).transaction(['conversations', 'recordings'], 'readwrite');
  const conversations = tx.objectStore('conversations');
  const conversation = await conversations.get(id);
  let recordingDeleted = false;
  if (conversation) {
    await conversations.delete(id);
    if (options.withRecording) {
      const others = await conversations.index('recordingId').count(conversation.recordingId);
      if (others === 0) {
        const recordings = tx.objectStore('recordings');
        recordingDeleted = (await recordings.count(conversation.recordingId)) > 0;
        await recordings.delete(conversation.recordingId);
      }
    }
  }
  await tx.done;
  return { deleted: !!conversation, recordingDeleted };
}

/** Deletes every recording and conversation. */
export async function deleteAll(): Promise<void> {
  const tx = (await db()).transaction(['recordings', 'conversations'], 'readwrite');
  await Promise.all([tx.objectStore('recordings').clear(), tx.objectStore('conversations').clear(), tx.done]);
}

/** How many records each store holds (e.g. for a "Delete everything (3 conversations)" label). */
export async function historyCounts(): Promise<{ recordings: number; conversations: number }> {
  const database = await db();
  return { recordings: await database.count('recordings'), conversations: await database.count('conversations') };
}

/** A recording's audio as a file: a 16-bit mono WAV for PCM, the original file otherwise. */
export function recordingAudioFile(recording: StoredRecording): { blob: Blob; mimeType: string; extension: string } {
  if (recording.audio.kind === 'pcm') {
    const wav = encodeWav(recording.audio.samples, recording.sampleRate, { bitDepth: 16 });
    return { blob: new Blob([wav], { type: 'audio/wav' }), mimeType: 'audio/wav', extension: 'wav' };
  }
  const { blob, mimeType } = recording.audio;
  return { blob, mimeType, extension: extensionFor(mimeType, recording.name) };
}

function extensionFor(mimeType: string, name: string): string {
  const fromName = /\.([a-z0-9]{1,5})$/i.exec(name)?.[1];
  if (fromName) return fromName.toLowerCase();
  const known: Record<string, string> = { 'audio/wav': 'wav', 'audio/x-wav': 'wav', 'audio/wave': 'wav', 'audio/mpeg': 'mp3', 'audio/ogg': 'ogg', 'audio/webm': 'webm', 'audio/flac': 'flac', 'audio/mp4': 'm4a', 'audio/aac': 'aac' };
  return known[mimeType.split(';')[0]!.trim().toLowerCase()] ?? 'bin';
}

export const EXPORT_FORMAT = 'hark-conversation';
export const EXPORT_VERSION = 1;

/** The JSON document `exportConversation` produces. */
export interface ConversationExport {
  format: typeof EXPORT_FORMAT;
  version: typeof EXPORT_VERSION;
  exportedAt: string;
  conversation: StoredConversation;
  /**
   * The recording, embedded: `data` is base64 of a 16-bit mono WAV (PCM recordings) or of the
   * original file (then `mimeType` is the file's). Null when the recording was deleted.
   */
  recording: {
    id: string;
    name: string;
    createdAt: number;
    durationSeconds: number;
    sampleRate: number;
    mimeType: string;
    fileName: string;
    encoding: 'base64';
    data: string;
  } | null;
}

/**
 * One self-contained JSON file (`application/json`) with the conversation and its recording
 * embedded as base64 (see ConversationExport). Suggested file name: `exportFileName(conversation)`.
 * Rejects with a RangeError for an unknown id.
 */
export async function exportConversation(id: string): Promise<Blob> {
  const conversation = await getConversation(id);
  if (!conversation) throw new RangeError(`no conversation with id ${id}`);
  const recording = await getRecording(conversation.recordingId);
  let embedded: ConversationExport['recording'] = null;
  if (recording) {
    const file = recordingAudioFile(recording);
    const baseName = recording.name.replace(/\.[a-z0-9]{1,5}$/i, '') || 'recording';
    embedded = {
      id: recording.id,
      name: recording.name,
      createdAt: recording.createdAt,
      durationSeconds: recording.durationSeconds,
      sampleRate: recording.sampleRate,
      mimeType: file.mimeType,
      fileName: `${baseName}.${file.extension}`,
      encoding: 'base64',
      data: bytesToBase64(new Uint8Array(await file.blob.arrayBuffer())),
    };
  }
  const document: ConversationExport = {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    exportedAt: new Date().toISOString(),
    conversation,
    recording: embedded,
  };
  return new Blob([JSON.stringify(document, null, 2)], { type: 'application/json' });
}

/** A file name for an export: `hark-<title or first question>-<date>.json`, filesystem-safe. */
export function exportFileName(conversation: StoredConversation): string {
  const title = conversation.title ?? conversation.messages.find((m) => m.role === 'user')?.text ?? 'conversation';
  const slug = title.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'conversation';
  const date = new Date(conversation.updatedAt).toISOString().slice(0, 10);
  return `hark-${slug}-${date}.json`;
}
