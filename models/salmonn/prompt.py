"""SALMONN prompt assembly: where the 88 audio embeddings go in the LLM input.

The reference builds, for a task prompt P,

    template.format(user_text.format(P))
    = "USER: <Speech><SpeechHere></Speech> P\\nASSISTANT:"

splits that string at "<SpeechHere>" and tokenizes each half SEPARATELY without special
tokens, so each half gets its own SentencePiece dummy-prefix "▁". The LLM input is

    [<s>] + embed(before) + audio_embeds + embed(after),   positions 0 .. n-1.

`<Speech>` / `</Speech>` are plain text, not special tokens.

Follow-up questions (multi-turn, not in SALMONN's own code). We continue in Vicuna's
conversation format, where an assistant turn ends with `</s>` and the next "USER: ..."
follows with no separator. Vicuna was trained with the legacy tokenizer, which starts the
text after a `</s>` with a fresh dummy-prefix "▁" — so the next turn's text is tokenized
on its own, exactly like a first turn:

    sequence = prompt ids (BOS, before, audio, after)
             + answer ids (as generated, without the stop id)
             + [</s>]
             + encode("USER: {question}\\nASSISTANT:")      # leading "▁USER" = 3148 ...

`followup_ids` returns the last two parts ([</s>] + new turn). It depends only on the
strings (and the tokenizer), so the TypeScript engine can mirror it token for token.
The audio is not repeated: it stays in the KV cache from the first turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .tokenizer import LlamaTokenizer

DEFAULT_TEMPLATE = "USER: {}\nASSISTANT:"
DEFAULT_USER_TEXT = "<Speech><SpeechHere></Speech> {}"
DEFAULT_SLOT = "<SpeechHere>"


@dataclass(frozen=True)
class PromptParts:
    """Token ids around the audio slot (no BOS; assemble_inputs_embeds adds it)."""

    before_ids: tuple[int, ...]
    after_ids: tuple[int, ...]


def build_prompt_text(prompt: str, template: str = DEFAULT_TEMPLATE, user_text: str = DEFAULT_USER_TEXT) -> str:
    """The full prompt string, slot marker included. The reference strips the task prompt."""
    return template.format(user_text.format(prompt.strip()))


def split_prompt(
    tokenizer: LlamaTokenizer,
    prompt: str,
    template: str = DEFAULT_TEMPLATE,
    user_text: str = DEFAULT_USER_TEXT,
    slot: str = DEFAULT_SLOT,
) -> PromptParts:
    """Tokenize the text before and after the audio slot, each half on its own."""
    text = build_prompt_text(prompt, template, user_text)
    if text.count(slot) != 1:
        raise ValueError(f"prompt must contain the slot {slot!r} exactly once: {text!r}")
    before, after = text.split(slot)
    return PromptParts(tuple(tokenizer.encode(before)), tuple(tokenizer.encode(after)))


def prompt_length(parts: PromptParts, num_audio: int) -> int:
    """Number of LLM input positions: BOS + before + audio + after."""
    return 1 + len(parts.before_ids) + num_audio + len(parts.after_ids)


def assemble_inputs_embeds(
    decoder,
    parts: PromptParts,
    audio_embeds: torch.Tensor,
    bos_id: int = 1,
) -> torch.Tensor:
    """[BOS] + embed(before) + audio + embed(after) -> [1, n, H] (use positions 0..n-1).

    `decoder` is anything with `embed(ids [1, T]) -> [1, T, H]` (llama.LlamaDecoder).
    audio_embeds is [1, N, H] (N = 88 for SALMONN) and is cast to the embedding dtype.
    """
    assert audio_embeds.dim() == 3 and audio_embeds.shape[0] == 1, "audio_embeds must be [1, N, H]"
    device = audio_embeds.device

    def embed(ids: tuple[int, ...]) -> torch.Tensor:
        return decoder.embed(torch.tensor([list(ids)], dtype=torch.long, device=device))

    text_bos = embed((bos_id, *parts.before_ids))
    text_after = embed(parts.after_ids)
    return torch.cat([text_bos, audio_embeds.to(text_bos.dtype), text_after], dim=1)


def followup_ids(
    tokenizer: LlamaTokenizer,
    question: str,
    template: str = DEFAULT_TEMPLATE,
    eos_id: Optional[int] = None,
) -> list[int]:
    """Ids to append after a finished answer to ask `question` next: [</s>] + new turn.

    The question is stripped like the first prompt; the turn text is tokenized on its own
    (fresh leading "▁"), matching how Vicuna saw "...</s>USER: ..." in training.
    """
    eos = tokenizer.eos_id if eos_id is None else eos_id
    return [eos] + tokenizer.encode(template.format(question.strip()))
