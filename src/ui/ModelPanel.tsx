/**
 * The model: what is loaded, download progress (pause/resume), the bundles this site offers,
 * stored models, adding one, storage quota.
 */
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { BUNDLED_MODEL_SOURCE, bundleState, sourceForStoreKey, storeKeyFor, useModelStore, type BundleState, type SiteModel } from '../stores/modelStore';
import type { BundleSummary } from '../stores/engineTypes';
import { useDeviceStore } from '../stores/deviceStore';
import { useSettingsStore } from '../stores/settingsStore';
import { BackendAdvice } from './BackendAdvice';
import { backendName, formatBytes, formatEta } from './format';
import { TrashIcon } from './Icons';

/**
 * Pause and Resume replace each other in the DOM: the one pressed disappears. Keep keyboard focus
 * on the control that takes its place instead of dropping it to the page.
 */
let focusNext: 'pause' | 'resume' | null = null;

function useFocusOnMount<T extends HTMLElement>(which: 'pause' | 'resume') {
  const ref = useRef<T>(null);
  useEffect(() => {
    if (focusNext !== which) return;
    focusNext = null;
    ref.current?.focus();
  }, [which]);
  return ref;
}

function PauseButton() {
  const pause = useModelStore((s) => s.pause);
  const pausing = useModelStore((s) => s.pausing);
  const ref = useFocusOnMount<HTMLButtonElement>('pause');
  return (
    <button
      ref={ref}
      type="button"
      className="button small"
      data-testid="model-pause"
      disabled={pausing}
      onClick={() => {
        if (ref.current === document.activeElement) focusNext = 'resume';
        pause();
      }}
    >
      {pausing ? 'Pausing…' : 'Pause download'}
    </button>
  );
}

function LoadProgressDetail() {
  const progress = useModelStore((s) => s.progress);
  if (!progress) return null;
  // Pausable while files are fetched or checked (the engine then stops at once, keeps what it
  // downloaded and still has the previous model). Not while 'initialising': the files are
  // complete, the previous model is already unloaded and the new one is being started, so
  // stopping would leave nothing loaded and nothing left to resume; it takes a moment anyway.
  const pausable = progress.phase !== 'initialising';
  const percent = Math.round(progress.percent);
  const files = Object.entries(progress.files);
  const phase =
    progress.phase === 'starting'
      ? 'Connecting…'
      : progress.phase === 'verifying'
        ? 'Checking the stored files…'
        : progress.phase === 'initialising'
          ? progress.fromCache
            ? 'Loaded from this device. Starting the model…'
            : 'Downloaded. Starting the model…'
          : 'Downloading…';
  return (
    <div className="load-progress" data-testid="model-load-detail">
      <p className="small">
        <strong>{phase}</strong> <span className="muted">{progress.source}</span>
      </p>
      {progress.note && <p className="small">{progress.note}</p>}
      <progress max={100} value={progress.phase === 'starting' || progress.phase === 'initialising' ? undefined : percent} aria-label="Model download progress" />
      {progress.total > 0 && (
        <p className="small muted">
          {formatBytes(progress.loaded)} of {formatBytes(progress.total)} · {percent}%
          {progress.bytesPerSecond ? ` · ${formatBytes(progress.bytesPerSecond)}/s` : ''}
          {progress.phase === 'downloading' && progress.etaSeconds !== null ? ` · ${formatEta(progress.etaSeconds)}` : ''}
        </p>
      )}
      {files.length > 0 && (
        <details className="file-progress">
          <summary className="small">Files ({files.length})</summary>
          <ul>
            {files.map(([name, file]) => (
              <li key={name} className="small">
                <span className="file-name">{name}</span>
                <span className="muted">{file.total > 0 ? `${Math.round((file.loaded / file.total) * 100)}% of ${formatBytes(file.total)}` : formatBytes(file.loaded)}</span>
              </li>
            ))}
          </ul>
        </details>
      )}
      {pausable && (
        <div className="actions">
          <PauseButton />
        </div>
      )}
      <p className="small muted">Downloads resume where they stopped if you pause them or close the page.</p>
    </div>
  );
}

