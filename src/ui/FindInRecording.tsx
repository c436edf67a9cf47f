/**
 * "Where in the recording?": type a sound, press Find, and the span where the model hears it is
 * highlighted on the waveform (drawn there by Waveform), described here in words, playable from
 * its start, with the evidence curve on demand.
 */
import { useLayoutEffect, useRef, type FocusEvent, type ReactNode } from 'react';
import { useAudioStore } from '../stores/audioStore';
import { useConversationStore } from '../stores/conversationStore';
import { MAX_EVENT_LENGTH, useLocalizeStore } from '../stores/localizeStore';
import { useModelStore } from '../stores/modelStore';
import { formatMs } from './format';
import { PlayIcon, SearchIcon, StopIcon } from './Icons';
import { findBlockedReason, findProgressText, formatClockTenths, formatConfidence, NO_PROBE_REASON } from './localizeView';

const INPUT_ID = 'find-event';
const STATUS_ID = 'find-status';

/** "layers 16–23" or "layer 1". */
function describeLayers(layers: readonly number[]): string {
  if (layers.length === 0) return 'no layers';
  const first = layers[0]!;
  const last = layers.at(-1)!;
  return layers.length === 1 ? `layer ${first}` : `layers ${first}–${last}`;
}

export function FindInRecording({ recordingId, onPlayFrom, evidenceId }: { recordingId: number; onPlayFrom: (seconds: number) => void; evidenceId: string }) {
  const eventText = useLocalizeStore((s) => s.eventText);
  const setEventText = useLocalizeStore((s) => s.setEventText);
  const phase = useLocalizeStore((s) => s.phase);
  const progress = useLocalizeStore((s) => s.progress);
  const found = useLocalizeStore((s) => s.found);
  const error = useLocalizeStore((s) => s.error);
  const stopped = useLocalizeStore((s) => s.stopped);
  const showEvidence = useLocalizeStore((s) => s.showEvidence);
  const setShowEvidence = useLocalizeStore((s) => s.setShowEvidence);
  const find = useLocalizeStore((s) => s.find);
  const stop = useLocalizeStore((s) => s.stop);
  const modelStatus = useModelStore((s) => s.status);
  const info = useModelStore((s) => s.info);
  const audioStatus = useAudioStore((s) => s.status);
  const answering = useConversationStore((s) => s.phase !== 'idle');

  const running = phase !== 'idle';
  const blocked = running
    ? null
    : findBlockedReason({ modelStatus, modelCanLocalize: Boolean(info?.localization), hasRecording: true, audioStatus, answering });
  // A model without a probe can never find anything: the field is off too, not only the button.
  const unavailable = blocked === NO_PROBE_REASON;
  const result = found && found.recordingId === recordingId ? found.result : null;

  // Find and Stop take each other's place: when the one that had focus goes, focus moves to the
  // other instead of falling back to <body> (where a keyboard user would start over).
  const input = useRef<HTMLInputElement>(null);
  const action = useRef<HTMLButtonElement>(null);
  const actionHadFocus = useRef(false);
  useLayoutEffect(() => {
    const active = document.activeElement;
    if (actionHadFocus.current && (active === null || active === document.body)) action.current?.focus();
  }, [running]);
  const actionFocusHandlers = {
    onFocus: () => (actionHadFocus.current = true),
    onBlur: (event: FocusEvent) => {
      // Focus moved somewhere on purpose (no relatedTarget: the button was removed or the page clicked).
      if (event.relatedTarget) actionHadFocus.current = false;
    },
  };

  let state: string = phase;
  let status: ReactNode;
  if (running) {
    status = (
      <>
        <progress max={progress?.total || 1} value={progress ? progress.done : undefined} aria-label="Finding the sound in the recording" />
        <span>{phase === 'stopping' ? 'Stopping…' : findProgressText(progress)}</span>
      </>
    );
  } else if (error) {
    state = 'error';
    status = (
      <span role="alert" className="error">
        {error}
      </span>
    );
  } else if (blocked) {
    state = 'blocked';
    status = <span>{blocked}</span>;
  } else if (stopped) {
    state = 'stopped';
    status = <span>Stopped: nothing was found. Press Find to look again.</span>;
  } else if (result) {
    state = 'found';
    status = null;
  } else {
    status = <span>Type a sound and press Find: the part of the recording where the model hears it is highlighted on the waveform.</span>;
  }

  return (
    <div className="find" data-testid="find" data-state={state}>
      <form
        className="find-form"
        role="search"
        aria-label="Find in recording"
        onSubmit={(event) => {
          event.preventDefault();
          if (running || blocked) return;
          // Nothing typed yet: find() says so, and the field is where to fix it.
          if (eventText.trim() === '') input.current?.focus();
          void find();
        }}
      >
        <label htmlFor={INPUT_ID} className="find-label">
          Find in recording
        </label>
        <div className="inline-field">
          <input
            id={INPUT_ID}
            ref={input}
            type="text"
            data-testid="find-input"
            value={eventText}
            placeholder="e.g. a dog barking"
            maxLength={MAX_EVENT_LENGTH}
            autoComplete="off"
            enterKeyHint="search"
            disabled={unavailable}
            aria-describedby={STATUS_ID}
            onChange={(event) => setEventText(event.target.value)}
            onKeyDown={(event) => {
              if (event.key === 'Escape' && phase === 'finding') {
                event.preventDefault();
                stop();
              }
            }}
          />
          {running ? (
            <button key="stop" ref={action} type="button" className="button danger" data-testid="find-stop" onClick={stop} {...actionFocusHandlers}>
              <StopIcon />
              <span>{phase === 'stopping' ? 'Stopping…' : 'Stop'}</span>
            </button>
          ) : (
            <button
              key="find"
              ref={action}
              type="submit"
              className="button primary"
              data-testid="find-button"
              disabled={blocked !== null}
              aria-describedby={STATUS_ID}
              {...actionFocusHandlers}
            >
              <SearchIcon />
              <span>Find</span>
            </button>
          )}
        </div>
      </form>
      <p id={STATUS_ID} className="find-status" data-testid="find-status" hidden={status === null}>
        {status}
      </p>
      {result && (
        <div className="find-result" data-testid="find-result">
          <p className="find-result-text" data-testid="find-result-text">
            <span className="found-swatch" aria-hidden="true" />
            <span>
              Found “{result.event}” at{' '}
              <strong>
                {formatClockTenths(result.start)} to {formatClockTenths(result.end)}
              </strong>{' '}
              · confidence {formatConfidence(result.confidence)}
            </span>
          </p>
          <div className="find-actions">
            <button
              type="button"
              className="button small"
              data-testid="play-found"
              aria-description={`Plays the recording from ${formatClockTenths(result.start)}`}
              onClick={() => onPlayFrom(result.start)}
            >
              <PlayIcon />
              <span>Play from here</span>
            </button>
            <button
              type="button"
              className="button small subtle"
              data-testid="toggle-evidence"
              aria-pressed={showEvidence}
              aria-controls={showEvidence ? evidenceId : undefined}
              onClick={() => setShowEvidence(!showEvidence)}
            >
              Show evidence
            </button>
          </div>
          {showEvidence && (
            <p className="muted small">
              The line under the waveform shows, for each moment, how much the model’s attention moved there when told to listen for “{result.event}”. The
              highlighted span holds the most of it; the confidence is its share of all of it.
            </p>
          )}
          <p className="muted small" data-testid="find-details">
            Took {formatMs(result.ms)} · {describeLayers(result.layers)}, steering strength {result.alpha}, span {result.widthSeconds.toFixed(1)} s
            {(info?.capabilities.hasLora ?? true) && `, LoRA scale ${result.loraScale.toFixed(2)}`}
          </p>
          {info?.randomWeights && (
            <p className="muted small">This test model has random weights, so where it points means nothing: it shows the whole path working.</p>
          )}
        </div>
      )}
    </div>
  );
}
