/** The header's model status: what answers, on which backend, and the load progress bar. */
import { useModelStore } from '../stores/modelStore';
import { backendName, formatBytes } from './format';

export function ModelStatus() {
  const status = useModelStore((s) => s.status);
  const info = useModelStore((s) => s.info);
  const progress = useModelStore((s) => s.progress);
  const paused = useModelStore((s) => s.paused);
  const percent = progress ? Math.round(progress.percent) : 0;

  let title: string;
  let detail: string;
  if (status === 'loading' && progress) {
    title = 'Loading model…';
    detail =
      progress.phase === 'initialising'
        ? 'Starting the model'
        : progress.phase === 'verifying'
          ? `Checking files · ${percent}%`
          : progress.total > 0
            ? `${formatBytes(progress.loaded)} of ${formatBytes(progress.total)} · ${percent}%`
            : 'Connecting';
  } else if (status === 'ready' && info) {
    title = info.label;
    detail = `${backendName(info.backend)} · ${info.variant}${paused ? ' · a download is paused' : ''}`;
  } else if (status === 'paused' && paused) {
    title = 'Download paused';
    detail = paused.total > 0 ? `${Math.floor(paused.percent)}% · ${formatBytes(paused.loaded)} of ${formatBytes(paused.total)}` : 'Resume it in Models';
  } else if (status === 'error') {
    title = 'No model loaded';
    detail = 'See Models in Settings';
  } else {
    title = 'Starting…';
    detail = '';
  }

  return (
    <div className="model-status" data-state={status}>
      <div
        className="model-status-text"
        data-testid="model-status"
        data-state={status}
        data-backend={info?.backend ?? ''}
        data-variant={info?.variant ?? ''}
        data-random-weights={info?.randomWeights ? 'true' : 'false'}
        title={info && status === 'ready' ? info.backendReason : undefined}
      >
        <span className="status-dot" aria-hidden="true" />
        <span className="model-status-title">{title}</span>
        {detail && <span className="model-status-detail">{detail}</span>}
      </div>
      {status === 'loading' && (
        <progress
          className="model-progress"
          data-testid="model-progress"
          max={100}
          value={progress && progress.phase !== 'starting' && progress.phase !== 'initialising' ? percent : undefined}
          aria-label="Model download"
          aria-valuetext={progress && progress.total > 0 ? `${percent}% (${formatBytes(progress.loaded)} of ${formatBytes(progress.total)})` : 'Starting'}
        />
      )}
    </div>
  );
}
