// Checks that the generated tokenizer.json / tokenizer_config.json, loaded by
// @huggingface/transformers, tokenizes exactly like llama-tokenizer-js (the package the
// vocabulary came from) and like the known LLaMA ids.
//
// Usage:  node models/tokenizer/check_tokenizer.mjs [tokenizerDir]
// Needs @huggingface/transformers and llama-tokenizer-js resolvable from this file's location.
// Exits non-zero on any mismatch. Meant to be turned into a unit test later.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoTokenizer, PreTrainedTokenizer, env } from '@huggingface/transformers';
import llamaTokenizerJs from 'llama-tokenizer-js';

const tokenizerDir = process.argv[2] ?? dirname(fileURLToPath(import.meta.url));

// Known ids from the original LLaMA SentencePiece model.
const KNOWN = [
  ['USER:', [3148, 1001, 29901]],
  ['the', [278]],
  [' the', [29871, 278]], // leading space: "▁▁the" = "▁" + "▁the"
  ['Hello world', [15043, 3186]],
  ['\n', [29871, 13]],
  ['ASSISTANT:', [319, 1799, 9047, 13566, 29901]],
];

// Small deterministic PRNG (mulberry32) so the random strings are the same on every run.
function makeRandom(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HAND_WRITTEN = [
  '',
  ' ',
  '  ',
  '   leading spaces',
  'trailing spaces   ',
  'USER: <Speech>',
  '</Speech> Please describe the audio.\nASSISTANT:',
  'Recognize the speech and give me the transcription.',
  'Listen to the speech and translate it into German.',
  'The year 2023 had 365 days; 3.14159 is π.',
  '1234567890 0000 12 34',
  'tabs\tand\nnewlines\r\n',
  '\n\n\n',
  'Ünïcödé çàfé naïve résumé',
  '日本語のテキストです。中文文本。한국어 텍스트',
  'Привет, мир! Ελληνικά',
  'emoji 😀 🎵🎶 👩‍👩‍👧‍👦 🇩🇪 ❤️',
  '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝑥² + 𝑦² = 𝑧²',
  'combining: e\u0301 a\u0308 n\u0303',
  'zero\u200bwidth\u00a0nbsp',
  'ﷺ ༀ ꙮ 𓀀',
  "It's a dog's life, isn't it?",
  'snake_case CamelCase kebab-case SCREAMING',
  'https://example.com/path?query=1&x=y#frag',
  'a'.repeat(50),
  '!!!???...,,,;;;:::',
];

const CHAR_POOL = [
  ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ',
  ...'0123456789',
  ...' ', ' ', ' ', ' ', '  ', '\n', '\t',
  ...'.,;:!?\'"()[]{}-_/\\@#$%^&*+=~`|',
  ...'éèêëàâäôöûüçñßøå',
  ...'αβγδπΩжщЯ',
  ...'日本語中文字한국',
  '😀', '🎵', '👍🏽', '🇫🇷', '👩‍💻', '\u0301', '\u200b', '€', '£', '¥', '№', '∑', '√',
];
const WORDS = ['the', ' the', 'audio', ' speech', 'music', ' ASSISTANT:', 'USER:', ' describe', 'ing', 'tion'];

function randomStrings(count) {
  const random = makeRandom(20240601);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const strings = [];
  for (let i = 0; i < count; i++) {
    const length = 1 + Math.floor(random() * 40);
    let s = '';
    for (let j = 0; j < length; j++) s += random() < 0.3 ? pick(WORDS) : pick(CHAR_POOL);
    strings.push(s);
  }
  return strings;
}

function sameIds(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function loadTokenizers() {
  const tokenizerJson = JSON.parse(readFileSync(join(tokenizerDir, 'tokenizer.json'), 'utf8'));
  const tokenizerConfig = JSON.parse(readFileSync(join(tokenizerDir, 'tokenizer_config.json'), 'utf8'));
  const direct = new PreTrainedTokenizer(tokenizerJson, tokenizerConfig);
  // Also go through AutoTokenizer so tokenizer_class in the config is exercised.
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = dirname(tokenizerDir) + '/';
  const auto = await AutoTokenizer.from_pretrained(tokenizerDir.split('/').pop(), { local_files_only: true });
  return { direct, auto };
}

async function main() {
  const { direct, auto } = await loadTokenizers();
  let failures = 0;
  const fail = (message) => {
    failures++;
    if (failures <= 20) console.log('FAIL', message);
  };
  const hfEncode = (tok, s) => tok.encode(s, { add_special_tokens: false });

  console.log('AutoTokenizer class:', auto.constructor.name);
  for (const [text, expected] of KNOWN) {
    for (const [name, tok] of [['direct', direct], ['auto', auto]]) {
      const ids = hfEncode(tok, text);
      if (!sameIds(ids, expected)) fail(`${name} ${JSON.stringify(text)} -> ${ids}, expected ${expected}`);
    }
  }
  const withBos = auto.encode('USER:');
  if (!sameIds(withBos, [1, 3148, 1001, 29901])) fail(`add_special_tokens default gave ${withBos}`);

  const strings = [...HAND_WRITTEN, ...randomStrings(400)];
  let tokens = 0;
  let byteFallbackStrings = 0;
  for (const s of strings) {
    const expected = llamaTokenizerJs.encode(s, false, true);
    const ids = hfEncode(auto, s);
    tokens += ids.length;
    if (ids.some((id) => id >= 3 && id < 259)) byteFallbackStrings++;
    if (!sameIds(ids, expected)) fail(`encode ${JSON.stringify(s)}: hf ${ids} vs llama-tokenizer-js ${expected}`);
    const decoded = ids.length === 0 ? '' : auto.decode(ids); // decode([]) throws
    if (decoded !== s) fail(`decode ${JSON.stringify(s)} -> ${JSON.stringify(decoded)}`);
  }
  console.log(
    `${strings.length} strings, ${tokens} tokens, ${byteFallbackStrings} strings used byte fallback, ${failures} failures`,
  );
  process.exitCode = failures === 0 ? 0 : 1;
}

await main();
