/**
 * Audio in → features, against the Python reference's goldens (models/golden): every golden
 * recording is decoded with our WAV reader, prepared (split/padded) like `split_audio`, and each
 * chunk's Whisper log-mel and BEATs fbank must match the golden arrays within 1e-4 relative-max.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { prepareAudio, tokenTimeMap } from '../../src/engine/audio/prepare';
import { decodeWav } from '../../src/engine/audio/wav';
import { KaldiFbank, type FbankOptions } from '../../src/engine/features/kaldiFbank';
import { WhisperMel } from '../../src/engine/features/whisperMel';
import { GOLDEN_DIR, TINY_BUNDLE_DIR, goldenArray, loadGoldenIndex } from '../helpers/golden';
import { relativeMaxError } from '../helpers/npy';

const TOLERANCE = 1e-4;

interface ManifestSlice {
  audio: { sampleRate: number; minSeconds: number; chunkSeconds: number; encoderFrameSeconds: number };
  features: { whisper: { preprocessorConfig: string }; fbank: FbankOptions };
  architecture: { connector: { windowFrames: number; strideFrames: number; tokensPerChunk: number } };
}

const manifest = JSON.parse(readFileSync(join(TINY_BUNDLE_DIR, 'manifest.json'), 'utf8')) as ManifestSlice;
const preprocessorConfig = JSON.parse(
  readFileSync(join(TINY_BUNDLE_DIR, manifest.features.whisper.preprocessorConfig), 'utf8'),
) as Record<string, unknown>;
const golden = loadGoldenIndex();

describe('audio features match the Python reference', () => {
  // Nothing here may touch the network: the extractor is built from the bundle's config object.
  const fetchSpy = vi.fn(async () => {
    throw new Error('network access attempted');
  });
  const realFetch = globalThis.fetch;
  beforeAll(() => {
    globalThis.fetch = fetchSpy as unknown as typeof fetch;
  });
  afterAll(() => {
    globalThis.fetch = realFetch;
  });

  const mel = new WhisperMel(preprocessorConfig);
  const fbank = new KaldiFbank(manifest.features.fbank);

  for (const [name, input] of Object.entries(golden.inputs)) {
    it(`${name}: decode → prepare → Whisper mel and fbank per chunk`, async () => {
      const decoded = decodeWav(new Uint8Array(readFileSync(join(GOLDEN_DIR, input.audio))));
      expect(decoded.sampleRate).toBe(manifest.audio.sampleRate);
      expect(decoded.channels[0]!.length).toBe(input.samples);
      const prepared = prepareAudio(decoded, {
        sampleRate: manifest.audio.sampleRate,
        minSeconds: manifest.audio.minSeconds,
        chunkSeconds: manifest.audio.chunkSeconds,
      });
      expect(prepared.samples.length).toBe(input.samples);
      expect(prepared.chunks.length).toBe(input.chunks);
      expect(prepared.chunks.length).toBe(input.features.length);

      for (const [c, ref] of input.features.entries()) {
        const chunk = prepared.chunks[c]!;
        const goldMel = goldenArray(ref.mel);
        const ourMel = await mel.compute(chunk);
        expect(ourMel.length).toBe(goldMel.data.length);
        const melErr = relativeMaxError(ourMel, goldMel.data);

        const goldFbank = goldenArray(ref.fbank);
        const ours = fbank.compute(chunk);
        expect([ours.frames, manifest.features.fbank.numMelBins]).toEqual(goldFbank.shape);
        const fbankErr = relativeMaxError(ours.data, goldFbank.data);

        console.log(
          `[features] ${name} chunk ${c}: mel [${goldMel.shape.join('×')}] rel-max err ${melErr.toExponential(2)}; ` +
            `fbank [${goldFbank.shape.join('×')}] rel-max err ${fbankErr.toExponential(2)}`,
        );
        expect(melErr).toBeLessThan(TOLERANCE);
        expect(fbankErr).toBeLessThan(TOLERANCE);
      }
      expect(fetchSpy).not.toHaveBeenCalled();
    });

    it(`${name}: token time map equals the reference's time_map`, () => {
      const { windowFrames, strideFrames, tokensPerChunk } = manifest.architecture.connector;
      const map = tokenTimeMap(input.chunks, tokensPerChunk, windowFrames, strideFrames, manifest.audio.encoderFrameSeconds, manifest.audio.chunkSeconds);
      // make_goldens.py stores time_map rounded to 6 decimals; tokenTimeMap keeps the raw float64 values.
      expect(map.length).toBe(input.timeMap.length * 2);
      expect(Array.from(map, (v) => Math.round(v * 1e6) / 1e6)).toEqual(input.timeMap.flat());
    });
  }
});
