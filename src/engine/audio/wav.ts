/**
 * A WAV (RIFF/WAVE) reader for the engine: runs in a worker and in Node, no WebAudio.
 *
 * Reads linear PCM (format 1: unsigned 8-bit, signed 16/24/32-bit), IEEE float (format 3: 32/64-bit)
 * and WAVE_FORMAT_EXTENSIBLE (0xFFFE) whose sub-format GUID is one of those two, at any sample rate
 * and channel count. Samples become float32 in [-1, 1): an int16 sample s becomes exactly s / 32768
 * (what the Python reference and its goldens use), 8-bit (b − 128) / 128, 24-bit s / 2^23, 32-bit
 * s / 2^31; float samples are kept as they are.
 *
 * The chunk walk skips chunks it does not need (LIST, fact, cue, bext, …) and honours the pad byte
 * after odd-sized chunks. Other codecs (ADPCM, µ-law, MP3-in-WAV, …) are refused with
 * `audio/unsupported-format`; in the app, such files and other formats are decoded by the browser.
 */
import { HarkError } from '../errors';

export interface DecodedAudio {
  sampleRate: number;
  /** One array per channel, all the same length (the number of frames). */
  channels: Float32Array[];
}

const WAVE_FORMAT_PCM = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT = 0x0003;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/** Bytes 2..15 of every KSDATAFORMAT_SUBTYPE_* GUID of the form xxxx0000-0000-0010-8000-00AA00389B71. */
const GUID_TAIL = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];

const CODEC_NAMES: Record<number, string> = {
  0x0002: 'Microsoft ADPCM',
  0x0006: 'A-law',
  0x0007: 'µ-law',
  0x0011: 'IMA ADPCM',
  0x0031: 'GSM 6.10',
  0x0050: 'MPEG audio',
  0x0055: 'MP3',
  0x0161: 'Windows Media Audio',
  0x1610: 'AAC',
  0xf1ac: 'FLAC',
};

interface FmtInfo {
  format: number;
  channels: number;
  sampleRate: number;
  bitsPerSample: number;
}

function fourcc(bytes: Uint8Array, offset: number): string {
  return String.fromCharCode(bytes[offset]!, bytes[offset + 1]!, bytes[offset + 2]!, bytes[offset + 3]!);
}

function hex4(code: number): string {
  return `0x${code.toString(16).toUpperCase().padStart(4, '0')}`;
}

function unsupported(what: string, details: Record<string, string | number | boolean> = {}): HarkError {
  return new HarkError(
    'audio/unsupported-format',
    `${what} Hark's WAV reader handles PCM (8/16/24/32-bit integer) and IEEE-float (32/64-bit) WAV files. ` +
      'In the app, other formats (MP3, AAC, Ogg, FLAC, compressed WAV…) are decoded by the browser instead; ' +
      'if that fails too, convert the recording to a 16-bit PCM WAV and try again.',
    details,
  );
}

function truncated(what: string, details: Record<string, string | number | boolean> = {}): HarkError {
  return new HarkError(
    'audio/truncated',
    `${what} The file looks cut short (an interrupted download or copy?). Try the original file again.`,
    details,
  );
}

function codecName(code: number): string {
  const name = CODEC_NAMES[code];
  return name ? `codec ${hex4(code)} (${name})` : `codec ${hex4(code)}`;
}

function parseFmt(bytes: Uint8Array, view: DataView, start: number, size: number): FmtInfo {
  if (size < 16) throw unsupported(`The WAV "fmt " chunk is malformed (${size} bytes, at least 16 expected).`, { fmtSize: size });
  let format = view.getUint16(start, true);
  const channels = view.getUint16(start + 2, true);
  const sampleRate = view.getUint32(start + 4, true);
  const bitsPerSample = view.getUint16(start + 14, true);
  if (format === WAVE_FORMAT_EXTENSIBLE) {
    if (size < 40) {
      throw unsupported(`The WAV file says WAVE_FORMAT_EXTENSIBLE but its "fmt " chunk is too short (${size} of 40 bytes).`, {
        fmtSize: size,
      });
    }
    const guid = start + 24;
    const tailOk = GUID_TAIL.every((b, i) => bytes[guid + 2 + i] === b);
    const sub = view.getUint16(guid, true);
    if (!tailOk) throw unsupported('This WAV file uses a WAVE_FORMAT_EXTENSIBLE sub-format that is not PCM or IEEE float.', { codec: hex4(sub) });
    format = sub;
  }
  if (format !== WAVE_FORMAT_PCM && format !== WAVE_FORMAT_IEEE_FLOAT) {
    throw unsupported(`This WAV file uses ${codecName(format)}, which Hark's WAV reader does not decode.`, { codec: hex4(format) });
  }
  const okBits = format === WAVE_FORMAT_PCM ? [8, 16, 24, 32] : [32, 64];
  if (!okBits.includes(bitsPerSample)) {
    const kind = format === WAVE_FORMAT_PCM ? 'integer PCM' : 'float';
    throw unsupported(`This WAV file holds ${bitsPerSample}-bit ${kind} samples, which are not supported.`, {
      codec: hex4(format),
      bitsPerSample,
    });
  }
  if (channels === 0) throw unsupported('The WAV header declares 0 channels.', { channels });
  if (sampleRate === 0) throw unsupported('The WAV header declares a sample rate of 0 Hz.', { sampleRate });
  return { format, channels, sampleRate, bitsPerSample };
}

