"""SALMONN's beam search (HF 4.28 semantics): scores against uncached passes, and a brute force."""

from __future__ import annotations

import math

import pytest
import torch

from random_decoder import SMALL, random_decoder
from salmonn.beam_search import FinishedHypotheses, beam_search
from salmonn.llama import LlamaDecoder, greedy_generate, position_ids_from


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def prompt_embeds(t: int, seed: int) -> torch.Tensor:
    return torch.randn(1, t, SMALL.hidden_size, generator=torch.Generator().manual_seed(seed))


def step_log_probs(decoder: LlamaDecoder, prompt: torch.Tensor, ids: list[int], scale: float) -> torch.Tensor:
    """log p(next | prompt, ids[:i]) for i = 0..len(ids), from one uncached pass ([len(ids) + 1, V])."""
    sequence = torch.cat([prompt, decoder.embed(torch.tensor([ids], dtype=torch.long))], dim=1) if ids else prompt
    logits, _ = decoder(sequence, position_ids_from(0, sequence.shape[1]), None, scale)
    return torch.log_softmax(logits[0, prompt.shape[1] - 1:].double(), dim=-1)


def sum_log_prob(decoder: LlamaDecoder, prompt: torch.Tensor, ids: list[int], scale: float) -> float:
    rows = step_log_probs(decoder, prompt, ids[:-1], scale)
    return sum(float(rows[i, token]) for i, token in enumerate(ids))


@pytest.mark.parametrize("beams", [2, 4])
def test_chosen_score_is_its_tokens_log_probability_over_their_length(beams: int):
    decoder, prompt = random_decoder(SMALL, seed=3), prompt_embeds(9, seed=4)
    result = beam_search(decoder, prompt, beams, max_new_tokens=6, stop_ids=(2,), lora_scale=2.0)
    ids = result.tokens + ([2] if result.finished_by_stop else [])
    assert result.score == pytest.approx(sum_log_prob(decoder, prompt, ids, 2.0) / len(result.tokens), abs=1e-6)


def test_two_steps_equal_a_brute_force_over_the_first_steps_best_tokens():
    """With no stop id, two steps of B beams keep the top B first tokens and choose the best pair."""
    decoder, prompt = random_decoder(SMALL, seed=5), prompt_embeds(7, seed=6)
    for beams in (2, 3, 4):
        result = beam_search(decoder, prompt, beams, max_new_tokens=2, stop_ids=(), lora_scale=1.0)
        first = step_log_probs(decoder, prompt, [], 1.0)[0]
        best = max(((float(first[a]) + float(step_log_probs(decoder, prompt, [a], 1.0)[1, b]), [a, b])
                    for a in first.topk(beams).indices.tolist() for b in range(SMALL.vocab_size)))
        assert result.tokens == best[1]
        assert result.score == pytest.approx(best[0] / 2, abs=1e-6)


def test_beam_search_scores_at_least_as_well_as_greedy_when_both_run_to_the_limit():
    decoder, prompt = random_decoder(SMALL, seed=7), prompt_embeds(5, seed=8)
    greedy = greedy_generate(decoder, prompt, 5, stop_ids=(), lora_scale=1.0)
    result = beam_search(decoder, prompt, 4, max_new_tokens=5, stop_ids=(), lora_scale=1.0)
    assert len(result.tokens) == 5
    assert result.score * 5 >= sum_log_prob(decoder, prompt, greedy, 1.0) - 1e-9


def test_stop_ids_finish_hypotheses_and_the_done_rule_ends_early():
    """A frequent stop id with length penalty 0 (plain sums) favours the shortest answers: the
    finished set fills and the search stops before max_new_tokens."""
    decoder, prompt = random_decoder(SMALL, seed=3), prompt_embeds(9, seed=4)
    rows = step_log_probs(decoder, prompt, [], 0.0)
    frequent = int(rows[0].argsort(descending=True)[1])  # the second-best first token
    result = beam_search(decoder, prompt, 2, max_new_tokens=20, stop_ids=(frequent,), lora_scale=0.0, length_penalty=0.0)
    assert result.finished_by_stop
    assert result.steps < 19
    assert frequent not in result.tokens
    assert result.score == pytest.approx(sum_log_prob(decoder, prompt, result.tokens + [frequent], 0.0), abs=1e-6)


def test_stop_ids_are_forbidden_at_the_first_step():
    decoder, prompt = random_decoder(SMALL, seed=3), prompt_embeds(9, seed=4)
    best_first = int(step_log_probs(decoder, prompt, [], 0.0)[0].argmax())
    result = beam_search(decoder, prompt, 2, max_new_tokens=3, stop_ids=(best_first,), lora_scale=0.0)
    assert len(result.tokens) >= 1 and result.tokens[0] != best_first


def test_finished_set_keeps_the_best_and_tracks_the_worst():
    finished = FinishedHypotheses(size=2, length_penalty=1.0)
    finished.add([1, 2], -4.0)      # -2
    finished.add([1], -3.0)         # -3
    finished.add([1, 2, 3], -3.0)   # -1: replaces -3
    assert sorted(h.score for h in finished.items) == [-2.0, -1.0]
    assert finished.worst_score == -2.0
    finished.add([4], -2.5)         # -2.5 < worst: ignored
    assert len(finished.items) == 2 and finished.best().tokens == [1, 2, 3]
    assert finished.is_done(best_sum_logprobs=-9.0, cur_len=3)       # -3 <= worst -2
    assert not finished.is_done(best_sum_logprobs=-3.0, cur_len=3)   # -1 > worst
    assert math.isclose(finished.best().sum_logprobs, -3.0)
