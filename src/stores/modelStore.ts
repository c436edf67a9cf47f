/**
 * The model: loading (with byte-level progress, speed and ETA, pause and resume), what is loaded,
 * the models kept in this browser's storage, the bundles this site offers (`models/index.json`),
 * and the storage quota.
 */
import { create } from 'zustand';
import { modelHostRefusal } from '../csp';
import { engineClient, type EngineRestart, type ModelSource } from '../engineClient';
import { MODEL_INDEX_FILE, readModelIndex, type ModelIndexEntry } from '../modelIndex';
import { inEngineLane } from './engineLane';
import { errorCode, errorMessage, isEngineError, type BackendPreference, type EngineError, type BundleSummary, type ModelInfo, type ProgressInfo } from './engineTypes';
import { useNoticeStore } from './noticeStore';
import { BUNDLED_MODEL_SOURCE, useSettingsStore } from './settingsStore';

export type LoadPhase = 'starting' | 'downloading' | 'verifying' | 'initialising';

export interface LoadProgress {
  phase: LoadPhase;
  /** What is being loaded, for people ("/models/salmonn-tiny/", "owner/name", "local folder"). */
  source: string;
  loaded: number;
  total: number;
  /** 0–100 */
  percent: number;
  bytesPerSecond: number | null;
  etaSeconds: number | null;
  files: Record<string, { loaded: number; total: number }>;
  fromCache: boolean | null;
  note?: string;
}

/** A download stopped by `pause()`: what `resume()` loads again, and how far it had got. */
export interface PausedLoad {
  source: ModelSource;
  /** As in LoadProgress. */
  label: string;
  backend: BackendPreference;
  variant?: string;
  loaded: number;
  total: number;
  /** 0–100 */
  percent: number;
}

/** A load that failed (download, storage or start): what `retry()` loads again. */
export interface FailedLoad {
  source: ModelSource;
  label: string;
  backend: BackendPreference;
  variant?: string;
}

/** A bundle listed in the site's `models/index.json`, with the source string that loads it. */
export interface SiteModel extends ModelIndexEntry {
  /** e.g. "/models/salmonn-tiny/" (the folder on this site, as `load()` takes it). */
  source: string;
}

export interface StorageInfo {
  usage: number | null;
  quota: number | null;
  persisted: boolean | null;
  supported: boolean;
  /** The answer to the last "Keep models stored" request in this session (null: not asked). */
  persistAnswer: 'granted' | 'refused' | 'failed' | null;
}

interface ModelStore {
  /**
   * 'paused': a download was paused and no model is loaded. A download paused while another model
   * was loaded leaves that model in use ('ready'); `paused` says what was paused either way.
   */
  status: 'idle' | 'loading' | 'ready' | 'paused' | 'error';
  info: ModelInfo | null;
  /** The source string of the loaded model (null for a local folder). */
  source: string | null;
  /** Increments on every successful load: the engine forgets audio and conversation then. */
  loadId: number;
  progress: LoadProgress | null;
  error: string | null;
  /** Something to know about the loaded model (e.g. a fallback variant). */
  note: string | null;
  /** The paused download, until it is resumed or another model is loaded. */
  paused: PausedLoad | null;
  /** The last load, when it failed (cleared by the next load): "Try again" loads it again. */
  failed: FailedLoad | null;
  /** `pause()` was asked for and the load has not stopped yet. */
  pausing: boolean;
  /** The source being loaded now (null for a local folder or when nothing loads). */
  loadingSource: string | null;
  models: BundleSummary[];
  /** The bundles this site serves under `models/` (empty when it publishes no index). */
  siteModels: SiteModel[];
  storage: StorageInfo;
  load(source?: ModelSource, options?: { backend?: BackendPreference; variant?: string; label?: string; keepBackendSetting?: boolean }): Promise<boolean>;
  /**
   * After the engine's worker died or lost its GPU (src/engineClient.ts restarted it): loads the
   * model again in the new worker (from this device's cache) on the same backend; after a lost
   * GPU, where WebGPU cannot start again, on WebAssembly, and says so.
   */
  recover(event: EngineRestart): Promise<boolean>;
  /**
   * The start-up load: the model last used, unless its download was paused (then it stays paused
   * across the reload until the user resumes it). A download paused while another model was in
   * use stays listed as paused.
   */
  start(): Promise<boolean>;
  /**
   * Stops the load in progress while its files are downloaded or checked; bytes already
   * downloaded stay stored. No effect once the model is being started ('initialising').
   */
  pause(): void;
  /** Loads the paused download again: each file continues where it stopped (HTTP Range). */
  resume(): Promise<boolean>;
  /** Loads the failed load again: downloaded files are kept, so it continues where it stopped. */
  retry(): Promise<boolean>;
  refreshModels(): Promise<void>;
  deleteModel(key: string): Promise<void>;
  refreshStorage(): Promise<void>;
  requestPersistence(): Promise<boolean>;
  /** How answer tokens run changed while the model was in use (captured steps stopped: AnswerResult.decode). */
  updateDecode(decode: ModelInfo['decode']): void;
}

