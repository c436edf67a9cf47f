/**
 * The UI's only door to the engine: a typed client over the module worker (comlink). Results are
 * unwrapped from their envelopes so failures arrive as HarkError with their code; callbacks are
 * passed as comlink proxies; audio buffers are transferred, not copied.
 *
 * The client also watches the worker. It ends when the worker dies (terminated, closed, out of
 * memory: the worker holds a Web Lock for its lifetime, which the page is granted when it is gone),
 * throws an uncaught error, or reports that the WebGPU device was lost (see the worker). Every call
 * in flight then fails with `engine/worker-crashed` or `engine/device-lost`, a fresh worker takes
 * over and `onEngineRestart` listeners hear why, so the stores can load the model again (from this
 * device's cache) and keep the conversation.
 */
import * as Comlink from 'comlink';
import type { DecodedAudio } from './engine/audio/wav';
import type { ProgressInfo } from './engine/bundle/loader';
import type { BackendPreference, ResumeTurn } from './engine/engine';
import { HarkError } from './engine/errors';
import type { TokenEvent } from './engine/llm/generate';
import type { LocalizeOptions, LocalizeProgress } from './engine/localize/types';
import type { AskParams, ClassifyParams, EngineWorkerApi, ModelSource, SetAudioOptions, WorkerEvent } from '../workers/engine.worker';
import { deviceLostMessage, unwrap, workerCrashedMessage } from '../workers/protocol';

export type { AskParams, ClassifyParams, ModelSource } from '../workers/engine.worker';

/** Why the engine was restarted, for the stores (a message a person can read). */
export interface EngineRestart {
  reason: 'crashed' | 'device-lost';
  /** What happened, in words (also the message of the calls that failed). */
  message: string;
  /** Restarts so far in this page. */
  count: number;
  /** False when it kept failing and the client gave up (the page must be reloaded). */
  restarted: boolean;
}

/** More restarts than this within RESTART_WINDOW_MS and the client stops trying. */
const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 60_000;