/** Decodes a RIFF/WAVE file into float32 channels. Throws HarkError (`audio/*`) on bad input. */
/** Sizes that mean "unknown, to the end of the file" rather than a real, cut-short length. */
function isStreamingPlaceholder(size: number): boolean {
  return size === 0xffffffff || size >= 0x7fff0000;
}

export function decodeWav(bytes: Uint8Array): DecodedAudio {
  if (bytes.length === 0) throw new HarkError('audio/empty', 'The audio file is empty (0 bytes). Choose another file or record again.');
  const riffPrefix = [0x52, 0x49, 0x46, 0x46]; // "RIFF"
  if (bytes.length < 12) {
    const isRiffStart = bytes.every((b, i) => i >= 4 || b === riffPrefix[i]);
    if (isRiffStart) throw truncated(`The WAV file ends inside its header (${bytes.length} bytes).`, { bytes: bytes.length });
    throw unsupported('This is not a WAV file (no RIFF/WAVE header).');
  }
  if (fourcc(bytes, 0) !== 'RIFF' || fourcc(bytes, 8) !== 'WAVE') {
    throw unsupported('This is not a WAV file (no RIFF/WAVE header).', { magic: fourcc(bytes, 0).replace(/[^\x20-\x7e]/g, '?') });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

  let fmt: FmtInfo | undefined;
  let data: { start: number; size: number } | undefined;
  let offset = 12;
  while (offset + 8 <= bytes.length && !(fmt && data)) {
    const id = fourcc(bytes, offset);
    const size = view.getUint32(offset + 4, true);
    const start = offset + 8;
    if (id === 'fmt ') {
      if (start + Math.min(size, 40) > bytes.length) throw truncated('The WAV file ends inside its "fmt " chunk.', { bytes: bytes.length });
      fmt ??= parseFmt(bytes, view, start, size);
    } else if (id === 'data') {
      data ??= { start, size };
      // The data chunk is usually last, and a truncated one has no valid chunk after it.
      if (start + size > bytes.length) break;
    }
    offset = start + size + (size & 1);
  }
  if (!fmt) throw truncated('The WAV file has no "fmt " chunk before it ends.', { bytes: bytes.length });
  if (!data) throw truncated('The WAV file has no "data" chunk before it ends.', { bytes: bytes.length });

  const present = bytes.length - data.start;
  if (data.size > present && isStreamingPlaceholder(data.size)) {
    // Written by a program that streamed the WAV and never went back to fix the sizes
    // (espeak-ng --stdout writes 0x7ffff000, others 0xffffffff): the data runs to the file's end.
    const frameBytes = (fmt.bitsPerSample / 8) * fmt.channels;
    data = { start: data.start, size: present - (present % frameBytes) };
  } else if (data.size > present) {
    throw truncated(`The WAV "data" chunk declares ${data.size} bytes but only ${present} are present.`, {
      declaredBytes: data.size,
      presentBytes: present,
    });
  }
  const bytesPerSample = fmt.bitsPerSample / 8;
  const frameBytes = bytesPerSample * fmt.channels;
  const frames = Math.floor(data.size / frameBytes);
  if (data.size === 0) {
    throw new HarkError('audio/no-samples', 'The WAV file is valid but holds no audio (0 samples). Choose another recording.', {
      sampleRate: fmt.sampleRate,
      channels: fmt.channels,
    });
  }
  if (frames === 0) {
    throw truncated(`The WAV "data" chunk holds ${data.size} bytes, less than one ${frameBytes}-byte frame.`, {
      declaredBytes: data.size,
      frameBytes,
    });
  }

  const channels = Array.from({ length: fmt.channels }, () => new Float32Array(frames));
  const read = sampleReader(view, fmt);
  let pos = data.start;
  for (let f = 0; f < frames; f++) {
    for (let c = 0; c < fmt.channels; c++) {
      channels[c]![f] = read(pos);
      pos += bytesPerSample;
    }
  }
  return { sampleRate: fmt.sampleRate, channels };
}

function sampleReader(view: DataView, fmt: FmtInfo): (pos: number) => number {
  if (fmt.format === WAVE_FORMAT_IEEE_FLOAT) {
    return fmt.bitsPerSample === 32 ? (p) => view.getFloat32(p, true) : (p) => view.getFloat64(p, true);
  }
  switch (fmt.bitsPerSample) {
    case 8:
      return (p) => (view.getUint8(p) - 128) / 128;
    case 16:
      return (p) => view.getInt16(p, true) / 32768;
    case 24:
      return (p) => {
        const u = view.getUint8(p) | (view.getUint8(p + 1) << 8) | (view.getUint8(p + 2) << 16);
        return ((u << 8) >> 8) / 8388608; // sign-extend 24 → 32 bits
      };
    default:
      return (p) => view.getInt32(p, true) / 2147483648;
  }
}
