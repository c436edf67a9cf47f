/**
 * Microphone capture through an AudioWorklet at the device's own sample rate (the engine resamples
 * to 16 kHz). Reports a live level and the elapsed time; stop() returns the PCM recording.
 */
import workletUrl from './recorderWorklet.ts?worker&url';
import { MAX_AUDIO_SECONDS, type PcmAudio } from './decode';

export class MicrophoneError extends Error {
  override readonly name = 'MicrophoneError';
  constructor(
    readonly code: 'denied' | 'not-found' | 'busy' | 'insecure' | 'unsupported' | 'failed',
    message: string,
  ) {
    super(message);
  }
}

export interface RecorderCallbacks {
  /** 0–1, smoothed for a meter; called about 12 times a second. */
  onLevel?: (level: number) => void;
  onElapsed?: (seconds: number) => void;
  /** Called once when the recording reaches `maxSeconds` and stops on its own. */
  onLimit?: () => void;
  maxSeconds?: number;
}

export interface RecorderHandle {
  readonly sampleRate: number;
  /** Stops and returns what was recorded. */
  stop(): Promise<PcmAudio>;
  /** Stops and throws the recording away. */
  cancel(): void;
}

export function microphoneErrorFrom(error: unknown): MicrophoneError {
  if (error instanceof MicrophoneError) return error;
  const name = error instanceof DOMException || error instanceof Error ? error.name : '';
  switch (name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return new MicrophoneError(
        'denied',
        'Hark cannot use the microphone because permission was denied. Allow microphone access for this site (the icon in the address bar, or the browser’s site settings), then press Record again. You can also open a file instead.',
      );
    case 'NotFoundError':
    case 'OverconstrainedError':
      return new MicrophoneError('not-found', 'No microphone was found. Plug one in or choose it in your system settings, then press Record again.');
    case 'NotReadableError':
    case 'AbortError':
      return new MicrophoneError('busy', 'The microphone could not be started: another app may be using it. Close that app and press Record again.');
    default: {
      const detail = error instanceof Error && error.message ? ` (${error.message})` : '';
      return new MicrophoneError('failed', `Recording could not start${detail}. Try again, or open a file instead.`);
    }
  }
}

export async function startRecorder(callbacks: RecorderCallbacks = {}): Promise<RecorderHandle> {
  if (typeof window !== 'undefined' && !window.isSecureContext) {
    throw new MicrophoneError('insecure', 'Recording needs a secure page: open Hark over https:// (or on localhost).');
  }
  if (!navigator.mediaDevices?.getUserMedia || typeof AudioWorkletNode === 'undefined') {
    throw new MicrophoneError('unsupported', 'This browser cannot record audio here. Use a current Chrome, Edge, Firefox or Safari, or open a file instead.');
  }
  let stream: MediaStream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (error) {
    throw microphoneErrorFrom(error);
  }
  const context = new AudioContext();
  const release = () => {
    for (const track of stream.getTracks()) track.stop();
    void context.close().catch(() => undefined);
  };
  let node: AudioWorkletNode;
  try {
    await context.audioWorklet.addModule(workletUrl);
    node = new AudioWorkletNode(context, 'hark-recorder', { numberOfInputs: 1, numberOfOutputs: 0 });
    context.createMediaStreamSource(stream).connect(node);
    if (context.state === 'suspended') await context.resume();
  } catch (error) {
    release();
    throw microphoneErrorFrom(error);
  }

  const sampleRate = context.sampleRate;
  const maxFrames = Math.floor((callbacks.maxSeconds ?? MAX_AUDIO_SECONDS) * sampleRate);
  const blocks: Float32Array[] = [];
  let frames = 0;
  let level = 0;
  let finished = false;
  let resolveStopped: (() => void) | undefined;
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));

  node.port.onmessage = (event: MessageEvent<{ type: 'block'; samples: Float32Array; peak: number; rms: number } | { type: 'stopped' }>) => {
    const message = event.data;
    if (message.type === 'stopped') {
      resolveStopped?.();
      return;
    }
    if (finished) return;
    const room = maxFrames - frames;
    const samples = message.samples.length > room ? message.samples.subarray(0, room) : message.samples;
    blocks.push(samples);
    frames += samples.length;
    // A meter that rises fast and falls slowly; RMS scaled so speech sits around the middle.
    const target = Math.min(1, Math.max(message.peak * 0.6, message.rms * 3));
    level = target > level ? target : level * 0.7 + target * 0.3;
    callbacks.onLevel?.(level);
    callbacks.onElapsed?.(frames / sampleRate);
    if (frames >= maxFrames) callbacks.onLimit?.();
  };

  const finish = () => {
    finished = true;
    node.port.onmessage = null;
    node.disconnect();
    release();
  };

  return {
    sampleRate,
    async stop() {
      if (!finished) {
        node.port.postMessage({ type: 'stop' });
        // The worklet flushes its last partial block, then confirms (or the context is gone).
        await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 500))]);
        finish();
      }
      const samples = new Float32Array(frames);
      let offset = 0;
      for (const block of blocks) {
        samples.set(block, offset);
        offset += block.length;
      }
      return { sampleRate, channels: [samples] };
    },
    cancel() {
      if (!finished) finish();
      blocks.length = 0;
    },
  };
}
