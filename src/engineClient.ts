/**
 * The UI's only door to the engine: a typed client over the module worker (comlink). Results are
 * unwrapped from their envelopes so failures arrive as HarkError with their code; callbacks are
 * passed as comlink proxies; audio buffers are transferred, not copied.
 */
import * as Comlink from 'comlink';
import type { DecodedAudio } from './engine/audio/wav';
import type { ProgressInfo } from './engine/bundle/loader';
import type { BackendPreference, ResumeTurn } from './engine/engine';
import type { TokenEvent } from './engine/llm/generate';
import type { LocalizeOptions, LocalizeProgress } from './engine/localize/types';
import type { AskParams, EngineWorkerApi, ModelSource, SetAudioOptions } from '../workers/engine.worker';
import { unwrap } from '../workers/protocol';

export type { AskParams, ModelSource } from '../workers/engine.worker';

export function createEngineClient(worker?: Worker) {
  const remote = Comlink.wrap<EngineWorkerApi>(
    worker ?? new Worker(new URL('../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'hark-engine' }),
  );
  return {
    async deviceReport() {
      return unwrap(await remote.deviceReport());
    },
    async loadModel(source: ModelSource, options: { backend?: BackendPreference; variant?: string } = {}, onProgress?: (info: ProgressInfo) => void) {
      return unwrap(await remote.loadModel(source, options, onProgress ? Comlink.proxy(onProgress) : undefined));
    },
    async setAudio(audio: Uint8Array | DecodedAudio, options: SetAudioOptions = {}, onChunk?: (done: number, total: number) => void) {
      const buffers = audio instanceof Uint8Array ? [audio.buffer] : audio.channels.map((c) => c.buffer);
      const transferable = Comlink.transfer(audio, buffers as ArrayBuffer[]);
      return unwrap(await remote.setAudio(transferable, options, onChunk ? Comlink.proxy(onChunk) : undefined));
    },
    async ask(question: string, params: AskParams = {}, onToken?: (event: TokenEvent) => void) {
      return unwrap(await remote.ask(question, params, onToken ? Comlink.proxy(onToken) : undefined));
    },
    /** Where in the current recording `eventText` happens; `cancel()` stops it. */
    async localize(eventText: string, options: LocalizeOptions & { captureVector?: boolean } = {}, onProgress?: (progress: LocalizeProgress) => void) {
      return unwrap(await remote.localize(eventText, options, onProgress ? Comlink.proxy(onProgress) : undefined));
    },
    cancel: () => remote.cancel(),
    /** Stops a model download in progress (bypasses any queue, like cancel); see the worker. */
    abortLoad: () => remote.abortLoad(),
    async resumeConversation(turns: ResumeTurn[], options: { loraScale?: number } = {}) {
      return unwrap(await remote.resumeConversation(turns, options));
    },
    async newConversation() {
      return unwrap(await remote.newConversation());
    },
    counters: () => remote.counters(),
    async unload() {
      return unwrap(await remote.unload());
    },
    async listModels() {
      return unwrap(await remote.listModels());
    },
    async deleteModel(key: string) {
      return unwrap(await remote.deleteModel(key));
    },
  };
}

export type EngineClient = ReturnType<typeof createEngineClient>;

let shared: EngineClient | undefined;

/** The app's single engine worker. */
export function engineClient(): EngineClient {
  shared ??= createEngineClient();
  return shared;
}
