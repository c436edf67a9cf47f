#!/usr/bin/env node
// Run an ONNX model once with onnxruntime-web (wasm backend) in Node, with .npy files as I/O.
//
//   node models/tools/ort_run.mjs MODEL.onnx IN_DIR OUT_DIR [--ep wasm] [--threads N]
//   node models/tools/ort_run.mjs --serve [--ep wasm]
//
// One-shot mode reads IN_DIR/<input name>.npy for every graph input (e.g.
// `past_key_values.0.key.npy`), runs the session once and writes OUT_DIR/<output name>.npy.
// Serve mode keeps one process for many sessions (ort_bridge.py: one per Python process, because
// starting Node and onnxruntime-web costs ~0.4 s, paid ~150 times per pytest run otherwise). It
// reads tab-separated commands from stdin and answers each with one line on stdout, `ok` or
// `error <message>`:
//   open  ID MODEL.onnx        create a session under the caller's ID
//   run   ID IN_DIR OUT_DIR    run it once (.npy files as in one-shot mode)
//   close ID                   release it
// External data: every file next to the model named `<model file>_data*` or
// `<stem>.onnx_data*` is handed to ORT under its own file name (the location stored in the model).
// Supported .npy dtypes: <f4, <f2, <i8, <i4, |u1, |b1 (C order, little endian), versions 1-3.
// float16 travels as its raw bits (ORT takes and returns float16 data as Uint16Array in Node 20).
import * as ort from 'onnxruntime-web';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const DTYPES = {
  '<f4': { ort: 'float32', ctor: Float32Array },
  '<f2': { ort: 'float16', ctor: Uint16Array },
  '<i8': { ort: 'int64', ctor: BigInt64Array },
  '<i4': { ort: 'int32', ctor: Int32Array },
  '|u1': { ort: 'uint8', ctor: Uint8Array },
  '|b1': { ort: 'bool', ctor: Uint8Array },
};
const DESCR_OF = { float32: '<f4', float16: '<f2', int64: '<i8', int32: '<i4', uint8: '|u1', bool: '|b1' };

export function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf[0] !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${file}: not a .npy file`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + headerLen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new Error(`${file}: bad header ${header}`);
  if (fortran === 'True') throw new Error(`${file}: Fortran order is not supported`);
  const dt = DTYPES[descr];
  if (!dt) throw new Error(`${file}: dtype ${descr} is not supported`);
  const dims = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const offset = start + headerLen;
  const bytes = buf.subarray(offset, offset + count * dt.ctor.BYTES_PER_ELEMENT);
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes); // aligned copy
  return new ort.Tensor(dt.ort, new dt.ctor(copy.buffer, 0, count), dims);
}

export function writeNpy(file, tensor) {
  const descr = DESCR_OF[tensor.type];
  if (!descr) throw new Error(`output type ${tensor.type} is not supported`);
  const dims = tensor.dims;
  const shape = dims.length === 0 ? '()' : dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre[0] = 0x93;
  pre.write('NUMPY', 1, 'latin1');
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const data = tensor.data;
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
}

function externalDataFor(modelPath) {
  const dir = path.dirname(modelPath);
  const base = path.basename(modelPath);
  const stem = base.replace(/\.onnx$/, '');
  // Also another graph's data file that this model's tensors point into (a tied LM head reading
  // the embedding graph's table): its name appears verbatim in the model's external-data entries.
  const model = fs.readFileSync(modelPath).toString('latin1');
  const named = (f) => /\.onnx_data(_\d+)?$/.test(f) && model.includes(f);
  return fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(`${base}_data`) || f.startsWith(`${stem}.onnx_data`) || named(f))
    .sort()
    .map((f) => ({ path: f, data: new Uint8Array(fs.readFileSync(path.join(dir, f))) }));
}

export async function createSession(modelPath, { ep = 'wasm', threads = 1 } = {}) {
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
  return ort.InferenceSession.create(new Uint8Array(fs.readFileSync(modelPath)), {
    executionProviders: [ep],
    externalData: externalDataFor(modelPath),
    logSeverityLevel: 3,
  });
}

export async function runOnce(session, inDir, outDir) {
  const feeds = {};
  for (const name of session.inputNames) {
    // Names are URI-encoded in file names (weights named like `/model/layers.0/…` as inputs).
    const file = path.join(inDir, `${encodeURIComponent(name)}.npy`);
    if (!fs.existsSync(file)) throw new Error(`missing input ${file}`);
    feeds[name] = readNpy(file);
  }
  const results = await session.run(feeds);
  fs.mkdirSync(outDir, { recursive: true });
  for (const name of session.outputNames) writeNpy(path.join(outDir, `${encodeURIComponent(name)}.npy`), results[name]);
}

/** Serve mode's commands (see the top of this file); sessions live until closed or stdin ends. */
async function serve(opts) {
  const sessions = new Map();
  const sessionOf = (id) => {
    const session = sessions.get(id);
    if (!session) throw new Error(`no open session ${id}`);
    return session;
  };
  process.stdout.write('ready\n');
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const [command, id, ...rest] = line.split('\t');
    try {
      if (command === 'open') sessions.set(id, await createSession(rest[0], opts));
      else if (command === 'run') await runOnce(sessionOf(id), rest[0], rest[1]);
      else if (command === 'close') {
        await sessionOf(id).release();
        sessions.delete(id);
      } else throw new Error(`unknown command ${command}`);
      process.stdout.write('ok\n');
    } catch (e) {
      process.stdout.write(`error ${String(e?.message ?? e).replace(/\n/g, ' ')}\n`);
    }
  }
  // stdin closed: the caller is done. Exit now rather than wait ~3 s for onnxruntime-web's
  // handles to wind down on their own (writes to a pipe are synchronous on Linux: nothing is lost).
  process.exit(0);
}

async function main(argv) {
  const args = [];
  const opts = { ep: 'wasm', threads: 1, serve: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--ep') opts.ep = argv[++i];
    else if (argv[i] === '--threads') opts.threads = Number(argv[++i]);
    else if (argv[i] === '--serve') opts.serve = true;
    else args.push(argv[i]);
  }
  if (args.length !== (opts.serve ? 0 : 3)) {
    console.error('usage: node ort_run.mjs MODEL.onnx IN_DIR OUT_DIR [--ep wasm] [--threads N] | --serve [--ep wasm]');
    process.exit(2);
  }
  if (opts.serve) return serve(opts);
  await runOnce(await createSession(args[0], opts), args[1], args[2]);
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('ort_run.mjs')) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(e?.stack ?? String(e));
    process.exit(1);
  });
}
