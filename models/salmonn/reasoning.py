"""Reference of reasoning traces with a thinking budget (ALARM, Grinberg & Shahmohammadi 2026).

A reasoning LLM (ALARM's Qwen3-4B-Thinking) writes its thoughts, closes them with a marker
("</think>"), then answers, ALARM's inside "<answer> ... </answer>". At inference ALARM bounds the
thoughts: after a budget of thought tokens (1024 by default) without the close marker, a fixed
sentence and the close marker are appended, and the model continues with the answer.

This module states the semantics the engine (src/engine/llm/reasoning.ts and the generation loop
in generate.ts) reproduces token for token, on the reference LLM with the KV cache, greedily:

1. The prompt (ending inside the thoughts: the template opens them, or `think_open`'s tokens
   were appended) is fed once.
2. Thought tokens are chosen by argmax, one per step. After each, the decoded generated text is
   searched for `think_close`: when it is there, thinking ended by itself.
3. When `budget` thought tokens were generated without it (at once for budget 0), the tokens of
   `forced_close` are fed one per step, not sampled (no stop id can end them), and thinking ends.
4. The answer follows greedily until a stop id or `max_answer_tokens` answer tokens.

`split_reasoning` then cuts the generated text into thoughts and answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import torch

from .llama import LlamaDecoder, position_ids_from
from .tokenizer import LlamaTokenizer

# ALARM's inference facts (github Blinorot/ALARM: generate_vllm.py, src/configs/model/default_inference.yaml):
# the budget, and the sentence appended when it runs out, before the close marker.
ALARM_DEFAULT_BUDGET = 1024
ALARM_FORCED_SENTENCE = ("\n\nConsidering the limited time by the user, I have to give the solution "
                         "based on the thinking directly now.\n")

# What "trimmed" removes, the same set as the engine's (str.strip() would remove more).
WHITESPACE = " \t\n\r"


def alarm_forced_close(think_close: str = "</think>") -> str:
    """ALARM's forced closing text: the fixed sentence, the close marker, a blank line."""
    return ALARM_FORCED_SENTENCE + think_close + "\n\n"


@dataclass(frozen=True)
class ReasoningTemplate:
    """A bundle manifest's `reasoning` section (models/manifest.schema.json documents each field)."""

    think_open: str
    think_close: str
    prompt_opens_thinking: bool
    default_thinking_budget: int
    forced_close: str
    answer_open: Optional[str] = None
    answer_close: Optional[str] = None

    def __post_init__(self) -> None:
        if self.think_close not in self.forced_close:
            raise ValueError("forced_close must contain think_close")
        if self.default_thinking_budget < 0:
            raise ValueError("the thinking budget is 0 or more tokens")

    def to_manifest(self) -> dict:
        section: dict = {
            "thinkOpen": self.think_open, "thinkClose": self.think_close,
            "promptOpensThinking": self.prompt_opens_thinking,
        }
        if self.answer_open is not None:
            section["answerOpen"] = self.answer_open
        if self.answer_close is not None:
            section["answerClose"] = self.answer_close
        section["defaultThinkingBudget"] = self.default_thinking_budget
        section["forcedClose"] = self.forced_close
        return section

    @classmethod
    def from_manifest(cls, section: Mapping) -> "ReasoningTemplate":
        return cls(
            think_open=section["thinkOpen"], think_close=section["thinkClose"],
            prompt_opens_thinking=bool(section["promptOpensThinking"]),
            default_thinking_budget=int(section["defaultThinkingBudget"]), forced_close=section["forcedClose"],
            answer_open=section.get("answerOpen"), answer_close=section.get("answerClose"),
        )


def alarm_template() -> ReasoningTemplate:
    """ALARM's format: Qwen3-Thinking's template opens <think> itself; answers inside <answer> tags."""
    return ReasoningTemplate(think_open="<think>", think_close="</think>", prompt_opens_thinking=True,
                             default_thinking_budget=ALARM_DEFAULT_BUDGET, forced_close=alarm_forced_close(),
                             answer_open="<answer>", answer_close="</answer>")


def _without_opening(text: str, opening: Optional[str]) -> str:
    text = text.lstrip(WHITESPACE)
    if opening and text.startswith(opening):
        text = text[len(opening):].lstrip(WHITESPACE)
    return text


def _up_to_closing(text: str, closing: Optional[str]) -> str:
    if closing and closing in text:
        text = text[:text.index(closing)]
    return text.rstrip(WHITESPACE)


def split_reasoning(text: str, template: ReasoningTemplate) -> tuple[str, str]:
    """(thoughts, answer) of a generated text.

    thoughts: the text before the first think_close (all of it while there is none), without a
    leading think_open, trimmed. answer: the text after the first think_close, without a leading
    answer_open, up to the first answer_close, trimmed ('' while thinking).
    """
    if template.think_close not in text:
        return _up_to_closing(_without_opening(text, template.think_open), None), ""
    at = text.index(template.think_close)
    thoughts = _up_to_closing(_without_opening(text[:at], template.think_open), None)
    rest = text[at + len(template.think_close):]
    return thoughts, _up_to_closing(_without_opening(rest, template.answer_open), template.answer_close)


@dataclass
class ReasoningResult:
    ids: list[int]              # every generated or forced id, without the stop id
    thinking_tokens: int        # thought ids the model chose (forced ones not counted)
    forced_close: bool          # whether the budget ran out and forced_close was fed
    forced_at: Optional[int]    # index in ids of the first forced id (== thinking_tokens), or None
    answer_start: Optional[int]  # index in ids where the answer's tokens begin (None: still thinking)
    thoughts: str
    answer: str


@torch.no_grad()
def reason_greedy(decoder: LlamaDecoder, tok: LlamaTokenizer, inputs_embeds: torch.Tensor, template: ReasoningTemplate,
                  budget: int, max_answer_tokens: int, stop_ids: Iterable[int] = (2,),
                  lora_scale: Optional[float] = None) -> ReasoningResult:
    """Greedy decoding with a thinking budget on one sequence (inputs_embeds [1, T, H], which
    already ends inside the thoughts). See the module docstring for the rules."""
    if budget < 0:
        raise ValueError("the thinking budget is 0 or more tokens")
    stops = set(stop_ids)
    forced_ids = tok.encode(template.forced_close)
    position = inputs_embeds.shape[1]
    logits, cache = decoder(inputs_embeds, position_ids_from(0, position), None, lora_scale)
    ids: list[int] = []
    queue: list[int] = []
    thinking, thinking_tokens, forced_close = True, 0, False
    forced_at: Optional[int] = None
    answer_start: Optional[int] = None
    while True:
        if thinking and thinking_tokens >= budget:
            queue = list(forced_ids)
            thinking, forced_close, forced_at = False, True, len(ids)
        forced = len(queue) > 0
        next_id = queue.pop(0) if forced else int(logits[0, -1].argmax())
        if not forced and next_id in stops:
            break
        ids.append(next_id)
        if thinking:
            thinking_tokens += 1
            if template.think_close in tok.decode(ids):
                thinking = False
        if answer_start is None and not thinking and not queue:
            answer_start = len(ids)
        if answer_start is not None and len(ids) - answer_start >= max_answer_tokens:
            break
        logits, cache = decoder(decoder.embed(torch.tensor([[next_id]])), position_ids_from(position, 1), cache, lora_scale)
        position += 1
    thoughts, answer = split_reasoning(tok.decode(ids), template)
    return ReasoningResult(ids, thinking_tokens, forced_close, forced_at, answer_start, thoughts, answer)
