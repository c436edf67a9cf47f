import { useDeviceStore } from '../stores/deviceStore';
import type { WorkerDeviceReport } from '../../workers/engine.worker';

const MiB = 1024 * 1024;

function formatBytes(bytes: number): string {
  return bytes >= 1024 * MiB ? `${(bytes / (1024 * MiB)).toFixed(1)} GiB` : `${Math.round(bytes / MiB)} MiB`;
}

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}

function Report({ report }: { report: WorkerDeviceReport }) {
  const { webgpu, wasm } = report;
  return (
    <>
      <p data-testid="backend-choice">
        Runs on <strong data-testid="recommended-backend">{report.recommended === 'webgpu' ? 'WebGPU' : 'WebAssembly (CPU)'}</strong>
        . {report.recommendationReason}
      </p>
      <h3>WebGPU</h3>
      {webgpu.available ? (
        <dl className="facts" data-testid="webgpu-report" data-available="true">
          <dt>Adapter</dt>
          <dd>{[webgpu.vendor, webgpu.architecture, webgpu.device].filter(Boolean).join(' · ') || 'unnamed'}</dd>
          <dt>Software adapter</dt>
          <dd>{yesNo(webgpu.isFallbackAdapter)}</dd>
          <dt>shader-f16</dt>
          <dd data-testid="shader-f16">{yesNo(webgpu.shaderF16)}</dd>
          <dt>Max buffer</dt>
          <dd data-testid="max-buffer-size">{formatBytes(webgpu.maxBufferSize)}</dd>
          <dt>Max storage binding</dt>
          <dd data-testid="max-storage-binding">{formatBytes(webgpu.maxStorageBufferBindingSize)}</dd>
        </dl>
      ) : (
        <p className="notice" data-testid="webgpu-report" data-available="false" role="status">
          {webgpu.reason}
        </p>
      )}
      <h3>WebAssembly fallback</h3>
      <dl className="facts" data-testid="wasm-report">
        <dt>Cross-origin isolated</dt>
        <dd data-testid="cross-origin-isolated">{yesNo(wasm.crossOriginIsolated)}</dd>
        <dt>Threads</dt>
        <dd data-testid="wasm-threads">{wasm.threads ? `yes (${wasm.numThreads})` : 'no'}</dd>
        <dt>SIMD</dt>
        <dd>{yesNo(wasm.simd)}</dd>
        <dt>onnxruntime-web</dt>
        <dd>{report.ortVersion}</dd>
      </dl>
    </>
  );
}

export function DeviceReportPanel() {
  const state = useDeviceStore((s) => s.state);
  return (
    <section className="card" aria-labelledby="device-heading" aria-busy={state.status === 'probing'}>
      <h2 id="device-heading">This device</h2>
      {state.status === 'ready' && <Report report={state.report} />}
      {(state.status === 'idle' || state.status === 'probing') && <p role="status">Checking what this device can run…</p>}
      {state.status === 'error' && (
        <p className="error" role="alert">
          {state.message}
        </p>
      )}
    </section>
  );
}
