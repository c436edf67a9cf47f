"""ALARM's prompt and where the audio embeddings go (github Blinorot/ALARM, generate_vllm.py:
get_system_prompt / get_response; src/model/llm_audio_wrapper.py: prepare_multimodal_inputs).

The token sequence the LLM reads, for one question about one recording:

    system   "<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n"
             (tokenizer.apply_chat_template of the system message alone)
    start    "<|im_start|>user\n"
             (the user turn rendered with add_generation_prompt=True, cut after its first "\n")
    audio    audio_start_emb, the adapter's audio embeddings, audio_end_emb
             (learnt vectors [1, llm_dim] each, since use_explicit_audio_tokens is false)
    main     question + "<|im_end|>\n<|im_start|>assistant\n<think>\n"
             (the rest of that rendering; Qwen3-4B-Thinking-2507's chat template opens the
             thoughts itself, so generation starts inside them)

A later turn (Qwen3's chat template; ALARM's own code is single-turn): an earlier assistant
turn is written back as its ANSWER only, "<|im_start|>assistant\n" + the generated text after its
last "</think>" with leading newlines removed + "<|im_end|>\n" (the template drops the reasoning of
every assistant turn before the last user message). So the text after the audio for question k is

    q1 + "<|im_end|>\n" + [assistant turn of answer i + "<|im_start|>user\n" + q(i+1) + "<|im_end|>\n"]...
       + "<|im_start|>assistant\n<think>\n"

tokenized as one text, as HF tokenizes a rendered conversation (added tokens split the text, so
the pieces tokenize the same alone).

The system embeddings come first ("add after audio because audio conditioning is on user prompt
only", their comment), then start, audio, main. Every id is embedded with the LLM's own
`embed_tokens`; there is no BOS.
"""

from __future__ import annotations

import re
from typing import Callable, List, Mapping, Sequence

import torch
from torch import Tensor

SYSTEM_PROMPT = "You are an audio-understanding model. Listen to the audio and respond to the query."

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
# Qwen3-4B-Thinking-2507's generation prompt (its chat template adds the opening <think>)
GENERATION_PROMPT = IM_START + "assistant\n<think>\n"


ASSISTANT_TURN = IM_START + "assistant\n{}" + IM_END + "\n"
THOUGHTS_END = "</think>"


def history_content(generated: str) -> str:
    """What Qwen3's chat template keeps of an assistant turn's generated text (without its stop
    token): the part after the last "</think>", leading newlines removed; all of it without one."""
    return generated.split(THOUGHTS_END)[-1].lstrip("\n")


def system_text(system: str = SYSTEM_PROMPT) -> str:
    return f"{IM_START}system\n{system}{IM_END}\n"


def user_texts(question: str) -> tuple[str, str]:
    """(start, main): the rendered user turn with the generation prompt, cut as ALARM cuts it."""
    full = f"{IM_START}user\n{question}{IM_END}\n{GENERATION_PROMPT}"
    start = full.split("\n")[0] + "\n"
    return start, full[len(start):]


def conversation_texts(questions: Sequence[str], answers: Sequence[str]) -> tuple[str, str]:
    """(start, main) for the last of `questions`, after the earlier ones answered with `answers`
    (generated texts, one fewer than the questions): the audio goes between start and main."""
    if len(answers) != len(questions) - 1 or not questions:
        raise ValueError("a conversation needs one answer for every question but the last")
    start, main = user_texts(questions[0])
    main = main[: -len(GENERATION_PROMPT)]
    for answer, question in zip(answers, questions[1:]):
        main += ASSISTANT_TURN.format(history_content(answer)) + f"{IM_START}user\n{question}{IM_END}\n"
    return start, main + GENERATION_PROMPT


def split_added_tokens(text: str, added: Mapping[str, int]) -> List[object]:
    """Text -> pieces: an added token's id (int) or a plain string, in order. HF's tokenizer
    (split_special_tokens false) matches added tokens anywhere in the text, longest first."""
    if not added:
        return [text] if text else []
    pattern = re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)))
    pieces: List[object] = []
    at = 0
    for m in pattern.finditer(text):
        if m.start() > at:
            pieces.append(text[at:m.start()])
        pieces.append(added[m.group(0)])
        at = m.end()
    if at < len(text):
        pieces.append(text[at:])
    return pieces


def assemble_embeddings(
    embed: Callable[[Tensor], Tensor],
    system_ids: Sequence[int],
    start_ids: Sequence[int],
    audio: Tensor,
    audio_start: Tensor,
    audio_end: Tensor,
    main_ids: Sequence[int],
) -> Tensor:
    """prepare_multimodal_inputs for one example: [system, start, <audio_start>, audio,
    <audio_end>, main] embeddings -> [1, T, D]. `audio` [S, D]; audio_start / audio_end [1, D]."""

    def emb(ids: Sequence[int]) -> Tensor:
        return embed(torch.tensor(list(ids), dtype=torch.long)[None])[0]

    dtype = embed(torch.zeros(1, 1, dtype=torch.long)).dtype
    parts = [emb(system_ids), emb(start_ids), audio_start.to(dtype), audio.to(dtype), audio_end.to(dtype), emb(main_ids)]
    return torch.cat(parts, dim=0)[None]


def audio_position(system_ids: Sequence[int], start_ids: Sequence[int]) -> int:
    """Index of the audio_start embedding in the assembled sequence."""
    return len(system_ids) + len(start_ids)
