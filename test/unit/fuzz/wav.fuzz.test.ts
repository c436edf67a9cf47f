/**
 * Hostile WAV files through decodeWav and prepareAudio (the engine's whole path from bytes to the
 * 16 kHz chunks the encoders take): random bytes, and near-valid files built from a real header
 * with mutated fields (huge and overflowing chunk sizes, 0 / 1 / 10⁹ Hz, 0 / 1000 / 65535 channels,
 * odd bit depths, NaN/Inf float samples, truncation anywhere). Any input either decodes into
 * consistent audio or is refused with an `audio/*` HarkError whose message is a sentence; no call
 * takes longer than MAX_CALL_MS. Valid files of every supported layout still decode exactly.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { prepareAudio } from '../../../src/engine/audio/prepare';
import { decodeWav } from '../../../src/engine/audio/wav';
import { bytes, count, counted, expectHarkError, fuzzParams, fuzzTimeout, guarded } from './harness';

const AUDIO_CODES = [
  'audio/empty',
  'audio/unsupported-format',
  'audio/truncated',
  'audio/no-samples',
  'audio/invalid-samples',
  'audio/too-long',
] as const;

const CI_RUNS = 1_000;

function ascii(s: string): number[] {
  return [...s].map((c) => c.charCodeAt(0));
}

function u16(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff];
}

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

interface Chunk {
  id: string;
  /** What the chunk header declares (may differ from the body's length). */
  declared: number;
  body: Uint8Array;
}

function riff(chunks: readonly Chunk[], riffSize?: number): Uint8Array {
  const parts: number[] = [];
  for (const c of chunks) {
    parts.push(...ascii(c.id), ...u32(c.declared), ...c.body);
    if (c.body.length & 1 && c.declared === c.body.length) parts.push(0);
  }
  return new Uint8Array([...ascii('RIFF'), ...u32(riffSize ?? parts.length + 4), ...ascii('WAVE'), ...parts]);
}

function fmtBody(format: number, channels: number, rate: number, bits: number, extensibleSub?: number): Uint8Array {
  const blockAlign = (channels * bits) / 8;
  const base = [...u16(format), ...u16(channels), ...u32(rate), ...u32(Math.min(0xffffffff, rate * blockAlign) >>> 0), ...u16(blockAlign & 0xffff), ...u16(bits)];
  if (extensibleSub === undefined) return new Uint8Array(base);
  const guidTail = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];
  return new Uint8Array([...base, ...u16(22), ...u16(bits), ...u32(0), ...u16(extensibleSub), ...guidTail]);
}

/** A float32 payload holding NaN, ±Inf, huge and ordinary values. */
const floatPayload = fc
  .array(fc.oneof(fc.constantFrom(Number.NaN, Infinity, -Infinity, 3.4e38, -0, 1, -1), fc.float()), { maxLength: 256 })
  .map((values) => new Uint8Array(new Float32Array(values).buffer));

const hugeSize = fc.constantFrom(0, 1, 2, 3, 15, 16, 39, 40, 0x7ffffffe, 0x7fffffff, 0x80000000, 0x7fff0000, 0xfffffff0, 0xfffffffe, 0xffffffff);
const anySize = fc.oneof(hugeSize, fc.integer({ min: 0, max: 4096 }), fc.nat({ max: 0xffffffff }));

/** Usually a plausible value, sometimes a hostile one. */
const mostly = <T,>(valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<T>): fc.Arbitrary<T> =>
  fc.oneof({ arbitrary: valid, weight: 3 }, { arbitrary: hostile, weight: 1 });

/** Usually absent (the valid value is used), sometimes a hostile one. */
const rarely = <T,>(hostile: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary: hostile, weight: 1 });

