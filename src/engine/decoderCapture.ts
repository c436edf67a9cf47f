/**
 * Opens a bundle's decoder for graph-captured decode steps on WebGPU (llm/capturedStep.ts): the
 * graph is rewritten at load (llm/decoderGraphEdit.ts) into a prompt graph and a step graph that
 * take the weights as inputs; the weights are read from the bundle's external data once and
 * uploaded into GPU buffers onnxruntime-web allocated (ortOwnedBuffers.ts), which both sessions
 * bind. GPU memory holds the weights once, as it did with the weights inside one session.
 *
 * A decoder the rewrite does not recognise (not made by our converter) is opened as before;
 * the reason is kept for the device report.
 */
import type { GraphBundle, GraphFiles } from './graphs';
import { decoderOutputLocations, type DecoderShape } from './llm/decoder';
import { CapturedDecodeStep, openStepSession } from './llm/capturedStep';
import { captureGraphsOf } from './llm/decoderGraphEdit';
import { ort, sessionOptions } from './ortRuntime';
import { OrtOwnedBuffers } from './ortOwnedBuffers';

export interface CapturedDecoder {
  /** The uncaptured session (prompts, scoring, beams, probe): the decoder with weights as inputs. */
  session: ort.InferenceSession;
  /** Its weight inputs (also bound by `step`). */
  weights: Record<string, ort.Tensor>;
  step: CapturedDecodeStep;
  /** Every buffer the weights, the step and the KV caches live in. */
  owned: OrtOwnedBuffers;
  /** Seconds spent uploading the weights, and their bytes. */
  upload: { ms: number; bytes: number };
}

function folderOf(path: string): string {
  const at = path.lastIndexOf('/');
  return at < 0 ? '' : path.slice(0, at + 1);
}

/** The decoder opened for captured steps, or why it cannot be. Nothing stays allocated on failure. */
export async function openCapturedDecoder(
  bundle: Pick<GraphBundle, 'readFile'>,
  files: GraphFiles,
  shape: DecoderShape,
): Promise<{ ok: true; decoder: CapturedDecoder } | { ok: false; reason: string }> {
  const edit = captureGraphsOf(await bundle.readFile(files.path));
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
  let step: CapturedDecodeStep | undefined;
  try {
    const started = performance.now();
    const data = new Map<string, Uint8Array>();
    const weights: Record<string, ort.Tensor> = {};
    let bytes = 0;
    for (const entry of edit.weights) {
      let file = data.get(entry.file);
      if (!file) {
        if (!files.externalData.includes(entry.file)) throw new Error(`the decoder's weight ${entry.name} is in ${entry.file}, which the manifest does not list`);
        file = await bundle.readFile(folderOf(files.path) + entry.file);
        data.set(entry.file, file);
      }
      if (entry.offset + entry.length > file.byteLength) throw new Error(`the decoder's weight ${entry.name} lies past the end of ${entry.file}`);
      weights[entry.name] = await owned.upload(entry.dtype, entry.dims, file.subarray(entry.offset, entry.offset + entry.length));
      bytes += entry.length;
    }
    data.clear();
    const device = (await ort.env.webgpu.device) as GPUDevice;
    await device.queue.onSubmittedWorkDone();
    const upload = { ms: performance.now() - started, bytes };
    session = await ort.InferenceSession.create(edit.prompt, sessionOptions('webgpu', decoderOutputLocations('webgpu', shape.numLayers)));
    step = await CapturedDecodeStep.create(edit.step, stepSession, owned, weights, shape, session.inputNames.includes('lora_scale'));
    return { ok: true, decoder: { session, weights, step, owned, upload } };
  } catch (error) {
    if (step) await step.release();
    else await stepSession.release();
    await session?.release();
    await owned.release();
    throw error;
  }
}

/** Releases what openCapturedDecoder made, except the session (released with the other graphs). */
export async function releaseCapturedDecoder(decoder: CapturedDecoder): Promise<void> {
  await decoder.step.release();
  await decoder.owned.release();
}