/** A paused download: how far it got, and Resume. */
function PausedDownload() {
  const paused = useModelStore((s) => s.paused);
  const status = useModelStore((s) => s.status);
  const resume = useModelStore((s) => s.resume);
  const ref = useFocusOnMount<HTMLButtonElement>('resume');
  if (!paused) return null;
  const percent = Math.floor(paused.percent);
  return (
    <div className="load-progress paused-download" data-testid="model-paused">
      <p className="small">
        <strong>Download paused</strong> <span className="muted">{paused.label}</span>
      </p>
      <progress max={100} value={percent} aria-label="Model download progress (paused)" />
      <p className="small muted" data-testid="model-paused-detail">
        {paused.total > 0 ? `Paused at ${percent}% (${formatBytes(paused.loaded)} of ${formatBytes(paused.total)})` : 'Paused before the download started'}
      </p>
      <div className="actions">
        <button
          ref={ref}
          type="button"
          className="button small primary"
          data-testid="model-resume"
          disabled={status === 'loading'}
          onClick={(event) => {
            if (event.currentTarget === document.activeElement) focusNext = 'pause';
            void resume();
          }}
        >
          Resume download
        </button>
      </div>
      <p className="small muted">What was downloaded is kept: resuming fetches only the rest.</p>
    </div>
  );
}

/** "Try again" for the load that failed: files already downloaded are kept and not fetched again. */
function FailedLoadRetry() {
  const failed = useModelStore((s) => s.failed);
  const retry = useModelStore((s) => s.retry);
  if (!failed) return null;
  return (
    <div className="failed-load" data-testid="model-failed">
      <p className="small">Loading {failed.label} failed. Files already downloaded are kept: trying again continues where it stopped.</p>
      <button type="button" className="button small" data-testid="model-retry" onClick={() => void retry()}>
        Try again
      </button>
    </div>
  );
}

function CurrentModel() {
  const info = useModelStore((s) => s.info);
  const status = useModelStore((s) => s.status);
  const error = useModelStore((s) => s.error);
  const note = useModelStore((s) => s.note);
  const load = useModelStore((s) => s.load);
  if (status === 'loading') return <LoadProgressDetail />;
  if (!info) {
    if (status === 'paused') return <PausedDownload />;
    return (
      <div className="current-model">
        <p className="muted">{error ?? 'No model is loaded.'}</p>
        <FailedLoadRetry />
        <button type="button" className="button small" onClick={() => void load(BUNDLED_MODEL_SOURCE)}>
          Load the bundled test model
        </button>
      </div>
    );
  }
  return (
    <div className="current-model" data-testid="current-model">
      {/* A download paused while this model stayed in use. */}
      <PausedDownload />
      {/* A load that failed while this model stayed in use. */}
      <FailedLoadRetry />
      <p className="model-name">
        <strong>{info.label}</strong>
        {info.randomWeights && <span className="badge warn">random weights</span>}
      </p>
      {info.randomWeights && <p className="small muted">For testing: it runs the real pipeline, but its answers are meaningless.</p>}
      {note && <p className="small" data-testid="model-note">{note}</p>}
      <dl className="facts small">
        <dt>Backend</dt>
        <dd data-testid="model-backend">{backendName(info.backend)}</dd>
        <dt>Why</dt>
        <dd data-testid="model-backend-reason">{info.backendReason}</dd>
        <dt>Prompts</dt>
        <dd data-testid="model-prefill">{info.prefill.summary}</dd>
        <dt>Precision</dt>
        <dd>{info.variant}</dd>
        <dt>Loaded in</dt>
        <dd>{(info.loadMs / 1000).toFixed(1)} s</dd>
      </dl>
      <BackendAdvice advice={info.backendAdvice} testId="model-backend-advice" />
      <details className="small">
        <summary>About this model</summary>
        <p className="muted">{info.description}</p>
      </details>
    </div>
  );
}

