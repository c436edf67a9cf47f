#!/usr/bin/env node
/**
 * `npm test`: every test layer in one command.
 *   1. system packages (Chromium, Debian's Python with torch) — installed as root, else explained;
 *   2. Vitest unit and engine (onnxruntime-web wasm in Node);
 *   3. Vitest browser (Chromium + WebGPU), and meanwhile, in the background and one after another:
 *      pytest (the PyTorch reference, loaders, converter and ONNX graphs under models/), tsc --noEmit,
 *      and the check that the committed tiny bundle and goldens are byte-identical to a fresh rebuild;
 * then one plain summary line, `N passed, N failed`, over all runners.
 *
 * Why the overlap: parts of the browser phase leave CPU idle on a 2-core machine (seen: 12–27 % of
 * the CPU idle during engine.test.ts's int4 tests, its GPU process at ~0.6 cores, with other work
 * running besides); the Python and TypeScript checks (~3.5 min alone) run in that slack instead of
 * before it. Their output is kept and printed after Vitest's. Not yet measured end to end on a
 * quiet machine: see docs/ci-time.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
const scratch = mkdtempSync(join(tmpdir(), 'hark-test-'));

const deps = run(process.execPath, ['scripts/ensure-system-deps.mjs', 'chromium', 'python']);
if (deps.status !== 0) process.exit(deps.status ?? 1);

const totals = { passed: 0, failed: 0, skipped: 0 };
let exitCode = 0;

/** Runs a command with its stdout and stderr kept in files; resolves with both and the exit status. */
function runQuietly(name, cmd, args) {
  const outFile = join(scratch, `${name}.out`);
  const errFile = join(scratch, `${name}.err`);
  const out = openSync(outFile, 'w');
  const err = openSync(errFile, 'w');
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', out, err] });
    const finish = (status) => {
      closeSync(out);
      closeSync(err);
      resolve({ status, stdout: readFileSync(outFile, 'utf8'), stderr: readFileSync(errFile, 'utf8'), seconds: (Date.now() - started) / 1000 });
    };
    child.on('error', (error) => {
      console.error(`${name}: ${error.message}`);
      finish(1);
    });
    child.on('close', (status) => finish(status ?? 1));
  });
}

/** pytest, tsc and the byte-identity checks, one after another; each result printed after Vitest. */
async function backgroundChecks() {
  const results = [];
  results.push(['pytest', await runQuietly('pytest', '/usr/bin/python3', ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'models/tests'])]);
  results.push(['typecheck', await runQuietly('typecheck', process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--noEmit'])]);
  for (const script of ['models/build_tiny_bundle.py', 'models/make_reasoning_goldens.py']) {
    results.push([script, await runQuietly(script.replace(/\W/g, '_'), '/usr/bin/python3', [script, '--check'])]);
  }
  return results;
}

function vitest(name, projects) {
  const report = join(scratch, `vitest-${name}.json`);
  const args = ['node_modules/vitest/vitest.mjs', 'run', ...projects.flatMap((p) => ['--project', p]), '--reporter=default', '--reporter=json', `--outputFile.json=${report}`];
  return { report, args };
}

function countVitest(status, report) {
  if (status !== 0) exitCode = 1;
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
}

const started = Date.now();
// Unit and engine first, alone: they are CPU-bound (and a few print timings).
const fast = vitest('unit-engine', ['unit', 'engine']);
countVitest(run(process.execPath, fast.args).status, fast.report);

const checks = backgroundChecks();
const browser = vitest('browser', ['browser']);
const browserStatus = await new Promise((resolve) => {
  const child = spawn(process.execPath, browser.args, { cwd: root, stdio: 'inherit' });
  child.on('error', () => resolve(1));
  child.on('close', (status) => resolve(status ?? 1));
});
countVitest(browserStatus, browser.report);

console.log('');
for (const [name, result] of await checks) {
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  if (name === 'pytest') {
    // pytest prints its own summary ("158 passed in 17s"); add it to the totals.
    const summary = result.stdout.trim().split('\n').pop() ?? '';
    const count = (word) => Number(new RegExp(`(\\d+) ${word}`).exec(summary)?.[1] ?? 0);
    totals.passed += count('passed');
    totals.failed += count('failed') + count('error');
    totals.skipped += count('skipped');
    if (result.status !== 0) {
      exitCode = 1;
      if (count('failed') + count('error') === 0) totals.failed += 1;
    }
  } else if (result.status === 0) {
    totals.passed += 1;
    if (name === 'typecheck') console.log('typecheck: tsc --noEmit passed');
  } else {
    totals.failed += 1;
    exitCode = 1;
  }
  console.log(`(${name}: ${result.seconds.toFixed(0)} s, alongside the browser tests)`);
}

console.log(`all runners took ${((Date.now() - started) / 60000).toFixed(1)} min`);
console.log(`\n${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(exitCode || (totals.failed > 0 ? 1 : 0));
