/**
 * Beam search in Node (onnxruntime-web wasm) against the PyTorch reference's beam search
 * (models/salmonn/beam_search.py, HF 4.28 semantics): token-identical for 2 and 4 beams at two LoRA
 * scales, with extra stop ids (a winner that ended with a stop id; a search ended early by the
 * "done" rule), follow-ups that continue from the chosen beam's cache, fp32 and int4; and 1 beam
 * is greedy. Streaming reports the current best hypothesis and says when it was revised.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBundleStore } from '../../src/engine/bundle/store';
import { HarkEngine } from '../../src/engine/engine';
import type { TokenEvent } from '../../src/engine/llm/generate';
import { GOLDEN_DIR, loadGoldenIndex, type GoldenBeamRun } from '../helpers/golden';
import { tinyBundleFiles } from '../helpers/tinyBundle';

const golden = loadGoldenIndex();
const speech = golden.inputs.speech!;
const wav = new Uint8Array(readFileSync(join(GOLDEN_DIR, speech.audio)));
const label = (run: GoldenBeamRun) =>
  `${run.numBeams} beams, LoRA ${run.loraScale}, length penalty ${run.lengthPenalty}, stop ids [${run.stopTokenIds}]` +
  (run.finishedByStop ? `, ended by a stop id after ${run.steps} steps` : '');

for (const precision of ['fp32', 'int4'] as const) {
  describe(`beam search (wasm, ${precision}) vs the reference`, () => {
    const engine = new HarkEngine({ store: new MemoryBundleStore() });
    const beams = speech.precisions[precision].beamSearch!;
    beforeAll(async () => {
      await engine.loadModel(tinyBundleFiles(), { backend: 'wasm', variant: precision });
      await engine.setAudio(wav);
    }, 120_000);
    afterAll(() => engine.unload());

    for (const run of beams.runs) {
      it(`${label(run)}: token-identical${run.followUp ? ', and so is the follow-up from the chosen beam' : ''}`, async () => {
        engine.newConversation();
        const events: TokenEvent[] = [];
        const answer = await engine.ask(beams.prompt, {
          numBeams: run.numBeams, loraScale: run.loraScale, lengthPenalty: run.lengthPenalty, stopTokenIds: run.stopTokenIds,
          maxNewTokens: beams.maxNewTokens, doSample: false, onToken: (e) => events.push(e),
        });
        expect(answer.ids).toEqual(run.tokens);
        expect(answer.stats.beams).toBe(run.numBeams);
        expect(answer.stats.beamSteps).toBe(run.steps);
        expect(answer.stats.stopReason).toBe(run.finishedByStop ? 'stop-token' : 'max-tokens');
        // The stream ends on the answer; a revision replaces the text, others extend it.
        expect(events.at(-1)!.text).toBe(answer.text);
        for (let i = 1; i < events.length; i++) {
          const [before, after] = [events[i - 1]!.text, events[i]!.text];
          expect(after.startsWith(before)).toBe(!events[i]!.revised);
          if (!events[i]!.revised) expect(before + events[i]!.delta).toBe(after);
        }
        expect(answer.stats.revisions).toBe(events.filter((e) => e.revised).length);
        if (run.followUp) {
          const next = await engine.ask(run.followUp.question, {
            numBeams: run.followUp.numBeams, loraScale: run.loraScale, maxNewTokens: beams.followUpTokens, doSample: false,
          });
          expect(next.turn).toBe(2);
          expect(next.ids).toEqual(run.followUp.tokens);
        }
      });
    }

    it('one beam is greedy decoding (the reference greedy tokens)', async () => {
      engine.newConversation();
      const run = speech.precisions[precision].runs.default;
      const answer = await engine.ask(speech.prompt, { numBeams: 1, loraScale: run.loraScale, maxNewTokens: 16, doSample: false });
      expect(answer.ids).toEqual(run.tokens.slice(0, 16));
      expect(answer.stats.beams).toBeUndefined();
    });
  });
}