/** "int4 4.17 MB · fp32 10.4 MB": the tested variants' download sizes, smallest first. */
function variantSizes(model: SiteModel): string {
  const variants = Object.entries(model.variants).filter(([, v]) => v.tested);
  const shown = (variants.length > 0 ? variants : Object.entries(model.variants)).sort((a, b) => a[1].bytes - b[1].bytes);
  return shown.map(([name, v]) => `${name} ${formatBytes(v.bytes)}`).join(' · ');
}

/** Every variant WebAssembly could load (tested, not fp16-compute) is over its 4 GiB heap, per the index. */
export function tooLargeForWasm(model: SiteModel): boolean {
  const usable = Object.entries(model.variants).filter(([name, v]) => v.tested && name !== 'fp16' && name !== 'int4f16');
  return usable.length > 0 && usable.every(([, v]) => v.fitsWasm === false);
}

/** How far the load in progress has got, in a few words ("downloading · 23%"). */
function loadingWords(): string {
  const progress = useModelStore.getState().progress;
  if (!progress || progress.phase === 'starting') return 'connecting…';
  if (progress.phase === 'verifying') return 'checking the stored files…';
  if (progress.phase === 'initialising') return 'starting the model…';
  return `downloading · ${Math.floor(progress.percent)}%`;
}

function pausedWords(): string {
  const paused = useModelStore.getState().paused;
  return paused && paused.total > 0 ? `download paused at ${Math.floor(paused.percent)}%` : 'download paused';
}

/** The row's action for a bundle in each state (none while it loads or is in use). */
const ACTION: Record<BundleState, string | null> = { loading: null, 'in-use': null, paused: 'Resume', stored: 'Use', partial: 'Resume', 'not-stored': 'Download' };

/** The bundles the site serves under models/ (models/index.json), and which are stored here. */
function SiteModels() {
  const siteModels = useModelStore((s) => s.siteModels);
  const models = useModelStore((s) => s.models);
  const status = useModelStore((s) => s.status);
  const load = useModelStore((s) => s.load);
  const resume = useModelStore((s) => s.resume);
  // The whole store: a row's state and words follow the load's progress and the pause.
  const model = useModelStore((s) => s);
  const backend = useSettingsStore((s) => s.backend);
  const device = useDeviceStore((s) => s.state);
  const onWasm = backend === 'wasm' || (backend === 'auto' && device.status === 'ready' && device.report.recommended === 'wasm');
  if (siteModels.length === 0) return null;
  return (
    <div className="site-models">
      <h3 className="subsection-title" id="site-models-heading">
        Available on this site
      </h3>
      <ul className="model-list" data-testid="site-models" aria-labelledby="site-models-heading">
        {siteModels.map((site) => {
          const key = storeKeyFor(site.source);
          const stored = models.find((m) => m.key === key);
          const state = bundleState(model, key, stored);
          const where =
            state === 'in-use'
              ? null
              : state === 'loading'
                ? loadingWords()
                : state === 'paused'
                  ? pausedWords()
                  : state === 'stored'
                    ? `Stored on this device (${stored!.completeVariants.join(', ')})`
                    : state === 'partial'
                      ? 'Download not finished'
                      : 'Not downloaded';
          const verb = ACTION[state];
          return (
            <li key={site.source} className="model-row" data-testid={`site-model-${site.name}`} data-state={state} data-active={state === 'in-use'}>
              <div className="model-row-text">
                <span className="model-row-name">
                  {site.label}
                  {state === 'in-use' && <span className="badge ok">in use</span>}
                  {state === 'stored' && <span className="badge">stored</span>}
                </span>
                <span className="small muted">
                  {where ? `${where.charAt(0).toUpperCase()}${where.slice(1)} · ` : ''}
                  {variantSizes(site)}
                  {site.randomWeights ? ' · random weights' : ''}
                </span>
                {onWasm && tooLargeForWasm(site) && (
                  <span className="small warn-text" data-testid={`site-model-needs-gpu-${site.name}`}>
                    Needs a GPU: too large for WebAssembly (CPU), which {backend === 'wasm' ? 'Settings chose' : 'this device would use'}.
                  </span>
                )}
              </div>
              {verb && (
                <button
                  type="button"
                  className="button small"
                  aria-label={`${verb} ${site.label}`}
                  disabled={status === 'loading'}
                  onClick={() => void (state === 'paused' ? resume() : load(site.source))}
                >
                  {verb}
                </button>
              )}
            </li>
          );
        })}
      </ul>
    </div>
  );
}

