"""Answers from a fixed label set (SpeechVerse-style constrained decoding), in the reference.

Instead of generating freely, the model's probability of each given label as the whole answer is
computed, and the most probable label is the answer. The engine (src/engine/llm/choices.ts and
HarkEngine.classify) mirrors these semantics exactly:

* **Prompt**: exactly what a first-turn `answer(question)` feeds — [BOS] + before + audio + after
  (prompt.split_prompt; a free-text question gets the default "<Speech><SpeechHere></Speech> {}").
* **Label tokens**: the label, stripped, tokenized on its own without special tokens, so it starts
  with SentencePiece's dummy-prefix "▁" ("speech" -> ["▁speech"], "3+" -> ["▁", "3", "+"]). These
  are the ids the model generates right after "ASSISTANT:" (the text "ASSISTANT: speech" ends in
  the same ids), and the ids the engine re-encodes a stored answer's text to.
* **Score** of a label with tokens t_1..t_k:

      score = sum_i log p(t_i | prompt, t_1..t_{i-1}) + log p(</s> | prompt, t_1..t_k)

  where log p is the log-softmax of the decoder's logits, accumulated in float64. The end-of-turn
  token </s> is included, so the score is the log-probability that the answer is exactly this label
  and nothing more: a label that is a prefix of another ("speech" / "speech and music") pays for
  stopping there instead of being favoured for free, and is not penalised for being short either.
* **Probabilities**: the softmax of the scores over the given labels (float64); the answer is the
  label with the highest probability (the first of equals).
* **Conversation**: the chosen label becomes the turn's answer, as if it had been generated: a
  follow-up question continues after its tokens and </s> (pipeline.follow_up with the label's ids).

Computation: the prompt is run once; each label's tokens are then run on top of the prompt's KV
cache (the reference's cache is never modified in place, so every label starts from the same one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from .llama import KVCache, LlamaDecoder, position_ids_from
from .tokenizer import LlamaTokenizer

MAX_CHOICES = 64
"""Each label costs up to one decoder run; more labels than this is a search, not a label set."""
MAX_LABEL_TOKENS = 30
"""A label is a short answer. 30 tokens keep a label's run within one exact WebGPU attention chunk (31)."""


@dataclass(frozen=True)
class LabelScores:
    labels: list[str]
    token_ids: list[list[int]]
    log_probs: list[float]       # each label's score (see the module docstring), float64
    probabilities: list[float]   # softmax of log_probs over the labels

    @property
    def best(self) -> int:
        return max(range(len(self.labels)), key=lambda i: self.probabilities[i])

    @property
    def label(self) -> str:
        return self.labels[self.best]


def label_token_ids(tok: LlamaTokenizer, labels: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Stripped labels and their answer token ids; ValueError for an unusable label set."""
    if len(labels) == 0:
        raise ValueError("give at least one label")
    if len(labels) > MAX_CHOICES:
        raise ValueError(f"at most {MAX_CHOICES} labels, got {len(labels)}")
    stripped = [label.strip() for label in labels]
    ids = [tok.encode(label) if label else [] for label in stripped]
    for label, label_ids in zip(stripped, ids):
        if not label_ids:
            raise ValueError("a label is empty")
        if len(label_ids) > MAX_LABEL_TOKENS:
            raise ValueError(f"label {label!r} has {len(label_ids)} tokens, more than {MAX_LABEL_TOKENS}")
    if len({tuple(i) for i in ids}) != len(ids):
        raise ValueError("two labels are the same")
    return stripped, ids


def log_softmax64(logits: Tensor) -> Tensor:
    return torch.log_softmax(logits.double(), dim=-1)


def sequence_log_prob(prompt_last_logits: Tensor, label_logits: Tensor, ids: Sequence[int], eos_id: int) -> float:
    """Score of `ids` from the logits after the prompt ([V]) and after each of `ids` ([k, V])."""
    rows = log_softmax64(torch.cat([prompt_last_logits[None], label_logits], dim=0))  # [k + 1, V]
    targets = torch.tensor([*ids, eos_id])
    return float(rows.gather(1, targets[:, None]).sum())


def softmax64(scores: Sequence[float]) -> list[float]:
    return torch.softmax(torch.tensor(scores, dtype=torch.float64), dim=0).tolist()


@torch.no_grad()
def score_labels(decoder: LlamaDecoder, prompt_embeds: Tensor, label_ids: Sequence[Sequence[int]], eos_id: int,
                 lora_scale: Optional[float] = None) -> list[float]:
    """Each label's score: the prompt run once, each label's tokens on top of its KV cache."""
    prompt_len = prompt_embeds.shape[1]
    logits, cache = decoder(prompt_embeds, position_ids_from(0, prompt_len), None, lora_scale)
    return [sequence_log_prob(logits[0, -1], continuation_logits(decoder, cache, prompt_len, ids, lora_scale), ids, eos_id)
            for ids in label_ids]


def continuation_logits(decoder: LlamaDecoder, cache: KVCache, past_len: int, ids: Sequence[int],
                        lora_scale: Optional[float]) -> Tensor:
    """Logits after each of `ids` ([k, V]) fed after a cache of `past_len` positions (left unchanged)."""
    embeds = decoder.embed(torch.tensor([list(ids)]))
    logits, _ = decoder(embeds, position_ids_from(past_len, len(ids)), cache, lora_scale)
    return logits[0]


@torch.no_grad()
def classify(decoder: LlamaDecoder, prompt_embeds: Tensor, labels: Sequence[str], tok: LlamaTokenizer,
             lora_scale: Optional[float] = None) -> LabelScores:
    """The label set's scores and probabilities for one prompt (see the module docstring)."""
    stripped, ids = label_token_ids(tok, labels)
    scores = score_labels(decoder, prompt_embeds, ids, tok.eos_id, lora_scale)
    return LabelScores(stripped, ids, scores, softmax64(scores))
