/**
 * The chat about the current recording: questions, streamed answers with live speed, stop, and
 * follow-ups (the engine keeps the conversation's KV cache, so a follow-up only feeds new text).
 */
import { create } from 'zustand';
import { engineClient } from '../engineClient';
import { useAudioStore } from './audioStore';
import { inEngineLane } from './engineLane';
import { latestOnly } from './latestOnly';
import { errorCode, errorMessage, type ClassifyResult, type ResumeTurn, type StopReason, type TokenEvent } from './engineTypes';
import { useLocalizeStore } from './localizeStore';
import { useModelStore } from './modelStore';
import { useNoticeStore } from './noticeStore';
import { effectiveGeneration, useSettingsStore } from './settingsStore';

/**
 * A task prompt without the model's audio marker (ModelInfo.audioMarker, e.g. SALMONN's
 * "<Speech><SpeechHere></Speech>", ALARM's "<AudioHere>"): what a person reads, and what a
 * follow-up sends. An empty marker (no model yet) leaves the prompt as it is.
 */
export function withoutAudioSlot(prompt: string, audioMarker: string): string {
  const text = audioMarker === '' ? prompt : prompt.split(audioMarker).join(' ');
  return text.replace(/\s+/g, ' ').trim();
}

/** How often a streaming answer is drawn at most (ms): ~30 times a second, whatever the token rate. */
export const STREAM_RENDER_MS = 33;

export interface AnswerStats {
  tokens: number;
  timeToFirstTokenMs: number | null;
  tokensPerSecond: number | null;
  promptTokens: number | null;
  stopReason: StopReason | null;
  totalMs: number | null;
  /** Beam search answers only: the beams compared, and how often the shown best answer was replaced. */
  beams?: number;
  revisions?: number;
}

/** The settings an answer was generated with (shown on demand under it). */
export interface AnswerSettings {
  loraScale: number;
  maxNewTokens: number;
  doSample: boolean;
  temperature: number;
  topP: number;
  repetitionPenalty: number;
  /** The sampling seed (0 for greedy answers). */
  seed: number;
  /** Beams of beam search (1: one sequence, greedy or sampled; answers saved before beams have 1). */
  numBeams: number;
  /** Reasoning models only: the thinking budget, in tokens. */
  thinkingBudget?: number;
}

export type ChatMessage =
  | {
      id: number;
      role: 'user';
      text: string;
      label: string | null;
      /** What the engine was asked (a task prompt keeps its audio placeholder); `text` is what people read. */
      prompt?: string;
    }
  | {
      id: number;
      role: 'assistant';
      text: string;
      status: 'waiting' | 'streaming' | 'done' | 'stopped' | 'error';
      stats: AnswerStats;
      error: string | null;
      /** The model that answered (label · backend), shown under the answer. */
      model: string;
      loraScale: number;
      /** All the settings that produced it (older saved answers have only `loraScale`). */
      settings?: AnswerSettings;
      /** The generated token ids: lets a restored conversation be re-read exactly. */
      tokenIds?: number[];
      /** An answer chosen from a label set ("Classify"): every label's probability, in the order given. */
      choices?: LabelChoice[];
      /**
       * Reasoning models only: the thoughts written before the answer (streamed apart from it),
       * the thought tokens the model wrote, and whether the thinking budget ran out (the closing
       * sentence was then forced). `thinkingTokens` is the count so far while the answer streams.
       */
      thoughts?: string;
      thinkingTokens?: number;
      forcedClose?: boolean;
    }
  | { id: number; role: 'divider'; text: string };

/** One label of a "Classify" answer as the conversation keeps it (the engine's LabelProbability, trimmed). */
export interface LabelChoice {
  label: string;
  probability: number;
}

/** A question or answer as local history keeps it (no ids; a divider is not kept). */
export type SavedMessage = Omit<Extract<ChatMessage, { role: 'user' }>, 'id'> | Omit<Extract<ChatMessage, { role: 'assistant' }>, 'id'>;

export interface AskOptions {
  /** A preset's friendly name, shown on the question bubble. */
  label?: string;
  /** The draft text this question came from: restored if asking fails. */
  fromDraft?: boolean;
}