function StoredModels() {
  const models = useModelStore((s) => s.models);
  const siteModels = useModelStore((s) => s.siteModels);
  const status = useModelStore((s) => s.status);
  const load = useModelStore((s) => s.load);
  const remove = useModelStore((s) => s.deleteModel);
  const resume = useModelStore((s) => s.resume);
  const store = useModelStore((s) => s);
  const bundledKey = storeKeyFor(BUNDLED_MODEL_SOURCE);
  const bundledStored = models.some((m) => m.key === bundledKey);
  // "Available on this site" offers it already when the site's index lists it.
  const bundledListed = siteModels.some((m) => storeKeyFor(m.source) === bundledKey);
  return (
    <div className="stored-models">
      <h3 className="subsection-title">On this device</h3>
      {models.length === 0 && bundledListed && <p className="small muted">No models stored yet.</p>}
      <ul className="model-list" data-testid="model-list">
        {!bundledStored && !bundledListed && (
          <li className="model-row">
            <div className="model-row-text">
              <span className="model-row-name">Tiny test model, random weights</span>
              <span className="small muted">Bundled with the app · not downloaded yet</span>
            </div>
            <button type="button" className="button small" disabled={status === 'loading'} onClick={() => void load(BUNDLED_MODEL_SOURCE)}>
              Use
            </button>
          </li>
        )}
        {models.map((model) => {
          const state = bundleState(store, model.key, model);
          const active = state === 'in-use';
          const reload = sourceForStoreKey(model.key);
          const verb = ACTION[state];
          return (
            <li key={model.key} className="model-row" data-active={active} data-state={state} data-testid="stored-model">
              <div className="model-row-text">
                <span className="model-row-name">
                  {model.label}
                  {active && <span className="badge ok">in use</span>}
                </span>
                <span className="small muted">
                  {formatBytes(model.bytesUsed)}
                  {state === 'loading'
                    ? ` · ${loadingWords()}`
                    : state === 'paused'
                      ? ` · ${pausedWords()}`
                      : model.complete
                        ? ` · ${model.completeVariants.join(', ')}`
                        : model.hasPartialFiles
                          ? ' · download not finished'
                          : ' · incomplete'}
                  {model.randomWeights ? ' · random weights' : ''}
                </span>
              </div>
              {verb && reload && (
                <button
                  type="button"
                  className="button small"
                  aria-label={`${verb} ${model.label}`}
                  disabled={status === 'loading'}
                  onClick={() => void (state === 'paused' ? resume() : load(reload))}
                >
                  {verb}
                </button>
              )}
              <button
                type="button"
                className="icon-button"
                aria-label={`Delete ${model.label} from this device`}
                title="Delete"
                disabled={status === 'loading'}
                onClick={() => {
                  if (window.confirm(`Delete “${model.label}” (${formatBytes(model.bytesUsed)}) from this device?${active ? ' It stays loaded until you reload the page.' : ''}`)) void remove(model.key);
                }}
              >
                <TrashIcon />
              </button>
            </li>
          );
        })}
      </ul>
    </div>
  );
}

