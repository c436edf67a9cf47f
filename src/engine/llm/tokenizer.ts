/**
 * The bundle's LLaMA tokenizer through @huggingface/transformers, built straight from the
 * bundle's tokenizer.json + tokenizer_config.json (no hub lookup, works offline).
 */
import { PreTrainedTokenizer } from '@huggingface/transformers';

export interface TextTokenizer {
  /** Token ids of `text` without BOS/EOS (SentencePiece adds its own leading "▁"). */
  encode(text: string): number[];
  /** Text of `ids`, special tokens dropped. */
  decode(ids: readonly number[]): string;
}

export function createTokenizer(tokenizerJson: object, tokenizerConfig: object): TextTokenizer {
  const tokenizer = new PreTrainedTokenizer(tokenizerJson, tokenizerConfig);
  return {
    encode: (text) => (text.length === 0 ? [] : tokenizer.encode(text, { add_special_tokens: false })),
    decode: (ids) => (ids.length === 0 ? '' : tokenizer.decode([...ids], { skip_special_tokens: true })),
  };
}