function describeSource(source: ModelSource): string {
  return typeof source === 'string' ? source : 'a folder on this device';
}

/** One call of `load()`: what it loads, and whether `pause()` asked it to stop. */
interface LoadRequest {
  backend: BackendPreference;
  variant: string | undefined;
  pauseRequested: boolean;
}

/** The latest load (loads run one at a time in the engine lane). */
let currentLoad: LoadRequest | null = null;

/** Thrown in place of starting a load that was paused while it waited in the engine lane. */
class PausedBeforeStart extends Error {}

/** The site's bundle list, or null when it could not be fetched (e.g. offline: keep the last one). */
async function fetchSiteModels(): Promise<SiteModel[] | null> {
  if (typeof fetch === 'undefined' || typeof location === 'undefined') return [];
  // Offline there is nothing to download, and the request could only fail (the service worker
  // never answers under models/): keep the list as it is.
  if (typeof navigator !== 'undefined' && navigator.onLine === false) return null;
  const indexUrl = new URL(`${import.meta.env.BASE_URL}models/${MODEL_INDEX_FILE}`, location.href);
  let response: Response;
  try {
    // From the network (the service worker never answers under models/), revalidated.
    response = await fetch(indexUrl, { cache: 'no-cache' });
  } catch {
    return null;
  }
  // 404: this site publishes no bundles besides what the app knows. Not an error.
  if (!response.ok) return [];
  try {
    return readModelIndex(await response.json()).map((entry) => ({ ...entry, source: new URL(entry.path, indexUrl).pathname }));
  } catch {
    return []; // not an index (e.g. a host that answers every path with index.html)
  }
}

/** Rolling speed over the last few seconds of progress events. */
function speedMeter() {
  const samples: { t: number; loaded: number }[] = [];
  return (loaded: number): number | null => {
    const t = performance.now();
    samples.push({ t, loaded });
    while (samples.length > 2 && t - samples[0]!.t > 3000) samples.shift();
    const first = samples[0]!;
    const dt = (t - first.t) / 1000;
    if (dt < 0.4) return null;
    return Math.max(0, (loaded - first.loaded) / dt);
  };
}

