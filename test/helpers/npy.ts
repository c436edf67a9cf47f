/**
 * Parses NumPy .npy files (no Node APIs, so browser harness pages can use it too) (format 1.0/2.0, little-endian float32/int64/int32, C order): the golden
 * outputs of the Python reference are stored this way.
 */

export interface NpyArray {
  shape: number[];
  data: Float32Array | BigInt64Array | Int32Array;
}

export function parseNpy(bytes: Uint8Array): NpyArray {
  const magic = String.fromCharCode(...bytes.subarray(1, 6));
  if (bytes[0] !== 0x93 || magic !== 'NUMPY') throw new Error('not a .npy file');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || fortran === undefined || shapeText === undefined) throw new Error(`bad .npy header: ${header}`);
  if (fortran === 'True') throw new Error('Fortran-order .npy is not supported');
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const offset = headerStart + headerLength;
  // Copy into a fresh buffer: typed arrays need an aligned offset, and a Node Buffer is a view
  // into a shared pool whose .buffer holds other data too.
  const body = new Uint8Array(bytes.subarray(offset)).buffer;
  switch (descr) {
    case '<f4':
      return { shape, data: new Float32Array(body) };
    case '<i8':
      return { shape, data: new BigInt64Array(body) };
    case '<i4':
      return { shape, data: new Int32Array(body) };
    default:
      throw new Error(`unsupported .npy dtype ${descr}`);
  }
}


/** max |a − b| / max(1e-12, max |b|): the relative-max error the parity tests bound. */
export function relativeMaxError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length mismatch: ${actual.length} vs ${expected.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return diff / Math.max(scale, 1e-12);
}

/** Logit error as the Python tests measure it: max |a − b| / max(1, max |b|). */
export function logitError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length mismatch: ${actual.length} vs ${expected.length}`);
  let diff = 0;
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return diff / scale;
}