/** A near-valid WAV: a plausible header where some fields are replaced by hostile values. */
const nearValidWav = fc
  .record({
    layout: fc.constantFrom([1, 8], [1, 16], [1, 24], [1, 32], [3, 32], [3, 64], [0xfffe, 16], [0xfffe, 32]),
    sub: mostly(fc.constantFrom(1, 3), fc.integer({ min: 0, max: 0xffff })),
    format: rarely(fc.oneof(fc.constantFrom(2, 6, 7, 0x55, 0), fc.integer({ min: 0, max: 0xffff }))),
    channels: mostly(fc.constantFrom(1, 2), fc.oneof(fc.constantFrom(0, 6, 1000, 0xffff), fc.integer({ min: 0, max: 0xffff }))),
    rate: mostly(fc.constantFrom(8000, 16000, 44100, 48000), fc.oneof(fc.constantFrom(0, 1, 2, 3, 7, 192000, 1e9, 0xffffffff), fc.nat({ max: 0xffffffff }))),
    bits: rarely(fc.oneof(fc.constantFrom(0, 1, 4, 12, 20, 48, 0xffff), fc.integer({ min: 0, max: 0xffff }))),
    fmtDeclared: rarely(anySize),
    dataDeclared: rarely(anySize),
    payload: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 4096, size: 'medium' }), floatPayload),
    extra: fc.array(
      fc.record({
        id: fc.oneof(fc.constantFrom('LIST', 'fact', 'fmt ', 'data', 'JUNK'), fc.string({ minLength: 4, maxLength: 4, unit: 'binary-ascii' })),
        declared: rarely(anySize),
        body: fc.uint8Array({ maxLength: 64 }),
      }),
      { maxLength: 2 },
    ),
    extraFirst: fc.boolean(),
    riffSize: rarely(anySize),
    cut: rarely(fc.nat()),
  })
  .map((f) => {
    const [layoutFormat, layoutBits] = f.layout as [number, number];
    const format = f.format ?? layoutFormat;
    const bits = f.bits ?? layoutBits;
    const fmt = fmtBody(format, f.channels, f.rate, bits, format === 0xfffe ? (f.sub === 3 && bits === 16 ? 1 : f.sub) : undefined);
    const fmtChunk: Chunk = { id: 'fmt ', declared: f.fmtDeclared ?? fmt.length, body: fmt };
    const dataChunk: Chunk = { id: 'data', declared: f.dataDeclared ?? f.payload.length, body: f.payload };
    const extra = f.extra.map((c) => ({ ...c, declared: c.declared ?? c.body.length }));
    const chunks = f.extraFirst ? [...extra, fmtChunk, dataChunk] : [fmtChunk, ...extra, dataChunk];
    const file = riff(chunks, f.riffSize);
    return f.cut === undefined ? file : file.subarray(0, f.cut % (file.length + 1));
  });

/** Decoded audio must be self-consistent. */
function checkDecoded(audio: ReturnType<typeof decodeWav>): void {
  expect(audio.channels.length).toBeGreaterThan(0);
  expect(audio.sampleRate).toBeGreaterThan(0);
  const frames = audio.channels[0]!.length;
  expect(frames).toBeGreaterThan(0);
  for (const ch of audio.channels) expect(ch.length).toBe(frames);
}

/** The engine's path: decode, then mono 16 kHz chunks; every failure is a typed, readable error. */
function throughEngine(file: Uint8Array): void {
  const decoded = guarded(() => decodeWav(file), (e) => expectHarkError(e, AUDIO_CODES));
  count(decoded.ok ? 'decoded' : 'refused');
  if (!decoded.ok) return;
  checkDecoded(decoded.value);
  const prepared = guarded(() => prepareAudio(decoded.value), (e) => expectHarkError(e, AUDIO_CODES));
  count(prepared.ok ? 'prepared' : 'refused after decoding');
  if (!prepared.ok) return;
  const { samples, chunks } = prepared.value;
  expect(chunks.length).toBeGreaterThan(0);
  for (let i = 0; i < samples.length; i++) if (!Number.isFinite(samples[i]!)) throw new Error(`sample ${i} is ${samples[i]}`);
}

