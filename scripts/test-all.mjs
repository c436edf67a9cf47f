#!/usr/bin/env node
/**
 * `npm test`: every test layer in one command.
 *   1. system packages (Chromium, Debian's Python with torch) — installed as root, else explained;
 *   2. pytest (the PyTorch reference, loaders, converter and ONNX graphs under models/) and, beside
 *      it, the committed tiny bundles and goldens are byte-identical to a fresh rebuild;
 *   3. tsc --noEmit;
 *   4. Vitest: unit, engine (onnxruntime-web wasm in Node) and browser (Chromium + WebGPU);
 * then one plain summary line, `N passed, N failed`, over all runners.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });

const deps = run(process.execPath, ['scripts/ensure-system-deps.mjs', 'chromium', 'python']);
if (deps.status !== 0) process.exit(deps.status ?? 1);

const totals = { passed: 0, failed: 0, skipped: 0 };
let exitCode = 0;

/** A command with its output captured (printed whole once it ends, so that parallel ones do not interleave). */
function runCaptured(cmd, args) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (err += chunk));
    child.on('close', (status) => resolve({ status, out, err, seconds: (Date.now() - started) / 1000 }));
  });
}

// Python's layers run side by side: pytest in two processes (pytest-xdist) and two lanes of the
// rebuild checks, each check a process that keeps about one core busy. The lanes are balanced by
// the checks' own times (alone here: 40, 22, 20, 15, 13, 12, 3 and 2 s; BENCHMARKS.md, "CI time:
// one onnxruntime process per pytest worker"), longest first.
const CHECK_LANES = [
  ['models/make_alarm_ca_goldens.py', 'models/build_tiny_alarm_p_bundle.py', 'models/make_alarm_p_goldens.py'],
  ['models/build_tiny_bundle.py', 'models/make_alarm_goldens.py', 'models/build_tiny_alarm_ca_bundle.py', 'models/build_tiny_alarm_bundle.py', 'models/make_reasoning_goldens.py'],
];
const checkLane = async (scripts) => {
  const results = [];
  for (const script of scripts) results.push({ script, ...(await runCaptured('/usr/bin/python3', [script, '--check'])) });
  return results;
};
const [pytest, ...lanes] = await Promise.all([
  runCaptured('/usr/bin/python3', ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-n', '2', 'models/tests']),
  ...CHECK_LANES.map(checkLane),
]);

// pytest prints its own summary ("158 passed in 17s"); read it to add to the totals.
process.stderr.write(pytest.err);
process.stdout.write(pytest.out);
const pytestSummary = pytest.out.trim().split('\n').pop() ?? '';
const count = (word) => Number(new RegExp(`(\\d+) ${word}`).exec(pytestSummary)?.[1] ?? 0);
totals.passed += count('passed');
totals.failed += count('failed') + count('error');
totals.skipped += count('skipped');
if (pytest.status !== 0) {
  exitCode = 1;
  if (count('failed') + count('error') === 0) totals.failed += 1;
}

// Byte-identical rebuilds of the committed tiny bundles and goldens.
for (const { script, status, out, err, seconds } of lanes.flat()) {
  process.stdout.write(out);
  process.stderr.write(err);
  console.log(`${script} --check: ${status === 0 ? 'passed' : 'FAILED'} (${seconds.toFixed(0)} s)`);
  if (status === 0) totals.passed += 1;
  else {
    totals.failed += 1;
    exitCode = 1;
  }
}

// TypeScript strict over everything (app, engine, workers, tests, scripts) counts as a test too.
const typecheck = run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--noEmit']);
if (typecheck.status === 0) {
  totals.passed += 1;
  console.log('typecheck: tsc --noEmit passed');
} else {
  totals.failed += 1;
  exitCode = 1;
}

const report = join(mkdtempSync(join(tmpdir(), 'hark-test-')), 'vitest.json');
const vitest = run(process.execPath, [
  'node_modules/vitest/vitest.mjs',
  'run',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${report}`,
]);
if (vitest.status !== 0) exitCode = 1;
try {
  const json = JSON.parse(readFileSync(report, 'utf8'));
  totals.passed += json.numPassedTests;
  totals.failed += json.numFailedTests + (json.numFailedTestSuites > 0 && json.numFailedTests === 0 ? 1 : 0);
  totals.skipped += json.numPendingTests + json.numTodoTests;
} catch {
  console.error('vitest wrote no JSON report (it crashed before running tests)');
  totals.failed += 1;
  exitCode = 1;
}

console.log(`\n${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(exitCode || (totals.failed > 0 ? 1 : 0));
