/**
 * The engine's worker entry point: a thin comlink wrapper over HarkEngine (src/engine/), with
 * models stored in the Origin Private File System. Every method answers with an Envelope so
 * typed errors survive the trip (see protocol.ts); callbacks arrive as comlink proxies.
 */
import * as Comlink from 'comlink';
import { listBundles, deleteBundle, type BundleSummary, type ProgressInfo } from '../src/engine/bundle/loader';
import { parseBundleSource, type BundleSource } from '../src/engine/bundle/source';
import { DeviceBundleStore } from '../src/engine/bundle/store';
import type { DecodedAudio } from '../src/engine/audio/wav';
import { probeDevice, type DeviceReport } from '../src/engine/device';
import { HarkEngine, type AnswerResult, type AudioInfo, type BackendPreference, type ClassifyResult, type ModelInfo, type ResumeResult, type ResumeTurn } from '../src/engine/engine';
import type { GenerationParams, TokenEvent } from '../src/engine/llm/generate';
import type { LocalizationResult, LocalizeOptions, LocalizeProgress } from '../src/engine/localize/types';
import { configureOrt, ort } from '../src/engine/ortRuntime';
import { HarkError } from '../src/engine/errors';
import { deviceLostMessage, envelope, type Envelope } from './protocol';

// ORT's wasm files are served by the app itself (see vite.config.ts), never by a CDN.
configureOrt({ wasmBaseUrl: new URL(`${import.meta.env.BASE_URL}ort/`, self.location.origin).href });

// OPFS, or memory where the browser refuses it (a private window): see `storedOnDevice`.
const store = new DeviceBundleStore();
const engine = new HarkEngine({ store, onReleasingSessions: markDeviceReleased });

/** What the worker tells the page outside of comlink's replies (see src/engineClient.ts). */
export type WorkerEvent = { harkEvent: 'device-lost'; message: string; reason: string };

/**
 * A Web Lock held for as long as this worker lives: the page asks for the same lock and is granted
 * it only once the worker is gone (terminated, closed, crashed), which is how it notices.
 */
const lifeLock: Promise<string | null> = new Promise((resolve) => {
  const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
  if (!locks) return resolve(null);
  const name = `hark-engine-alive-${crypto.randomUUID()}`;
  locks.request(name, () => {
    resolve(name);
    return new Promise<never>(() => {});
  }).catch(() => resolve(null));
});

/** The WebGPU device onnxruntime uses, once lost (null while it works or before it exists). */
let deviceLost: { message: string; reason: string } | null = null;
const watchedDevices = new WeakSet<object>();
/** Devices whose sessions the engine released itself: their "destroyed" loss is onnxruntime's cleanup. */
const releasedDevices = new WeakSet<object>();

/**
 * Before the engine releases its model's sessions: onnxruntime destroys its WebGPU device with
 * the last session (and creates a new one for the next model), so that device's loss is expected
 * and must not restart the worker as a lost GPU would.
 */
async function markDeviceReleased(): Promise<void> {
  const device = await ortDevice();
  if (device && typeof device === 'object') releasedDevices.add(device);
}

/**
 * Watches the GPUDevice onnxruntime created (ort.env.webgpu.device): when the browser reports it
 * lost (a driver reset, the GPU process crashed, or destroy() from outside), the page is told at
 * once and replaces the worker. A device onnxruntime destroyed itself after the engine released
 * its sessions (see markDeviceReleased) is not a loss: the next model gets a new device.
 */
/** The GPUDevice onnxruntime set in env.webgpu.device (a promise of it in some builds); null before. */
function ortDevice(): Promise<GPUDevice | null> {
  const value = (ort.env.webgpu as unknown as { device?: GPUDevice | Promise<GPUDevice> }).device;
  return value ? Promise.resolve(value).catch(() => null) : Promise.resolve(null);
}

async function watchDevice(): Promise<void> {
  const device = await ortDevice();
  if (!device || typeof device !== 'object' || !('lost' in device) || watchedDevices.has(device)) return;
  watchedDevices.add(device);
  void device.lost.then((info) => {
    if (info.reason === 'destroyed' && releasedDevices.has(device)) return;
    deviceLost = { message: info.message || 'no reason given', reason: String(info.reason) };
    const event: WorkerEvent = { harkEvent: 'device-lost', ...deviceLost };
    self.postMessage(event);
  });
}

/** Work on the GPU: a failure after the device was lost says so, not "inference failed". */
function onDevice<T>(work: () => Promise<T>): () => Promise<T> {
  return async () => {
    try {
      return await work();
    } catch (error) {
      // The device's lost promise settles a moment after the run that hit it fails.
      const gpuFailure = !(error instanceof HarkError) || error.code === 'engine/inference-failed';
      if (gpuFailure && !deviceLost && (await ortDevice())) await new Promise((r) => setTimeout(r, 300));
      if (deviceLost) {
        throw new HarkError('engine/device-lost', deviceLostMessage(deviceLost.message), deviceLost);
      }
      throw error;
    }
  };
}

export interface WorkerDeviceReport extends DeviceReport {
  ortVersion: string;
}

export type ModelSource = string | { kind: 'files'; files: Map<string, Blob> };

export interface StageCapture {
  chunk: number;
  /** 'mel' / 'fbank', an encoder's name, 'adapter.<encoder>' or 'tokens' (see StageInspector). */
  stage: string;
  data: Float32Array;
}

