/** Choosing the audio: drop or pick a file, record from the microphone, or try a sample clip. */
import { useEffect, useRef, useState, type DragEvent } from 'react';
import { encodeSecondsLeft, useAudioStore, type RecordingKind } from '../stores/audioStore';
import { useLocalizeStore } from '../stores/localizeStore';
import { useModelStore } from '../stores/modelStore';
import { useRecorderStore } from '../stores/recorderStore';
import { focusQuestionBoxWhenOpened } from './focus';
import { mayReplaceRecording } from './switchGuard';
import { FindInRecording } from './FindInRecording';
import { formatBytes, formatClock, formatDuration, formatEta } from './format';
import { MicIcon, StopIcon, UploadIcon, WaveIcon } from './Icons';
import { Waveform, type WaveformHandle } from './Waveform';

const ACCEPT = 'audio/*,.wav,.mp3,.ogg,.oga,.opus,.flac,.m4a,.aac,.webm';

const KIND_LABEL: Record<RecordingKind, string> = { file: 'File', recording: 'Recording', sample: 'Sample' };

const EVIDENCE_ID = 'find-evidence';

function LevelMeter({ level }: { level: number }) {
  const percent = Math.round(Math.min(1, Math.max(0, level)) * 100);
  return (
    <div className="level-meter" role="meter" aria-label="Microphone level" aria-valuemin={0} aria-valuemax={100} aria-valuenow={percent}>
      <div className="level-meter-fill" style={{ transform: `scaleX(${percent / 100})` }} />
    </div>
  );
}

function RecordButton() {
  const status = useRecorderStore((s) => s.status);
  const start = useRecorderStore((s) => s.start);
  const stop = useRecorderStore((s) => s.stop);
  const recording = status === 'recording';
  return (
    <button
      type="button"
      className={recording ? 'button danger' : 'button'}
      data-testid="record-button"
      aria-pressed={recording}
      disabled={status === 'requesting' || status === 'finishing'}
      onClick={async () => {
        if (recording) return void stop();
        if (await mayReplaceRecording('a new recording')) void start();
      }}
    >
      {recording ? <StopIcon /> : <MicIcon />}
      <span>{recording ? 'Stop' : status === 'requesting' ? 'Allow the microphone…' : status === 'finishing' ? 'Finishing…' : 'Record'}</span>
    </button>
  );
}

function RecorderLive() {
  const level = useRecorderStore((s) => s.level);
  const elapsed = useRecorderStore((s) => s.elapsedSeconds);
  return (
    <div className="recorder-live" data-testid="recorder-live">
      <span className="rec-dot" aria-hidden="true" />
      <span className="rec-label">Recording</span>
      <span className="rec-time" role="timer" aria-label="Elapsed time">
        {formatClock(elapsed)}
      </span>
      <LevelMeter level={level} />
    </div>
  );
}

function Samples({ compact }: { compact: boolean }) {
  const samples = useAudioStore((s) => s.samples);
  const openSample = useAudioStore((s) => s.openSample);
  const recorder = useRecorderStore((s) => s.status);
  if (samples.length === 0) return null;
  return (
    <div className={compact ? 'samples compact' : 'samples'}>
      <span className="samples-label" id="samples-label">
        {compact ? 'Samples:' : 'Or try a sample clip:'}
      </span>
      <ul className="chip-list" aria-labelledby="samples-label">
        {samples.map((sample) => (
          <li key={sample.id}>
            <button
              type="button"
              className="chip"
              data-testid={`sample-${sample.id}`}
              title={sample.description}
              aria-describedby={compact ? undefined : `sample-desc-${sample.id}`}
              disabled={recorder !== 'idle'}
              onClick={async (event) => {
                // The chips are replaced by the recording view: focus moves on to the question box.
                const focused = event.currentTarget === document.activeElement;
                if (!(await mayReplaceRecording(sample.title))) return;
                if (focused) focusQuestionBoxWhenOpened();
                void openSample(sample);
              }}
            >
              {sample.title}
            </button>
            {!compact && (
              <span className="visually-hidden" id={`sample-desc-${sample.id}`}>
                {sample.description}
              </span>
            )}
          </li>
        ))}
      </ul>
    </div>
  );
}

