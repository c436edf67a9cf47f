import { describe, expect, it } from 'vitest';
import { HarkError } from '../../src/engine/errors';
import { decodeWav } from '../../src/engine/audio/wav';

/** Test WAVs are built here, byte by byte, so every format and layout is covered without fixtures. */
interface WavSpec {
  format: number; // 1 PCM, 3 float, 0xfffe extensible, or anything else
  bits: number;
  channels: number;
  sampleRate: number;
  /** Interleaved raw sample values (ints for PCM, floats for float formats). */
  values: number[];
  /** Sub-format code for WAVE_FORMAT_EXTENSIBLE. */
  subFormat?: number;
  /** Replace the GUID tail (bytes 2..15) of the extensible sub-format. */
  badGuid?: boolean;
  /** Extra chunks before "fmt " and between "fmt " and "data". */
  before?: { id: string; body: Uint8Array }[];
  between?: { id: string; body: Uint8Array }[];
  /** Override the data chunk's declared size. */
  declaredDataSize?: number;
  /** Cut the file to this many bytes. */
  cutTo?: number;
}

function chunk(id: string, body: Uint8Array): Uint8Array {
  const padded = body.length + (body.length & 1);
  const out = new Uint8Array(8 + padded);
  out.set(new TextEncoder().encode(id), 0);
  new DataView(out.buffer).setUint32(4, body.length, true);
  out.set(body, 8);
  return out;
}

function encodeSamples(spec: WavSpec): Uint8Array {
  const bytesPer = spec.bits / 8;
  const out = new Uint8Array(spec.values.length * bytesPer);
  const view = new DataView(out.buffer);
  const code = spec.format === 0xfffe ? (spec.subFormat ?? 1) : spec.format;
  spec.values.forEach((v, i) => {
    const p = i * bytesPer;
    if (code === 3) {
      if (spec.bits === 32) view.setFloat32(p, v, true);
      else view.setFloat64(p, v, true);
    } else if (spec.bits === 8) view.setUint8(p, v);
    else if (spec.bits === 16) view.setInt16(p, v, true);
    else if (spec.bits === 24) {
      const u = v & 0xffffff;
      view.setUint8(p, u & 0xff);
      view.setUint8(p + 1, (u >> 8) & 0xff);
      view.setUint8(p + 2, (u >> 16) & 0xff);
    } else view.setInt32(p, v, true);
  });
  return out;
}

function encodeWav(spec: WavSpec): Uint8Array {
  const extensible = spec.format === 0xfffe;
  const fmt = new Uint8Array(extensible ? 40 : 16);
  const v = new DataView(fmt.buffer);
  v.setUint16(0, spec.format, true);
  v.setUint16(2, spec.channels, true);
  v.setUint32(4, spec.sampleRate, true);
  v.setUint32(8, (spec.sampleRate * spec.channels * spec.bits) / 8, true);
  v.setUint16(12, (spec.channels * spec.bits) / 8, true);
  v.setUint16(14, spec.bits, true);
  if (extensible) {
    v.setUint16(16, 22, true);
    v.setUint16(18, spec.bits, true);
    v.setUint32(20, 0, true);
    v.setUint16(24, spec.subFormat ?? 1, true);
    const tail = spec.badGuid
      ? [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]
      : [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];
    fmt.set(tail, 26);
  }
  const data = encodeSamples(spec);
  const dataChunk = chunk('data', data);
  if (spec.declaredDataSize !== undefined) new DataView(dataChunk.buffer).setUint32(4, spec.declaredDataSize, true);
  const parts = [
    ...(spec.before ?? []).map((c) => chunk(c.id, c.body)),
    chunk('fmt ', fmt),
    ...(spec.between ?? []).map((c) => chunk(c.id, c.body)),
    dataChunk,
  ];
  const bodyLength = parts.reduce((n, p) => n + p.length, 4);
  const out = new Uint8Array(8 + bodyLength);
  out.set(new TextEncoder().encode('RIFF'), 0);
  new DataView(out.buffer).setUint32(4, bodyLength, true);
  out.set(new TextEncoder().encode('WAVE'), 8);
  let offset = 12;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return spec.cutTo !== undefined ? out.subarray(0, spec.cutTo) : out;
}

function expectHarkError(fn: () => unknown, code: string, message?: RegExp): HarkError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(HarkError);
    const err = e as HarkError;
    expect(err.code).toBe(code);
    if (message) expect(err.message).toMatch(message);
    return err;
  }
  throw new Error(`expected HarkError ${code}, nothing was thrown`);
}

const f32 = (x: number) => Math.fround(x);

