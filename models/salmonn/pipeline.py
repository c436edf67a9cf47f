"""The whole SALMONN inference path, end to end, in the reference implementation.

audio (16 kHz mono) -> chunks -> per chunk: Whisper log-mel -> Whisper encoder,
kaldi fbank -> BEATs -> connector (88 tokens) -> concatenated audio tokens -> prompt assembly
-> greedy decoding. This is what the golden outputs are made from, and what the TypeScript
engine mirrors step by step.

Audio rules (the reference SALMONN truncates at 30 s; Hark splits instead):
- shorter than `min_seconds` (1 s): zero-padded to 1 s;
- longer than `chunk_seconds` (30 s): split into consecutive 30 s chunks, each encoded alone into
  88 tokens, tokens concatenated in order; a final chunk shorter than 1 s is zero-padded to 1 s.
- token i of chunk c covers [30c + i·17·0.02, 30c + (i+1)·17·0.02] seconds (`time_map`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .beam_search import BeamResult, beam_search
from .beats import kaldi_fbank
from .classify import LabelScores, classify
from .checkpoints import ReferenceModules
from .llama import greedy_generate, position_ids_from
from .localize import FOCUS_INSTRUCTION, NEUTRAL_INSTRUCTION, Localization, LocalizeOptions, localize, probe, steering_vector
from .prompt import DEFAULT_SLOT, DEFAULT_USER_TEXT, PromptParts, assemble_inputs_embeds, followup_ids, split_prompt
from .tokenizer import LlamaTokenizer
from .whisper import log_mel_spectrogram

SAMPLE_RATE = 16000


def split_audio(wave: np.ndarray, min_seconds: float = 1.0, chunk_seconds: float = 30.0) -> list[np.ndarray]:
    """Mono float32 16 kHz samples -> chunks of at most 30 s, none shorter than 1 s."""
    wave = np.asarray(wave, dtype=np.float32)
    min_len, chunk_len = int(round(min_seconds * SAMPLE_RATE)), int(round(chunk_seconds * SAMPLE_RATE))
    chunks = [wave[i:i + chunk_len] for i in range(0, max(len(wave), 1), chunk_len)]
    return [np.pad(c, (0, max(0, min_len - len(c)))) for c in chunks]


@dataclass
class ChunkStages:
    """Every intermediate of one chunk, as the goldens store them."""

    mel: Tensor       # [80, 3000]
    fbank: Tensor     # [frames, 128]
    speech: Tensor    # [1, 1500, Ws]
    audio: Tensor     # [1, tokens, Wa]
    tokens: Tensor    # [1, 88, H]


@dataclass
class EncodedAudio:
    tokens: Tensor                      # [1, 88 * chunks, H]
    time_map: np.ndarray                # [88 * chunks, 2] start/end seconds
    chunks: list[ChunkStages] = field(default_factory=list)


@torch.no_grad()
def encode_chunk(ref: ReferenceModules, chunk: np.ndarray) -> ChunkStages:
    wave = torch.from_numpy(chunk)
    mel = log_mel_spectrogram(wave)
    fbank = kaldi_fbank(wave)
    speech = ref.whisper(mel[None])
    audio = ref.beats(fbank[None])
    tokens = ref.connector(speech, audio)
    return ChunkStages(mel, fbank, speech, audio, tokens)


def time_map(num_chunks: int, tokens_per_chunk: int, window_frames: int, stride_frames: int,
             frame_seconds: float = 0.02, chunk_seconds: float = 30.0) -> np.ndarray:
    starts = np.array([[c * chunk_seconds + i * stride_frames * frame_seconds]
                       for c in range(num_chunks) for i in range(tokens_per_chunk)], dtype=np.float64)
    return np.concatenate([starts, starts + window_frames * frame_seconds], axis=1)


def encode_audio(ref: ReferenceModules, wave: np.ndarray) -> EncodedAudio:
    stages = [encode_chunk(ref, c) for c in split_audio(wave)]
    tokens = torch.cat([s.tokens for s in stages], dim=1)
    per_chunk = stages[0].tokens.shape[1]
    cfg = ref.configs.connector
    return EncodedAudio(tokens, time_map(len(stages), per_chunk, cfg.window_frames, cfg.stride_frames), stages)


@dataclass
class Answer:
    prompt_ids: PromptParts
    inputs_embeds: Tensor
    first_logits: Tensor   # [vocab]: logits for the first generated token
    ids: list[int]


def user_text_for(prompt: str, slot: str = DEFAULT_SLOT) -> str:
    """SALMONN's task prompts already hold the audio slot ('<Speech><SpeechHere></Speech> ...');
    a free-text question gets the default prefix, as SALMONN's cli_inference does."""
    return "{}" if slot in prompt else DEFAULT_USER_TEXT


