#!/usr/bin/env node
// SeamlessM4T fbank features of @huggingface/transformers (the feature extractor the engine uses
// for w2v-BERT 2.0), run on .npy waveforms in Node; pytest compares them to models/alarm/w2vbert.py.
//
//   node models/tools/seamless_features.mjs IN_DIR OUT_DIR
//
// For every IN_DIR/<name>.npy (float32 1-D waveform, 16 kHz) writes OUT_DIR/<name>.features.npy
// (float32 [T, 160]) and OUT_DIR/<name>.mask.npy (int64 [T]). The config is facebook/w2v-bert-2.0's
// preprocessor_config.json, written out here so that nothing is downloaded.
import { SeamlessM4TFeatureExtractor } from '@huggingface/transformers';
import fs from 'node:fs';
import path from 'node:path';
import { readNpy, writeNpy } from './ort_run.mjs';

const W2V_BERT_PREPROCESSOR = {
  feature_extractor_type: 'SeamlessM4TFeatureExtractor',
  feature_size: 80,
  num_mel_bins: 80,
  padding_side: 'right',
  padding_value: 1,
  return_attention_mask: true,
  sampling_rate: 16000,
  stride: 2,
};

async function main([inDir, outDir]) {
  if (!inDir || !outDir) {
    console.error('usage: node seamless_features.mjs IN_DIR OUT_DIR');
    process.exit(2);
  }
  const extractor = new SeamlessM4TFeatureExtractor(W2V_BERT_PREPROCESSOR);
  fs.mkdirSync(outDir, { recursive: true });
  for (const file of fs.readdirSync(inDir).filter((f) => f.endsWith('.npy')).sort()) {
    const wave = readNpy(path.join(inDir, file));
    const { input_features, attention_mask } = await extractor(wave.data);
    const name = file.replace(/\.npy$/, '');
    // drop the batch axis: [1, T, 160] -> [T, 160], [1, T] -> [T]
    writeNpy(path.join(outDir, `${name}.features.npy`), input_features.squeeze(0));
    writeNpy(path.join(outDir, `${name}.mask.npy`), attention_mask.squeeze(0));
  }
}

main(process.argv.slice(2)).catch((e) => {
  console.error(e?.stack ?? String(e));
  process.exit(1);
});
