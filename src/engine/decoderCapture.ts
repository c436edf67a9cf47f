/**
 * Opens a bundle's decoder for graph-captured decode steps on WebGPU (llm/capturedStep.ts): the
 * graph is rewritten at load (llm/decoderGraphEdit.ts) into a prompt graph and a step graph that
 * take the weights as inputs; the weights are read from the bundle's external data once and
 * uploaded into GPU buffers onnxruntime-web allocated (ortOwnedBuffers.ts), which both sessions
 * bind. GPU memory holds the weights once, as it did with the weights inside one session. Given
 * the embedding graph, it is rewritten and opened here too, its table shared by the embedding
 * session, the step (whose graph starts with it) and a tied head: held once, where the
 * separate sessions held it two or three times.
 *
 * A decoder the rewrite does not recognise (not made by our converter) is opened as before;
 * the reason is kept for the device report.
 */
import type { GraphBundle, GraphFiles } from './graphs';
import { decoderOutputLocations, embedOutputLocations, type DecoderShape } from './llm/decoder';
import { CapturedDecodeStep, openStepSession } from './llm/capturedStep';
import { captureGraphsOf, type LiftedWeight, type WeightGraph } from './llm/decoderGraphEdit';
import { ort, sessionOptions } from './ortRuntime';
import { OrtOwnedBuffers } from './ortOwnedBuffers';

export interface CapturedDecoder {
  /** The uncaptured session (prompts, scoring, beams, probe): the decoder with weights as inputs. */
  session: ort.InferenceSession;
  /** Its weight inputs (also bound by `step`). */
  weights: Record<string, ort.Tensor>;
  /**
   * The embedding graph with its weights as inputs and those weights (bound by `step` too, whose
   * graph starts with it); null where the step takes embedding rows (`embedNote` says why).
   */
  embed: { session: ort.InferenceSession; weights: Record<string, ort.Tensor> } | null;
  embedNote: string | null;
  step: CapturedDecodeStep;
  /** Every buffer the weights, the step and the KV caches live in. */
  owned: OrtOwnedBuffers;
  /** Milliseconds spent uploading the weights, their bytes, and how many were the same bytes as another's (uploaded once). */
  upload: { ms: number; bytes: number; shared: number };
}

function folderOf(path: string): string {
  const at = path.lastIndexOf('/');
  return at < 0 ? '' : path.slice(0, at + 1);
}

/**
 * Every lifted weight in a GPU buffer: read from its graph's external data files (each file once),
 * uploaded once per distinct span of bytes — a tied head and the embedding graph name the same
 * table, and get one buffer, viewed by each under its own name, type and shape.
 */
async function uploadWeights(
  bundle: Pick<GraphBundle, 'readFile'>,
  graphs: Record<WeightGraph, GraphFiles | undefined>,
  lifted: readonly LiftedWeight[],
  owned: OrtOwnedBuffers,
): Promise<{ tensors: Record<WeightGraph, Record<string, ort.Tensor>>; bytes: number; shared: number }> {
  const files = new Map<string, Uint8Array>();
  const buffers = new Map<string, GPUBuffer>();
  const tensors: Record<WeightGraph, Record<string, ort.Tensor>> = { decoder: {}, embed: {} };
  let bytes = 0;
  let shared = 0;
  for (const entry of lifted) {
    if (entry.inline) {
      tensors[entry.graph][entry.name] = await owned.upload(entry.dtype, entry.dims, entry.inline);
      bytes += entry.length;
      continue;
    }
    const graph = graphs[entry.graph]!;
    if (!graph.externalData.includes(entry.file)) throw new Error(`the ${entry.graph} graph's weight ${entry.name} is in ${entry.file}, which the manifest does not list`);
    const path = folderOf(graph.path) + entry.file;
    const span = `${path}\u0000${entry.offset}\u0000${entry.length}`;
    const buffer = buffers.get(span);
    if (buffer) {
      tensors[entry.graph][entry.name] = ort.Tensor.fromGpuBuffer(buffer, { dataType: entry.dtype, dims: entry.dims });
      shared += 1;
      continue;
    }
    let file = files.get(path);
    if (!file) {
      file = await bundle.readFile(path);
      files.set(path, file);
    }
    if (entry.offset + entry.length > file.byteLength) throw new Error(`the ${entry.graph} graph's weight ${entry.name} lies past the end of ${entry.file}`);
    const tensor = await owned.upload(entry.dtype, entry.dims, file.subarray(entry.offset, entry.offset + entry.length));
    buffers.set(span, tensor.gpuBuffer as GPUBuffer);
    tensors[entry.graph][entry.name] = tensor;
    bytes += entry.length;
  }
  return { tensors, bytes, shared };
}

/**
 * The decoder opened for captured steps, or why it cannot be. Given the embedding graph's files,
 * the step takes token ids and the embedding graph is opened here too (`embed`), sharing its
 * weights with the step. Nothing stays allocated on failure.
 */
export async function openCapturedDecoder(
  bundle: Pick<GraphBundle, 'readFile'>,
  files: GraphFiles,
  shape: DecoderShape,
  embedFiles?: GraphFiles,
): Promise<{ ok: true; decoder: CapturedDecoder } | { ok: false; reason: string }> {
  const edit = captureGraphsOf(await bundle.readFile(files.path), embedFiles ? await bundle.readFile(embedFiles.path) : undefined);
  if (!edit.ok) return edit;
  // Before any weight is uploaded: will ORT capture this graph on this device at all?
  let stepSession: ort.InferenceSession;
  try {
    stepSession = await openStepSession(edit.step);
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
  const owned = new OrtOwnedBuffers();
  let session: ort.InferenceSession | undefined;
  let embedSession: ort.InferenceSession | undefined;
  let step: CapturedDecodeStep | undefined;
  try {
    const started = performance.now();
    const { tensors, bytes, shared } = await uploadWeights(bundle, { decoder: files, embed: embedFiles }, edit.weights, owned);
    const device = (await ort.env.webgpu.device) as GPUDevice;
    await device.queue.onSubmittedWorkDone();
    const upload = { ms: performance.now() - started, bytes, shared };
    session = await ort.InferenceSession.create(edit.prompt, sessionOptions('webgpu', decoderOutputLocations('webgpu', shape.numLayers)));
    if (edit.embed) embedSession = await ort.InferenceSession.create(edit.embed, sessionOptions('webgpu', embedOutputLocations('webgpu')));
    const all = { ...tensors.decoder, ...tensors.embed };
    step = await CapturedDecodeStep.create(edit.step, stepSession, owned, all, shape, {
      takesScale: session.inputNames.includes('lora_scale'),
      input: edit.stepInput,
    });
    return {
      ok: true,
      decoder: {
        session,
        weights: tensors.decoder,
        embed: embedSession ? { session: embedSession, weights: tensors.embed } : null,
        embedNote: edit.embedNote,
        step,
        owned,
        upload,
      },
    };
  } catch (error) {
    if (step) await step.release();
    else await stepSession.release();
    await session?.release();
    await embedSession?.release();
    await owned.release();
    throw error;
  }
}

/** Releases what openCapturedDecoder made, except the sessions (released with the other graphs). */
export async function releaseCapturedDecoder(decoder: CapturedDecoder): Promise<void> {
  await decoder.step.release();
  await decoder.owned.release();
}