@torch.no_grad()
def answer(ref: ReferenceModules, tok: LlamaTokenizer, audio_tokens: Tensor, prompt: str,
           max_new_tokens: int, lora_scale: Optional[float] = None) -> Answer:
    parts = split_prompt(tok, prompt, user_text=user_text_for(prompt))
    embeds = assemble_inputs_embeds(ref.llm, parts, audio_tokens, bos_id=tok.bos_id)
    logits, _ = ref.llm(embeds, position_ids_from(0, embeds.shape[1]), None, lora_scale)
    ids = greedy_generate(ref.llm, embeds, max_new_tokens, stop_ids=(tok.eos_id,), lora_scale=lora_scale)
    return Answer(parts, embeds, logits[0, -1], ids)


@torch.no_grad()
def beam_answer(ref: ReferenceModules, tok: LlamaTokenizer, audio_tokens: Tensor, prompt: str, num_beams: int,
                max_new_tokens: int, lora_scale: Optional[float] = None,
                stop_ids: Optional[Sequence[int]] = None, length_penalty: float = 1.0) -> tuple[Answer, BeamResult]:
    """The first turn decoded with SALMONN's beam search (beam_search.py) instead of greedily.

    Returns the turn as an Answer whose ids are the chosen hypothesis (for follow_up), and the search's result."""
    parts = split_prompt(tok, prompt, user_text=user_text_for(prompt))
    embeds = assemble_inputs_embeds(ref.llm, parts, audio_tokens, bos_id=tok.bos_id)
    logits, _ = ref.llm(embeds, position_ids_from(0, embeds.shape[1]), None, lora_scale)
    stops = tuple(stop_ids) if stop_ids is not None else (tok.eos_id,)
    result = beam_search(ref.llm, embeds, num_beams, max_new_tokens, stop_ids=stops, lora_scale=lora_scale,
                         length_penalty=length_penalty)
    return Answer(parts, embeds, logits[0, -1], result.tokens), result


@torch.no_grad()
def follow_up(ref: ReferenceModules, tok: LlamaTokenizer, first: Answer, question: str,
              max_new_tokens: int, lora_scale: Optional[float] = None, num_beams: int = 1) -> tuple[list[int], list[int]]:
    """Second turn: first prompt + first answer + [</s>] + 'USER: q\\nASSISTANT:' -> greedy ids
    (or the beam search's, for num_beams > 1).

    Returns (the follow-up's token ids, the generated ids)."""
    turn = followup_ids(tok, question)
    new_ids = torch.tensor([first.ids + turn])
    embeds = torch.cat([first.inputs_embeds, ref.llm.embed(new_ids)], dim=1)
    if num_beams > 1:
        return turn, beam_search(ref.llm, embeds, num_beams, max_new_tokens, stop_ids=(tok.eos_id,), lora_scale=lora_scale).tokens
    ids = greedy_generate(ref.llm, embeds, max_new_tokens, stop_ids=(tok.eos_id,), lora_scale=lora_scale)
    return turn, ids


@torch.no_grad()
def classify_answer(ref: ReferenceModules, tok: LlamaTokenizer, audio_tokens: Tensor, question: str,
                    labels: list[str], lora_scale: Optional[float] = None) -> tuple[LabelScores, Answer]:
    """`question` answered with one of `labels` (classify.py's semantics), on the prompt answer() feeds.

    Returns the scores and the turn as an Answer whose ids are the chosen label's (for follow_up)."""
    parts = split_prompt(tok, question, user_text=user_text_for(question))
    embeds = assemble_inputs_embeds(ref.llm, parts, audio_tokens, bos_id=tok.bos_id)
    scores = classify(ref.llm, embeds, labels, tok, lora_scale)
    logits, _ = ref.llm(embeds, position_ids_from(0, embeds.shape[1]), None, lora_scale)
    return scores, Answer(parts, embeds, logits[0, -1], scores.token_ids[scores.best])


@torch.no_grad()
def localize_event(ref: ReferenceModules, tok: LlamaTokenizer, encoded: EncodedAudio, duration_seconds: float,
                   event: str, options: LocalizeOptions) -> tuple[Localization, dict[int, Tensor]]:
    """Where `event` happens in the encoded recording (localize.py's method on the full pipeline's
    prompts: the focus and neutral instructions as questions, the neutral one read out).
    Returns the localization and the steering vector per probed layer."""

    def prompt_embeds(question: str) -> tuple[Tensor, int]:
        parts = split_prompt(tok, question, user_text=user_text_for(question))
        return assemble_inputs_embeds(ref.llm, parts, encoded.tokens, bos_id=tok.bos_id), 1 + len(parts.before_ids)

    focus, focus_start = prompt_embeds(FOCUS_INSTRUCTION.format(event=event.strip()))
    neutral, neutral_start = prompt_embeds(NEUTRAL_INSTRUCTION)
    time_map = torch.from_numpy(encoded.time_map)
    result = localize(ref.llm, focus, neutral, (focus_start, neutral_start), encoded.tokens.shape[1], time_map,
                      duration_seconds, options)
    vector = steering_vector(probe(ref.llm, focus, options.layers, options.lora_scale),
                             probe(ref.llm, neutral, options.layers, options.lora_scale))
    return result, vector