function newWorker(): Worker {
  return new Worker(new URL('../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'hark-engine' });
}

/** The message of a call that failed because the worker died or the GPU was lost. */
function failure(reason: EngineRestart['reason'], detail: string): HarkError {
  return reason === 'device-lost'
    ? new HarkError('engine/device-lost', deviceLostMessage(detail), { detail })
    : new HarkError('engine/worker-crashed', workerCrashedMessage(detail), { detail });
}

/**
 * `worker`: a worker made by the caller (it is not restarted: calls fail with the reason once it
 * dies). Without it, the client makes the app's engine worker and replaces it when it dies.
 */
export function createEngineClient(worker?: Worker) {
  const restartable = worker === undefined;
  const listeners = new Set<(event: EngineRestart) => void>();
  const restarts: number[] = [];
  let count = 0;

  interface Generation {
    worker: Worker;
    remote: Comlink.Remote<EngineWorkerApi>;
    /** Rejects when this worker is gone (never resolves). */
    dead: Promise<never>;
    kill(reason: EngineRestart['reason'], detail: string): void;
    ended: boolean;
  }

  function start(w: Worker): Generation {
    let kill!: Generation['kill'];
    const dead = new Promise<never>((_, reject) => {
      kill = (reason, detail) => {
        if (generation.ended) return;
        generation.ended = true;
        reject(failure(reason, detail));
        w.terminate();
        onDeath(generation, reason, detail);
      };
    });
    dead.catch(() => {}); // observed by the calls in flight; none may be
    const generation: Generation = { worker: w, remote: Comlink.wrap<EngineWorkerApi>(w), dead, kill: (r, d) => kill(r, d), ended: false };
    w.addEventListener('error', (event) => {
      // An error nothing caught inside the worker: its state can no longer be trusted.
      event.preventDefault();
      // A lost GPU can also surface as an error: its own report, if it follows at once, says more.
      const detail = event.message ? `an error inside it: ${event.message}` : 'an error inside it';
      setTimeout(() => generation.kill('crashed', detail), 200);
    });
    w.addEventListener('message', (event: MessageEvent) => {
      const data = event.data as WorkerEvent | undefined;
      if (data && typeof data === 'object' && (data as { harkEvent?: unknown }).harkEvent === 'device-lost') {
        generation.kill('device-lost', data.message || 'no reason given');
      }
    });
    // The worker holds a lock for as long as it lives: the page is granted it once the worker is gone.
    // Known gap: a worker that dies before answering lifeLock (in its first moments) is not seen to
    // die, and calls in flight then wait forever; a heartbeat would close it (CI saw it, 2026-11-28).
    void generation.remote
      .lifeLock()
      .then((name) => {
        if (!name || generation.ended || typeof navigator === 'undefined' || !navigator.locks) return;
        return navigator.locks.request(name, () => {
          generation.kill('crashed', 'its worker was closed');
        });
      })
      .catch(() => {});
    return generation;
  }

  function onDeath(ended: Generation, reason: EngineRestart['reason'], detail: string) {
    if (current !== ended) return;
    count += 1;
    const now = Date.now();
    restarts.push(now);
    while (restarts.length > 0 && now - restarts[0]! > RESTART_WINDOW_MS) restarts.shift();
    const again = restartable && restarts.length <= MAX_RESTARTS;
    if (again) current = start(newWorker());
    const message = again
      ? failure(reason, detail).message
      : `${failure(reason, detail).message.split('). ')[0]}). It keeps stopping, so Hark gave up restarting it: reload the page.`;
    for (const listener of listeners) listener({ reason, message, count, restarted: again });
  }

  let current = start(worker ?? newWorker());

  /** A call to the current worker that fails (instead of waiting forever) if the worker dies meanwhile. */
  function call<P extends Promise<unknown>>(work: (remote: Comlink.Remote<EngineWorkerApi>) => P): P {
    const generation = current;
    if (generation.ended) return generation.dead as unknown as P;
    return Promise.race([work(generation.remote), generation.dead]) as P;
  }

  return {
    async deviceReport() {
      return unwrap(await call((r) => r.deviceReport()));
    },
    async loadModel(source: ModelSource, options: { backend?: BackendPreference; variant?: string } = {}, onProgress?: (info: ProgressInfo) => void) {
      return unwrap(await call((r) => r.loadModel(source, options, onProgress ? Comlink.proxy(onProgress) : undefined)));
    },
    async setAudio(audio: Uint8Array | DecodedAudio, options: SetAudioOptions = {}, onChunk?: (done: number, total: number) => void) {
      const buffers = audio instanceof Uint8Array ? [audio.buffer] : audio.channels.map((c) => c.buffer);
      const transferable = Comlink.transfer(audio, buffers as ArrayBuffer[]);
      return unwrap(await call((r) => r.setAudio(transferable, options, onChunk ? Comlink.proxy(onChunk) : undefined)));
    },
    async ask(question: string, params: AskParams = {}, onToken?: (event: TokenEvent) => void) {
      return unwrap(await call((r) => r.ask(question, params, onToken ? Comlink.proxy(onToken) : undefined)));
    },
    /** The answer to `question` picked from `params.choices`, with every label's probability; `cancel()` stops it. */
    async classify(question: string, params: ClassifyParams) {
      return unwrap(await call((r) => r.classify(question, params)));
    },
    /** Where in the current recording `eventText` happens; `cancel()` stops it. */
    async localize(eventText: string, options: LocalizeOptions & { captureVector?: boolean } = {}, onProgress?: (progress: LocalizeProgress) => void) {
      return unwrap(await call((r) => r.localize(eventText, options, onProgress ? Comlink.proxy(onProgress) : undefined)));
    },
    /** Stops what the engine is doing: an answer, a search, or listening to a recording ('answers': not the listening). */
    cancel: (scope: 'all' | 'answers' = 'all'): Promise<void> => call((r) => r.cancel(scope)).catch(() => {}), // nothing to stop in a worker that is gone
    /** Stops a model download in progress (bypasses any queue, like cancel); see the worker. */
    abortLoad: () => call((r) => r.abortLoad()),
    async resumeConversation(turns: ResumeTurn[], options: { loraScale?: number } = {}) {
      return unwrap(await call((r) => r.resumeConversation(turns, options)));
    },
    async newConversation() {
      return unwrap(await call((r) => r.newConversation()));
    },
    counters: () => call((r) => r.counters()),
    async unload() {
      return unwrap(await call((r) => r.unload()));
    },
    async listModels() {
      return unwrap(await call((r) => r.listModels()));
    },
    async deleteModel(key: string) {
      return unwrap(await call((r) => r.deleteModel(key)));
    },
    /** Called after the worker died or lost its GPU (and, unless it kept failing, was replaced). */
    onRestart(listener: (event: EngineRestart) => void): () => void {
      listeners.add(listener);
      return () => listeners.delete(listener);
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
