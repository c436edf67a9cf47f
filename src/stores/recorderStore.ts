/** Microphone recording: permission, live level, elapsed time, stop → the audio store. */
import { create } from 'zustand';
import { MAX_AUDIO_SECONDS } from '../audio/decode';
import { microphoneErrorFrom, startRecorder, type RecorderHandle } from '../audio/recorder';
import { useAudioStore } from './audioStore';
import { useNoticeStore } from './noticeStore';

interface RecorderStore {
  status: 'idle' | 'requesting' | 'recording' | 'finishing';
  level: number;
  elapsedSeconds: number;
  start(): Promise<void>;
  stop(): Promise<void>;
  cancel(): void;
}

let handle: RecorderHandle | null = null;

export const useRecorderStore = create<RecorderStore>((set, get) => ({
  status: 'idle',
  level: 0,
  elapsedSeconds: 0,

  async start() {
    if (get().status !== 'idle') return;
    set({ status: 'requesting', level: 0, elapsedSeconds: 0 });
    useNoticeStore.getState().clearError('recorder');
    try {
      handle = await startRecorder({
        maxSeconds: MAX_AUDIO_SECONDS,
        onLevel: (level) => set({ level }),
        onElapsed: (elapsedSeconds) => set({ elapsedSeconds }),
        onLimit: () => {
          useNoticeStore.getState().announce('The recording reached the 10 minute limit and stopped.');
          void get().stop();
        },
      });
      set({ status: 'recording' });
      useNoticeStore.getState().announce('Recording. Press Stop when you are done.');
    } catch (error) {
      handle = null;
      set({ status: 'idle', level: 0 });
      useNoticeStore.getState().showError('recorder', microphoneErrorFrom(error));
    }
  },

  async stop() {
    const current = handle;
    if (!current || get().status !== 'recording') return;
    handle = null;
    set({ status: 'finishing' });
    try {
      const audio = await current.stop();
      set({ status: 'idle', level: 0 });
      await useAudioStore.getState().setRecorded(audio);
    } catch (error) {
      set({ status: 'idle', level: 0 });
      useNoticeStore.getState().showError('recorder', error, 'The recording could not be finished.');
    }
  },

  cancel() {
    handle?.cancel();
    handle = null;
    set({ status: 'idle', level: 0, elapsedSeconds: 0 });
  },
}));
