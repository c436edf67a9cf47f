/** The bench's prompts: token ids with no meaning, the same on every run (no transformers.js import). */
import { createRng } from '../../src/engine/llm/sampling';

/** Fixed pseudo-random token ids (mulberry32, seed 1234), avoiding the special ids 0-2. */
export function randomPrompt(length: number, vocab: number, seed = 1234): number[] {
  const next = createRng(seed);
  return Array.from({ length }, () => 3 + Math.floor(next() * (vocab - 3)));
}
