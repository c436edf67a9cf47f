import { useDeviceStore } from '../stores/deviceStore';
import { useModelStore } from '../stores/modelStore';
import type { ModelInfo } from '../stores/engineTypes';
import type { WorkerDeviceReport } from '../../workers/engine.worker';
import { BackendAdvice } from './BackendAdvice';
import { backendName } from './format';

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
        Automatic picks <strong data-testid="recommended-backend">{report.recommended === 'webgpu' ? 'WebGPU' : 'WebAssembly (CPU)'}</strong>
        . <span data-testid="recommendation-reason">{report.recommendationReason}</span>
      </p>
      <h3>WebGPU</h3>
      {webgpu.available ? (
        <dl className="facts" data-testid="webgpu-report" data-available="true">
          <dt>Adapter</dt>
          <dd>{[webgpu.vendor, webgpu.architecture, webgpu.device].filter(Boolean).join(' · ') || 'unnamed'}</dd>
          <dt>Software adapter</dt>
          <dd data-testid="software-adapter">{webgpu.software ? `yes: ${webgpu.softwareEvidence}` : 'no'}</dd>
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

/** What the loaded model runs on here: its backend, how its prompts are fed (the self-check) and how answer tokens run. */
function LoadedModel({ info }: { info: ModelInfo }) {
  return (
    <>
      <h3>The loaded model</h3>
      <dl className="facts" data-testid="model-runtime">
        <dt>Runs on</dt>
        <dd data-testid="model-runtime-backend" data-backend={info.backend}>
          {backendName(info.backend)}. {info.backendReason}
        </dd>
        <dt>Prompts</dt>
        <dd
          data-testid="prefill-check"
          data-check={info.prefill.check}
          data-chunk={info.prefill.chunk ?? 'all'}
          data-max-error={info.prefill.maxError ?? ''}
        >
          {info.prefill.summary}
        </dd>
        <dt>Answer tokens</dt>
        <dd data-testid="decode-capture" data-captured={String(info.decode.captured)}>
          {info.decode.summary}
        </dd>
      </dl>
      <BackendAdvice advice={info.backendAdvice} testId="device-backend-advice" />
    </>
  );
}

export function DeviceReportPanel() {
  const state = useDeviceStore((s) => s.state);
  const info = useModelStore((s) => (s.status === 'ready' ? s.info : null));
  return (
    <section className="card" aria-labelledby="device-heading" aria-busy={state.status === 'probing'}>
      <h2 id="device-heading">This device</h2>
      {state.status === 'ready' && <Report report={state.report} />}
      {info && <LoadedModel info={info} />}
      {(state.status === 'idle' || state.status === 'probing') && <p role="status">Checking what this device can run…</p>}
      {state.status === 'error' && (
        <p className="error" role="alert">
          {state.message}
        </p>
      )}
    </section>
  );
}
