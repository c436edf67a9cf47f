"""Beam search as SALMONN decodes (HF transformers 4.28 `generate(num_beams=4)`), in the reference.

SALMONN calls `llama_model.generate(inputs_embeds=..., num_beams=4, do_sample=False, min_length=1,
repetition_penalty=1.0, length_penalty=1.0, max_new_tokens=200)`. With `inputs_embeds` and no
`input_ids`, HF starts from an EMPTY `input_ids` ([batch, 0]), so every length below counts
generated tokens only. The semantics this module implements, and the engine
(src/engine/llm/beamSearch.ts) mirrors token for token:

* **Step scores**: log-softmax of the last position's logits (float64 here, float64 in the
  engine: the logits of the two paths differ by ~1e-5 anyway, so neither copies the other's
  float32 rounding). `min_length` = 1 forbids every stop id at the first step (cur_len 0 < 1).
  Repetition penalty 1.0 and temperature/top-p (no sampling) change nothing.
* **Candidates**: each running beam's cumulative score + its step scores; the best `2 * beams`
  over all beams and tokens (at the first step only beam 0 counts: HF starts beams 1.. at -1e9).
* **Selection** (BeamSearchScorer.process), candidates best first: a stop-id candidate ranked
  within the first `beams` becomes a finished hypothesis (its tokens, without the stop id, scored
  sum_logprobs / len ** length_penalty); one ranked lower is skipped; other candidates become the
  next running beams until there are `beams` of them.
* **Finished set** (BeamHypotheses): keeps the best `beams` hypotheses by score; a new one enters
  if the set is not full or it beats the worst.
* **Done** (early_stopping False): once the set is full and its worst score >= the best candidate
  score of this step / cur_len ** length_penalty (cur_len = tokens before this step's token).
* **End**: when done, or after `max_new_tokens` tokens; at max tokens (not done) every running
  beam is offered to the finished set with its cumulative score. The answer is the finished
  hypothesis with the highest score (the last added of equals, as Python's stable sort + pop()).

`num_beams` = 1 is not beam search in HF (it is greedy_search): use llama.greedy_generate.
Each beam runs here as its own batch-1 sequence with its own KV cache (the engine batches them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch

from .llama import KVCache, LlamaDecoder, position_ids_from


@dataclass
class BeamHypothesis:
    tokens: list[int]
    score: float        # sum_logprobs / len(tokens) ** length_penalty
    sum_logprobs: float


@dataclass
class FinishedHypotheses:
    """HF's BeamHypotheses: the best `size` finished sequences."""
    size: int
    length_penalty: float
    items: list[BeamHypothesis] = field(default_factory=list)
    worst_score: float = 1e9

    def add(self, tokens: list[int], sum_logprobs: float) -> None:
        score = sum_logprobs / (len(tokens) ** self.length_penalty)
        if len(self.items) < self.size or score > self.worst_score:
            self.items.append(BeamHypothesis(list(tokens), score, sum_logprobs))
            if len(self.items) > self.size:
                ranked = sorted((h.score, i) for i, h in enumerate(self.items))
                del self.items[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, cur_len: int) -> bool:
        if len(self.items) < self.size:
            return False
        return self.worst_score >= best_sum_logprobs / (cur_len ** self.length_penalty)

    def best(self) -> BeamHypothesis:
        return sorted(self.items, key=lambda h: h.score)[-1]


@dataclass(frozen=True)
class BeamResult:
    tokens: list[int]           # the chosen hypothesis, without its stop id
    score: float                # its length-normalized score
    finished_by_stop: bool      # True if it ended with a stop id (False: it ran to max_new_tokens)
    steps: int                  # decoder steps taken after the prompt


@dataclass
class _Beam:
    tokens: list[int]
    sum_logprobs: float
    cache: KVCache
    logits: torch.Tensor        # [V] logits after its last fed token


@torch.no_grad()
def beam_search(
    decoder: LlamaDecoder,
    inputs_embeds: torch.Tensor,
    num_beams: int,
    max_new_tokens: int,
    stop_ids: Iterable[int] = (2,),
    lora_scale: Optional[float] = None,
    length_penalty: float = 1.0,
    min_length: int = 1,
) -> BeamResult:
    """HF 4.28 beam search (see the module docstring) over one prompt (inputs_embeds [1, T, H])."""
    if num_beams < 2:
        raise ValueError("num_beams must be >= 2 (one beam is greedy_generate)")
    stops = set(stop_ids)
    prompt_len = inputs_embeds.shape[1]
    logits, cache = decoder(inputs_embeds, position_ids_from(0, prompt_len), None, lora_scale)
    beams = [_Beam([], 0.0, cache, logits[0, -1])]  # beams 1.. start at -1e9 in HF: never chosen first
    finished = FinishedHypotheses(num_beams, length_penalty)
    done = False
    steps = 0
    for cur_len in range(max_new_tokens):
        candidates: list[tuple[float, int, int]] = []  # (score, beam index, token)
        for index, beam in enumerate(beams):
            step_scores = torch.log_softmax(beam.logits.double(), dim=-1)
            if cur_len < min_length:
                for stop in stops:
                    step_scores[stop] = float("-inf")
            top = torch.topk(step_scores + beam.sum_logprobs, 2 * num_beams)
            candidates += [(float(s), index, int(t)) for s, t in zip(top.values, top.indices)]
        candidates.sort(key=lambda c: -c[0])  # stable: equal scores keep beam, then token-rank order
        candidates = candidates[: 2 * num_beams]
        chosen: list[tuple[float, int, int]] = []
        for rank, (score, index, token) in enumerate(candidates):
            if token in stops:
                if rank < num_beams:
                    finished.add(beams[index].tokens, score)
            else:
                chosen.append((score, index, token))
            if len(chosen) == num_beams:
                break
        done = finished.is_done(candidates[0][0], cur_len) if cur_len > 0 else False
        if done or cur_len + 1 == max_new_tokens:
            beams = [_Beam(beams[i].tokens + [t], s, beams[i].cache, beams[i].logits) for s, i, t in chosen]
            break
        next_beams = []
        for score, index, token in chosen:
            parent = beams[index]
            position = position_ids_from(prompt_len + cur_len, 1)
            logits, cache = decoder(decoder.embed(torch.tensor([[token]])), position, parent.cache, lora_scale)
            next_beams.append(_Beam(parent.tokens + [token], score, cache, logits[0, -1]))
        beams = next_beams
        steps += 1
    if not done:
        for beam in beams:
            finished.add(beam.tokens, beam.sum_logprobs)
    best = finished.best()
    return BeamResult(best.tokens, best.score, _ended_by_stop(best, beams), steps)


def _ended_by_stop(best: BeamHypothesis, running: list[_Beam]) -> bool:
    """Whether `best` was finished by a stop id (not a running beam cut at max_new_tokens)."""
    return not any(beam.tokens == best.tokens and beam.sum_logprobs == best.sum_logprobs for beam in running)