export const useModelStore = create<ModelStore>((set, get) => ({
  status: 'idle',
  info: null,
  source: null,
  loadId: 0,
  progress: null,
  error: null,
  note: null,
  paused: null,
  failed: null,
  pausing: false,
  loadingSource: null,
  models: [],
  siteModels: [],
  storage: { usage: null, quota: null, persisted: null, supported: typeof navigator !== 'undefined' && !!navigator.storage?.estimate, persistAnswer: null },

  async load(sourceArg, options = {}) {
    const settings = useSettingsStore.getState();
    const source = sourceArg ?? settings.modelSource;
    const backend = options.backend ?? settings.backend;
    const label = options.label ?? describeSource(source);
    const previous = get().info;
    const previousSource = get().source;
    const speed = speedMeter();
    let fallbackNote: string | null = null;
    /** Files fetched during a load that found the model stored: damaged copies, replaced. */
    const fetched = new Set<string>();
    let repairNote: string | null = null;
    const request: LoadRequest = { backend, variant: options.variant, pauseRequested: false };
    currentLoad = request;
    /** The engine call, unless a pause came while it waited in the lane. */
    const loadInLane = (variant: string | undefined) =>
      inEngineLane(() => {
        request.variant = variant;
        if (request.pauseRequested) return Promise.reject(new PausedBeforeStart());
        return engineClient().loadModel(source, { backend, variant }, onProgress);
      });
    useSettingsStore.getState().setPausedDownload(null);
    set({
      status: 'loading',
      error: null,
      note: null,
      paused: null,
      failed: null,
      pausing: false,
      loadingSource: typeof source === 'string' ? source : null,
      progress: { phase: 'starting', source: label, loaded: 0, total: 0, percent: 0, bytesPerSecond: null, etaSeconds: null, files: {}, fromCache: null },
    });
    useNoticeStore.getState().clearError('model');
    const onProgress = (event: ProgressInfo) => {
      const current = get().progress;
      if (!current) return;
      switch (event.status) {
        case 'progress_total': {
          const bytesPerSecond = speed(event.loaded);
          const remaining = Math.max(0, event.total - event.loaded);
          set({
            progress: {
              ...current,
              phase: current.phase === 'verifying' ? 'verifying' : 'downloading',
              loaded: event.loaded,
              total: event.total,
              percent: event.progress,
              bytesPerSecond,
              etaSeconds: bytesPerSecond && bytesPerSecond > 0 && remaining > 0 ? remaining / bytesPerSecond : remaining === 0 ? 0 : null,
              files: event.files,
            },
          });
          break;
        }
        case 'verify':
          if (current.phase !== 'verifying') set({ progress: { ...current, phase: 'verifying' } });
          break;
        case 'progress':
          if (current.phase === 'verifying') set({ progress: { ...current, phase: 'downloading' } });
          break;
        case 'download':
          fetched.add(event.file);
          break;
        case 'ready':
          if (event.fromCache && fetched.size > 0) {
            const names = [...fetched].sort().join(', ');
            repairNote = `${fetched.size === 1 ? 'A stored file was' : `${fetched.size} stored files were`} damaged on this device (${names}) and downloaded again.`;
          }
          set({ progress: { ...current, phase: 'initialising', percent: 100, loaded: current.total, etaSeconds: 0, fromCache: event.fromCache } });
          break;
        default:
          break;
      }
    };
    try {
      // The build's Content-Security-Policy would block the download: say so before fetching.
      const refusal = typeof source === 'string' && typeof location !== 'undefined' ? modelHostRefusal(source, location.origin) : null;
      if (refusal) throw { name: 'HarkError', code: 'bundle/host-not-allowed', message: refusal } satisfies EngineError;
      // An answer in progress would keep the lane busy: stop it first (a recording being listened
      // to is heard to the end, as before; the new model hears it again).
      void engineClient()
        .cancel('answers')
        .catch(() => {});
      let info: ModelInfo;
      try {
        info = await loadInLane(options.variant);
      } catch (error) {
        // A quantized variant whose graphs this backend cannot run (e.g. an int4 op without a
        // CPU kernel in this onnxruntime-web build): the full-precision variant still works.
        const failedVariant = isEngineError(error) ? error.details?.variant : undefined;
        if (options.variant || errorCode(error) !== 'engine/backend-unavailable' || typeof failedVariant !== 'string' || failedVariant === 'fp32') throw error;
        set((s) => ({ progress: s.progress ? { ...s.progress, phase: 'initialising', note: `The ${failedVariant} variant cannot run here; trying fp32…` } : null }));
        info = await loadInLane('fp32');
        fallbackNote = `The ${failedVariant} variant could not run on ${info.backend === 'webgpu' ? 'WebGPU' : 'WebAssembly'} here, so the fp32 variant is used.`;
      }
      // A pause that came after the files were complete changed nothing: the model is loaded.
      const notKept =
        info.storedOnDevice === false
          ? 'This browser lets Hark store no files here (for example in a private window): the model is kept in memory only, until the page closes, and is downloaded again next time.'
          : null;
      set((s) => ({
        status: 'ready',
        info,
        note: [fallbackNote, repairNote, notKept].filter((n) => n !== null).join(' ') || null,
        source: typeof source === 'string' ? source : null,
        loadId: s.loadId + 1,
        progress: null,
        error: null,
        pausing: false,
        loadingSource: null,
      }));
      if (typeof source === 'string') useSettingsStore.getState().setModelSource(source);
      if (options.backend && !options.keepBackendSetting) useSettingsStore.getState().setBackend(options.backend);
      useNoticeStore
        .getState()
        .announce(`${info.label} is ready on ${info.backend === 'webgpu' ? 'WebGPU' : 'WebAssembly'}.${info.backendAdvice ? ` ${info.backendAdvice}` : ''}`);
      void get().refreshModels();
      void get().refreshStorage();
      return true;
    } catch (error) {
      // Download and verification errors happen before the engine unloads the previous
      // model, so it is still usable; later failures leave no model loaded.
      const code = errorCode(error) ?? '';
      if (request.pauseRequested && (code === 'bundle/aborted' || error instanceof PausedBeforeStart)) {
        // Paused: not an error. The engine stops only while fetching or checking files, before
        // it unloads the previous model, so that one (if any) is still loaded and in use.
        const last = get().progress;
        const paused: PausedLoad = {
          source,
          label,
          backend,
          variant: request.variant,
          loaded: last?.loaded ?? 0,
          total: last?.total ?? 0,
          percent: last?.percent ?? 0,
        };
        set({ status: previous ? 'ready' : 'paused', info: previous, source: previousSource, progress: null, error: null, paused, pausing: false, loadingSource: null });
        // Survives a reload: the start-up load leaves it paused (see start()).
        if (typeof source === 'string') useSettingsStore.getState().setPausedDownload({ ...paused, source });
        useNoticeStore
          .getState()
          .announce(`Download paused at ${Math.floor(paused.percent)}%.${previous ? ` Still using ${previous.label}.` : ''}`);
        void get().refreshModels();
        void get().refreshStorage();
        return false;
      }
      const keptPrevious = previous !== null && code.startsWith('bundle/');
      const message = errorMessage(error);
      set({
        failed: code === 'bundle/host-not-allowed' ? null : { source, label, backend, variant: options.variant },
        status: keptPrevious ? 'ready' : 'error',
        info: keptPrevious ? previous : null,
        source: keptPrevious ? previousSource : null,
        progress: null,
        error: keptPrevious ? null : message,
        pausing: false,
        loadingSource: null,
      });
      useNoticeStore
        .getState()
        .showError('model', error, keptPrevious ? `Could not load ${label}; still using ${previous.label}.` : `Could not load ${label}.`);
      void get().refreshModels();
      void get().refreshStorage();
      return false;
    }
  },

  async start() {
    const settings = useSettingsStore.getState();
    const saved = settings.pausedDownload;
    if (saved && saved.source === settings.modelSource) {
      set({ status: 'paused', paused: saved });
      return false;
    }
    const loaded = await get().load();
    // The download paused while the model above was in use is still paused.
    if (saved && !get().paused && get().status !== 'loading') {
      set({ paused: saved });
      useSettingsStore.getState().setPausedDownload(saved);
    }
    return loaded;
  },

  async recover(event) {
    // A load the dead worker was doing fails with the reason, but its rejection travels through the
    // engine lane and the load's own awaits, so it can settle after this event (session.ts waits one
    // task only): seen as a model that stayed "loading" and was never loaded again. Wait for it.
    for (let waited = 0; get().status === 'loading' && waited < 30_000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const { source, info, status } = get();
    if (!event.restarted) {
      set({ status: 'error', info: null, progress: null, error: event.message, loadingSource: null });
      useNoticeStore.getState().showError('model', new Error(event.message));
      return false;
    }
    // Nothing was loaded or being loaded (a load the dead worker was doing failed with the reason:
    // status 'error'), or a download is paused: the new worker waits, as at start-up.
    if ((!info && status !== 'error') || status === 'paused') return false;
    const what = event.reason === 'device-lost' ? 'the GPU stopped working' : 'the engine stopped unexpectedly';
    const backend = useSettingsStore.getState().backend;
    // The same variant as before: its files are on this device (another would be downloaded).
    const loaded = await get().load(source ?? undefined, info ? { label: info.label, variant: info.variant } : {});
    if (loaded) {
      const now = get().info!;
      set({ note: `Restarted after ${what}: the model was loaded again from this device on ${now.backend === 'webgpu' ? 'WebGPU' : 'WebAssembly'}.` });
      useNoticeStore.getState().announce(`${now.label} is ready again after ${what}. Ask your question again.`);
      return true;
    }
    if (event.reason !== 'device-lost' || backend === 'wasm') return false;
    // WebGPU did not come back: WebAssembly runs the same model on the CPU (slower), for this session.
    const failed = get().error ?? 'it failed to start';
    const onCpu = await get().load(source ?? undefined, { backend: 'wasm', keepBackendSetting: true, ...(info ? { variant: info.variant, label: info.label } : {}) });
    if (onCpu) {
      set({ note: `WebGPU could not be started again after the GPU stopped working (${failed}), so the model now runs on WebAssembly (CPU), which is slower. Reload the page to try WebGPU again.` });
      useNoticeStore.getState().showError('model', new Error(get().note!));
    }
    return onCpu;
  },

  pause() {
    const request = currentLoad;
    const { status, progress, pausing } = get();
    if (!request || status !== 'loading' || pausing || progress?.phase === 'initialising') return;
    request.pauseRequested = true;
    set({ pausing: true });
    // Straight to the worker, not through the engine lane: the lane is busy with this very load.
    // A load still waiting in the lane sees `pauseRequested` and never starts.
    void engineClient()
      .abortLoad()
      .catch(() => {});
  },

  async resume() {
    const { paused, status } = get();
    if (!paused || status === 'loading') return false;
    return get().load(paused.source, { backend: paused.backend, variant: paused.variant, label: paused.label });
  },

  async retry() {
    const { failed, status } = get();
    if (!failed || status === 'loading') return false;
    return get().load(failed.source, { backend: failed.backend, variant: failed.variant, label: failed.label });
  },

  async refreshModels() {
    await Promise.all([
      engineClient()
        .listModels()
        .then((models) => set({ models }))
        // Listing is best effort (e.g. no OPFS in a private window); loading reports its own errors.
        .catch(() => {}),
      fetchSiteModels().then((siteModels) => {
        if (siteModels) set({ siteModels });
      }),
    ]);
  },

  async deleteModel(key) {
    try {
      await engineClient().deleteModel(key);
    } catch (error) {
      useNoticeStore.getState().showError('model', error, 'Could not delete the model.');
    }
    await get().refreshModels();
    await get().refreshStorage();
  },

  async refreshStorage() {
    const storage = typeof navigator !== 'undefined' ? navigator.storage : undefined;
    if (!storage?.estimate) {
      set({ storage: { usage: null, quota: null, persisted: null, supported: false, persistAnswer: get().storage.persistAnswer } });
      return;
    }
    try {
      const [estimate, persisted] = await Promise.all([storage.estimate(), storage.persisted ? storage.persisted() : Promise.resolve(null)]);
      set({ storage: { usage: estimate.usage ?? null, quota: estimate.quota ?? null, persisted, supported: true, persistAnswer: get().storage.persistAnswer } });
    } catch {
      set({ storage: { ...get().storage, supported: true } });
    }
  },

  updateDecode(decode) {
    set((s) => (s.info ? { info: { ...s.info, decode } } : {}));
  },

  async requestPersistence() {
    const storage = typeof navigator !== 'undefined' ? navigator.storage : undefined;
    if (!storage?.persist) {
      set({ storage: { ...get().storage, persistAnswer: 'failed' } });
      return false;
    }
    let granted: boolean;
    try {
      granted = await storage.persist();
    } catch {
      set({ storage: { ...get().storage, persistAnswer: 'failed' } });
      return false;
    }
    // The answer is shown beside the button (a status region): see Storage in ModelPanel.
    set({ storage: { ...get().storage, persisted: granted, persistAnswer: granted ? 'granted' : 'refused' } });
    return granted;
  },
}));

/**
 * What a bundle is to the person, from one place (the model manager's rows all use this): being
 * loaded or downloaded now, paused, in use, stored, partly downloaded, or not on this device.
 */
export type BundleState = 'loading' | 'paused' | 'in-use' | 'stored' | 'partial' | 'not-stored';

export function bundleState(
  model: Pick<ModelStore, 'status' | 'source' | 'loadingSource' | 'paused'>,
  key: string | null,
  stored: BundleSummary | undefined,
): BundleState {
  const sameBundle = (source: unknown) => key !== null && typeof source === 'string' && storeKeyFor(source) === key;
  if (model.status === 'loading' && sameBundle(model.loadingSource)) return 'loading';
  if (model.paused && sameBundle(model.paused.source)) return 'paused';
  if (model.status === 'ready' && sameBundle(model.source)) return 'in-use';
  if (stored?.complete) return 'stored';
  return stored ? 'partial' : 'not-stored';
}

/** The store key a source string is kept under (mirrors the engine's bundleKey for strings). */
export function storeKeyFor(source: string): string | null {
  const text = source.trim();
  const hf = /^https:\/\/huggingface\.co\/([^/]+\/[^/]+?)(?:\/tree\/([^/]+))?\/?$/i.exec(text);
  if (hf) return `hf:${hf[1]}@${hf[2] ? decodeURIComponent(hf[2]) : 'main'}`;
  const withSlash = (s: string) => (s.endsWith('/') ? s : `${s}/`);
  if (/^https?:\/\//i.test(text) || /^\.{0,2}\//.test(text)) {
    try {
      return `url:${withSlash(new URL(text.replace(/\/manifest\.json$/, '/'), location.href).href)}`;
    } catch {
      return null;
    }
  }
  const at = text.indexOf('@');
  return at >= 0 ? `hf:${text.slice(0, at)}@${text.slice(at + 1)}` : `hf:${text}@main`;
}

/** The source string to load a stored bundle again (null for local folders). */
export function sourceForStoreKey(key: string): string | null {
  if (key.startsWith('url:')) {
    const url = key.slice(4);
    try {
      const parsed = new URL(url);
      return parsed.origin === location.origin ? parsed.pathname : url;
    } catch {
      return url;
    }
  }
  if (key.startsWith('hf:')) {
    const ref = key.slice(3);
    return ref.endsWith('@main') ? ref.slice(0, -5) : ref;
  }
  return null;
}

export { BUNDLED_MODEL_SOURCE };
