/**
 * AudioWorklet processor for the microphone: copies the input (mixed to mono) in blocks of about
 * 85 ms and posts them to the page with their peak and RMS level. Loaded by recorder.ts through
 * Vite's `?worker&url`, so it is compiled and served (and built) as its own module file.
 */
export {};

declare const sampleRate: number;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor();
}
declare function registerProcessor(name: string, processor: new () => AudioWorkletProcessor): void;

const BLOCK_FRAMES = 4096;

class RecorderProcessor extends AudioWorkletProcessor {
  private buffer = new Float32Array(BLOCK_FRAMES);
  private filled = 0;
  private stopped = false;

  constructor() {
    super();
    this.port.onmessage = (event: MessageEvent<{ type: string }>) => {
      if (event.data?.type === 'stop') {
        this.flush();
        this.stopped = true;
        this.port.postMessage({ type: 'stopped', sampleRate });
      }
    };
  }

  private flush(): void {
    if (this.filled === 0) return;
    const samples = this.buffer.slice(0, this.filled);
    let peak = 0;
    let sum = 0;
    for (let i = 0; i < samples.length; i++) {
      const v = samples[i]!;
      const a = Math.abs(v);
      if (a > peak) peak = a;
      sum += v * v;
    }
    this.port.postMessage({ type: 'block', samples, peak, rms: Math.sqrt(sum / samples.length) }, [samples.buffer]);
    this.filled = 0;
  }

  process(inputs: Float32Array[][]): boolean {
    if (this.stopped) return false;
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const frames = channels[0]!.length;
    const scale = 1 / channels.length;
    for (let i = 0; i < frames; i++) {
      let v = 0;
      for (const channel of channels) v += channel[i]!;
      this.buffer[this.filled++] = v * scale;
      if (this.filled === BLOCK_FRAMES) this.flush();
    }
    return true;
  }
}

registerProcessor('hark-recorder', RecorderProcessor);
