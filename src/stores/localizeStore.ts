/**
 * "Where in the recording?": when does an event (“a dog barking”) happen in the current
 * recording. The engine steers the model's attention toward the event and reads where it moves
 * (models/salmonn/localize.py); this store runs one search at a time, in the engine lane with the
 * answers (the engine does one thing at a time), and keeps the last result for the recording it
 * was found in.
 */
import { create } from 'zustand';
import { engineClient } from '../engineClient';
import { useAudioStore } from './audioStore';
import { inEngineLane } from './engineLane';
import { errorCode, errorMessage, type LocalizationResult, type LocalizeProgress } from './engineTypes';
import { useModelStore } from './modelStore';
import { useNoticeStore } from './noticeStore';
import { effectiveGeneration, useSettingsStore } from './settingsStore';

/** 'stopping': Stop was pressed and the engine has not answered yet. */
export type FindPhase = 'idle' | 'finding' | 'stopping';

export interface FoundEvent {
  /** The recording it was found in (a result is never shown over another recording). */
  recordingId: number;
  result: LocalizationResult;
}

const NOTHING_TYPED = 'Type the sound to look for first, for example “a dog barking”.';

/** Longest event text sent: a sound's description, not an essay (it is put into a prompt). */
export const MAX_EVENT_LENGTH = 200;

interface LocalizeStore {
  /** What the person typed into "Find in recording". */
  eventText: string;
  phase: FindPhase;
  /** The engine's last progress report for the search running now. */
  progress: LocalizeProgress | null;
  found: FoundEvent | null;
  /** Why the last search failed, in words that say what to do. */
  error: string | null;
  /** The last search was stopped before it found anything. */
  stopped: boolean;
  /** Draw the evidence curve under the waveform. */
  showEvidence: boolean;
  setEventText(text: string): void;
  find(): Promise<void>;
  stop(): void;
  setShowEvidence(show: boolean): void;
  /** The recording or the model changed: stops a search and forgets the result. */
  reset(): void;
}

/**
 * The search in flight: 'queued' while it waits in the lane, 'in-engine' from the call until the
 * engine has answered (only then may `cancel()` be sent: the engine cancels whatever it is running).
 */
interface Running {
  request: number;
  where: 'queued' | 'in-engine' | 'answered';
  cancelled: boolean;
}

/** The newest search wins: answers to older ones (stopped, or for another recording) are dropped. */
let latestRequest = 0;
let running: Running | null = null;

/** Thrown in the lane for a search stopped before its turn came (never reaches the engine). */
const STOPPED_IN_LANE = Symbol('stopped before it started');

export const useLocalizeStore = create<LocalizeStore>((set, get) => ({
  eventText: '',
  phase: 'idle',
  progress: null,
  found: null,
  error: null,
  stopped: false,
  showEvidence: false,

  setEventText(eventText) {
    // Typing answers "type the sound first"; an engine error stays until the next search.
    set((s) => ({ eventText, error: s.error === NOTHING_TYPED ? null : s.error }));
  },

  async find() {
    const eventText = get().eventText.trim().slice(0, MAX_EVENT_LENGTH);
    if (get().phase !== 'idle') return;
    if (eventText === '') {
      set({ error: NOTHING_TYPED, stopped: false });
      return;
    }
    const model = useModelStore.getState();
    const audio = useAudioStore.getState();
    // The form is disabled in these states; this guards a call from elsewhere.
    if (model.status !== 'ready' || !model.info?.localization || audio.status !== 'ready' || !audio.recording) {
      set({ error: 'Find is not available right now: wait until the model and the recording are ready.', stopped: false });
      return;
    }
    const recordingId = audio.recording.id;
    const { loraScale } = effectiveGeneration(useSettingsStore.getState(), model.info.defaults);
    const request = ++latestRequest;
    const mine: Running = { request, where: 'queued', cancelled: false };
    running = mine;
    const notices = useNoticeStore.getState();
    set({ phase: 'finding', progress: null, found: null, error: null, stopped: false });
    notices.announce(`Finding “${eventText}” in the recording…`);
    const onProgress = (progress: LocalizeProgress) => {
      if (request === latestRequest) set({ progress });
    };
    try {
      const result = await inEngineLane(() => {
        if (mine.cancelled) return Promise.reject(STOPPED_IN_LANE);
        mine.where = 'in-engine';
        // The person's LoRA scale, as for answers (the engine's default otherwise is the model's).
        // Marked answered before the lane starts its next call, so a late Stop cannot cancel that.
        return engineClient()
          .localize(eventText, { loraScale }, onProgress)
          .finally(() => (mine.where = 'answered'));
      });
      if (request !== latestRequest) return;
      if (useAudioStore.getState().recording?.id !== recordingId) {
        set({ phase: 'idle', progress: null });
        return;
      }
      set({ phase: 'idle', progress: null, found: { recordingId, result } });
      notices.announce(`Found “${eventText}” from ${spokenTime(result.start)} to ${spokenTime(result.end)}, confidence ${Math.round(result.confidence * 100)} percent.`);
    } catch (error) {
      if (request !== latestRequest) return;
      if (error === STOPPED_IN_LANE || errorCode(error) === 'engine/cancelled') {
        set({ phase: 'idle', progress: null, stopped: true });
        notices.announce('Stopped: nothing was found.');
        return;
      }
      // The engine's own words: they say what happened and what to do (e.g. no probe, too long).
      set({ phase: 'idle', progress: null, error: errorMessage(error, 'The search in the recording failed: try again') });
    } finally {
      if (running === mine) running = null;
    }
  },

  stop() {
    const mine = running;
    if (get().phase !== 'finding' || !mine) return;
    mine.cancelled = true;
    if (mine.where === 'in-engine') {
      // The engine ends the search within a step and rejects it as cancelled (see find).
      set({ phase: 'stopping' });
      void engineClient().cancel();
      return;
    }
    // Still waiting in the lane (it will not reach the engine), or already answered: nothing to cancel.
    latestRequest++;
    running = null;
    set({ phase: 'idle', progress: null, stopped: true });
    useNoticeStore.getState().announce('Stopped: nothing was found.');
  },

  setShowEvidence(showEvidence) {
    set({ showEvidence });
  },

  reset() {
    const mine = running;
    latestRequest++;
    running = null;
    if (mine) {
      mine.cancelled = true;
      // Only a search that reached the engine is cancelled there: anything else may be running.
      if (mine.where === 'in-engine') void engineClient().cancel();
    }
    set({ phase: 'idle', progress: null, found: null, error: null, stopped: false });
  },
}));

/** "12.3 seconds", "1 minute 5.0 seconds": times as a screen reader should say them. */
function spokenTime(seconds: number): string {
  const tenths = Math.max(0, Math.round(seconds * 10));
  const minutes = Math.floor(tenths / 600);
  const rest = ((tenths % 600) / 10).toFixed(1);
  return minutes > 0 ? `${minutes} minute${minutes === 1 ? '' : 's'} ${rest} seconds` : `${rest} seconds`;
}