function AddModel() {
  const load = useModelStore((s) => s.load);
  const status = useModelStore((s) => s.status);
  const [source, setSource] = useState('');
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const text = source.trim();
    if (!text) return;
    // Keep the text on failure so it can be corrected.
    if (await load(text)) setSource('');
  };
  const openFolder = (files: FileList | null) => {
    if (!files || files.length === 0) return;
    const map = new Map<string, Blob>();
    for (const file of Array.from(files)) {
      const path = (file.webkitRelativePath || file.name).split('/').slice(1).join('/') || file.name;
      map.set(path, file);
    }
    void load({ kind: 'files', files: map }, { label: 'a folder on this device' });
  };
  return (
    <form className="add-model" onSubmit={(event) => void submit(event)}>
      <h3 className="subsection-title">Add a model</h3>
      <label htmlFor="model-source" className="small">
        Bundle URL or Hugging Face repo (owner/name)
      </label>
      <div className="inline-field">
        <input
          id="model-source"
          type="text"
          inputMode="url"
          autoComplete="off"
          spellCheck={false}
          placeholder="owner/salmonn-7b-hark"
          value={source}
          data-testid="model-source-input"
          onChange={(event) => setSource(event.target.value)}
        />
        <button type="submit" className="button small" disabled={status === 'loading' || source.trim() === ''}>
          Load
        </button>
      </div>
      <label className="button subtle small file-button">
        <input
          type="file"
          className="visually-hidden"
          // A bundle folder (manifest.json, tokenizer, onnx/…), e.g. from models/convert.py.
          {...({ webkitdirectory: '', directory: '' } as Record<string, string>)}
          multiple
          disabled={status === 'loading'}
          onChange={(event) => {
            openFolder(event.target.files);
            event.target.value = '';
          }}
        />
        Open a model folder…
      </label>
    </form>
  );
}

function Storage() {
  const storage = useModelStore((s) => s.storage);
  const persist = useModelStore((s) => s.requestPersistence);
  const result = useRef<HTMLParagraphElement>(null);
  if (!storage.supported) return <p className="small muted">This browser does not report its storage use.</p>;
  const fraction = storage.usage !== null && storage.quota ? storage.usage / storage.quota : null;
  return (
    <div className="storage" data-testid="storage">
      <h3 className="subsection-title">Storage</h3>
      {fraction !== null && <meter min={0} max={1} value={fraction} aria-label="Storage used" />}
      <p className="small muted">
        {storage.usage !== null ? `${formatBytes(storage.usage)} used` : 'Usage unknown'}
        {storage.quota !== null ? ` of ${formatBytes(storage.quota)} available to this site` : ''}
      </p>
      {!storage.persisted && (
        <button
          type="button"
          className="button subtle small"
          data-testid="persist-storage"
          onClick={() =>
            void persist().then((granted) => {
              // The button is gone once granted: keep focus on the answer instead of <body>.
              if (granted) result.current?.focus();
            })
          }
        >
          Keep models stored
        </button>
      )}
      {/* Always in the page, so the answer to the button is announced when it arrives. */}
      <p ref={result} tabIndex={-1} className="small" role="status" data-testid="persist-result" data-answer={storage.persistAnswer ?? (storage.persisted ? 'granted' : '')}>
        {storage.persisted
          ? 'Models are kept: the browser will not clear them to free space.'
          : storage.persistAnswer === 'refused'
            ? 'The browser said no: it may still clear stored models when the disk runs low (Chromium grants this to installed or often-used sites; installing Hark as an app usually helps). You can ask again later.'
            : storage.persistAnswer === 'failed'
              ? 'This browser cannot keep storage for good: stored models may be cleared when the disk runs low.'
              : ''}
      </p>
    </div>
  );
}

export function ModelPanel() {
  return (
    <section className="panel-section" aria-labelledby="model-heading">
      <h2 id="model-heading" className="section-title">
        Model
      </h2>
      <CurrentModel />
      <SiteModels />
      <StoredModels />
      <AddModel />
      <Storage />
    </section>
  );
}
