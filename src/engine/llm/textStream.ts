/**
 * Incremental detokenization for streaming. Each step decodes the whole answer so far and emits
 * only the new suffix; text that ends in U+FFFD (a multi-byte character whose byte-fallback
 * tokens have not all arrived) is held back until it completes. Written by hand because
 * transformers.js' TextStreamer buffers to word boundaries, and we want every token's text as
 * soon as it is printable.
 */
import type { TextTokenizer } from './tokenizer';

const REPLACEMENT = '\uFFFD';

export class IncrementalText {
  private ids: number[] = [];
  private emitted = '';

  constructor(private readonly tokenizer: TextTokenizer) {}

  /** Adds a token; returns the text that became printable (possibly ''). */
  push(id: number): string {
    this.ids.push(id);
    const text = this.tokenizer.decode(this.ids);
    if (text.endsWith(REPLACEMENT)) return '';
    return this.take(text);
  }

  /** Everything not yet emitted, including a trailing incomplete character. */
  flush(): string {
    return this.take(this.tokenizer.decode(this.ids));
  }

  get text(): string {
    return this.emitted;
  }

  private take(text: string): string {
    // Decoding more tokens can in principle rewrite the tail (e.g. a stripped leading space);
    // emit from the first difference so the streamed text always equals the final decode.
    if (!text.startsWith(this.emitted)) {
      let common = 0;
      while (common < text.length && text[common] === this.emitted[common]) common++;
      const delta = text.slice(common);
      this.emitted = text;
      return delta;
    }
    const delta = text.slice(this.emitted.length);
    this.emitted = text;
    return delta;
  }
}