describe('decodeWav: formats', () => {
  it('16-bit PCM: sample / 32768 exactly (what the goldens use)', () => {
    const values = [-32768, -16384, -1, 0, 1, 12345, 32767];
    const out = decodeWav(encodeWav({ format: 1, bits: 16, channels: 1, sampleRate: 16000, values }));
    expect(out.sampleRate).toBe(16000);
    expect(out.channels).toHaveLength(1);
    expect(Array.from(out.channels[0]!)).toEqual(values.map((s) => f32(s / 32768)));
  });

  it('8-bit PCM is unsigned: (b − 128) / 128', () => {
    const values = [0, 64, 128, 192, 255];
    const out = decodeWav(encodeWav({ format: 1, bits: 8, channels: 1, sampleRate: 8000, values }));
    expect(Array.from(out.channels[0]!)).toEqual([-1, -0.5, 0, 0.5, 127 / 128].map(f32));
    expect(out.sampleRate).toBe(8000);
  });

  it('24-bit PCM sign-extends: s / 2^23', () => {
    const values = [-8388608, -1, 0, 1, 4194304, 8388607];
    const out = decodeWav(encodeWav({ format: 1, bits: 24, channels: 1, sampleRate: 48000, values }));
    expect(Array.from(out.channels[0]!)).toEqual(values.map((s) => f32(s / 8388608)));
  });

  it('32-bit PCM: s / 2^31', () => {
    const values = [-2147483648, -1073741824, 0, 1073741824, 2147483647];
    const out = decodeWav(encodeWav({ format: 1, bits: 32, channels: 1, sampleRate: 16000, values }));
    expect(Array.from(out.channels[0]!)).toEqual(values.map((s) => f32(s / 2147483648)));
  });

  it('IEEE float 32 and 64 are kept as they are', () => {
    const values = [-1, -0.25, 0, 0.123456789, 0.75, 1.5];
    const a = decodeWav(encodeWav({ format: 3, bits: 32, channels: 1, sampleRate: 16000, values }));
    expect(Array.from(a.channels[0]!)).toEqual(values.map(f32));
    const b = decodeWav(encodeWav({ format: 3, bits: 64, channels: 1, sampleRate: 16000, values }));
    expect(Array.from(b.channels[0]!)).toEqual(values.map(f32));
  });

  it('3 channels at 44.1 kHz are de-interleaved', () => {
    const frames = 5;
    const values: number[] = [];
    for (let f = 0; f < frames; f++) values.push(f * 100, -f * 100, 7);
    const out = decodeWav(encodeWav({ format: 1, bits: 16, channels: 3, sampleRate: 44100, values }));
    expect(out.sampleRate).toBe(44100);
    expect(out.channels).toHaveLength(3);
    expect(Array.from(out.channels[0]!)).toEqual([0, 100, 200, 300, 400].map((s) => f32(s / 32768)));
    expect(Array.from(out.channels[1]!)).toEqual([0, -100, -200, -300, -400].map((s) => f32(s / 32768)));
    expect(Array.from(out.channels[2]!)).toEqual(new Array(frames).fill(f32(7 / 32768)));
  });

  it('WAVE_FORMAT_EXTENSIBLE with a PCM sub-format (24-bit, 3 channels, 44.1 kHz)', () => {
    const values = [-8388608, 0, 8388607, 1, -1, 4194304];
    const out = decodeWav(encodeWav({ format: 0xfffe, subFormat: 1, bits: 24, channels: 3, sampleRate: 44100, values }));
    expect(out.sampleRate).toBe(44100);
    expect(out.channels.map((c) => Array.from(c))).toEqual([
      [-1, f32(1 / 8388608)],
      [0, f32(-1 / 8388608)],
      [f32(8388607 / 8388608), 0.5],
    ]);
  });

  it('WAVE_FORMAT_EXTENSIBLE with a float sub-format (stereo float32)', () => {
    const values = [0.5, -0.5, 0.25, -0.25];
    const out = decodeWav(encodeWav({ format: 0xfffe, subFormat: 3, bits: 32, channels: 2, sampleRate: 22050, values }));
    expect(out.channels.map((c) => Array.from(c))).toEqual([
      [0.5, 0.25],
      [-0.5, -0.25],
    ]);
  });

  it('skips unknown chunks (LIST, odd-sized ones with their pad byte) before and after "fmt "', () => {
    const list = new TextEncoder().encode('INFOISFT\u0005\u0000\u0000\u0000sox!\u0000');
    const odd = new Uint8Array([1, 2, 3]); // 3 bytes + 1 pad byte
    const values = [100, -100, 200];
    const out = decodeWav(
      encodeWav({
        format: 1,
        bits: 16,
        channels: 1,
        sampleRate: 16000,
        values,
        before: [{ id: 'LIST', body: list }],
        between: [
          { id: 'junk', body: odd },
          { id: 'fact', body: new Uint8Array([3, 0, 0, 0]) },
        ],
      }),
    );
    expect(Array.from(out.channels[0]!)).toEqual(values.map((s) => f32(s / 32768)));
  });

  it('ignores a trailing partial frame', () => {
    // 3 frames of 16-bit stereo = 12 bytes; declare and provide 13.
    const bytes = encodeWav({ format: 1, bits: 16, channels: 2, sampleRate: 16000, values: [1, 2, 3, 4, 5, 6] });
    const longer = new Uint8Array(bytes.length + 2);
    longer.set(bytes);
    const view = new DataView(longer.buffer);
    const dataSizeAt = bytes.length - 12 - 4;
    view.setUint32(dataSizeAt, 13, true);
    const out = decodeWav(longer);
    expect(out.channels[0]!.length).toBe(3);
  });
});