describe('WAV decoding of hostile input', () => {
  afterAll(() => console.info(`wav fuzz outcomes: ${JSON.stringify(Object.fromEntries(counted))}`));

  it('random bytes, and random bytes after a RIFF/WAVE header', { timeout: fuzzTimeout(CI_RUNS, 20) }, () => {
    const header = new Uint8Array(ascii('RIFF\0\0\0\0WAVE'));
    fc.assert(
      fc.property(bytes(2048), fc.boolean(), (body, withHeader) => {
        throughEngine(withHeader ? new Uint8Array([...header, ...body]) : body);
      }),
      fuzzParams(CI_RUNS),
    );
  });

  it('near-valid files with mutated fields (sizes, rates, channels, bit depths, NaN/Inf, truncation)', { timeout: fuzzTimeout(CI_RUNS, 50) }, () => {
    fc.assert(fc.property(nearValidWav, throughEngine), fuzzParams(CI_RUNS));
  });

  it('valid files of every supported layout decode exactly', { timeout: fuzzTimeout(CI_RUNS, 20) }, () => {
    const layout = fc.constantFrom(
      { format: 1, bits: 8 },
      { format: 1, bits: 16 },
      { format: 1, bits: 24 },
      { format: 1, bits: 32 },
      { format: 3, bits: 32 },
      { format: 3, bits: 64 },
    );
    fc.assert(
      fc.property(
        layout,
        fc.boolean(),
        fc.integer({ min: 1, max: 8 }),
        fc.constantFrom(8000, 11025, 16000, 22050, 44100, 48000, 96000),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        ({ format, bits }, extensible, channels, rate, frames, seed) => {
          const count = frames * channels;
          const expected = new Float64Array(count);
          const payload = new Uint8Array((count * bits) / 8);
          const view = new DataView(payload.buffer);
          let s = seed;
          for (let i = 0; i < count; i++) {
            s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
            const pos = (i * bits) / 8;
            if (format === 3) {
              const v = (s / 0x100000000) * 2 - 1;
              if (bits === 32) view.setFloat32(pos, v, true);
              else view.setFloat64(pos, v, true);
              expected[i] = bits === 32 ? Math.fround(v) : Math.fround(v);
            } else if (bits === 8) {
              view.setUint8(pos, s & 0xff);
              expected[i] = ((s & 0xff) - 128) / 128;
            } else if (bits === 16) {
              view.setInt16(pos, s & 0xffff, true);
              expected[i] = ((s << 16) >> 16) / 32768;
            } else if (bits === 24) {
              const v = (s << 8) >> 8;
              view.setUint8(pos, v & 0xff);
              view.setUint8(pos + 1, (v >> 8) & 0xff);
              view.setUint8(pos + 2, (v >> 16) & 0xff);
              expected[i] = v / 8388608;
            } else {
              view.setInt32(pos, s | 0, true);
              expected[i] = Math.fround((s | 0) / 2147483648);
            }
          }
          const fmt = fmtBody(extensible ? 0xfffe : format, channels, rate, bits, extensible ? format : undefined);
          const file = riff([
            { id: 'fmt ', declared: fmt.length, body: fmt },
            { id: 'data', declared: payload.length, body: payload },
          ]);
          const audio = decodeWav(file);
          expect(audio.sampleRate).toBe(rate);
          expect(audio.channels.length).toBe(channels);
          for (let i = 0; i < count; i++) {
            const got = audio.channels[i % channels]![Math.floor(i / channels)];
            if (got !== Math.fround(expected[i]!)) throw new Error(`sample ${i}: ${got} ≠ ${expected[i]}`);
          }
        },
      ),
      fuzzParams(CI_RUNS),
    );
  });

  it('the named hostile cases end as stated', () => {
    const pcm16 = (channels: number, rate: number, payload: Uint8Array, declared = payload.length) =>
      riff([
        { id: 'fmt ', declared: 16, body: fmtBody(1, channels, rate, 16) },
        { id: 'data', declared, body: payload },
      ]);
    const codeOf = (file: Uint8Array): string => {
      try {
        prepareAudio(decodeWav(file));
        return 'ok';
      } catch (e) {
        expectHarkError(e, AUDIO_CODES);
        return (e as { code: string }).code;
      }
    };
    const tone = new Uint8Array(32_000).map((_, i) => (i * 37) & 0xff);
    expect(codeOf(pcm16(1, 0, tone))).toBe('audio/unsupported-format');
    expect(codeOf(pcm16(1, 1, tone))).toBe('audio/too-long'); // 16,000 frames at 1 Hz: 4 h 26 min
    expect(codeOf(pcm16(1, 1e9, tone))).toBe('ok'); // 16 µs of audio, padded to 1 s
    expect(codeOf(pcm16(1000, 16000, tone))).toBe('ok'); // 16 frames of 1000 channels
    expect(codeOf(pcm16(65535, 16000, tone))).toBe('audio/truncated'); // less than one frame
    expect(codeOf(pcm16(1, 16000, tone, 0xffffffff))).toBe('ok'); // streamed WAV: data to the end
    expect(codeOf(pcm16(1, 16000, tone, 0x7ffffffe))).toBe('ok');
    expect(codeOf(pcm16(1, 16000, tone, 0x40000000))).toBe('audio/truncated');
    const floats = new Uint8Array(new Float32Array([0.5, Number.NaN, Infinity, -Infinity]).buffer);
    const floatFile = riff([
      { id: 'fmt ', declared: 16, body: fmtBody(3, 1, 16000, 32) },
      { id: 'data', declared: floats.length, body: floats },
    ]);
    expect(codeOf(floatFile)).toBe('audio/invalid-samples');
    expect(codeOf(riff([{ id: 'fmt ', declared: 0xffffffff, body: fmtBody(1, 1, 16000, 16) }]))).toBe('audio/truncated');
  });
});
