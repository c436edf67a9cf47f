/**
 * Local history wired to the other stores: every recording that is opened is kept (IndexedDB, see
 * src/storage/history.ts) with the conversation about it; after a reload the latest one comes
 * back; past conversations can be reopened, exported as a file and deleted. Nothing leaves the
 * device.
 *
 * A conversation record is written when its recording is opened (empty), then whenever a question
 * is added or an answer changes state (not on every streamed token). A conversation that never got
 * a question is dropped, with its recording, once another recording replaces it.
 */
import { create } from 'zustand';
import { mixToMono } from '../audio/decode';
import {
  deleteAll,
  deleteConversation,
  exportConversation,
  exportFileName,
  getConversation,
  getRecording,
  listConversations,
  newId,
  restoreLatest,
  saveConversation,
  saveRecording,
  type StoredConversation,
  type StoredMessage,
  type StoredRecording,
} from '../storage/history';
import { ImportError, MAX_IMPORT_BYTES, printable, readConversationExport } from '../storage/importConversation';
import { onNewRecording, useAudioStore, type NewRecordingEvent } from './audioStore';
import { storedBeamStats, storedBeams } from './beams';
import { RESUME_NOTE, useConversationStore, type AnswerSettings, type AnswerStats, type ChatMessage, type LabelChoice, type SavedMessage } from './conversationStore';
import { errorMessage } from './engineTypes';
import { useModelStore } from './modelStore';
import { useNoticeStore } from './noticeStore';

export interface HistoryEntry {
  id: string;
  recordingId: string;
  title: string;
  recordingName: string | null;
  questions: number;
  updatedAt: number;
  modelName: string;
}

interface HistoryStore {
  /** null until IndexedDB answered; false where it cannot be used (then nothing is kept). */
  available: boolean | null;
  /** Conversations with at least one question, most recent first. */
  entries: HistoryEntry[];
  /** The conversation shown now (null: none yet, or it was deleted). */
  currentId: string | null;
  /** Starts keeping history and reopens the latest conversation (once, at start-up). */
  start(): Promise<void>;
  refresh(): Promise<void>;
  open(id: string): Promise<void>;
  exportToFile(id: string): Promise<void>;
  remove(id: string): Promise<void>;
  removeAll(): Promise<void>;
  /** Reads a file made by Export (untrusted: validated first), keeps it here and opens it. */
  importFromFile(file: File): Promise<void>;
}


/** The conversation on screen, as stored. */
let current: { conversationId: string; recordingId: string; recordingName: string; audioId: number; createdAt: number; asked: boolean } | null = null;
/** A reopened conversation waiting for its recording to be adopted by the audio store. */
let pendingRestore: StoredConversation | null = null;
let lastSignature = '';
/** True while the conversation store is being filled from history (nothing to save then). */
let restoring = false;
let started = false;

/** Writes happen one after another, in the order they were asked for. */
let writes: Promise<unknown> = Promise.resolve();
function queueWrite<T>(work: () => Promise<T>): Promise<T> {
  const run = writes.then(work);
  writes = run.catch(() => undefined);
  return run;
}

/** A storage failure in words (IndexedDB's errors often carry an empty message). */
function historyWriteError(error: unknown): string {
  const { name, message } = (error ?? {}) as { name?: string; message?: string };
  if (name === 'QuotaExceededError') {
    return 'there is no room left for this site. Free disk space, or delete stored models (Settings → Models) or old conversations; this conversation stays on screen until the page closes.';
  }
  return `${message || name || 'the browser refused the write'}. Check the browser’s site-data settings and free disk space; this conversation stays on screen until the page closes.`;
}

/**
 * A write nobody waits for: a failure still reaches the person, unless this browser keeps no
 * history at all (no IndexedDB, e.g. a private window): the History panel says so once, instead
 * of an error for every recording and answer.
 */
function writeInBackground(work: () => Promise<unknown>): Promise<void> {
  const historyOff = (): boolean => useHistoryStore.getState().available === false || typeof indexedDB === 'undefined';
  return queueWrite(() => (historyOff() ? Promise.resolve() : work())).then(
    () => undefined,
    (error: unknown) => {
      if (historyOff()) return;
      useNoticeStore.getState().showError('history', historyWriteError(error), 'Could not save to this device’s history:');
    },
  );
}

/** What changes a stored conversation: the questions and each answer's state, not every token. */
function signature(messages: ChatMessage[]): string {
  return messages.map((m) => (m.role === 'assistant' ? `a:${m.status}` : m.role)).join(',');
}