/** Re-renders every second while `active` (for a time-left that counts down). */
function useTicking(active: boolean): number {
  const [now, setNow] = useState(() => performance.now());
  useEffect(() => {
    if (!active) return;
    setNow(performance.now());
    const timer = setInterval(() => setNow(performance.now()), 1000);
    return () => clearInterval(timer);
  }, [active]);
  return now;
}

function EncodeStatus() {
  const status = useAudioStore((s) => s.status);
  const progress = useAudioStore((s) => s.progress);
  const info = useAudioStore((s) => s.info);
  const modelStatus = useModelStore((s) => s.status);
  const now = useTicking(status === 'encoding');
  let text = '';
  /** Time left or elapsed: shown, but not in the live region (it changes every second). */
  let timing = '';
  let fraction: number | null = null;
  let busy = false;
  switch (status) {
    case 'decoding':
      text = 'Opening the audio…';
      busy = true;
      break;
    case 'waiting-model':
      text =
        modelStatus === 'error'
          ? 'Load a model to listen to this recording.'
          : modelStatus === 'paused'
            ? 'The model’s download is paused: resume it under Models to listen to this recording.'
            : 'Waiting for the model to finish loading…';
      busy = modelStatus === 'loading';
      break;
    case 'encoding': {
      text = progress && progress.total > 1 ? `Listening to the recording… window ${Math.min(progress.done + 1, progress.total)} of ${progress.total}` : 'Listening to the recording…';
      busy = true;
      if (progress) {
        const left = encodeSecondsLeft(progress, now);
        const elapsed = Math.max(0, (now - progress.startedAt) / 1000);
        if (left === null) {
          timing = `${Math.floor(elapsed)} s so far`;
          fraction = progress.done > 0 ? progress.done / progress.total : null;
        } else {
          timing = left < 1 ? 'almost done' : `about ${formatEta(left)}`;
          // Never full before it is done: the estimate can be short.
          fraction = Math.min(0.97, Math.max(progress.done / progress.total, elapsed / (elapsed + left)));
        }
      }
      break;
    }
    case 'ready':
      text = info ? `Ready: ${info.numTokens} audio tokens in ${info.chunks} window${info.chunks === 1 ? '' : 's'}. Ask below.` : 'Ready. Ask below.';
      break;
    case 'error':
      text = 'The model could not listen to this recording.';
      break;
    case 'stopped':
      text = 'Listening was stopped, so there is nothing to ask about yet.';
      break;
    default:
      return null;
  }
  return (
    <div className="encode-status" data-testid="audio-status" data-state={status} aria-busy={busy}>
      {status === 'encoding' && (
        <progress max={1} value={fraction ?? undefined} aria-label="Listening to the recording" aria-valuetext={timing ? `${text}, ${timing}` : text} />
      )}
      <span role="status">{text}</span>
      {timing && (
        <span className="muted" data-testid="encode-time">
          {' · '}
          {timing}
        </span>
      )}
      {status === 'encoding' && (
        <button type="button" className="button small" data-testid="encode-stop" onClick={() => useAudioStore.getState().stopEncoding()}>
          Stop
        </button>
      )}
      {(status === 'stopped' || status === 'error') && modelStatus === 'ready' && (
        <button type="button" className="button small" data-testid="encode-again" onClick={() => void useAudioStore.getState().encode()}>
          Listen again
        </button>
      )}
    </div>
  );
}

