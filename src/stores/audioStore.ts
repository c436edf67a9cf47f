/**
 * The current recording: where it came from, its waveform and playback URL, and its encoding by
 * the engine (once per recording and model; the encoded audio stays in the engine for follow-ups).
 */
import { create } from 'zustand';
import { AudioInputError, checkDuration, computePeaks, decodeAudioFile, isWavBytes, mixToMono, wavDurationSeconds, wavSampleRate, type PcmAudio } from '../audio/decode';
import { encodeWav } from '../audio/wavEncode';
import { engineClient } from '../engineClient';
import { inEngineLane } from './engineLane';
import { errorCode, type AudioInfo } from './engineTypes';
import { useModelStore } from './modelStore';
import { useNoticeStore } from './noticeStore';

export type RecordingKind = 'file' | 'recording' | 'sample';

export interface Recording {
  id: number;
  kind: RecordingKind;
  /** File name, sample title, or "Recording at 14:02". */
  name: string;
  durationSeconds: number;
  /** Min/max pairs for drawing (empty when the browser could not decode the file for preview). */
  peaks: Float32Array;
  /** Object URL of the audio for playback. */
  url: string;
  mimeType: string;
  bytes: number;
  createdAt: number;
}

export interface SampleClip {
  id: string;
  title: string;
  description: string;
  file: string;
  suggestedTask?: string;
}

export interface EncodeProgress {
  done: number;
  total: number;
  /** performance.now() when encoding started. */
  startedAt: number;
  /**
   * Seconds one window takes here: measured on this recording once a window is done, else the
   * last encode with this model and backend on this device; null the first time.
   */
  secondsPerWindow: number | null;
}

/** Expected seconds left (null when there is nothing to go by yet). */
export function encodeSecondsLeft(progress: EncodeProgress, now: number): number | null {
  if (progress.secondsPerWindow === null) return null;
  return Math.max(0, progress.total * progress.secondsPerWindow - (now - progress.startedAt) / 1000);
}

const ENCODE_RATES_KEY = 'hark-encode-seconds-per-window';

/** Seconds per window measured before, per model, variant and backend (localStorage). */
function rememberedRate(key: string): number | null {
  try {
    const rates = JSON.parse(localStorage.getItem(ENCODE_RATES_KEY) ?? '{}') as Record<string, unknown>;
    const rate = rates[key];
    return typeof rate === 'number' && Number.isFinite(rate) && rate > 0 ? rate : null;
  } catch {
    return null;
  }
}

function rememberRate(key: string, seconds: number): void {
  try {
    const rates = JSON.parse(localStorage.getItem(ENCODE_RATES_KEY) ?? '{}') as Record<string, unknown>;
    localStorage.setItem(ENCODE_RATES_KEY, JSON.stringify({ ...rates, [key]: seconds }));
  } catch {
    // Only an estimate for next time.
  }
}

/** 'stopped': listening was stopped with Stop (encode() starts it again). */
export type EncodeStatus = 'empty' | 'decoding' | 'waiting-model' | 'encoding' | 'ready' | 'error' | 'stopped';

interface AudioStore {
  recording: Recording | null;
  status: EncodeStatus;
  /** Chunks (30 s windows) encoded so far, when encoding started, and the expected time per window. */
  progress: EncodeProgress | null;
  info: AudioInfo | null;
  /** The model load the audio was encoded for (see modelStore.loadId). */
  encodedFor: number | null;
  error: string | null;
  samples: SampleClip[];
  openFile(file: Blob, options?: OpenOptions): Promise<void>;
  openSample(sample: SampleClip): Promise<void>;
  setRecorded(audio: PcmAudio, options?: Pick<OpenOptions, 'name' | 'restoredFrom'>): Promise<void>;
  /** Sends the current recording to the engine (again, e.g. after a model change). */
  encode(): Promise<void>;
  /** Stops listening to the recording (between 30 s windows); `encode()` starts again. */
  stopEncoding(): void;
  loadSamples(): Promise<void>;
  clear(): void;
}

/** What the engine is given: WAV bytes as they are (bit-exact with the CLI), else browser-decoded PCM. */
type Payload = { kind: 'wav'; bytes: Uint8Array; fallback: PcmAudio | null } | { kind: 'pcm'; audio: PcmAudio };

let payload: Payload | null = null;
let nextId = 1;
/** The newest request wins when files are opened faster than they decode. */
let latestRequest = 0;
/** The recording being encoded by the engine right now, if any. */
let encodingId: number | null = null;

function copyPayload(p: Payload): Uint8Array | { sampleRate: number; channels: Float32Array[] } {
  // The client transfers (detaches) what it sends: keep our own copy for re-encoding.
  return p.kind === 'wav' ? p.bytes.slice() : { sampleRate: p.audio.sampleRate, channels: p.audio.channels.map((c) => c.slice()) };
}