export function toStoredMessages(messages: ChatMessage[]): StoredMessage[] {
  return messages.flatMap((m): StoredMessage[] => {
    if (m.role === 'divider') return [];
    if (m.role === 'user') return [{ role: 'user', text: m.text, label: m.label, ...(m.prompt ? { prompt: m.prompt } : {}) }];
    return [
      {
        role: 'assistant',
        text: m.text,
        status: m.status,
        error: m.error,
        model: m.model,
        loraScale: m.loraScale,
        ...(m.settings ? { settings: { ...m.settings } } : {}),
        stats: { ...m.stats },
        ...(m.tokenIds ? { tokenIds: m.tokenIds } : {}),
        ...(m.choices ? { choices: m.choices.map((c) => ({ ...c })) } : {}),
        ...(m.thoughts !== undefined ? { thoughts: m.thoughts, thinkingTokens: m.thinkingTokens ?? 0, forcedClose: m.forcedClose === true } : {}),
      },
    ];
  });
}

function numberOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** Stored answer settings, if complete and well-formed (older answers have none). */
function answerSettings(value: unknown): AnswerSettings | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const numbers = ['loraScale', 'maxNewTokens', 'temperature', 'topP', 'repetitionPenalty', 'seed'] as const;
  if (!numbers.every((key) => numberOrNull(v[key]) !== null) || typeof v.doSample !== 'boolean') return undefined;
  return {
    loraScale: v.loraScale as number,
    maxNewTokens: v.maxNewTokens as number,
    doSample: v.doSample,
    temperature: v.temperature as number,
    topP: v.topP as number,
    repetitionPenalty: v.repetitionPenalty as number,
    seed: v.seed as number,
    numBeams: storedBeams(v.numBeams),
    ...(numberOrNull(v.thinkingBudget) !== null ? { thinkingBudget: v.thinkingBudget as number } : {}),
  };
}

const ANSWER_STATES = ['waiting', 'streaming', 'done', 'stopped', 'error'] as const;
type AnswerState = (typeof ANSWER_STATES)[number];

/** Stored messages back into chat messages (defensive: the database may hold older shapes; exported for test/unit/beams.test.ts). */
export function toSavedMessages(messages: StoredMessage[]): SavedMessage[] {
  return messages.map((m): SavedMessage => {
    if (m.role === 'user') return { role: 'user', text: m.text, label: m.label ?? null, ...(typeof m.prompt === 'string' ? { prompt: m.prompt } : {}) };
    const stats = m.stats ?? {};
    const answerStats: AnswerStats = {
      tokens: numberOrNull(stats.tokens) ?? 0,
      timeToFirstTokenMs: numberOrNull(stats.timeToFirstTokenMs),
      tokensPerSecond: numberOrNull(stats.tokensPerSecond),
      promptTokens: numberOrNull(stats.promptTokens),
      stopReason: typeof stats.stopReason === 'string' ? (stats.stopReason as AnswerStats['stopReason']) : null,
      totalMs: numberOrNull(stats.totalMs),
      ...storedBeamStats(stats),
    };
    const status: AnswerState = ANSWER_STATES.includes(m.status as AnswerState) ? (m.status as AnswerState) : 'done';
    const tokenIds = Array.isArray(m.tokenIds) && m.tokenIds.every((id) => Number.isInteger(id)) ? m.tokenIds : undefined;
    const settings = answerSettings(m.settings);
    const choices = labelChoices(m.choices);
    return {
      role: 'assistant',
      text: m.text,
      status,
      error: m.error ?? null,
      model: m.model ?? '',
      loraScale: m.loraScale ?? 0,
      stats: answerStats,
      ...(settings ? { settings } : {}),
      ...(tokenIds ? { tokenIds } : {}),
      ...(choices ? { choices } : {}),
      ...(typeof m.thoughts === 'string'
        ? { thoughts: m.thoughts, thinkingTokens: Number.isInteger(m.thinkingTokens) ? m.thinkingTokens : 0, forcedClose: m.forcedClose === true }
        : {}),
    };
  });
}

/** A "Classify" answer's stored labels, if well-formed (the bars are left out otherwise). */
function labelChoices(value: unknown): LabelChoice[] | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const valid = value.every(
    (c: unknown) =>
      typeof c === 'object' && c !== null && typeof (c as LabelChoice).label === 'string' && numberOrNull((c as LabelChoice).probability) !== null,
  );
  return valid ? value.map((c: LabelChoice) => ({ label: c.label, probability: c.probability })) : undefined;
}

