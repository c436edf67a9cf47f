/**
 * Random-weight decoder graphs for benchmarks that run the engine's DecoderRunner directly
 * (bench:hooks, bench:beams): models/build_bench_models.py --hooks-pair writes one model's
 * `embed_tokens` and its decoder without (`decoder_plain`) and with (`decoder_hooks`)
 * localization's probe output into .bench-cache/hooks/<model>-<precision>/, rebuilt when the
 * builders change.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;

export interface PairGeometry {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  hiddenSize: number;
  vocabSize: number;
  maxPositions: number;
  probeLayer: number;
}

/** The folder holding `model`'s pair at `precision` (built first if missing or stale). */
export function ensureHooksPair(model: string, precision: string): string {
  const folder = join(root, '.bench-cache/hooks', `${model}-${precision}`);
  // Rebuilt when the builder changed since (a stamp of the two builder files).
  const stamp = join(folder, 'geometry.json');
  const hash = createHash('sha256');
  for (const file of ['models/build_bench_models.py', 'models/salmonn/onnx_decoder.py']) hash.update(readFileSync(join(root, file)));
  const key = hash.digest('hex').slice(0, 16);
  const keyFile = join(folder, 'key');
  if (!existsSync(stamp) || !existsSync(keyFile) || readFileSync(keyFile, 'utf8') !== key) {
    process.stderr.write(`building the ${model} ${precision} decoders with and without the hook into ${folder} ...\n`);
    execFileSync('/usr/bin/python3', ['models/build_bench_models.py', '--hooks-pair', folder, '--model', model, '--precision', precision], { cwd: root, stdio: 'inherit' });
    writeFileSync(keyFile, key);
  }
  return folder;
}
