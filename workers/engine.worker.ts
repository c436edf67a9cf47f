/**
 * The engine's worker entry point: a thin comlink wrapper, no logic of its own.
 * Everything it exposes lives in `src/engine/`, which also runs in Node.
 */
import * as Comlink from 'comlink';
import { probeDevice, type DeviceReport } from '../src/engine/device';
import { configureOrt, ort } from '../src/engine/ortRuntime';

// ORT's wasm files are served by the app itself (see vite.config.ts), never by a CDN.
configureOrt({ wasmBaseUrl: new URL(`${import.meta.env.BASE_URL}ort/`, self.location.origin).href });

export interface WorkerDeviceReport extends DeviceReport {
  ortVersion: string;
}

const api = {
  async deviceReport(): Promise<WorkerDeviceReport> {
    const report = await probeDevice();
    return { ...report, ortVersion: ort.env.versions.web ?? 'unknown' };
  },
};

export type EngineWorkerApi = typeof api;

Comlink.expose(api);