export function RecordingCard() {
  const recording = useAudioStore((s) => s.recording);
  const status = useAudioStore((s) => s.status);
  const openFile = useAudioStore((s) => s.openFile);
  const recorder = useRecorderStore((s) => s.status);
  const fileInput = useRef<HTMLInputElement>(null);
  const waveform = useRef<WaveformHandle>(null);
  const [dragging, setDragging] = useState(false);
  const found = useLocalizeStore((s) => s.found);
  const showEvidence = useLocalizeStore((s) => s.showEvidence);
  const modelLocalizes = useModelStore((s) => s.info?.capabilities.localizes ?? true);
  // What was found in this recording (never a result about the one before).
  const foundHere = recording && found?.recordingId === recording.id ? found.result : null;
  const isRecording = recorder === 'recording' || recorder === 'finishing';

  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    const file = event.dataTransfer.files[0];
    if (file && recorder === 'idle') void mayReplaceRecording(file.name).then((go) => {
        if (go) void openFile(file);
      });
  };

  const filePicker = (
    <>
      <input
        ref={fileInput}
        type="file"
        accept={ACCEPT}
        className="visually-hidden"
        tabIndex={-1}
        aria-hidden="true"
        data-testid="audio-file-input"
        onChange={(event) => {
          const file = event.target.files?.[0];
          event.target.value = '';
          if (file) void mayReplaceRecording(file.name).then((go) => {
        if (go) void openFile(file);
      });
        }}
      />
      <button type="button" className="button" onClick={() => fileInput.current?.click()} disabled={recorder !== 'idle'}>
        <UploadIcon />
        <span>{recording ? 'Open another file' : 'Choose a file'}</span>
      </button>
    </>
  );

  return (
    <section
      className={`card recording-card${dragging ? ' dragging' : ''}`}
      aria-labelledby="recording-heading"
      onDragOver={(event) => {
        event.preventDefault();
        event.dataTransfer.dropEffect = 'copy';
        if (!dragging) setDragging(true);
      }}
      onDragLeave={(event) => {
        if (!event.currentTarget.contains(event.relatedTarget as Node | null)) setDragging(false);
      }}
      onDrop={onDrop}
    >
      <h2 id="recording-heading" className="card-title">
        Recording
      </h2>

      {isRecording ? (
        <div className="recorder-panel">
          <RecorderLive />
          <div className="actions">
            <RecordButton />
          </div>
        </div>
      ) : recording ? (
        <>
          <div className="recording-meta" data-testid="recording-meta" data-kind={recording.kind}>
            <WaveIcon />
            <span className="recording-name" title={recording.name}>
              {recording.name}
            </span>
            <span className="badge">{KIND_LABEL[recording.kind]}</span>
            <span className="muted" data-testid="recording-duration">
              {formatDuration(recording.durationSeconds)}
            </span>
            {recording.kind === 'file' && <span className="muted">{formatBytes(recording.bytes)}</span>}
          </div>
          <Waveform
            ref={waveform}
            recording={recording}
            found={foundHere}
            evidence={foundHere && showEvidence ? foundHere.curve : null}
            evidenceId={EVIDENCE_ID}
          />
          <EncodeStatus />
          {/* Only for a kind of model that can localize (not ALARM): a control it lacks is not shown. */}
          {modelLocalizes && (
            <FindInRecording recordingId={recording.id} evidenceId={EVIDENCE_ID} onPlayFrom={(seconds) => waveform.current?.playFrom(seconds)} />
          )}
          <div className="actions">
            {filePicker}
            <RecordButton />
          </div>
          <Samples compact />
        </>
      ) : (
        <div className="dropzone" data-state={status}>
          <div className="dropzone-icon" aria-hidden="true">
            <WaveIcon />
          </div>
          <p className="dropzone-title">Drop a recording here</p>
          <p className="muted dropzone-hint">WAV, MP3, Ogg, FLAC, M4A or WebM, up to 10 minutes. It stays on this device.</p>
          <div className="actions center">
            {filePicker}
            <RecordButton />
          </div>
          {status === 'decoding' && (
            <p role="status" className="muted">
              Opening the audio…
            </p>
          )}
          <Samples compact={false} />
        </div>
      )}
    </section>
  );
}