/** A question asked before it could be answered, sent by `sendQueued()` once it can be. */
export interface QueuedQuestion {
  prompt: string;
  options: AskOptions;
}

interface ConversationStore {
  messages: ChatMessage[];
  phase: 'idle' | 'answering' | 'stopping';
  draft: string;
  queued: QueuedQuestion | null;
  /** Keeps a question asked while the model loads, the recording is encoded or an answer ends. */
  queue(prompt: string, options?: AskOptions): void;
  /** Takes the queued question back into the question box. */
  unqueue(): void;
  /**
   * Sends the queued question if the model, the recording and the conversation are ready for it
   * (and no search of the recording runs: its Stop and the answer's must each stop their own).
   */
  sendQueued(): void;
  /** Turns the engine's conversation holds (0: the next question is the first about the audio). */
  engineTurns: number;
  setDraft(text: string): void;
  ask(prompt: string, options?: AskOptions): Promise<void>;
  /**
   * Answers `question` with one of `labels` ("Classify"): a turn like an answer, whose text is the
   * chosen label and which keeps every label's probability. Refused (with a notice) while another
   * answer or a search runs, rather than queued: the person sees the form's reason and retries.
   */
  classify(question: string, labels: string[], options?: { label?: string }): Promise<void>;
  stop(): void;
  /**
   * Asks the last question again with the settings as they are now, in place of its answer (the
   * engine re-reads the conversation before it, so earlier turns keep their context).
   */
  regenerate(): Promise<void>;
  /** Stops the answer being written and resolves once it has ended (and been saved). */
  stopAndWait(): Promise<void>;
  /** A note shown at the top of the next recording's conversation (once). */
  noteForNextRecording(text: string): void;
  newConversation(): Promise<void>;
  /**
   * The engine's worker was restarted (it died or lost its GPU): it holds no conversation now, so
   * the one on screen is re-read before the next question, as after a reload.
   */
  engineRestarted(): void;
  /** The engine forgot the conversation (new recording or model). */
  reset(reason: 'recording' | 'model', detail?: string): void;
  /**
   * Shows a conversation from local history. The engine did not hear it (its memory is not kept
   * across reloads), so `note` says that the next question starts afresh about the recording.
   */
  restore(saved: SavedMessage[], note: string): void;
}

let nextId = 1;

/** Shown when the next recording replaces this one (see noteForNextRecording). */
let nextRecordingNote: string | null = null;

/** The restored conversation the engine has not read yet: it does so before the next question. */
let pendingResume: ResumeTurn[] | null = null;

/** Question/answer pairs of a thread that the engine can re-read (failed answers are left out). */
function resumableTurns(messages: ChatMessage[]): ResumeTurn[] {
  const turns: ResumeTurn[] = [];
  messages.forEach((message, i) => {
    const answer = messages[i + 1];
    if (message.role !== 'user' || answer?.role !== 'assistant' || answer.status === 'error') return;
    turns.push({ question: message.prompt ?? message.text, answer: answer.text, ...(answer.tokenIds ? { ids: answer.tokenIds } : {}) });
  });
  return turns;
}

export const RESUME_NOTE = 'Restored from this device. The next question continues this conversation: the model first re-reads it.';

function updateAssistant(messages: ChatMessage[], id: number, patch: (m: Extract<ChatMessage, { role: 'assistant' }>) => Partial<Extract<ChatMessage, { role: 'assistant' }>>) {
  return messages.map((m) => (m.id === id && m.role === 'assistant' ? { ...m, ...patch(m) } : m));
}