function modelName(): string {
  return useModelStore.getState().info?.label ?? 'no model';
}

function saveCurrent(messages: ChatMessage[]): void {
  const target = current;
  if (!target) return;
  const stored = toStoredMessages(messages);
  if (stored.length > 0) target.asked = true;
  void writeInBackground(() =>
    saveConversation({
      id: target.conversationId,
      recordingId: target.recordingId,
      recordingName: target.recordingName,
      modelName: modelName(),
      createdAt: target.createdAt,
      messages: stored,
    }),
  ).then(() => useHistoryStore.getState().refresh());
}

/** Drops a conversation that never got a question (and its recording, unless another conversation has it). */
function dropIfUnasked(previous: typeof current): void {
  if (!previous || previous.asked) return;
  void writeInBackground(() => deleteConversation(previous.conversationId, { withRecording: true }));
}

function storedRecording(event: NewRecordingEvent, id: string): Parameters<typeof saveRecording>[0] {
  const { recording, audio } = event;
  const base = { id, name: recording.name, durationSeconds: recording.durationSeconds, source: recording.kind };
  if (audio.kind === 'file') {
    // The file byte for byte (its own format); the rate is informational.
    return { ...base, sampleRate: audio.sampleRate ?? 16_000, audio: { kind: 'file', blob: audio.blob, mimeType: recording.mimeType || audio.blob.type } };
  }
  // Microphone captures are kept as float PCM (exactly what was heard); several channels as their
  // mix. A copy: the audio store keeps (and hands the engine) the original.
  const samples = mixToMono(audio.audio).slice();
  return { ...base, sampleRate: audio.audio.sampleRate, audio: { kind: 'pcm', samples } };
}

function onRecordingAdopted(event: NewRecordingEvent): void {
  const previous = current;
  const restored = pendingRestore && event.restoredFrom === pendingRestore.recordingId ? pendingRestore : null;
  pendingRestore = null;
  if (restored) {
    current = {
      conversationId: restored.id,
      recordingId: restored.recordingId,
      recordingName: event.recording.name,
      audioId: event.recording.id,
      createdAt: restored.createdAt,
      asked: restored.messages.some((m) => m.role === 'user'),
    };
    restoring = true;
    try {
      useConversationStore.getState().restore(toSavedMessages(restored.messages), RESUME_NOTE);
    } finally {
      restoring = false;
    }
    lastSignature = signature(useConversationStore.getState().messages);
    useHistoryStore.setState({ currentId: restored.id });
  } else {
    const recordingId = event.restoredFrom ?? newId();
    current = { conversationId: newId(), recordingId, recordingName: event.recording.name, audioId: event.recording.id, createdAt: Date.now(), asked: false };
    lastSignature = signature(useConversationStore.getState().messages);
    if (!event.restoredFrom) {
      const record = storedRecording(event, recordingId);
      void writeInBackground(() => saveRecording(record));
    }
    saveCurrent([]);
    useHistoryStore.setState({ currentId: current.conversationId });
  }
  if (previous && previous.conversationId !== current.conversationId) dropIfUnasked(previous);
}

function onConversationChanged(messages: ChatMessage[]): void {
  if (!current || restoring) return;
  const now = signature(messages);
  if (now === lastSignature) return;
  lastSignature = now;
  if (messages.length === 0) {
    // Emptied for the same recording: "New conversation". (A new recording is handled on adoption.)
    if (useAudioStore.getState().recording?.id !== current.audioId) return;
    const previous = current;
    current = { ...previous, conversationId: newId(), createdAt: Date.now(), asked: false };
    useHistoryStore.setState({ currentId: current.conversationId });
    saveCurrent([]);
    dropIfUnasked(previous);
    return;
  }
  saveCurrent(messages);
}

function titleOf(conversation: StoredConversation, recordingName: string | null): string {
  const question = conversation.title ?? conversation.messages.find((m) => m.role === 'user')?.text;
  return question ?? (recordingName ? `About “${recordingName}”` : 'Conversation');
}

/** Forgets what is on screen (after it was deleted). */
function clearScreen(): void {
  current = null;
  pendingRestore = null;
  useAudioStore.getState().clear();
  useConversationStore.getState().reset('recording');
  lastSignature = '';
  useHistoryStore.setState({ currentId: null });
}