describe('decodeWav: errors', () => {
  it('0 bytes → audio/empty', () => {
    expectHarkError(() => decodeWav(new Uint8Array(0)), 'audio/empty', /empty/);
  });

  it('not RIFF/WAVE → audio/unsupported-format, pointing at the browser decoder', () => {
    const ogg = new TextEncoder().encode('OggS\u0000\u0002\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000');
    expectHarkError(() => decodeWav(ogg), 'audio/unsupported-format', /not a WAV file.*browser/s);
    expectHarkError(() => decodeWav(new TextEncoder().encode('ID3')), 'audio/unsupported-format');
  });

  it('an unsupported codec is named (MP3-in-WAV, µ-law, 12-bit PCM)', () => {
    const mp3 = expectHarkError(
      () => decodeWav(encodeWav({ format: 0x55, bits: 16, channels: 1, sampleRate: 16000, values: [0] })),
      'audio/unsupported-format',
      /0x0055 \(MP3\).*decoded by the browser/s,
    );
    expect(mp3.details.codec).toBe('0x0055');
    expectHarkError(
      () => decodeWav(encodeWav({ format: 7, bits: 16, channels: 1, sampleRate: 8000, values: [0] })),
      'audio/unsupported-format',
      /0x0007/,
    );
    expectHarkError(
      () => decodeWav(encodeWav({ format: 1, bits: 16, channels: 1, sampleRate: 8000, values: [0] }).map((b, i) => (i === 34 ? 12 : b))),
      'audio/unsupported-format',
      /12-bit/,
    );
  });

  it('WAVE_FORMAT_EXTENSIBLE with an unknown sub-format GUID or codec → audio/unsupported-format', () => {
    expectHarkError(
      () => decodeWav(encodeWav({ format: 0xfffe, subFormat: 1, badGuid: true, bits: 16, channels: 1, sampleRate: 16000, values: [0] })),
      'audio/unsupported-format',
    );
    expectHarkError(
      () => decodeWav(encodeWav({ format: 0xfffe, subFormat: 2, bits: 16, channels: 1, sampleRate: 16000, values: [0] })),
      'audio/unsupported-format',
      /0x0002/,
    );
  });

  it('data chunk declared longer than the file → audio/truncated', () => {
    const err = expectHarkError(
      () => decodeWav(encodeWav({ format: 1, bits: 16, channels: 1, sampleRate: 16000, values: [1, 2, 3, 4], cutTo: 44 + 5 })),
      'audio/truncated',
      /declares 8 bytes but only 5/,
    );
    expect(err.details).toMatchObject({ declaredBytes: 8, presentBytes: 5 });
  });

  it('header cut short → audio/truncated', () => {
    const full = encodeWav({ format: 1, bits: 16, channels: 1, sampleRate: 16000, values: [1, 2] });
    for (const cut of [4, 11, 12, 20, 30, 36, 40]) {
      expectHarkError(() => decodeWav(full.subarray(0, cut)), 'audio/truncated');
    }
  });

  it('no complete frame → audio/truncated', () => {
    // 16-bit stereo (4-byte frames) with a 2-byte data chunk
    const bytes = encodeWav({ format: 1, bits: 16, channels: 2, sampleRate: 16000, values: [5] });
    expectHarkError(() => decodeWav(bytes), 'audio/truncated', /less than one 4-byte frame/);
  });

  it('a valid header with zero frames → audio/no-samples', () => {
    expectHarkError(
      () => decodeWav(encodeWav({ format: 1, bits: 16, channels: 1, sampleRate: 16000, values: [] })),
      'audio/no-samples',
    );
  });
});

describe('streamed WAVs with placeholder sizes', () => {
  it('reads espeak-ng --stdout style files (data size 0x7ffff000) to the end of the file', () => {
    const frames = 1000;
    const bytes = new Uint8Array(44 + frames * 2);
    const view = new DataView(bytes.buffer);
    const text = (at: number, s: string) => [...s].forEach((c, i) => (bytes[at + i] = c.charCodeAt(0)));
    text(0, 'RIFF');
    view.setUint32(4, 0x7ffff024, true);
    text(8, 'WAVE');
    text(12, 'fmt ');
    view.setUint32(16, 16, true);
    view.setUint16(20, 1, true);
    view.setUint16(22, 1, true);
    view.setUint32(24, 22050, true);
    view.setUint32(28, 44100, true);
    view.setUint16(32, 2, true);
    view.setUint16(34, 16, true);
    text(36, 'data');
    view.setUint32(40, 0x7ffff000, true);
    for (let i = 0; i < frames; i++) view.setInt16(44 + i * 2, i - 500, true);
    const decoded = decodeWav(bytes);
    expect(decoded.sampleRate).toBe(22050);
    expect(decoded.channels[0]!.length).toBe(frames);
    expect(decoded.channels[0]![0]).toBe(-500 / 32768);
  });
});
