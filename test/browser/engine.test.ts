/**
 * The engine in headless Chromium, through the real worker and comlink, on WebGPU (SwiftShader
 * here): golden inputs at three LoRA scales, fp32 and int4 (which ones: see `inputs` below; every
 * one with HARK_WEBGPU_ALL_INPUTS=1), plus streaming, cancel and bad input across the worker boundary.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadGoldenIndex } from '../helpers/golden';
import { loadReasoningGolden } from '../helpers/reasoningBundle';
import { collectConsoleErrors, launchChromium } from './chromium';

const golden = loadGoldenIndex();

async function openHarness(browser: Browser): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext();
  const errors = collectConsoleErrors(context);
  const page = await context.newPage();
  await page.goto(new URL('/test/browser/harness/engine.html', inject('devUrl')).href);
  await page.waitForFunction(() => window.harkEngineHarness?.ready === true);
  return { page, errors };
}

describe('engine in Chromium on WebGPU, through the worker', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  for (const precision of ['fp32', 'int4'] as const) {
    describe(`${precision} variant`, () => {
      let page: Page;
      let errors: string[];
      beforeAll(async () => {
        ({ page, errors } = await openHarness(browser));
        const info = await page.evaluate(
          (variant) => window.harkEngineHarness.client.loadModel('/models/salmonn-tiny/', { backend: 'webgpu', variant }),
          precision,
        );
        expect(info.backend).toBe('webgpu');
        expect(info.variant).toBe(precision);
        // The attention self-check at load: on SwiftShader, 40 new tokens at once are wrong, so the
        // decoder is fed chunks of 31 (a hardware GPU may be exact: no chunks).
        const device = await page.evaluate(() => window.harkEngineHarness.client.deviceReport());
        console.log(`attention self-check on WebGPU (${device.webgpu.available ? [device.webgpu.vendor, device.webgpu.architecture].join(' ') : '?'}): ${JSON.stringify(info.prefill)}`);
        expect(info.backendReason).toBe('WebGPU was chosen in Settings.');
        // Answer tokens' steps are graph-captured by default: every parity check below runs them.
        expect(info.decode).toMatchObject({ captured: true, embeddingInStep: true });
        expect(info.decode.summary).toMatch(/^Each answer token is one graph-captured GPU run, token id in and logits out: the weights \(\d+\.\d MiB\) were uploaded once in \d+ ms/);
        if (device.webgpu.available && device.webgpu.software) {
          expect(info.prefill).toMatchObject({ check: 'inexact', chunk: 31 });
          expect(info.prefill.maxError).toBeGreaterThan(1e-3);
          expect(info.prefill.summary).toMatch(/^Prompts are fed in chunks of 31 tokens, which is exact but starts answers a little later: in the attention self-check, WebGPU attention over 40 new tokens at once was off by \d\.\de-\d+ on this device\.$/);
          expect(info.backendAdvice).toMatch(/WebAssembly \(CPU\) is likely much faster on this device/);
        } else {
          expect(['exact', 'inexact']).toContain(info.prefill.check);
          expect(info.prefill.chunk).toBe(info.prefill.check === 'exact' ? null : 31);
        }
      });
      afterAll(async () => {
        const counters = await page.evaluate(() => window.harkEngineHarness.client.counters());
        console.log(`captured decode steps: ${counters.capturedSteps} of ${counters.decoderSteps} decoder steps; capture failure: ${counters.captureFailure ?? 'none'}`);
        expect(counters.captureFailure).toBeNull();
        expect(counters.capturedSteps).toBeGreaterThan(0);
        expect(errors).toEqual([]);
        await page?.context().close();
      });

      // Decode steps dominate this file's time on the software adapter (~0.8 s per fp32 step, ~4 s
      // per int4 step, most of it lm_head's int4 kernel), and the decode kernels are the same for
      // every input: what differs per input is the audio, its chunks and the prompt length, which
      // the stages, the prefill and the first-step logits at all three LoRA scales check. So every
      // input gets those plus 4 greedy tokens at the default scale and 1 at the other two, and one
      // input per precision runs more tokens at the default scale (fp32: 32 on the two-chunk clip;
      // int4: 8 on speech, since the 4-beam int4 run below makes 15 more batched steps). The wasm
      // engine tests in Node check 32 tokens at every scale for every input and both precisions,
      // and kvCache.test.ts runs 40 WebGPU steps across growths.
      const localized = Object.keys(golden.inputs).filter((name) => golden.inputs[name]!.precisions[precision].localization && (precision === 'fp32' || name === 'speech'));
      const longRun = precision === 'fp32' ? { input: 'long_35s', atDefault: golden.greedyTokens, atOthers: 4 } : { input: 'speech', atDefault: 8, atOthers: 1 };
      // int4 on WebGPU: the speech clip only (stages, three LoRA scales, 8 tokens, localization,
      // beams). What int4 changes is the kernels (MatMulNBits in every graph), the same for every
      // input; what differs per input (audio length, chunks, prompt length) is precision-blind and
      // checked here in fp32 for every input, and Node's wasm tests check every input in int4 too.
      // The other four inputs cost ~5 minutes of CI here at int4 on the software adapter.
      // fp32 on WebGPU: the speech clip and the two-chunk clip (the long run, localization); the
      // other three (tone_noise, one_second, thirty_seconds) differ in length and padding, which is
      // the same TypeScript on every backend and checked for every input in Node in both
      // precisions: ~90 s of CI here. HARK_WEBGPU_ALL_INPUTS=1 (npm run test:webgpu-all) runs every
      // input in both precisions.
      const all = process.env.HARK_WEBGPU_ALL_INPUTS === '1';
      const inputs = Object.keys(golden.inputs).filter((name) => all || name === 'speech' || (precision === 'fp32' && name === 'long_35s'));
      for (const name of inputs) {
        const { atDefault, atOthers } = name === longRun.input ? longRun : { atDefault: 4, atOthers: 1 };
        it(`${name}: stages within 1e-4, first-step logits within 1e-3 at 3 LoRA scales, greedy tokens identical (${atDefault} at the default scale, ${atOthers} at 0 and half)`, { timeout: 600_000 }, async () => {
          const report = await page.evaluate(
            ([n, p, k, other]) => window.harkEngineHarness.parity(n, p, k, other, true),
            [name, precision, atDefault, atOthers] as const,
          );
          expect(Object.keys(report.stageErrors).length).toBe(5 * golden.inputs[name]!.chunks);
          for (const [stage, error] of Object.entries(report.stageErrors)) expect(error, `${name} ${stage}`).toBeLessThan(1e-4);
          expect(report.runs.length).toBe(3);
          for (const run of report.runs) {
            expect(run.logitError, `${name} logits at ${run.loraScale}`).toBeLessThan(1e-3);
            expect(run.tokens, `${name} tokens at ${run.loraScale}`).toEqual(run.expected);
          }
        });
        // Localization right after the parity check of the same recording, whose encoding it reuses
        // (encoding is the costliest stage on a software adapter: one chunk takes ~15–25 s here).
        // speech is the first input, so the probe, read from OPFS on first use, is opened within the
        // file's first minutes: in an off-the-record context (as Playwright's are) Chromium was seen to
        // drop the origin's whole OPFS after ~10 minutes of parity runs (a persistent profile keeps it).
        // int4 prompt runs on the software adapter cost ~10 s per 31-token chunk (lm_head's int4 kernel
        // runs for each chunk's last row): there the one-chunk recording only; Node checks both.
        if (localized.includes(name)) {
          it(`${name}: localizes the golden event like the reference: steering vector, Δ curve and interval within 1e-4`, { timeout: 600_000 }, async () => {
            const report = await page.evaluate(([n, p]) => window.harkEngineHarness.localizeParity(n, p), [name, precision] as const);
            console.log(`localize ${precision} ${name} on WebGPU: ${report.ms.toFixed(0)} ms (recording ${report.encoded ? 'encoded again' : 'reused'}), vector error ${report.vectorError.toExponential(1)}, Δ error ${report.deltaError.toExponential(1)}`);
            expect(report.vectorError, `${name} vector`).toBeLessThan(1e-4);
            expect(report.deltaError, `${name} Δ`).toBeLessThan(1e-4);
            expect(report.points).toBe(report.expectedPoints);
            expect(report.timeError).toBeLessThan(1e-5);
            expect(report.found.layers).toEqual(report.expected.layers);
            expect(report.found.start).toBeCloseTo(report.expected.start, 4);
            expect(report.found.end).toBeCloseTo(report.expected.end, 4);
            expect(report.found.confidence).toBeCloseTo(report.expected.confidence, 4);
            expect(report.stages.at(-1)).toBe('5/5 read-out');
          });
        }
        // One input, fp32 only, right after its parity check (whose recording it reuses): the label
        // runs add a few decoder steps (~1–2 s each on a software adapter).
        if (precision === 'fp32' && name === 'speech') {
          it('answers from a label set like the reference (speech): every probability within 1e-4, and the follow-up continues after the label', { timeout: 300_000 }, async () => {
            const report = await page.evaluate(() => window.harkEngineHarness.classifyParity('speech', 'fp32'));
            console.log(`classify fp32 speech on WebGPU: probability error ${report.probabilityError.toExponential(1)}, log-prob error ${report.logProbError.toExponential(1)}, ` +
              `prefill ${report.stats.prefillMs.toFixed(0)} ms, ${report.stats.scoringRuns} scoring runs ${report.stats.scoringMs.toFixed(0)} ms; ${JSON.stringify(report.ms)}`);
            expect(report.labels).toEqual(report.expectedLabels);
            expect(report.probabilityError).toBeLessThan(1e-4);
            expect(report.logProbError).toBeLessThan(1e-3);
            expect(report.label).toBe(report.expectedLabel);
            expect(report.stats.scoringRuns).toBe(report.labels.length - 1);
            // The scoring runs wrote past the prompt in the in-place KV cache; the follow-up must not see them.
            expect(report.turn).toBe(1);
            expect(report.followUp.turn).toBe(2);
            expect(report.followUp.tokens).toEqual(report.followUp.expected);
            expect(report.followUp.logitErrorVsResumed).toBeLessThan(1e-4);
          });
        }
        // Beam search with the KV cache's rows reordered on the GPU: fp32, 2 beams at LoRA scale 0 and
        // the 4-beam runs at the default scale (one with a follow-up from a winner cut at the token
        // limit, one whose winner ended with a stop id, one ended early by the done rule); int4 one
        // 4-beam run. (1 beam is the greedy parity above; Node checks every golden run.)
        if (name === 'speech') {
          const runIndices = precision === 'fp32' ? [1, 2, 4, 5] : [1];
          it(`beam search like the reference (speech, runs ${runIndices.join(', ')}): token-identical, follow-ups from the chosen beam's cache`, { timeout: 600_000 }, async () => {
            const reports = await page.evaluate(([p, r]) => window.harkEngineHarness.beamParity('speech', p, r), [precision, runIndices] as const);
            for (const report of reports) {
              console.log(`beam search ${precision} run ${report.run} (${report.numBeams} beams) on WebGPU: ${report.steps} steps in ${report.ms.toFixed(0)} ms, ${report.revisions} revisions`);
              expect(report.tokens, `run ${report.run}`).toEqual(report.expected);
              expect(report.steps, `run ${report.run}`).toBe(report.expectedSteps);
              expect(report.streamConsistent).toBe(true);
              expect(report.lastText).toBe(report.text);
              if (report.followUp) {
                expect(report.followUp.turn).toBe(2);
                expect(report.followUp.tokens, `follow-up of run ${report.run}`).toEqual(report.followUp.expected);
              }
            }
          });
        }
      }

      // The tests below need a loaded model but no particular history: they run on this page's
      // engine (its sessions and compiled WebGPU shaders) instead of a new page and a new load each.
      // (The reasoning bundle keeps its own page: a second model loaded in the same worker finds
      // the WebGPU device destroyed with the first model's sessions.)
      if (precision === 'fp32') {
        it('streams tokens one by one before the answer resolves, cancels within one step, and keeps working', { timeout: 300_000 }, async () => {
          // The engine's counters run since the load: this recording's encodings are the difference.
          const before = await page.evaluate(() => window.harkEngineHarness.client.counters());
          await page.evaluate(() => window.harkEngineHarness.setGoldenAudio('speech'));

          const stream = await page.evaluate(() => window.harkEngineHarness.streamTimeline('Describe the audio.', 24));
          expect(stream.arrivals.map((a) => a.index)).toEqual(stream.ids.map((_, i) => i));
          expect(stream.arrivals.length).toBeGreaterThan(4);
          // tokens arrive spread over the generation, well before it ends
          expect(stream.arrivals[0]!.at).toBeLessThan(stream.resolvedAt);
          expect(stream.arrivals[1]!.at).toBeLessThan(stream.arrivals.at(-1)!.at);

          const cancelled = await page.evaluate(() => window.harkEngineHarness.streamTimeline('Tell a long story.', 60, 3));
          expect(cancelled.stopReason).toBe('cancelled');
          // the cancel message crosses the worker boundary while at most one more step runs
          expect(cancelled.ids.length).toBeLessThanOrEqual(4);
          const after = await page.evaluate(() => window.harkEngineHarness.streamTimeline('And what else?', 5));
          expect(after.ids.length).toBeGreaterThan(0);

          const counters = await page.evaluate(() => window.harkEngineHarness.client.counters());
          expect(counters.speechEncoder - before.speechEncoder).toBe(1);
        });
      } else {
        it('reports bad input as typed errors across the worker boundary', { timeout: 300_000 }, async () => {
          const codes = await page.evaluate(() => window.harkEngineHarness.badInputCodes());
          expect(codes).toEqual({ empty: 'audio/empty', notAudio: 'audio/unsupported-format', nan: 'audio/invalid-samples' });
          const info = await page.evaluate(() => window.harkEngineHarness.setGoldenAudio('one_second'));
          expect(info.chunks).toBe(1);
        });
      }
    });
  }

  it('reasoning bundle: thinking budget forced after exactly N thought tokens, or ended by the model, token-identical to the reference; channels split', { timeout: 300_000 }, async () => {
    const { page, errors } = await openHarness(browser);
    const golden = loadReasoningGolden();
    // Budget 3 (forced) and 1024 (thinking ends by itself after 8 tokens), 2 answer tokens each.
    const runIndices = [golden.runs.findIndex((r) => r.thinkingBudget === 3), golden.runs.findIndex((r) => !r.forcedClose)];
    const answerTokens = 2;
    const started = Date.now();
    const result = await page.evaluate(([r, n]) => window.harkEngineHarness.reasoningParity(r, n), [runIndices, answerTokens] as const);
    expect(result.backend).toBe('webgpu');
    expect(result.reasoning).toEqual(golden.reasoning);
    for (const report of result.reports) {
      const run = report.expected;
      const expectedIds = run.tokens.slice(0, run.answerStart! + answerTokens);
      expect(report.ids, `budget ${run.thinkingBudget}`).toEqual(expectedIds);
      expect(report.thinkingTokens).toBe(run.thinkingTokens);
      expect(report.forcedClose).toBe(run.forcedClose);
      expect(report.thoughts).toBe(run.thoughts);
      expect(run.answer.startsWith(report.answer)).toBe(true);
      expect(report.forcedIndices).toEqual(run.forcedClose ? result.forcedCloseIds.map((_, i) => run.thinkingBudget + i) : []);
      expect(report.channels).toEqual(expectedIds.map((_, i) => (i < run.answerStart! ? 'thought' : 'answer')));
      expect(report.streamedThoughts).toBe(report.thoughts);
      expect(report.streamedAnswer).toBe(report.answer);
    }
    console.log(`reasoning on WebGPU: budgets ${result.reports.map((r) => `${r.budget} (${r.ids.length} tokens)`).join(', ')} in ${Date.now() - started} ms incl. load`);
    expect(errors).toEqual([]);
    await page.context().close();
  });

  it('without a GPU: the wasm backend loads the variant picked for it and answers like the reference', { timeout: 300_000 }, async () => {
    const { page, errors } = await openHarness(browser);
    const info = await page.evaluate(() => window.harkEngineHarness.client.loadModel('/models/salmonn-tiny/', { backend: 'wasm' }));
    expect(info.backend).toBe('wasm');
    expect(info.variant).toBe('int4');
    const speech = golden.inputs.speech!;
    await page.evaluate(() => window.harkEngineHarness.setGoldenAudio('speech'));
    const run = speech.precisions.int4.runs.default;
    const answer = await page.evaluate(
      ([prompt, scale, n]) => window.harkEngineHarness.client.ask(prompt, { loraScale: scale, maxNewTokens: n }),
      [speech.prompt, run.loraScale, golden.greedyTokens] as const,
    );
    expect(answer.ids).toEqual(run.tokens);
    expect(errors).toEqual([]);
    await page.context().close();
  });
});
