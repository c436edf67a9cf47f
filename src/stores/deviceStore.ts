import { create } from 'zustand';
import type { WorkerDeviceReport } from '../../workers/engine.worker';
import { engineClient } from '../engineClient';

type DeviceState =
  | { status: 'idle' | 'probing' }
  | { status: 'ready'; report: WorkerDeviceReport }
  | { status: 'error'; message: string };

interface DeviceStore {
  state: DeviceState;
  probe(): Promise<void>;
}

export const useDeviceStore = create<DeviceStore>((set, get) => ({
  state: { status: 'idle' },
  async probe() {
    if (get().state.status === 'probing') return;
    set({ state: { status: 'probing' } });
    try {
      const report = await engineClient().deviceReport();
      set({ state: { status: 'ready', report } });
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      set({
        state: {
          status: 'error',
          message: `The inference worker could not start (${detail}). Reload the page; if it keeps failing, your browser may not support module workers.`,
        },
      });
    }
  },
}));
