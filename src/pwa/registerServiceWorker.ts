/**
 * Registers Hark's service worker (src/sw.ts, emitted as `<base>sw.js` by production builds) through
 * workbox-window and exposes its state to the UI. Nothing here fetches anything except the
 * same-origin service worker script.
 *
 * Usage (once, at start-up, e.g. in src/main.tsx):
 *
 *   import { registerServiceWorker } from './pwa/registerServiceWorker';
 *   registerServiceWorker();
 *
 * and in React, e.g. for an "Update available — Reload" banner and an "Works offline" badge:
 *
 *   const pwa = usePwaStatus();                 // useSyncExternalStore over the status below
 *   if (pwa.updateAvailable) <button onClick={() => void applyUpdate()}>Reload to update</button>
 *   if (pwa.offlineReady) <span>Works offline</span>
 *
 * Updates never apply by themselves: the new worker waits until `applyUpdate()` (the page then
 * reloads once the new worker controls it), so an answer being generated is never interrupted.
 * The dev server builds no service worker: there the status stays `{ supported, state: 'disabled' }`.
 */
import { useSyncExternalStore } from 'react';
import { Workbox } from 'workbox-window';

export type PwaState =
  /** No service worker support (e.g. an insecure context or a private window that blocks it). */
  | 'unsupported'
  /** Not registered: development server, or `registerServiceWorker()` not called yet. */
  | 'disabled'
  /** Registering / installing (precaching the app shell and the ~27 MB ORT wasm). */
  | 'installing'
  /** A service worker is active: the app shell loads with the network off. */
  | 'ready'
  /** Registration or installation failed (`error` says why); the app still works online. */
  | 'error';

export interface PwaStatus {
  state: PwaState;
  /** True once the app shell is precached and served by an active worker (works offline). */
  offlineReady: boolean;
  /** True when a newer version is installed and waiting for `applyUpdate()`. */
  updateAvailable: boolean;
  /** True when this page is controlled by the service worker. */
  controlling: boolean;
  error?: string;
}

type Listener = (status: PwaStatus) => void;

const listeners = new Set<Listener>();
let status: PwaStatus = {
  state: 'disabled',
  offlineReady: false,
  updateAvailable: false,
  controlling: typeof navigator !== 'undefined' && !!navigator.serviceWorker?.controller,
};
let workbox: Workbox | undefined;
let started = false;

function set(patch: Partial<PwaStatus>): void {
  status = { ...status, ...patch };
  for (const listener of listeners) {
    try {
      listener(status);
    } catch {
      // A failing listener (UI code) must not break the others.
    }
  }
}

/** The current status (a new object after every change, so it can be a React snapshot). */
export function getPwaStatus(): PwaStatus {
  return status;
}

/** Calls `listener` on every status change; returns the unsubscribe function. */
export function subscribePwaStatus(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** React hook over the status. */
export function usePwaStatus(): PwaStatus {
  return useSyncExternalStore(subscribePwaStatus, getPwaStatus, getPwaStatus);
}

export interface RegisterOptions {
  /** Service worker URL (default `<base>sw.js`). */
  url?: string;
  /** Scope (default the app's base). */
  scope?: string;
  /** Register even on the dev server (tests only; the dev server serves no sw.js). */
  force?: boolean;
}

/**
 * Registers the service worker (idempotent; production builds only unless `force`). Resolves with
 * the status after registration; never rejects — failures end up in `status.error`.
 */
export async function registerServiceWorker(options: RegisterOptions = {}): Promise<PwaStatus> {
  if (started) return status;
  started = true;
  if (typeof navigator === 'undefined' || !('serviceWorker' in navigator)) {
    set({ state: 'unsupported' });
    return status;
  }
  if (import.meta.env.DEV && !options.force) return status;

  const base = import.meta.env.BASE_URL;
  const wb = new Workbox(options.url ?? `${base}sw.js`, { scope: options.scope ?? base });
  workbox = wb;
  set({ state: 'installing', controlling: !!navigator.serviceWorker.controller });

  wb.addEventListener('activated', () => set({ state: 'ready', offlineReady: true }));
  wb.addEventListener('controlling', () => set({ controlling: true }));
  // A newer version finished installing while an older one controls the page.
  wb.addEventListener('waiting', () => set({ updateAvailable: true }));
  wb.addEventListener('redundant', () => {
    // The worker we were installing was replaced or failed to install.
    if (!status.offlineReady) set({ state: 'error', error: 'the service worker failed to install' });
  });

  try {
    // `immediate`: register now rather than after the window's load event (the app may load a
    // model for a long time; the shell should be cached as soon as possible).
    const registration = await wb.register({ immediate: true });
    if (!registration) {
      set({ state: 'error', error: 'the service worker could not be registered' });
      return status;
    }
    if (registration.active) set({ state: 'ready', offlineReady: true });
    if (registration.waiting && registration.active) set({ updateAvailable: true });
  } catch (error) {
    set({ state: 'error', error: (error as Error)?.message ?? String(error) });
  }
  return status;
}

/**
 * Activates a waiting update and reloads the page once the new worker controls it. Does nothing
 * when no update is waiting.
 */
export async function applyUpdate(): Promise<void> {
  const wb = workbox;
  if (!wb || !status.updateAvailable) return;
  wb.addEventListener('controlling', () => window.location.reload());
  wb.messageSkipWaiting();
}

/** Asks the browser to look for a new version now (it also checks on navigations). */
export async function checkForUpdate(): Promise<void> {
  await workbox?.update();
}