export const useConversationStore = create<ConversationStore>((set, get) => ({
  messages: [],
  phase: 'idle',
  draft: '',
  queued: null,
  engineTurns: 0,

  setDraft(draft) {
    set({ draft });
  },

  queue(prompt, options = {}) {
    set((s) => ({ queued: { prompt, options }, draft: options.fromDraft ? '' : s.draft }));
  },

  unqueue() {
    const queued = get().queued;
    if (!queued) return;
    // Back into the box, ahead of anything typed since.
    set((s) => ({ queued: null, draft: queued.options.fromDraft ? [queued.prompt, s.draft].filter((t) => t.trim() !== '').join('\n') : s.draft }));
  },

  sendQueued() {
    const queued = get().queued;
    if (!queued || get().phase !== 'idle') return;
    if (useModelStore.getState().status !== 'ready' || useAudioStore.getState().status !== 'ready') return;
    if (useLocalizeStore.getState().phase !== 'idle') return;
    set({ queued: null });
    // Restored into the box if asking fails (see ask), unless something new was typed there.
    const fromDraft = queued.options.fromDraft === true && get().draft.trim() === '';
    if (fromDraft) set({ draft: queued.prompt });
    void get().ask(queued.prompt, { ...queued.options, fromDraft });
  },

  async ask(prompt, options = {}) {
    const model = useModelStore.getState();
    const audio = useAudioStore.getState();
    const notices = useNoticeStore.getState();
    if (get().phase !== 'idle') return;
    if (useLocalizeStore.getState().phase !== 'idle') {
      // The engine is searching the recording: the question waits (sent by sendQueued).
      get().queue(prompt, options);
      notices.announce('Your question will be sent when the search in the recording has finished.');
      return;
    }
    if (model.status !== 'ready' || !model.info) {
      notices.showError('answer', new Error('The model is not ready yet: wait for it to finish loading, then ask again.'));
      return;
    }
    if (audio.status !== 'ready' || !audio.recording) {
      notices.showError('answer', new Error('There is no recording to ask about yet: record, open a file or pick a sample first.'));
      return;
    }
    const display = withoutAudioSlot(prompt, model.info.audioMarker);
    if (!display) return;
    const params = effectiveGeneration(useSettingsStore.getState(), model.info.defaults);
    const resume = get().engineTurns === 0 ? pendingResume : null;
    pendingResume = null;
    const seed = params.doSample ? crypto.getRandomValues(new Uint32Array(1))[0]! : 0;
    // Sampling draws one sequence whatever the beams setting says (the engine's rule): record what ran.
    // A reasoning model's thinking budget is enforced on one sequence: it decodes without beams.
    const numBeams = params.doSample || model.info.reasoning ? 1 : params.numBeams;
    const draftBefore = options.fromDraft ? get().draft : null;
    const userId = nextId++;
    const answerId = nextId++;
    set((s) => ({
      phase: 'answering',
      draft: options.fromDraft ? '' : s.draft,
      messages: [
        ...s.messages,
        { id: userId, role: 'user', text: display, label: options.label ?? null, prompt: prompt.trim() },
        {
          id: answerId,
          role: 'assistant',
          text: '',
          status: 'waiting',
          error: null,
          model: `${model.info!.label} · ${model.info!.backend === 'webgpu' ? 'WebGPU' : 'WebAssembly'}`,
          loraScale: params.loraScale,
          settings: { ...params, numBeams, seed },
          stats: { tokens: 0, timeToFirstTokenMs: null, tokensPerSecond: null, promptTokens: null, stopReason: null, totalMs: null, ...(numBeams > 1 ? { beams: numBeams, revisions: 0 } : {}) },
        },
      ],
    }));
    notices.clearError('answer');
    // Only the start and the end are announced: never the text, which beam search may revise.
    notices.announce(numBeams > 1 ? `Answering: comparing ${numBeams} candidate answers…` : 'Answering…');
    let firstAt: number | null = null;
    // Token events come on their own message channel and may arrive after the result: late ones
    // are stale (they would show an earlier text again, or count a revision twice).
    let ended = false;
    let thoughtTokens = 0;
    let revisions = 0;
    let lastChannel: TokenEvent['channel'];
    // Every event is counted; the bubble shows the latest at most every STREAM_RENDER_MS.
    const shown = latestOnly((event: TokenEvent) => {
      const seconds = (event.elapsedMs - firstAt!) / 1000;
      set((s) => ({
        messages: updateAssistant(s.messages, answerId, (m) => ({
          status: m.status === 'waiting' ? 'streaming' : m.status,
          // The whole text: with beams, the current best answer (`revised`: a different one).
          text: event.text,
          ...(event.thoughts !== undefined ? { thoughts: event.thoughts, thinkingTokens: thoughtTokens } : {}),
          stats: {
            ...m.stats,
            tokens: event.index + 1,
            timeToFirstTokenMs: firstAt,
            // A beam answer's index is its best hypothesis' length, not the steps run: its speed comes at the end.
            tokensPerSecond: numBeams === 1 && event.index > 0 && seconds > 0 ? event.index / seconds : m.stats.tokensPerSecond,
            ...(revisions > 0 ? { revisions } : {}),
          },
        })),
      }));
    }, STREAM_RENDER_MS);
    const onToken = (event: TokenEvent) => {
      if (ended) return;
      if (firstAt === null) firstAt = event.elapsedMs;
      if (event.channel === 'thought' && !event.forced) thoughtTokens += 1;
      if (event.revised) revisions += 1;
      // The answer's first token after the thoughts is drawn at once: the thoughts fold away and the
      // answer begins in the same frame, even when the whole answer takes less than one interval.
      const switched = lastChannel !== undefined && event.channel !== lastChannel;
      lastChannel = event.channel;
      shown.push(event, switched);
    };
    try {
      let turns = get().engineTurns;
      if (resume && resume.length > 0) {
        try {
          turns = (await inEngineLane(() => engineClient().resumeConversation(resume, { loraScale: params.loraScale }))).turn;
        } catch (error) {
          // E.g. too long to re-read: the question is still answered, about the recording alone.
          turns = 0;
          const divider: ChatMessage = { id: nextId++, role: 'divider', text: `The earlier conversation could not be re-read (${errorMessage(error)}); this question starts afresh.` };
          set((s) => {
            const at = s.messages.findIndex((m) => m.id === userId);
            return { messages: [...s.messages.slice(0, at), divider, ...s.messages.slice(at)] };
          });
        }
      }
      // The first question carries the audio placeholder (task prompts have it; free text gets it
      // from the engine); follow-ups are plain text in Vicuna's format.
      const question = turns === 0 ? prompt.trim() : display;
      const result = await inEngineLane(() => engineClient().ask(question, { ...params, numBeams, seed }, onToken));
      ended = true;
      shown.cancel();
      const stopped = result.stats.stopReason === 'cancelled';
      // The device report follows how answer tokens run (captured steps may stop mid-answer).
      if (result.decode) useModelStore.getState().updateDecode(result.decode);
      set((s) => ({
        phase: 'idle',
        engineTurns: result.turn,
        messages: updateAssistant(s.messages, answerId, () => ({
          status: stopped ? 'stopped' : 'done',
          text: result.text,
          tokenIds: result.ids,
          ...(result.thoughts !== undefined ? { thoughts: result.thoughts, thinkingTokens: result.thinkingTokens, forcedClose: result.forcedClose } : {}),
          stats: {
            tokens: result.stats.generatedTokens,
            timeToFirstTokenMs: result.stats.timeToFirstTokenMs,
            tokensPerSecond: result.stats.generatedTokens > 1 ? result.stats.decodeTokensPerSecond : null,
            promptTokens: result.stats.promptTokens,
            stopReason: result.stats.stopReason,
            totalMs: result.stats.totalMs,
            ...(result.stats.beams ? { beams: result.stats.beams, revisions: result.stats.revisions ?? 0 } : {}),
          },
        })),
      }));
      notices.announce(stopped ? 'Stopped.' : result.stats.stopReason === 'context-full' ? 'The answer filled the conversation. Start a new conversation to ask more.' : 'Answer complete.');
    } catch (error) {
      ended = true;
      shown.cancel();
      if (errorCode(error) === 'engine/cancelled') {
        // Stopped before the first word (while the model read the question): the engine started
        // the conversation over, so the turns before this one are re-read before the next question.
        set((s) => ({
          phase: 'idle',
          engineTurns: 0,
          messages: updateAssistant(s.messages, answerId, () => ({ status: 'stopped' })),
        }));
        pendingResume = resumableTurns(get().messages.filter((m) => m.id !== userId && m.id !== answerId));
        notices.announce('Stopped.');
        return;
      }
      const message = errorMessage(error);
      set((s) => ({
        phase: 'idle',
        // Nothing typed is lost: put the question back if the box is still empty.
        draft: draftBefore !== null && s.draft.trim() === '' ? draftBefore : s.draft,
        messages: updateAssistant(s.messages, answerId, () => ({ status: 'error', error: message })),
      }));
      notices.showError('answer', error, 'The question could not be answered.');
    }
  },

  async classify(question, labels, options = {}) {
    const model = useModelStore.getState();
    const audio = useAudioStore.getState();
    const notices = useNoticeStore.getState();
    // The form is disabled with its reason in these states; this guards a call from elsewhere.
    if (get().phase !== 'idle' || useLocalizeStore.getState().phase !== 'idle') {
      notices.showError('answer', new Error('Hark is busy with another answer or a search: wait for it to finish, then press Classify again.'));
      return;
    }
    if (model.status !== 'ready' || !model.info) {
      notices.showError('answer', new Error('The model is not ready yet: wait for it to finish loading, then press Classify again.'));
      return;
    }
    if (audio.status !== 'ready' || !audio.recording) {
      notices.showError('answer', new Error('There is no recording to classify yet: record, open a file or pick a sample first.'));
      return;
    }
    const display = question.trim();
    if (!display) return;
    // The person's LoRA scale, as for answers; decoding settings do not apply (nothing is generated).
    const params = effectiveGeneration(useSettingsStore.getState(), model.info.defaults);
    const resume = get().engineTurns === 0 ? pendingResume : null;
    pendingResume = null;
    const userId = nextId++;
    const answerId = nextId++;
    set((s) => ({
      phase: 'answering',
      messages: [
        ...s.messages,
        { id: userId, role: 'user', text: display, label: options.label ?? 'Classify', prompt: display },
        {
          id: answerId,
          role: 'assistant',
          text: '',
          status: 'waiting',
          error: null,
          model: `${model.info!.label} · ${model.info!.backend === 'webgpu' ? 'WebGPU' : 'WebAssembly'}`,
          loraScale: params.loraScale,
          settings: { ...params, doSample: false, numBeams: 1, seed: 0 },
          stats: { tokens: 0, timeToFirstTokenMs: null, tokensPerSecond: null, promptTokens: null, stopReason: null, totalMs: null },
        },
      ],
    }));
    notices.clearError('answer');
    notices.announce(`Choosing between ${labels.length} labels…`);
    try {
      if (resume && resume.length > 0) {
        try {
          await inEngineLane(() => engineClient().resumeConversation(resume, { loraScale: params.loraScale }));
        } catch (error) {
          const divider: ChatMessage = { id: nextId++, role: 'divider', text: `The earlier conversation could not be re-read (${errorMessage(error)}); this question starts afresh.` };
          set((s) => {
            const at = s.messages.findIndex((m) => m.id === userId);
            return { messages: [...s.messages.slice(0, at), divider, ...s.messages.slice(at)] };
          });
        }
      }
      // Fed as ask() feeds a question: the first one gets the audio placeholder from the engine.
      const result: ClassifyResult = await inEngineLane(() => engineClient().classify(display, { choices: labels, loraScale: params.loraScale }));
      set((s) => ({
        phase: 'idle',
        engineTurns: result.turn,
        messages: updateAssistant(s.messages, answerId, () => ({
          status: 'done',
          text: result.text,
          // The chosen label's ids: a resumed conversation re-reads exactly this answer.
          tokenIds: result.ids,
          choices: result.choices.map(({ label, probability }) => ({ label, probability })),
          stats: {
            tokens: result.ids.length,
            timeToFirstTokenMs: null,
            tokensPerSecond: null,
            promptTokens: result.stats.promptTokens,
            stopReason: null,
            totalMs: result.stats.totalMs,
          },
        })),
      }));
      const chosen = result.choices.find((c) => c.label === result.label);
      notices.announce(`Answer: ${result.label}${chosen ? `, ${Math.round(chosen.probability * 100)} percent` : ''}. ${result.choices.map((c) => `${c.label} ${Math.round(c.probability * 100)} percent`).join(', ')}.`);
    } catch (error) {
      // Stopped, the engine starts the conversation over (engine.classify); a refused label list
      // (checked before anything runs) leaves it as it was, as a failed ask() does.
      const stopped = errorCode(error) === 'engine/cancelled';
      set((s) => ({
        phase: 'idle',
        engineTurns: stopped ? 0 : s.engineTurns,
        messages: updateAssistant(s.messages, answerId, () => (stopped ? { status: 'stopped' } : { status: 'error', error: errorMessage(error) })),
      }));
      if (stopped) notices.announce('Stopped.');
      else notices.showError('answer', error, 'The labels could not be compared.');
    }
  },

  stop() {
    if (get().phase !== 'answering') return;
    set({ phase: 'stopping' });
    void engineClient().cancel();
  },

  async regenerate() {
    const { messages, phase } = get();
    const answer = messages.at(-1);
    const question = messages.at(-2);
    if (phase !== 'idle' || answer?.role !== 'assistant' || question?.role !== 'user') return;
    const earlier = messages.slice(0, -2);
    try {
      await inEngineLane(() => engineClient().newConversation());
    } catch (error) {
      useNoticeStore.getState().showError('answer', error, 'Could not regenerate the answer.');
      return;
    }
    pendingResume = resumableTurns(earlier);
    set({ messages: earlier, engineTurns: 0 });
    await get().ask(question.prompt ?? question.text, question.label ? { label: question.label } : {});
  },

  stopAndWait() {
    if (get().phase === 'idle') return Promise.resolve();
    get().stop();
    return new Promise<void>((resolve) => {
      const unsubscribe = useConversationStore.subscribe((state) => {
        if (state.phase !== 'idle') return;
        unsubscribe();
        resolve();
      });
    });
  },

  noteForNextRecording(text) {
    nextRecordingNote = text;
  },

  async newConversation() {
    if (get().phase !== 'idle') engineClient().cancel();
    try {
      if (useModelStore.getState().status === 'ready' && useAudioStore.getState().status === 'ready') {
        await inEngineLane(() => engineClient().newConversation());
      }
      pendingResume = null;
      set({ messages: [], engineTurns: 0, phase: 'idle' });
      useNoticeStore.getState().announce('New conversation. The recording stays loaded.');
    } catch (error) {
      useNoticeStore.getState().showError('answer', error, 'Could not start a new conversation.');
    }
  },

  engineRestarted() {
    set((s) => ({
      phase: 'idle',
      engineTurns: 0,
      // An answer the dead worker was writing ends where it was (its call failed with the reason).
      messages: s.messages.map((m) => (m.role === 'assistant' && (m.status === 'waiting' || m.status === 'streaming') ? { ...m, status: 'error' as const, error: m.error ?? 'The engine stopped while writing this answer.' } : m)),
    }));
    pendingResume = resumableTurns(get().messages);
  },

  reset(reason, detail) {
    if (get().phase !== 'idle') engineClient().cancel();
    if (reason === 'recording') {
      pendingResume = null;
      // A question waiting for the previous recording is not sent about this one: back into the box.
      get().unqueue();
      const note = nextRecordingNote;
      nextRecordingNote = null;
      set({ messages: note ? [{ id: nextId++, role: 'divider', text: note }] : [], engineTurns: 0 });
      return;
    }
    // Only a conversation the engine held is lost (a restored one was never in this engine).
    set((s) => ({
      engineTurns: 0,
      messages: s.engineTurns === 0 ? s.messages : [...s.messages, { id: nextId++, role: 'divider', text: detail ?? 'The model changed: the conversation starts over.' }],
    }));
  },

  restore(saved, note) {
    if (get().phase !== 'idle') engineClient().cancel();
    pendingResume = null;
    const messages: ChatMessage[] = saved.map((m) => {
      if (m.role === 'user') return { ...m, id: nextId++ };
      // An answer that was still streaming when the page closed ends where it was saved.
      const status = m.status === 'waiting' || m.status === 'streaming' ? 'stopped' : m.status;
      return { ...m, id: nextId++, status };
    });
    if (messages.length > 0) messages.push({ id: nextId++, role: 'divider', text: note });
    pendingResume = resumableTurns(messages);
    set({ messages, engineTurns: 0, phase: 'idle' });
  },
}));