async function reopen(conversation: StoredConversation, recording: StoredRecording): Promise<void> {
  pendingRestore = conversation;
  const audio = useAudioStore.getState();
  // Not awaited: opening waits for the engine to encode the audio, and the thread shows at once.
  if (recording.audio.kind === 'file') {
    void audio.openFile(recording.audio.blob, { kind: recording.source ?? 'file', name: recording.name, restoredFrom: recording.id });
  } else {
    void audio.setRecorded({ sampleRate: recording.sampleRate, channels: [recording.audio.samples] }, { name: recording.name, restoredFrom: recording.id });
  }
}

function download(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.rel = 'noopener';
  document.body.append(link);
  link.click();
  link.remove();
  // The download has started from the object URL by now; free it a little later for slow browsers.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export const useHistoryStore = create<HistoryStore>((set, get) => ({
  available: null,
  entries: [],
  currentId: null,

  async start() {
    if (started) return;
    started = true;
    onNewRecording(onRecordingAdopted);
    useConversationStore.subscribe((state, previous) => {
      if (state.messages !== previous.messages) onConversationChanged(state.messages);
    });
    try {
      const latest = await restoreLatest();
      set({ available: true });
      // The recording last open (with its questions, if any); one opened while history was loading wins.
      if (latest?.recording && !useAudioStore.getState().recording) {
        await reopen(latest.conversation, latest.recording);
      }
      await get().refresh();
    } catch (error) {
      set({ available: false });
      console.warn('Local history is unavailable:', error);
    }
  },

  async refresh() {
    if (get().available === false) return;
    try {
      // Conversations carry their recording's name: listing never reads the (large) audio.
      const conversations = await listConversations();
      const entries = conversations
        .filter((c) => c.messages.some((m) => m.role === 'user'))
        .map((c): HistoryEntry => {
          const recordingName = c.recordingName ?? null;
          return {
            id: c.id,
            recordingId: c.recordingId,
            title: titleOf(c, recordingName),
            recordingName,
            questions: c.messages.filter((m) => m.role === 'user').length,
            updatedAt: c.updatedAt,
            modelName: c.modelName,
          };
        });
      set({ entries });
    } catch (error) {
      useNoticeStore.getState().showError('history', error, 'Could not read this device’s history:');
    }
  },

  async open(id) {
    if (id === get().currentId) return;
    try {
      await writes;
      const conversation = await getConversation(id);
      const recording = conversation && (await getRecording(conversation.recordingId));
      if (!conversation || !recording) throw new Error('that conversation is no longer stored on this device (it may have been deleted in another tab).');
      await reopen(conversation, recording);
    } catch (error) {
      useNoticeStore.getState().showError('history', error, 'Could not open the conversation:');
      await get().refresh();
    }
  },

  async exportToFile(id) {
    try {
      await writes;
      const conversation = await getConversation(id);
      if (!conversation) throw new Error('that conversation is no longer stored on this device.');
      download(await exportConversation(id), exportFileName(conversation));
      useNoticeStore.getState().announce('The conversation and its recording were saved as a file.');
    } catch (error) {
      useNoticeStore.getState().showError('history', error, 'Could not export the conversation:');
    }
  },

  async remove(id) {
    try {
      const isCurrent = id === get().currentId;
      await queueWrite(() => deleteConversation(id, { withRecording: true }));
      if (isCurrent) clearScreen();
      await get().refresh();
      useNoticeStore.getState().announce('The conversation and its recording were deleted from this device.');
    } catch (error) {
      useNoticeStore.getState().showError('history', new Error(errorMessage(error)), 'Could not delete the conversation:');
    }
  },

  async importFromFile(file) {
    try {
      if (file.size > MAX_IMPORT_BYTES) {
        throw new ImportError(`“${printable(file.name, 120)}” is ${Math.round(file.size / 1e6)} MB: larger than any Hark export, so it was not read. Choose a file saved with Export.`);
      }
      const imported = readConversationExport(await file.text(), file.name);
      await queueWrite(async () => {
        await saveRecording(imported.recording);
        await saveConversation(imported.conversation);
      });
      await get().refresh();
      await get().open(imported.conversation.id);
      useNoticeStore.getState().announce(`Imported the conversation about “${imported.recording.name}”.`);
    } catch (error) {
      useNoticeStore.getState().showError('history', error, 'Could not import the conversation:');
    }
  },

  async removeAll() {
    try {
      await queueWrite(() => deleteAll());
      clearScreen();
      await get().refresh();
      useNoticeStore.getState().announce('All conversations and recordings were deleted from this device.');
    } catch (error) {
      useNoticeStore.getState().showError('history', error, 'Could not delete the history:');
    }
  },
}));
