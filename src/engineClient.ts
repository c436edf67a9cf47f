/** The UI's only door to the engine: a comlink proxy over the module worker. */
import * as Comlink from 'comlink';
import type { EngineWorkerApi } from '../workers/engine.worker';

export type EngineClient = Comlink.Remote<EngineWorkerApi>;

let client: EngineClient | undefined;

export function engineClient(): EngineClient {
  if (!client) {
    const worker = new Worker(new URL('../workers/engine.worker.ts', import.meta.url), {
      type: 'module',
      name: 'hark-engine',
    });
    client = Comlink.wrap<EngineWorkerApi>(worker);
  }
  return client;
}
