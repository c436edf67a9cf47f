/** The one visible error message (role=alert), and short polite announcements for screen readers. */
import { create } from 'zustand';
import { errorMessage } from './engineTypes';

export interface Notice {
  id: number;
  message: string;
  /** Where it came from, for tests and styling ("audio", "model", "answer", "recorder"…). */
  scope: string;
}

interface NoticeStore {
  error: Notice | null;
  announcement: string;
  showError(scope: string, error: unknown, prefix?: string): void;
  clearError(scope?: string): void;
  announce(text: string): void;
}

let nextId = 1;

export const useNoticeStore = create<NoticeStore>((set, get) => ({
  error: null,
  announcement: '',
  showError(scope, error, prefix) {
    const message = errorMessage(error);
    set({ error: { id: nextId++, scope, message: prefix ? `${prefix} ${message}` : message } });
  },
  clearError(scope) {
    const current = get().error;
    if (current && (scope === undefined || current.scope === scope)) set({ error: null });
  },
  announce(text) {
    // Re-announce identical text by clearing first.
    set({ announcement: '' });
    queueMicrotask(() => set({ announcement: text }));
  },
}));
