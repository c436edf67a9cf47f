/**
 * The recording as a waveform: playback with a playhead, click or arrow keys to seek, the
 * boundaries of the model's 30 s windows for long recordings, and what "Find in recording" found:
 * the span highlighted over the track and, on demand, the evidence curve under it on the same
 * time axis.
 */
import { useCallback, useEffect, useImperativeHandle, useMemo, useRef, useState, type KeyboardEvent, type PointerEvent, type Ref } from 'react';
import type { Recording } from '../stores/audioStore';
import { formatClock } from './format';
import { PauseIcon, PlayIcon } from './Icons';
import { curveWithin, describeFound, evidencePath, formatClockTenths, peakTime, spanPercent, type EvidencePoint, type FoundSpan } from './localizeView';

const WINDOW_SECONDS = 30;

function cssVar(element: Element, name: string, fallback: string): string {
  return getComputedStyle(element).getPropertyValue(name).trim() || fallback;
}

function draw(canvas: HTMLCanvasElement, recording: Recording, duration: number, position: number) {
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (width === 0 || height === 0) return;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const played = cssVar(canvas, '--wave-played', '#1f6feb');
  const rest = cssVar(canvas, '--wave', '#8c959f');
  const marker = cssVar(canvas, '--wave-marker', '#bf8700');
  const shade = cssVar(canvas, '--wave-shade', 'rgba(127,127,127,0.08)');
  const mid = height / 2;
  const xOf = (t: number) => (duration > 0 ? (t / duration) * width : 0);

  // Alternate 30 s windows get a faint band, so long recordings show how the model hears them.
  if (duration > WINDOW_SECONDS) {
    ctx.fillStyle = shade;
    for (let start = WINDOW_SECONDS; start < duration; start += 2 * WINDOW_SECONDS) {
      ctx.fillRect(xOf(start), 0, xOf(Math.min(duration, start + WINDOW_SECONDS)) - xOf(start), height);
    }
  }

  const peaks = recording.peaks;
  const buckets = peaks.length / 2;
  const playX = xOf(position);
  if (buckets > 0) {
    const bar = 2;
    const gap = 1;
    const columns = Math.max(1, Math.floor(width / (bar + gap)));
    let maxAbs = 0.05;
    for (let i = 0; i < peaks.length; i++) maxAbs = Math.max(maxAbs, Math.abs(peaks[i]!));
    for (let c = 0; c < columns; c++) {
      const from = Math.floor((c / columns) * buckets);
      const to = Math.max(from + 1, Math.floor(((c + 1) / columns) * buckets));
      let min = 0;
      let max = 0;
      for (let b = from; b < to && b < buckets; b++) {
        min = Math.min(min, peaks[2 * b]!);
        max = Math.max(max, peaks[2 * b + 1]!);
      }
      const x = c * (bar + gap);
      const top = mid - (max / maxAbs) * (mid - 4);
      const bottom = mid - (min / maxAbs) * (mid - 4);
      ctx.fillStyle = x + bar <= playX ? played : rest;
      ctx.fillRect(x, Math.min(top, mid - 0.5), bar, Math.max(1, bottom - top));
    }
  } else {
    ctx.fillStyle = rest;
    ctx.fillRect(0, mid - 0.5, width, 1);
  }

  if (duration > WINDOW_SECONDS) {
    ctx.strokeStyle = marker;
    ctx.fillStyle = marker;
    ctx.lineWidth = 1;
    ctx.setLineDash([4, 3]);
    for (let t = WINDOW_SECONDS; t < duration; t += WINDOW_SECONDS) {
      const x = Math.round(xOf(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, 0);
      ctx.lineTo(x, height);
      ctx.stroke();
    }
    ctx.setLineDash([]);
  }

  if (position > 0) {
    ctx.fillStyle = cssVar(canvas, '--fg', '#000');
    ctx.fillRect(Math.min(width - 2, Math.max(0, playX - 1)), 0, 2, height);
  }
}

const LABEL_FONT = '11px system-ui, sans-serif';
const LABEL_GAP = 8;

/**
 * The window boundaries that get a time label at this width: left to right, each only where it
 * clears the one before and the track's end (a 10-minute file has 19 boundaries, and at phone
 * width most of them must go unlabelled).
 */
function windowLabels(duration: number, width: number): { seconds: number; x: number }[] {
  if (duration <= WINDOW_SECONDS || width <= 0) return [];
  const measure = document.createElement('canvas').getContext('2d');
  if (measure) measure.font = LABEL_FONT;
  const textWidth = (text: string) => measure?.measureText(text).width ?? text.length * 7;
  const labels: { seconds: number; x: number }[] = [];
  let freeFrom = 0;
  for (let t = WINDOW_SECONDS; t < duration; t += WINDOW_SECONDS) {
    const x = (t / duration) * width + 3;
    const end = x + textWidth(formatClock(t));
    if (x >= freeFrom && end <= width - 2) {
      labels.push({ seconds: t, x });
      freeFrom = end + LABEL_GAP;
    }
  }
  return labels;
}

/** What the recording card may ask of the waveform's player. */
export interface WaveformHandle {
  /** Starts playback at `seconds` (clamped to the recording). */
  playFrom(seconds: number): void;
}

/**
 * The evidence under the waveform: Δ per audio token as a line, x in seconds (the viewBox is the
 * recording's length, stretched to the track's width), so each point sits under the moment it
 * describes; the found span is shaded the same way as on the track.
 */
function EvidenceCurve({ id, curve, duration, found }: { id: string; curve: EvidencePoint[]; duration: number; found: FoundSpan }) {
  const { d, zero } = useMemo(() => evidencePath(curve, duration), [curve, duration]);
  const shown = useMemo(() => curveWithin(curve, duration), [curve, duration]);
  const place = spanPercent(found, duration);
  const peak = peakTime(shown);
  const label = `Evidence for “${found.event.trim()}” across the recording${peak === null ? '' : `: strongest at ${formatClockTenths(peak)}`}`;
  return (
    <svg
      id={id}
      className="evidence-curve"
      data-testid="evidence-curve"
      data-points={shown.length}
      role="img"
      aria-label={label}
      viewBox={`0 0 ${duration} 1`}
      preserveAspectRatio="none"
    >
      {place && <rect className="evidence-span" x={(place.left / 100) * duration} y={0} width={(place.width / 100) * duration} height={1} />}
      {zero !== null && <line className="evidence-zero" x1={0} x2={duration} y1={zero} y2={zero} vectorEffect="non-scaling-stroke" />}
      <path className="evidence-line" d={d} vectorEffect="non-scaling-stroke" />
    </svg>
  );
}

export interface WaveformProps {
  recording: Recording;
  /** The span "Find in recording" found in this recording, highlighted over the track. */
  found?: FoundSpan | null;
  /** The evidence curve to draw under the track (null: hidden). */
  evidence?: EvidencePoint[] | null;
  /** The evidence curve's element id (for the toggle's aria-controls). */
  evidenceId?: string;
  ref?: Ref<WaveformHandle>;
}

export function Waveform({ recording, found = null, evidence = null, evidenceId = 'evidence-curve', ref }: WaveformProps) {
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const audioRef = useRef<HTMLAudioElement>(null);
  const [playing, setPlaying] = useState(false);
  const [position, setPosition] = useState(0);
  const duration = recording.durationSeconds;
  const windows = Math.max(1, Math.ceil(duration / WINDOW_SECONDS));

  const [trackWidth, setTrackWidth] = useState(0);
  const labels = useMemo(() => windowLabels(duration, trackWidth), [duration, trackWidth]);

  const redraw = useCallback(() => {
    if (canvasRef.current) draw(canvasRef.current, recording, duration, position);
  }, [recording, duration, position]);

  useEffect(redraw, [redraw]);

  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas) return;
    const observer = new ResizeObserver(() => {
      setTrackWidth(canvas.clientWidth);
      redraw();
    });
    observer.observe(canvas);
    const scheme = window.matchMedia('(prefers-color-scheme: dark)');
    scheme.addEventListener('change', redraw);
    return () => {
      observer.disconnect();
      scheme.removeEventListener('change', redraw);
    };
  }, [redraw]);

  // A new recording starts at the beginning, paused.
  useEffect(() => {
    setPlaying(false);
    setPosition(0);
  }, [recording.id]);

  useEffect(() => {
    if (!playing) return;
    let frame = 0;
    const tick = () => {
      const audio = audioRef.current;
      if (audio) setPosition(audio.currentTime);
      frame = requestAnimationFrame(tick);
    };
    frame = requestAnimationFrame(tick);
    return () => cancelAnimationFrame(frame);
  }, [playing]);

  const seek = (seconds: number) => {
    const t = Math.max(0, Math.min(duration, seconds));
    const audio = audioRef.current;
    if (audio) audio.currentTime = t;
    setPosition(t);
  };

  useImperativeHandle(
    ref,
    () => ({
      playFrom(seconds: number) {
        const audio = audioRef.current;
        if (!audio) return;
        const t = Math.max(0, Math.min(duration, seconds));
        const start = () => {
          audio.currentTime = t;
          setPosition(t);
          void audio.play().catch(() => setPlaying(false));
        };
        // Before the browser knows the audio's length, a new currentTime would be ignored.
        if (audio.readyState >= HTMLMediaElement.HAVE_METADATA) start();
        else audio.addEventListener('loadedmetadata', start, { once: true });
      },
    }),
    [duration],
  );

  const foundPlace = found ? spanPercent(found, duration) : null;

  const toggle = () => {
    const audio = audioRef.current;
    if (!audio) return;
    if (audio.paused) {
      if (audio.ended || position >= duration - 0.05) audio.currentTime = 0;
      void audio.play().catch(() => setPlaying(false));
    } else {
      audio.pause();
    }
  };

  const seekFromPointer = (event: PointerEvent<HTMLDivElement>) => {
    const rect = event.currentTarget.getBoundingClientRect();
    if (rect.width > 0) seek(((event.clientX - rect.left) / rect.width) * duration);
  };

  const onKeyDown = (event: KeyboardEvent<HTMLDivElement>) => {
    const step = event.shiftKey ? 5 : 1;
    const moves: Record<string, number> = {
      ArrowLeft: position - step,
      ArrowDown: position - step,
      ArrowRight: position + step,
      ArrowUp: position + step,
      PageDown: position - 10,
      PageUp: position + 10,
      Home: 0,
      End: duration,
    };
    if (event.key in moves) {
      event.preventDefault();
      seek(moves[event.key]!);
    } else if (event.key === ' ' || event.key === 'Enter') {
      event.preventDefault();
      toggle();
    }
  };

  return (
    <div className="waveform" data-testid="waveform" data-duration={duration.toFixed(3)} data-windows={windows}>
      <button type="button" className="play-button" onClick={toggle} aria-label={playing ? 'Pause' : 'Play the recording'}>
        {playing ? <PauseIcon /> : <PlayIcon />}
      </button>
      <div className="waveform-stage">
        <div
          className="waveform-track"
          role="slider"
          tabIndex={0}
          aria-label="Playback position"
          aria-valuemin={0}
          aria-valuemax={Math.round(duration * 10) / 10}
          aria-valuenow={Math.round(position * 10) / 10}
          aria-valuetext={`${formatClock(position)} of ${formatClock(duration)}`}
          onKeyDown={onKeyDown}
          onPointerDown={(event) => {
            event.currentTarget.setPointerCapture(event.pointerId);
            seekFromPointer(event);
          }}
          onPointerMove={(event) => {
            if (event.currentTarget.hasPointerCapture(event.pointerId)) seekFromPointer(event);
          }}
        >
          <canvas ref={canvasRef} className="waveform-canvas" aria-hidden="true" />
          {labels.map((label) => (
            <span key={label.seconds} className="window-label" style={{ left: `${label.x}px`, font: LABEL_FONT }} aria-hidden="true">
              {formatClock(label.seconds)}
            </span>
          ))}
        </div>
        {/* Beside the slider, not inside it: a slider's children are hidden from screen readers. */}
        {found && foundPlace && (
          <div
            className="found-span"
            data-testid="found-span"
            data-start={found.start}
            data-end={found.end}
          data-confidence={found.confidence}
            role="img"
            aria-label={describeFound(found)}
            style={{ left: `${foundPlace.left}%`, width: `${foundPlace.width}%` }}
          />
        )}
      </div>
      {found && evidence && <EvidenceCurve id={evidenceId} curve={evidence} duration={duration} found={found} />}
      <div className="waveform-time" aria-hidden="true">
        <span>{formatClock(position)}</span>
        <span>{formatClock(duration)}</span>
      </div>
      <audio
        ref={audioRef}
        src={recording.url}
        preload="auto"
        onPlay={() => setPlaying(true)}
        onPause={() => {
          setPlaying(false);
          if (audioRef.current) setPosition(audioRef.current.currentTime);
        }}
        onEnded={() => {
          setPlaying(false);
          setPosition(duration);
        }}
      />
    </div>
  );
}
