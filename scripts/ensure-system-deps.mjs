#!/usr/bin/env node
/**
 * Makes sure the system packages the tests need are present: installs them with apt-get when
 * running as root on Debian/Ubuntu, otherwise says exactly what is missing and how to get it.
 *
 *   node scripts/ensure-system-deps.mjs chromium python audio
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const GROUPS = {
  chromium: {
    why: 'browser tests (headless Chromium with WebGPU)',
    packages: ['chromium'],
    present: () => existsSync(process.env.HARK_CHROMIUM ?? '/usr/bin/chromium'),
  },
  python: {
    why: 'the PyTorch reference and converter under models/',
    packages: ['python3-torch', 'python3-torchaudio', 'python3-onnx', 'python3-numpy', 'python3-pytest', 'python3-pytest-xdist', 'python3-jsonschema'],
    present: () =>
      spawnSync('/usr/bin/python3', ['-c', 'import torch, torchaudio, onnx, numpy, pytest, xdist, jsonschema'], { stdio: 'ignore' }).status === 0,
  },
  audio: {
    why: 'generating test recordings (speech and tones)',
    packages: ['espeak-ng', 'sox'],
    present: () => ['espeak-ng', 'sox'].every((tool) => spawnSync('which', [tool], { stdio: 'ignore' }).status === 0),
  },
};

const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !(name in GROUPS));
if (unknown.length > 0) {
  console.error(`ensure-system-deps: unknown group(s) ${unknown.join(', ')}; known: ${Object.keys(GROUPS).join(', ')}`);
  process.exit(2);
}

const missing = wanted.filter((name) => !GROUPS[name].present());
if (missing.length === 0) process.exit(0);

const packages = missing.flatMap((name) => GROUPS[name].packages);
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const hasApt = spawnSync('which', ['apt-get'], { stdio: 'ignore' }).status === 0;

if (!isRoot || !hasApt) {
  console.error('Missing system packages for the tests:');
  for (const name of missing) console.error(`  - ${GROUPS[name].packages.join(' ')}  (for ${GROUPS[name].why})`);
  console.error(`Install them with:  sudo apt-get install -y ${packages.join(' ')}`);
  process.exit(1);
}

console.log(`Installing ${packages.join(' ')} with apt-get (needed for ${missing.map((n) => GROUPS[n].why).join('; ')})…`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update', '-q'], { stdio: 'inherit', env });
execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], { stdio: 'inherit', env });
const stillMissing = missing.filter((name) => !GROUPS[name].present());
if (stillMissing.length > 0) {
  console.error(`apt-get finished but these are still unusable: ${stillMissing.join(', ')}`);
  process.exit(1);
}
