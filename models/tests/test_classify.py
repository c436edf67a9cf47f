"""Answers from a label set: the cached scores against a brute-force path, and the label rules."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from random_decoder import SMALL, random_decoder
from salmonn.classify import MAX_LABEL_TOKENS, label_token_ids, score_labels, softmax64
from salmonn.llama import LlamaDecoder, position_ids_from
from salmonn.tokenizer import LlamaTokenizer

TOKENIZER = Path(__file__).resolve().parents[1] / "tokenizer" / "tokenizer.json"
EOS = 2


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def tok() -> LlamaTokenizer:
    return LlamaTokenizer.from_file(TOKENIZER)


def prompt_embeds(t: int, seed: int) -> torch.Tensor:
    return torch.randn(1, t, SMALL.hidden_size, generator=torch.Generator().manual_seed(seed))


def brute_force_score(decoder: LlamaDecoder, prompt: torch.Tensor, ids: list[int], lora_scale: float) -> float:
    """One uncached forward pass over prompt + label + </s>, summed token by token in float64:
    the logits at position p predict the token at p + 1."""
    full_ids = [*ids, EOS]
    sequence = torch.cat([prompt, decoder.embed(torch.tensor([full_ids]))], dim=1)
    logits, _ = decoder(sequence, position_ids_from(0, sequence.shape[1]), None, lora_scale)
    log_probs = torch.log_softmax(logits[0].double(), dim=-1)
    start = prompt.shape[1] - 1
    return sum(float(log_probs[start + i, token]) for i, token in enumerate(full_ids))


def test_cached_scores_equal_one_uncached_pass_per_label_prefixes_included():
    decoder = random_decoder(SMALL, seed=1)
    prompt = prompt_embeds(11, seed=2)
    # [5] is a prefix of [5, 9, 14], which shares two tokens with [5, 9, 40]; labels of 1 and 2 tokens.
    labels = [[5], [5, 9, 14], [5, 9, 40], [33], [70, 71]]
    cached = score_labels(decoder, prompt, labels, EOS, lora_scale=3.0)
    expected = [brute_force_score(decoder, prompt, ids, 3.0) for ids in labels]
    torch.testing.assert_close(torch.tensor(cached, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-4)
    # the end token is part of the score: the prefix label is not the first step of the longer one
    first_step_only = float(torch.log_softmax(decoder(prompt, position_ids_from(0, 11), None, 3.0)[0][0, -1].double(), -1)[5])
    assert abs(cached[0] - first_step_only) > 1e-3


def test_lora_scale_reaches_the_scores():
    decoder = random_decoder(SMALL, seed=1)
    prompt = prompt_embeds(6, seed=3)
    with_lora = score_labels(decoder, prompt, [[7, 8]], EOS, lora_scale=4.0)
    without = score_labels(decoder, prompt, [[7, 8]], EOS, lora_scale=0.0)
    assert abs(with_lora[0] - without[0]) > 1e-3
    torch.testing.assert_close(torch.tensor(without, dtype=torch.float64),
                               torch.tensor([brute_force_score(decoder, prompt, [7, 8], 0.0)], dtype=torch.float64),
                               rtol=0, atol=1e-4)


def test_probabilities_are_the_softmax_of_the_scores():
    probabilities = softmax64([-3.0, -1.0, -1.0 - math.log(3.0)])
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-15)
    assert probabilities[1] == pytest.approx(3 * probabilities[2], rel=1e-12)
    assert max(range(3), key=lambda i: probabilities[i]) == 1


def test_label_ids_are_the_answer_tokens_after_assistant(tok: LlamaTokenizer):
    labels, ids = label_token_ids(tok, ["speech", " speech and music ", "3+"])
    assert labels == ["speech", "speech and music", "3+"]
    for label, label_ids in zip(labels, ids):
        said = tok.encode(f"USER: What is it?\nASSISTANT: {label}")
        assert said[-len(label_ids):] == label_ids, label
    assert [tok.id_to_piece[i] for i in ids[2]] == ["\u2581", "3", "+"]


@pytest.mark.parametrize("labels, message", [
    ([], "at least one label"),
    (["happy", "  "], "empty"),
    (["happy", "sad", " happy"], "the same"),
    (["happy", "word " * (MAX_LABEL_TOKENS + 1)], "more than 30"),
    ([f"label {i}" for i in range(65)], "at most 64"),
])
def test_unusable_label_sets_are_refused(tok: LlamaTokenizer, labels: list[str], message: str):
    with pytest.raises(ValueError, match=message):
        label_token_ids(tok, labels)
