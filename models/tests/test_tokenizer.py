"""Python LLaMA tokenizer (salmonn.tokenizer) against known LLaMA ids and llama-tokenizer-js."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from salmonn.tokenizer import LlamaTokenizer, load_default_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tok() -> LlamaTokenizer:
    return load_default_tokenizer()


# Ids of the original LLaMA SentencePiece model (also what transformers.js gives for our tokenizer.json).
KNOWN_IDS = [
    ("USER:", [3148, 1001, 29901]),  # ▁US ER :
    ("the", [278]),  # ▁the
    (" the", [29871, 278]),  # ▁ ▁the
    ("Hello world", [15043, 3186]),
    ("\n", [29871, 13]),  # ▁ <0x0A>
    ("ASSISTANT:", [319, 1799, 9047, 13566, 29901]),  # ▁A SS IST ANT :
    ("a  b", [263, 29871, 289]),  # a double space keeps one bare ▁
    ("😀", [29871, 243, 162, 155, 131]),  # not in vocab: UTF-8 bytes F0 9F 98 80 (+3 offset)
    ("", []),
]


def varied_strings(count: int = 300, seed: int = 1234) -> list[str]:
    """Hand-picked edge cases plus seeded random mixes of scripts, emoji and whitespace."""
    fixed = [
        " ", "  ", "   leading", "trailing   ", "tabs\tand\nnewlines\r\n", "\n\n\n",
        "1234567890 3.14159 2023", "Ünïcödé çàfé naïve", "日本語のテキスト。中文。한국어",
        "Привет, мир! Ελληνικά", "emoji 😀 🎵🎶 👩‍👩‍👧‍👦 🇩🇪 ❤️", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝑥²",
        "combining e\u0301 a\u0308", "zero\u200bwidth\u00a0nbsp", "ﷺ ༀ ꙮ 𓀀",
        "It's a dog's life, isn't it?", "https://example.com/path?q=1&x=y#frag", "a" * 60,
        "USER: <Speech>", "</Speech> Please describe the audio.\nASSISTANT:",
    ]
    pool = (
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        + [" "] * 8 + ["  ", "\n", "\t"]
        + list(".,;:!?'\"()[]{}-_/\\@#$%^&*+=~`|")
        + list("éèêëàâäôöûüçñßøåαβγδπΩжщЯ日本語中文字한국€£¥№∑√")
        + ["😀", "🎵", "👍🏽", "🇫🇷", "👩‍💻", "\u0301", "\u200b"]
    )
    words = ["the", " the", "audio", " speech", "music", " ASSISTANT:", "USER:", " describe", "ing", "tion"]
    rng = random.Random(seed)
    out = list(fixed)
    while len(out) < count:
        n = rng.randint(1, 40)
        out.append("".join(rng.choice(words) if rng.random() < 0.3 else rng.choice(pool) for _ in range(n)))
    return out


@pytest.mark.parametrize("text,expected", KNOWN_IDS)
def test_known_llama_ids(tok, text, expected):
    assert tok.encode(text) == expected


def test_vocab_layout(tok):
    assert tok.vocab_size == 32000
    assert (tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.piece_to_id["▁the"] == 278
    assert tok.piece_to_id["<0x0A>"] == 13
    assert tok.byte_ids[0] == 3 and tok.byte_ids[255] == 258


def test_add_bos(tok):
    assert tok.encode("USER:", add_bos=True) == [1, 3148, 1001, 29901]


def test_special_token_text_is_plain_text(tok):
    ids = tok.encode("</s>")
    assert 2 not in ids
    assert tok.decode(ids) == "</s>"


def test_decode_skips_special_and_strips_dummy_space(tok):
    assert tok.decode([1, 3148, 1001, 29901, 2]) == "USER:"
    assert tok.decode([278]) == "the"  # "▁the" -> " the" -> leading space dropped
    assert tok.decode([29871, 243, 162, 155, 131]) == "😀"
    assert tok.decode([243, 162]) == "\ufffd"  # cut-off UTF-8 is replaced, not raised


def test_round_trip(tok):
    strings = varied_strings()
    used_bytes = 0
    for s in strings:
        ids = tok.encode(s)
        used_bytes += any(3 <= i < 259 for i in ids)
        assert tok.decode(ids) == s, s
    assert used_bytes > 50  # the sample really exercises byte fallback


def _llama_tokenizer_js_path() -> Path | None:
    env = os.environ.get("LLAMA_TOKENIZER_JS")
    path = Path(env) if env else REPO_ROOT / "node_modules" / "llama-tokenizer-js" / "llama-tokenizer.js"
    return path if path.is_file() else None


NODE_ENCODER = """
import { readFileSync } from 'node:fs';
const { default: tokenizer } = await import(process.argv[2]);
const strings = JSON.parse(readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(strings.map((s) => tokenizer.encode(s, false, true))));
"""


def test_agrees_with_llama_tokenizer_js(tok, tmp_path):
    js_path = _llama_tokenizer_js_path()
    node = shutil.which("node")
    if node is None or js_path is None:
        pytest.skip("needs `node` and llama-tokenizer-js (run `npm install` at the repo root, "
                    "or set LLAMA_TOKENIZER_JS=/path/to/llama-tokenizer.js)")
    script = tmp_path / "encode.mjs"
    script.write_text(NODE_ENCODER)
    strings = varied_strings(400, seed=99)
    result = subprocess.run(
        [node, str(script), js_path.as_uri()],
        input=json.dumps(strings), capture_output=True, text=True, check=True, timeout=120,
    )
    expected = json.loads(result.stdout)
    # Write the fixture next to the test's tmp dir for inspection when something fails.
    (tmp_path / "expected_ids.json").write_text(json.dumps(list(zip(strings, expected)), ensure_ascii=False))
    mismatches = [(s, tok.encode(s), e) for s, e in zip(strings, expected) if tok.encode(s) != e]
    assert not mismatches, mismatches[:5]