export interface SetAudioOptions {
  /** Diagnostics: return every audio-stage intermediate (parity tests). */
  captureStages?: boolean;
}

export interface AskParams extends Partial<GenerationParams> {
  /** Diagnostics: return the first step's logits. */
  captureFirstLogits?: boolean;
}

/** classify()'s options that cross the worker boundary (cancel with cancel(), not a signal). */
export interface ClassifyParams {
  choices: string[];
  loraScale?: number;
}

/** The model load in progress, so `abortLoad` can stop it (one at a time: the stores queue loads). */
let loading: AbortController | null = null;

function source(input: ModelSource): BundleSource {
  return typeof input === 'string' ? parseBundleSource(input, self.location.origin) : input;
}

const api = {
  deviceReport(): Promise<Envelope<WorkerDeviceReport>> {
    return envelope(async () => ({ ...(await probeDevice()), ortVersion: ort.env.versions.web ?? 'unknown' }));
  },

  loadModel(
    input: ModelSource,
    options: { backend?: BackendPreference; variant?: string },
    onProgress?: (info: ProgressInfo) => void,
  ): Promise<Envelope<ModelInfo & { storedOnDevice: boolean }>> {
    // Registered synchronously, before any await: an abortLoad posted after this call always
    // finds it (comlink delivers calls in order).
    const controller = new AbortController();
    loading = controller;
    return envelope(async () => {
      const info = await engine.loadModel(source(input), { ...options, onProgress, signal: controller.signal });
      if (info.backend === 'webgpu') await watchDevice();
      /** False where the browser lets the site store no files: the model is gone when the page closes. */
      const storedOnDevice = await store.persistent();
      return { ...info, storedOnDevice };
    }).finally(() => {
      if (loading === controller) loading = null;
    });
  },

  /**
   * Stops the model load in progress while its files are fetched or checked: it then fails with
   * `bundle/aborted`, the model loaded before stays loaded, and downloaded bytes stay in `.part`
   * files that the next load of the same bundle resumes with HTTP Range. Once the files are
   * complete the engine no longer looks at the signal and the load finishes. Not queued behind
   * the load (it must reach it); answers whether a load was running.
   */
  abortLoad(): boolean {
    if (!loading) return false;
    loading.abort();
    return true;
  },

  setAudio(
    audio: Uint8Array | DecodedAudio,
    options: SetAudioOptions = {},
    onChunk?: (done: number, total: number) => void,
  ): Promise<Envelope<{ info: AudioInfo; stages: StageCapture[] }>> {
    return envelope(onDevice(async () => {
      const stages: StageCapture[] = [];
      if (options.captureStages) engine.inspectAudioStages((chunk, stage, data) => stages.push({ chunk, stage, data: data.slice() }));
      try {
        const info = await engine.setAudio(audio, onChunk);
        return { info, stages };
      } finally {
        if (options.captureStages) engine.inspectAudioStages(null);
      }
    }));
  },

  ask(
    question: string,
    params: AskParams,
    onToken?: (event: TokenEvent) => void,
  ): Promise<Envelope<AnswerResult & { firstLogits?: Float32Array }>> {
    return envelope(onDevice(async () => {
      const { captureFirstLogits, ...generation } = params;
      let firstLogits: Float32Array | undefined;
      const answer = await engine.ask(question, {
        ...generation,
        // Fire-and-forget: awaiting each proxied callback would add a round trip per token.
        onToken: onToken ? (event) => void onToken(event) : undefined,
        onFirstLogits: captureFirstLogits ? (logits) => (firstLogits = logits) : undefined,
      });
      return firstLogits ? { ...answer, firstLogits } : answer;
    }));
  },

  /** The answer picked from `choices`, with every label's probability; cancel() stops it (engine/cancelled). */
  classify(question: string, options: ClassifyParams): Promise<Envelope<ClassifyResult>> {
    return envelope(onDevice(() => engine.classify(question, options)));
  },

  /** Where in the current recording an event happens; cancel() stops it (engine/cancelled). */
  localize(
    eventText: string,
    options: LocalizeOptions & { captureVector?: boolean } = {},
    onProgress?: (progress: LocalizeProgress) => void,
  ): Promise<Envelope<LocalizationResult & { vector?: Float32Array }>> {
    return envelope(() =>
      engine.localize(eventText, {
        ...options,
        // Fire-and-forget, like ask's tokens: progress must not wait for a round trip.
        onProgress: onProgress ? (progress) => void onProgress(progress) : undefined,
      }),
    );
  },

  resumeConversation(turns: ResumeTurn[], options: { loraScale?: number } = {}): Promise<Envelope<ResumeResult>> {
    return envelope(onDevice(() => engine.resumeConversation(turns, options)));
  },

  cancel(scope: 'all' | 'answers' = 'all'): void {
    engine.cancel(scope);
  },

  /** The name of the lock this worker holds while it lives (null where Web Locks are missing). */
  lifeLock(): Promise<string | null> {
    return lifeLock;
  },

  newConversation(): Promise<Envelope<void>> {
    return envelope(() => engine.newConversation());
  },

  counters() {
    return engine.counters;
  },

  unload(): Promise<Envelope<void>> {
    return envelope(() => engine.unload());
  },

  listModels(): Promise<Envelope<BundleSummary[]>> {
    return envelope(() => listBundles(store));
  },

  deleteModel(key: string): Promise<Envelope<void>> {
    return envelope(() => deleteBundle(store, key));
  },
};

export type EngineWorkerApi = typeof api;

Comlink.expose(api);
