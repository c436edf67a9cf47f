import { useEffect, useRef, useState } from 'react';
import { useNoticeStore } from '../stores/noticeStore';
import { startSession } from '../stores/session';
import { Chat } from './Chat';
import { DeviceReportPanel } from './DeviceReportPanel';
import { HistoryPanel } from './HistoryPanel';
import { CloseIcon, Logo, SettingsIcon } from './Icons';
import { ModelPanel } from './ModelPanel';
import { ModelStatus } from './ModelStatus';
import { RecordingCard } from './RecordingCard';
import { SettingsPanel } from './SettingsPanel';

function ErrorBanner() {
  const error = useNoticeStore((s) => s.error);
  const clear = useNoticeStore((s) => s.clearError);
  if (!error) return null;
  return (
    <div className="error-banner" role="alert" data-testid="error-message" data-scope={error.scope}>
      <p>{error.message}</p>
      <button type="button" className="icon-button" aria-label="Dismiss the message" onClick={() => clear()}>
        <CloseIcon />
      </button>
    </div>
  );
}

function LiveRegion() {
  const text = useNoticeStore((s) => s.announcement);
  return (
    <div className="visually-hidden" role="status" aria-live="polite" data-testid="live-status">
      {text}
    </div>
  );
}

/** Wide screens show the side panel beside the main column; narrow ones open it as a drawer. */
function useWide(): boolean {
  const query = '(min-width: 1100px)';
  const [wide, setWide] = useState(() => window.matchMedia(query).matches);
  useEffect(() => {
    const media = window.matchMedia(query);
    const update = () => setWide(media.matches);
    media.addEventListener('change', update);
    return () => media.removeEventListener('change', update);
  }, []);
  return wide;
}

export function App() {
  const wide = useWide();
  const [drawerOpen, setDrawerOpen] = useState(false);
  const [animate, setAnimate] = useState(false);
  const opener = useRef<HTMLButtonElement>(null);
  const closer = useRef<HTMLButtonElement>(null);
  const drawer = !wide;
  const panelHidden = drawer && !drawerOpen;

  useEffect(() => {
    startSession();
  }, []);

  // Crossing the breakpoint closes the drawer without sliding it.
  useEffect(() => {
    setAnimate(false);
    setDrawerOpen(false);
  }, [wide]);

  useEffect(() => {
    if (!drawer || !drawerOpen) return;
    closer.current?.focus();
    const onKey = (event: KeyboardEvent) => {
      if (event.key === 'Escape') {
        setDrawerOpen(false);
        opener.current?.focus();
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [drawer, drawerOpen]);

  const close = () => {
    setDrawerOpen(false);
    opener.current?.focus();
  };

  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to the recording
      </a>
      <header className="app-header">
        <div className="brand">
          <Logo />
          <div>
            <h1>Hark</h1>
            <p className="tagline">Ask about a recording. Runs on this device; nothing is uploaded.</p>
          </div>
        </div>
        <ModelStatus />
        {drawer && (
          <button
            ref={opener}
            type="button"
            className="button subtle settings-toggle"
            aria-expanded={drawerOpen}
            aria-controls="side-panel"
            data-testid="settings-toggle"
            onClick={() => {
              setAnimate(true);
              setDrawerOpen(true);
            }}
          >
            <SettingsIcon />
            <span>Settings</span>
          </button>
        )}
      </header>
      <div className="layout">
        <main id="main" className="main-column" tabIndex={-1}>
          <ErrorBanner />
          <RecordingCard />
          <Chat />
        </main>
        {drawer && drawerOpen && <div className="scrim" aria-hidden="true" onClick={close} />}
        <aside
          id="side-panel"
          className={`side-panel${drawer ? ' drawer' : ''}${drawerOpen ? ' open' : ''}${animate ? ' animate' : ''}`}
          aria-label="Model and settings"
          aria-hidden={panelHidden || undefined}
          inert={panelHidden}
          {...(drawer && drawerOpen ? { role: 'dialog', 'aria-modal': true } : {})}
        >
          {drawer && (
            <div className="drawer-header">
              <span className="drawer-title">Model and settings</span>
              <button ref={closer} type="button" className="icon-button" aria-label="Close settings" onClick={close}>
                <CloseIcon />
              </button>
            </div>
          )}
          <div className="card side-card">
            <ModelPanel />
          </div>
          <div className="card side-card">
            <HistoryPanel />
          </div>
          <div className="card side-card">
            <SettingsPanel />
          </div>
          <DeviceReportPanel />
        </aside>
      </div>
      <LiveRegion />
    </div>
  );
}