function recordingName(): string {
  const time = new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return `Recording at ${time}`;
}

/** A recording's audio as it came in: the file itself, or what the microphone captured. */
export type RecordingAudio = { kind: 'file'; blob: Blob; sampleRate: number | null } | { kind: 'pcm'; audio: PcmAudio };

export interface NewRecordingEvent {
  recording: Recording;
  audio: RecordingAudio;
  /** Set when the recording was reopened from local history (its id there). */
  restoredFrom: string | null;
}

/** Where an opened recording comes from, besides the file itself. */
export interface OpenOptions {
  kind?: RecordingKind;
  name?: string;
  /** The recording's id in local history, when reopening it from there. */
  restoredFrom?: string;
}

type Listener = (event: NewRecordingEvent) => void;
const listeners = new Set<Listener>();
/**
 * Called when a new recording replaces the old one (the conversation starts over; history keeps
 * it), in the order the listeners were added.
 */
export function onNewRecording(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export const useAudioStore = create<AudioStore>((set, get) => {
  function adopt(recording: Omit<Recording, 'id' | 'createdAt'>, next: Payload, request: number, audio: RecordingAudio, restoredFrom: string | null): boolean {
    if (request !== latestRequest) {
      URL.revokeObjectURL(recording.url);
      return false;
    }
    const old = get().recording;
    if (old) URL.revokeObjectURL(old.url);
    payload = next;
    const adopted: Recording = { ...recording, id: nextId++, createdAt: Date.now() };
    set({ recording: adopted, info: null, encodedFor: null, progress: null, error: null });
    for (const listener of listeners) listener({ recording: adopted, audio, restoredFrom });
    useNoticeStore.getState().clearError('audio');
    return true;
  }

  function fail(error: unknown, prefix?: string) {
    useNoticeStore.getState().showError('audio', error, prefix);
  }

  /** The status of the recording we keep when a newer file fails to open. */
  function settledStatus(): EncodeStatus {
    const { recording, info } = get();
    if (!recording) return 'empty';
    if (encodingId === recording.id) return 'encoding';
    if (info) return 'ready';
    return useModelStore.getState().status === 'ready' ? 'error' : 'waiting-model';
  }

  return {
    recording: null,
    status: 'empty',
    progress: null,
    info: null,
    encodedFor: null,
    error: null,
    samples: [],

    async openFile(file, options = {}) {
      const request = ++latestRequest;
      set({ status: 'decoding' });
      const name = options.name ?? (file instanceof File ? file.name : 'Audio file');
      try {
        if (file.size === 0) throw new AudioInputError('empty', `“${name}” is empty: choose a recording that has sound in it.`);
        const bytes = new Uint8Array(await file.arrayBuffer());
        const wav = isWavBytes(bytes);
        // A WAV says its length in its header: refuse one over the limit before decoding it.
        if (wav) checkDuration(wavDurationSeconds(bytes) ?? 0, name);
        let pcm: PcmAudio | null = null;
        try {
          pcm = await decodeAudioFile(file, bytes);
        } catch (error) {
          // The engine reads WAV variants some browsers cannot preview; anything else must decode here.
          if (!wav) throw error;
        }
        const mono = pcm ? mixToMono(pcm) : null;
        const durationSeconds = pcm ? (pcm.channels[0]?.length ?? 0) / pcm.sampleRate : 0;
        // Over the limit: refused here, so the recording open now stays current (and nothing is kept).
        checkDuration(durationSeconds, name);
        const url = URL.createObjectURL(file.type ? file : new Blob([bytes], { type: wav ? 'audio/wav' : 'application/octet-stream' }));
        const adopted = adopt(
          {
            kind: options.kind ?? 'file',
            name,
            durationSeconds,
            peaks: mono ? computePeaks(mono) : new Float32Array(0),
            url,
            mimeType: file.type || (wav ? 'audio/wav' : ''),
            bytes: file.size,
          },
          wav ? { kind: 'wav', bytes, fallback: pcm } : { kind: 'pcm', audio: pcm! },
          request,
          { kind: 'file', blob: file, sampleRate: pcm ? pcm.sampleRate : wavSampleRate(bytes) },
          options.restoredFrom ?? null,
        );
        if (adopted) await get().encode();
      } catch (error) {
        if (request !== latestRequest) return;
        set({ status: settledStatus() });
        fail(error);
      }
    },

    async openSample(sample) {
      try {
        const response = await fetch(`${import.meta.env.BASE_URL}samples/${sample.file}`);
        if (!response.ok) throw new Error(`the sample “${sample.title}” could not be loaded (HTTP ${response.status})`);
        const blob = await response.blob();
        await get().openFile(blob, { kind: 'sample', name: sample.title });
      } catch (error) {
        fail(error, 'The sample clip could not be opened:');
      }
    },

    async setRecorded(audio, options = {}) {
      const request = ++latestRequest;
      const samples = audio.channels[0]?.length ?? 0;
      if (samples === 0) {
        fail(new AudioInputError('empty', 'Nothing was recorded: the microphone sent no sound. Check the input device and try again.'));
        return;
      }
      const wav = encodeWav(mixToMono(audio), audio.sampleRate);
      const url = URL.createObjectURL(new Blob([wav as BlobPart], { type: 'audio/wav' }));
      const adopted = adopt(
        {
          kind: 'recording',
          name: options.name ?? recordingName(),
          durationSeconds: samples / audio.sampleRate,
          peaks: computePeaks(mixToMono(audio)),
          url,
          mimeType: 'audio/wav',
          bytes: wav.byteLength,
        },
        { kind: 'pcm', audio },
        request,
        { kind: 'pcm', audio },
        options.restoredFrom ?? null,
      );
      if (adopted) await get().encode();
    },

    async encode() {
      const recording = get().recording;
      const current = payload;
      if (!recording || !current) return;
      const model = useModelStore.getState();
      if (model.status !== 'ready' || !model.info) {
        set({ status: 'waiting-model', progress: null });
        return;
      }
      const loadId = model.loadId;
      const rateKey = `${model.info.name}/${model.info.variant}/${model.info.backend}`;
      const startedAt = performance.now();
      set({
        status: 'encoding',
        progress: { done: 0, total: Math.max(1, Math.ceil(recording.durationSeconds / 30)), startedAt, secondsPerWindow: rememberedRate(rateKey) },
        error: null,
      });
      const onChunk = (done: number, total: number) => {
        if (get().recording?.id !== recording.id) return;
        const measured = done > 0 ? (performance.now() - startedAt) / 1000 / done : null;
        set((s) => ({ progress: { done, total, startedAt, secondsPerWindow: measured ?? s.progress?.secondsPerWindow ?? null } }));
      };
      encodingId = recording.id;
      try {
        let info: AudioInfo;
        try {
          ({ info } = await inEngineLane(() => engineClient().setAudio(copyPayload(current), {}, onChunk)));
        } catch (error) {
          // A WAV flavour the engine does not read (e.g. µ-law): use what the browser decoded.
          const code = errorCode(error);
          if (current.kind !== 'wav' || !current.fallback || !(code === 'audio/unsupported-format' || code === 'audio/decode-failed')) throw error;
          const fallback: Payload = { kind: 'pcm', audio: current.fallback };
          ({ info } = await inEngineLane(() => engineClient().setAudio(copyPayload(fallback), {}, onChunk)));
        }
        if (get().recording?.id !== recording.id) return;
        rememberRate(rateKey, (performance.now() - startedAt) / 1000 / Math.max(1, info.chunks));
        set({
          status: 'ready',
          info,
          encodedFor: loadId,
          progress: null,
          // The engine's duration is authoritative (e.g. for WAVs the browser could not preview).
          recording: { ...recording, durationSeconds: info.durationSeconds || recording.durationSeconds },
        });
        useNoticeStore.getState().announce(`The recording is ready (${Math.round(info.durationSeconds)} seconds). Ask a question about it.`);
      } catch (error) {
        if (get().recording?.id !== recording.id) return;
        if (errorCode(error) === 'engine/cancelled') {
          set({ status: 'stopped', progress: null, error: null });
          useNoticeStore.getState().announce('Listening stopped. Press “Listen again” to have the model hear the recording.');
          return;
        }
        set({ status: 'error', progress: null, error: error instanceof Error ? error.message : String(error) });
        useNoticeStore.getState().showError('audio', error);
      } finally {
        if (encodingId === recording.id) encodingId = null;
      }
    },

    stopEncoding() {
      if (get().status !== 'encoding') return;
      // Straight to the worker (the lane is busy with this very encode): it stops between windows.
      void engineClient()
        .cancel()
        .catch(() => {});
    },

    async loadSamples() {
      if (get().samples.length > 0) return;
      try {
        const response = await fetch(`${import.meta.env.BASE_URL}samples/samples.json`);
        if (!response.ok) return;
        const data = (await response.json()) as { samples?: SampleClip[] };
        set({ samples: Array.isArray(data.samples) ? data.samples : [] });
      } catch {
        // Samples are a convenience; the app works without them.
      }
    },

    clear() {
      latestRequest++;
      const old = get().recording;
      if (old) URL.revokeObjectURL(old.url);
      payload = null;
      set({ recording: null, status: 'empty', progress: null, info: null, encodedFor: null, error: null });
    },
  };
});
