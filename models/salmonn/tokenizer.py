"""A small, dependency-free LLaMA tokenizer (SentencePiece-style BPE with byte fallback).

It reads the Hugging Face `tokenizer.json` that models/tokenizer/build_tokenizer_json.mjs
writes and reproduces LLaMA's "legacy" behaviour:

encode:  text -> "▁" + text with every " " replaced by "▁"      (SentencePiece dummy prefix)
         -> one symbol per Unicode code point
         -> repeatedly merge the adjacent pair with the best (lowest) merge rank,
            leftmost first on ties, while the merged piece exists in the merge table
         -> pieces to ids; a piece that is not in the vocabulary (only possible for a
            single unknown character) becomes the <0xNN> ids of its UTF-8 bytes.
decode:  ids -> pieces, <0xNN> pieces back to raw bytes, "▁" -> " ", UTF-8 decode,
         drop the one leading space the encoder added.

Text such as "</s>" is tokenized as plain characters, never as a special token: SALMONN's
prompts never contain them, and user text must not be able to inject control tokens.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

SPACE = "\u2581"  # "▁"
_BYTE_PIECE = re.compile(r"^<0x([0-9A-F]{2})>$")


class LlamaTokenizer:
    def __init__(
        self,
        vocab: Mapping[str, int],
        merges: Sequence[tuple[str, str]],
        unk_token: str = "<unk>",
        bos_token: str = "<s>",
        eos_token: str = "</s>",
    ) -> None:
        self.piece_to_id: dict[str, int] = dict(vocab)
        self.id_to_piece: dict[int, str] = {i: p for p, i in self.piece_to_id.items()}
        self.merge_rank: dict[tuple[str, str], int] = {pair: rank for rank, pair in enumerate(merges)}
        self.unk_id = self.piece_to_id[unk_token]
        self.bos_id = self.piece_to_id[bos_token]
        self.eos_id = self.piece_to_id[eos_token]
        self.special_ids = frozenset((self.unk_id, self.bos_id, self.eos_id))
        # <0xNN> piece ids, indexed by byte value
        self.byte_ids = [self.piece_to_id[f"<0x{b:02X}>"] for b in range(256)]

    @classmethod
    def from_file(cls, path: str | Path) -> "LlamaTokenizer":
        """Load from a HF tokenizer.json (BPE model, merges as "a b" strings or [a, b] pairs)."""
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        model = data["model"]
        assert model["type"] == "BPE" and model.get("byte_fallback"), "expected a byte-fallback BPE model"
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        return cls(model["vocab"], merges, unk_token=model.get("unk_token") or "<unk>")

    @property
    def vocab_size(self) -> int:
        return len(self.piece_to_id)

    # --------------------------------------------------------------------- encode

    @staticmethod
    def normalize(text: str) -> str:
        """The normalizer of tokenizer.json: Prepend("▁") then Replace(" " -> "▁")."""
        return SPACE + text.replace(" ", SPACE)

    def bpe(self, word: str) -> list[str]:
        """Merge code points of `word` by merge rank; returns the final pieces.

        Simple O(n^2) loop: fine for prompts and answers (a few hundred characters).
        """
        symbols = list(word)
        while len(symbols) > 1:
            best_rank, best_index = None, -1
            for i in range(len(symbols) - 1):
                rank = self.merge_rank.get((symbols[i], symbols[i + 1]))
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best_index = rank, i  # strict '<' keeps the leftmost on ties
            if best_rank is None:
                break
            symbols[best_index : best_index + 2] = [symbols[best_index] + symbols[best_index + 1]]
        return symbols

    def piece_ids(self, piece: str) -> list[int]:
        """Id of a piece, or the byte-fallback ids of its UTF-8 bytes if it is unknown."""
        if piece in self.piece_to_id:
            return [self.piece_to_id[piece]]
        return [self.byte_ids[b] for b in piece.encode("utf-8")]

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of `text` (HF: add_special_tokens=add_bos). Empty text gives no tokens."""
        ids = [self.bos_id] if add_bos else []
        if text:
            for piece in self.bpe(self.normalize(text)):
                ids.extend(self.piece_ids(piece))
        return ids

    # --------------------------------------------------------------------- decode

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Inverse of encode. Invalid UTF-8 (e.g. a cut-off emoji) becomes U+FFFD."""
        out = bytearray()
        for i in ids:
            i = int(i)
            if i in self.special_ids:
                if not skip_special_tokens:
                    out += self.id_to_piece[i].encode("utf-8")
                continue
            piece = self.id_to_piece[i]
            byte = _BYTE_PIECE.match(piece)
            if byte:
                out.append(int(byte.group(1), 16))
            else:
                out += piece.replace(SPACE, " ").encode("utf-8")
        text = out.decode("utf-8", errors="replace")
        return text[1:] if text.startswith(" ") else text


def default_tokenizer_path() -> Path:
    """models/tokenizer/tokenizer.json, next to this package."""
    return Path(__file__).resolve().parent.parent / "tokenizer" / "tokenizer.json"


def load_default_tokenizer() -> LlamaTokenizer:
    return LlamaTokenizer.from_file(default_tokenizer_path())
