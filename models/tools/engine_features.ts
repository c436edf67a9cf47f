#!/usr/bin/env -S npx tsx
// The engine's recording-scoped encoder features (src/engine/features/, through encoderFeatures
// like the engine) on WAV files, written as .npy for pytest to compare with models/alarm/*.py.
//
//   npx tsx models/tools/engine_features.ts SPECS.json OUT_DIR FILE.wav...
//
// SPECS.json: { "<kind>": <manifest feature spec>, ... }. For every WAV (read by the engine's
// decodeWav, first channel) and kind writes OUT_DIR/<wav stem>.<kind>.npy (float32, the
// features' dims) and OUT_DIR/lengths.json { "<wav stem>.<kind>": real length }; also
// OUT_DIR/engine_specs.json: the engine's own ALARM-CA constants, for pytest to compare with
// models/alarm/feature_specs.py.
import fs from 'node:fs';
import path from 'node:path';
import type { FeatureSpecV2 } from '../../src/engine/bundle/manifest';
import { decodeWav } from '../../src/engine/audio/wav';
import { encoderFeatures } from '../../src/engine/features/encoderFeatures';
import { SSLAM_FBANK } from '../../src/engine/features/recordingFbank';
import { W2VBERT_SEAMLESS_FBANK } from '../../src/engine/features/seamlessFbank';
import { MUQ_RESAMPLE } from '../../src/engine/features/sincResample';
// @ts-expect-error: a plain .mjs without types (writeNpy(file, { type, dims, data }))
import { writeNpy } from './ort_run.mjs';

async function main([specsFile, outDir, ...wavs]: string[]): Promise<void> {
  if (!specsFile || !outDir || wavs.length === 0) {
    console.error('usage: npx tsx models/tools/engine_features.ts SPECS.json OUT_DIR FILE.wav...');
    process.exit(2);
  }
  const specs = JSON.parse(fs.readFileSync(specsFile, 'utf8')) as Record<string, FeatureSpecV2>;
  fs.mkdirSync(outDir, { recursive: true });
  const lengths: Record<string, number> = {};
  const noConfig = async (): Promise<Record<string, unknown>> => {
    throw new Error('recording-scoped features read no preprocessor config');
  };
  for (const wav of wavs) {
    const recording = decodeWav(new Uint8Array(fs.readFileSync(wav))).channels[0]!;
    const stem = path.basename(wav).replace(/\.wav$/, '');
    for (const [kind, spec] of Object.entries(specs)) {
      const extractor = await encoderFeatures(spec, noConfig);
      if (extractor.scope !== 'recording') throw new Error(`${kind}: not a recording-scoped spec`);
      const t = performance.now();
      const result = await extractor.compute(recording);
      console.log(`${stem}.${kind}: [${result.dims.join(', ')}] real ${result.realLength} in ${(performance.now() - t).toFixed(0)} ms`);
      writeNpy(path.join(outDir, `${stem}.${kind}.npy`), { type: 'float32', dims: result.dims, data: result.data });
      lengths[`${stem}.${kind}`] = result.realLength;
    }
  }
  fs.writeFileSync(path.join(outDir, 'lengths.json'), JSON.stringify(lengths, null, 1));
  const engineSpecs: Record<string, FeatureSpecV2> = {
    w2vbert: { type: 'seamless-fbank', ...W2VBERT_SEAMLESS_FBANK },
    sslam: { type: 'kaldi-fbank-recording', ...SSLAM_FBANK },
    muq: { type: 'resampled-waveform', ...MUQ_RESAMPLE },
  };
  fs.writeFileSync(path.join(outDir, 'engine_specs.json'), JSON.stringify(engineSpecs, null, 1));
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
