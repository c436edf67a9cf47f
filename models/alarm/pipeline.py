"""AL-Whisper-Instruct-R end to end: waveform + question -> thoughts and answer (greedy).

ALARM's own inference (github Blinorot/ALARM, generate_vllm.py get_response) samples with the
model's generation config through vLLM; the reference decodes greedily, as Hark does, with
ALARM's thinking budget (default 1024, src/configs/model/default_inference.yaml
max_thinking_tokens) and its forced closing sentence, through salmonn/reasoning.py's
`reason_greedy` (the semantics the engine reproduces). Two details of theirs differ in form:
they re-tokenize the decoded thoughts + the closing sentence as text before continuing (the
reference feeds the closing text's own tokens after the generated ids), and they continue with
up to max_tokens (8192) more tokens; `max_answer_tokens` bounds the answer here.
The answer is read between <answer> and </answer> (split_reasoning with alarm_template()).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import torch
from torch import Tensor

from salmonn.reasoning import ALARM_DEFAULT_BUDGET, ReasoningResult, alarm_template, reason_greedy

from .model import AlarmAudio
from .prompt import SYSTEM_PROMPT, assemble_embeddings, conversation_texts, system_text
from .qwen3 import STOP_IDS, Qwen3Decoder


class Tokenizer(Protocol):
    """What the pipeline needs: text (with added tokens such as <|im_start|> recognised) <-> ids."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@dataclass
class AlarmPrompt:
    system_ids: list[int]
    start_ids: list[int]
    main_ids: list[int]
    audio: Tensor  # [S, D]
    embeds: Tensor  # [1, T, D]

    @property
    def audio_start(self) -> int:
        """Index of the audio_start embedding in `embeds`."""
        return len(self.system_ids) + len(self.start_ids)


class AlarmPipeline:
    def __init__(self, audio: AlarmAudio, embed_tokens: Tensor, decoder: Qwen3Decoder, tok: Tokenizer) -> None:
        if embed_tokens.shape != decoder.model.embed_tokens.weight.shape:
            raise ValueError("ALARM's embed_tokens and the Qwen3 decoder's differ in shape")
        self.audio, self.embed_tokens, self.decoder, self.tok = audio, embed_tokens, decoder, tok

    def embed(self, ids: Tensor) -> Tensor:
        """Text embeddings with ALARM's own copy of Qwen3's embed_tokens (as their feature
        extractor does; the generated tokens are embedded by the LLM itself)."""
        return torch.nn.functional.embedding(ids, self.embed_tokens)

    @torch.no_grad()
    def prompt(self, wave: Tensor, question: str, system: str = SYSTEM_PROMPT,
               history: Sequence[tuple[str, str]] = ()) -> AlarmPrompt:
        """The whole prompt for `question`; `history` holds the earlier (question, generated text)
        turns of the conversation, written back as Qwen3's chat template does (prompt.py)."""
        return self.prompt_with_audio(self.audio(wave), question, system, history)

    @torch.no_grad()
    def prompt_with_audio(self, audio: Tensor, question: str, system: str = SYSTEM_PROMPT,
                          history: Sequence[tuple[str, str]] = ()) -> AlarmPrompt:
        """`prompt` around audio embeddings [S, D] computed elsewhere (e.g. stage by stage)."""
        start, main = conversation_texts([q for q, _ in history] + [question], [a for _, a in history])
        system_ids, start_ids, main_ids = (self.tok.encode(t) for t in (system_text(system), start, main))
        embeds = assemble_embeddings(self.embed, system_ids, start_ids, audio,
                                     self.audio.audio_start_emb, self.audio.audio_end_emb, main_ids)
        return AlarmPrompt(system_ids, start_ids, main_ids, audio, embeds)

    @torch.no_grad()
    def answer(self, wave: Tensor, question: str, budget: int = ALARM_DEFAULT_BUDGET,
               max_answer_tokens: int = 512, prompt: Optional[AlarmPrompt] = None) -> ReasoningResult:
        p = prompt if prompt is not None else self.prompt(wave, question)
        return reason_greedy(self.decoder, self.tok, p.embeds, alarm_template(), budget, max_answer_tokens,
                             stop_ids=STOP_IDS)
