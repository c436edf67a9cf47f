"""Reasoning with a thinking budget (salmonn/reasoning.py): the split rules, and the budget's
mechanics against uncached passes of a random decoder with the tiny LLaMA tokenizer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from random_decoder import SMALL, random_decoder
from salmonn.llama import position_ids_from
from salmonn.reasoning import alarm_forced_close, alarm_template, reason_greedy, split_reasoning
from salmonn.tokenizer import LlamaTokenizer

TOKENIZER = Path(__file__).resolve().parents[1] / "tokenizer" / "tokenizer.json"


@pytest.fixture(scope="module")
def tok() -> LlamaTokenizer:
    return LlamaTokenizer.from_file(TOKENIZER)


@pytest.fixture(scope="module")
def decoder():
    return random_decoder(replace(SMALL, vocab_size=32000), seed=3)


def test_split_rules() -> None:
    t = alarm_template()
    assert split_reasoning("A dog.\n</think>\n\n<answer> a dog </answer> more", t) == ("A dog.", "a dog")
    assert split_reasoning("<think>\nhmm</think>yes</think>", t) == ("hmm", "yes</think>")
    assert split_reasoning("x</think>so <answer>B", t) == ("x", "so <answer>B")
    assert split_reasoning("  still </thi", t) == ("still </thi", "")
    assert split_reasoning("\u00a0a\u00a0</think>\u3000b\u3000", t) == ("\u00a0a\u00a0", "\u3000b\u3000")
    forced = split_reasoning("so" + alarm_forced_close() + "<answer>B</answer>", t)
    assert forced[0].startswith("so\n\nConsidering the limited time by the user") and forced[1] == "B"


def uncached_argmax(decoder, prompt: torch.Tensor, ids: list[int]) -> int:
    embeds = torch.cat([prompt, decoder.embed(torch.tensor([ids], dtype=torch.long))], dim=1) if ids else prompt
    logits, _ = decoder(embeds, position_ids_from(0, embeds.shape[1]), None, None)
    return int(logits[0, -1].argmax())


@pytest.mark.parametrize("budget", [0, 1, 4])
def test_forced_tokens_follow_exactly_budget_thought_tokens(decoder, tok, budget: int) -> None:
    torch.manual_seed(1)
    prompt = torch.randn(1, 5, SMALL.hidden_size)
    template = alarm_template()
    forced = tok.encode(template.forced_close)
    with torch.no_grad():
        result = reason_greedy(decoder, tok, prompt, template, budget, max_answer_tokens=3, stop_ids=())
        assert result.forced_close and result.thinking_tokens == budget and result.forced_at == budget
        assert result.ids[budget:budget + len(forced)] == forced
        assert result.answer_start == budget + len(forced) and len(result.ids) == budget + len(forced) + 3
        for i, token in enumerate(result.ids):  # every chosen (not forced) id is the uncached argmax
            if not budget <= i < budget + len(forced):
                assert token == uncached_argmax(decoder, prompt, result.ids[:i])
    assert result.thoughts.endswith("directly now.")


def test_thinking_that_ends_by_itself_is_not_forced(decoder, tok) -> None:
    torch.manual_seed(1)
    prompt = torch.randn(1, 5, SMALL.hidden_size)
    with torch.no_grad():
        free = reason_greedy(decoder, tok, prompt, alarm_template(), 50, max_answer_tokens=0, stop_ids=())
    # A close marker the model happens to write: the text of its 3rd and 4th tokens.
    marker = tok.decode(free.ids[:4])[len(tok.decode(free.ids[:2])):].strip(" \t\n\r")
    if not marker or marker in tok.decode(free.ids[:3]):
        pytest.skip("this random decoder's 3rd/4th tokens do not make a usable marker")
    template = replace(alarm_template(), think_close=marker, forced_close=alarm_forced_close(marker))
    with torch.no_grad():
        result = reason_greedy(decoder, tok, prompt, template, 50, max_answer_tokens=2, stop_ids=())
    assert not result.forced_close and result.forced_at is None
    assert result.thinking_tokens == 4 and result.answer_start == 4 and result.ids[:4] == free.ids[:4]


def test_manifest_section_round_trips_and_validates() -> None:
    import json

    from salmonn.bundle import validate_manifest
    from salmonn.reasoning import ReasoningTemplate

    tiny = json.loads((Path(__file__).resolve().parents[1] / "bundles" / "salmonn-tiny" / "manifest.json").read_text())
    section = alarm_template().to_manifest()
    assert section["defaultThinkingBudget"] == 1024 and section["forcedClose"].endswith("directly now.\n</think>\n\n")
    assert ReasoningTemplate.from_manifest(section) == alarm_template()
    validate_manifest({**tiny, "reasoning": section})
    with pytest.raises(Exception):
        validate_manifest({**tiny, "reasoning": {**section, "budget": 3}})
    with pytest.raises(ValueError):
        replace(alarm_template(), forced_close="Answer now.")
