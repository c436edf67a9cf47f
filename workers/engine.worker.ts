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
import { envelope, type Envelope } from './protocol';

// ORT's wasm files are served by the app itself (see vite.config.ts), never by a CDN.
configureOrt({ wasmBaseUrl: new URL(`${import.meta.env.BASE_URL}ort/`, self.location.origin).href });

// OPFS, or memory where the browser refuses it (a private window): see `storedOnDevice`.
const store = new DeviceBundleStore();
const engine = new HarkEngine({ store });

export interface WorkerDeviceReport extends DeviceReport {
  ortVersion: string;
}

export type ModelSource = string | { kind: 'files'; files: Map<string, Blob> };

export interface StageCapture {
  chunk: number;
  stage: 'mel' | 'fbank' | 'speech' | 'audio' | 'tokens';
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
    return envelope(async () => {
      const stages: StageCapture[] = [];
      if (options.captureStages) engine.inspectAudioStages((chunk, stage, data) => stages.push({ chunk, stage, data: data.slice() }));
      try {
        const info = await engine.setAudio(audio, onChunk);
        return { info, stages };
      } finally {
        if (options.captureStages) engine.inspectAudioStages(null);
      }
    });
  },

  ask(
    question: string,
    params: AskParams,
    onToken?: (event: TokenEvent) => void,
  ): Promise<Envelope<AnswerResult & { firstLogits?: Float32Array }>> {
    return envelope(async () => {
      const { captureFirstLogits, ...generation } = params;
      let firstLogits: Float32Array | undefined;
      const answer = await engine.ask(question, {
        ...generation,
        // Fire-and-forget: awaiting each proxied callback would add a round trip per token.
        onToken: onToken ? (event) => void onToken(event) : undefined,
        onFirstLogits: captureFirstLogits ? (logits) => (firstLogits = logits) : undefined,
      });
      return firstLogits ? { ...answer, firstLogits } : answer;
    });
  },

  /** The answer picked from `choices`, with every label's probability; cancel() stops it (engine/cancelled). */
  classify(question: string, options: ClassifyParams): Promise<Envelope<ClassifyResult>> {
    return envelope(() => engine.classify(question, options));
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
    return envelope(() => engine.resumeConversation(turns, options));
  },

  cancel(): void {
    engine.cancel();
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
