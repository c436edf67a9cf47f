"""ALARM's prompt text for one question and for a later turn (Qwen3's chat template rules)."""

from __future__ import annotations

import pytest

from alarm.prompt import GENERATION_PROMPT, conversation_texts, history_content, user_texts


def test_one_question_is_the_single_turn_prompt() -> None:
    assert conversation_texts(["Describe the audio content."], []) == user_texts("Describe the audio content.")
    start, main = user_texts("Q")
    assert start == "<|im_start|>user\n"
    assert main == "Q<|im_end|>\n" + GENERATION_PROMPT


def test_a_later_turn_writes_the_earlier_answer_back_without_its_thoughts() -> None:
    start, main = conversation_texts(["Q1", "Q2"], ["thinking</think>\n\nA1"])
    assert start == "<|im_start|>user\n"
    assert main == ("Q1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                    "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\n")


def test_history_content_keeps_what_follows_the_last_marker() -> None:
    assert history_content("a</think>b</think>\n\nanswer\n") == "answer\n"
    assert history_content("\n\nno marker") == "no marker"


def test_answers_must_pair_with_questions() -> None:
    with pytest.raises(ValueError):
        conversation_texts(["Q1", "Q2"], [])
