/**
 * The ONNX graphs a model's parts run (bundle/parts.ts: encoders, adapters, connector,
 * embedTokens, decoder) as onnxruntime-web sessions on one backend, keyed by graph name.
 * On WebGPU the encoders' outputs stay on the GPU (they feed the connector) and the decoder's
 * KV cache stays on the GPU (see llm/decoder.ts).
 */
import type { Backend } from './device';
import { HarkError } from './errors';
import type { Int4Unpacker } from './int4Unpack';
import { decoderOutputLocations, embedOutputLocations } from './llm/decoder';
import { ort, sessionOptions } from './ortRuntime';

/** Format 1's graph names (the bench opens SALMONN's audio graphs by them). */
export const GRAPH_NAMES = ['speechEncoder', 'audioEncoder', 'connector', 'embedTokens', 'decoder'] as const;
export type GraphName = (typeof GRAPH_NAMES)[number];

export interface GraphFiles {
  path: string;
  externalData: string[];
}

/** What opening graphs needs from a loaded bundle. */
export interface GraphBundle {
  variant: string;
  /** The graphs to open, by name, in opening order. */
  graphs: [string, GraphFiles][];
  readFile(path: string): Promise<Uint8Array>;
}

/** Sessions by graph name ("encoder.whisper", "connector", "decoder", …). */
export type GraphSessions = Record<string, ort.InferenceSession>;

/** The session of `name`: a missing one is a programming error (the parts name what was opened). */
export function sessionOf(sessions: GraphSessions, name: string): ort.InferenceSession {
  const session = sessions[name];
  if (!session) throw new Error(`graph "${name}" was not opened`);
  return session;
}

function folderOf(path: string): string {
  const at = path.lastIndexOf('/');
  return at < 0 ? '' : path.slice(0, at + 1);
}

/** Where each graph's outputs live (exported for the bench, which opens the audio graphs alone). */
export function graphOutputOptions(name: string, backend: Backend, numLayers: number): ort.InferenceSession.SessionOptions {
  if (backend !== 'webgpu') return {};
  if (name === 'speechEncoder' || name === 'audioEncoder' || name.startsWith('encoder.')) return { preferredOutputLocation: 'gpu-buffer' };
  if (name === 'decoder') return decoderOutputLocations(backend, numLayers);
  if (name === 'embedTokens') return embedOutputLocations(backend);
  return {};
}

/**
 * One graph of a bundle as a session (external data read from beside it). Given an unpacker (on
 * WebAssembly), its int4 weights are unpacked to fp32 first where they fit (int4Unpack.ts).
 */
export async function openGraph(
  bundle: Pick<GraphBundle, 'readFile'>,
  files: GraphFiles,
  backend: Backend,
  options: ort.InferenceSession.SessionOptions = {},
  unpacker?: Int4Unpacker,
): Promise<ort.InferenceSession> {
  const bytes = await bundle.readFile(files.path);
  // ORT matches external data by the file name written inside the graph.
  const given = await Promise.all(
    files.externalData.map(async (file) => ({ path: file, data: await bundle.readFile(folderOf(files.path) + file) })),
  );
  const { model, externalData } = unpacker ? unpacker.apply(files.path, bytes, given) : { model: bytes, externalData: given };
  return ort.InferenceSession.create(model, sessionOptions(backend, { externalData, ...options }));
}

export async function openGraphs(
  bundle: GraphBundle,
  backend: Backend,
  numLayers: number,
  unpacker?: Int4Unpacker,
): Promise<GraphSessions> {
  const sessions: GraphSessions = {};
  try {
    for (const [name, files] of bundle.graphs) {
      sessions[name] = await openGraph(bundle, files, backend, graphOutputOptions(name, backend, numLayers), unpacker);
    }
  } catch (error) {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
    if (error instanceof HarkError) throw error;
    const detail = error instanceof Error ? error.message : String(error);
    throw new HarkError(
      'engine/backend-unavailable',
      `Could not prepare the model's "${bundle.variant}" graphs on ${backend === 'webgpu' ? 'WebGPU' : 'WebAssembly'} (${detail}). ` +
        (backend === 'webgpu' ? 'Try the WebAssembly backend in Settings, or a different model variant.' : 'The model files may be damaged: delete and download the model again.'),
      { backend, variant: bundle.variant },
    );
  }
  return sessions;
}

export async function releaseGraphs(sessions: GraphSessions): Promise<void> {
  await Promise.all(Object.values(sessions).map((session) => session.release()));
}
