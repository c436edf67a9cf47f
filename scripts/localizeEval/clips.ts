/**
 * Renders the planned clips (layout.ts) to 16 kHz mono 16-bit WAV with espeak-ng and sox, and
 * writes their ground truth next to them (truth.json). Each sound is rendered alone, then placed on
 * a silent timeline at a whole sample, so the true start and end are exact to the sample.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeWav } from '../../src/audio/wavEncode';
import { decodeWav } from '../../src/engine/audio/wav';
import { EVENT_QUERIES, placeEvents, planClip, type EventKind, type EventSpec } from './layout';

export const SAMPLE_RATE = 16000;

export interface TruthEvent {
  kind: EventKind;
  /** The event text every method is given. */
  query: string;
  /** Seconds. */
  start: number;
  end: number;
  spec: EventSpec;
}

export interface TruthClip {
  /** File name inside the set's folder. */
  file: string;
  durationSeconds: number;
  events: TruthEvent[];
}

export interface TruthSet {
  seed: number;
  sampleRate: number;
  /** Versions of the tools that rendered the sounds (another espeak-ng speaks differently). */
  tools: { espeakNg: string; sox: string };
  clips: TruthClip[];
}

const INSTALL_HINT = 'Install them with: apt-get install espeak-ng sox (Debian/Ubuntu; as root or with sudo), or brew install espeak-ng sox (macOS).';

function run(command: string, args: string[], input?: Uint8Array): Buffer {
  const result = spawnSync(command, args, { input, maxBuffer: 256 * 1024 * 1024 });
  if (result.error) {
    const missing = (result.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(missing ? `${command} is not installed; the evaluation clips are made with espeak-ng and sox. ${INSTALL_HINT}` : `${command}: ${result.error.message}`);
  }
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (exit ${result.status}): ${result.stderr.toString().trim()}`);
  }
  return result.stdout;
}

/** The versions of espeak-ng and sox; throws with install instructions when either is missing. */
export function checkTools(): TruthSet['tools'] {
  // "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/…": the version, without the data path.
  const espeakNg = run('espeak-ng', ['--version']).toString().split(/\s+Data at:/)[0]!.trim();
  const sox = run('sox', ['--version']).toString().trim();
  return { espeakNg, sox };
}

// Rendered sounds are read back through the engine's own WAV decoder: sox writes 16-bit PCM, so
// samples are exact multiples of 1/32768 and survive the final encodeWav unchanged.
const SOX_OUT = ['-t', 'wav', '-r', String(SAMPLE_RATE), '-c', '1', '-b', '16', '-e', 'signed-integer', '-'];

// Every sox call takes -R ("repeatable" random numbers): the noise bursts, and the dither sox adds
// when it writes 16 bits after a gain or a fade, are then the same on every run.
function soxSynth(seconds: number, effects: string[]): Float32Array {
  return decodeWav(run('sox', ['-R', '-n', ...SOX_OUT, 'synth', seconds.toFixed(3), ...effects])).channels[0]!;
}

/** 10 ms fades: a sound that starts or stops at full level makes a click of its own. */
const FADE = ['fade', 't', '0.01', '-0', '0.01'];

/** One sound, alone, as 16 kHz samples. */
export function renderEvent(spec: EventSpec): Float32Array {
  switch (spec.kind) {
    case 'speech': {
      const spoken = run('espeak-ng', ['-v', 'en-us', '-s', String(spec.wordsPerMinute), '-p', String(spec.pitch), '--stdout', spec.sentence]);
      // espeak-ng pads its output with silence; trim both ends (below 1 % of full scale) so the
      // true interval is the speech itself, then bring it to -3 dBFS.
      const trim = ['silence', '1', '0.02', '1%', 'reverse', 'silence', '1', '0.02', '1%', 'reverse', 'norm', '-3'];
      return decodeWav(run('sox', ['-R', '-t', 'wav', '-', ...SOX_OUT, ...trim], spoken)).channels[0]!;
    }
    case 'tone':
      return soxSynth(spec.seconds, ['sine', String(spec.frequencyHz), 'vol', '0.5', ...FADE]);
    case 'noise':
      return soxSynth(spec.seconds, [`${spec.color}noise`, 'vol', spec.color === 'white' ? '0.25' : '0.35', ...FADE]);
    case 'clicks': {
      // A train of 4 ms decaying 3 kHz pulses, one every 1/rate s, the last one ending the event.
      const click = soxSynth(0.004, ['sine', '3000', 'fade', 't', '0', '-0', '0.0035', 'vol', '0.9']);
      const period = Math.round(SAMPLE_RATE / spec.clicksPerSecond);
      const count = Math.max(2, Math.round(spec.seconds * spec.clicksPerSecond));
      const train = new Float32Array((count - 1) * period + click.length);
      for (let k = 0; k < count; k++) train.set(click, k * period);
      return train;
    }
  }
}

/**
 * Renders `count` clips of the set drawn from `seed` into `dir` (clip-00.wav, …) with truth.json,
 * and returns the truth.
 */
export function buildClips(seed: number, count: number, dir: string, onClip?: (clip: TruthClip) => void): TruthSet {
  const tools = checkTools();
  mkdirSync(dir, { recursive: true });
  const clips: TruthClip[] = [];
  for (let index = 0; index < count; index++) {
    const plan = planClip(seed, index);
    const sounds = plan.events.map(renderEvent);
    const placement = placeEvents(
      sounds.map((s) => s.length / SAMPLE_RATE),
      plan.targetSeconds,
      plan.gapShares,
    );
    const starts = placement.starts.map((t) => Math.round(t * SAMPLE_RATE));
    const samples = new Float32Array(Math.round(placement.durationSeconds * SAMPLE_RATE));
    sounds.forEach((sound, i) => samples.set(sound, starts[i]!));
    const file = `clip-${String(index).padStart(2, '0')}.wav`;
    writeFileSync(join(dir, file), encodeWav(samples, SAMPLE_RATE));
    const clip: TruthClip = {
      file,
      durationSeconds: samples.length / SAMPLE_RATE,
      events: plan.events.map((spec, i) => ({
        kind: spec.kind,
        query: EVENT_QUERIES[spec.kind],
        start: starts[i]! / SAMPLE_RATE,
        end: (starts[i]! + sounds[i]!.length) / SAMPLE_RATE,
        spec,
      })),
    };
    clips.push(clip);
    onClip?.(clip);
  }
  const truth: TruthSet = { seed, sampleRate: SAMPLE_RATE, tools, clips };
  writeFileSync(join(dir, 'truth.json'), `${JSON.stringify(truth, null, 2)}\n`);
  return truth;
}
