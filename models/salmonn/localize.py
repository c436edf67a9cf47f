"""Where in the recording: localize a queried sound event by instruction steering.

The method of the brief's fourth paper (Lin & Lee, "Steering where to listen"), with our own
defaults where the paper's exact choices are not public:

1. Steering vector. With the audio fixed, run the prompt under a *focus* instruction that names
   the event and under a *neutral* instruction; per chosen layer l,
   v_l = h_focus(l) - h_neutral(l), where h(l) is the residual stream entering layer l at the
   last prompt position.
2. Read-out. Run the *query* prompt (by default the neutral one) twice: as is, and with alpha * v_l
   added to the residual entering each chosen layer at the last position, rescaled to the norm it
   had (the authors' earlier audio-steering recipe). From each chosen layer, take the attention of
   the last position onto every audio token, averaged over heads and layers;
   delta = steered - unsteered.
3. Time. Each audio token covers [start, end] seconds (88 tokens per 30 s window, see
   `token_time_map`); delta is smoothed with a centred moving average over tokens and the answer is
   the interval of fixed width whose tokens carry the most delta.

Why a fixed-width best interval rather than a threshold: the scale of delta differs between
models, layers and alpha, so any threshold would need tuning per model; the window's width is a
property of the question (how long the sound is), and the three-event evaluation knows it.
The confidence is the share of the positive delta mass that falls inside the interval (0..1): it
needs no scale either.

This is the reference the engine's localizer is tested against: small functions over the
PyTorch decoder of `llama.py`, recomputing attention explicitly so that its weights can be read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional

import torch
import torch.nn.functional as F

from .llama import Attention, LlamaDecoder, apply_rotary, causal_mask, position_ids_from, repeat_kv, rotary_cos_sin

FOCUS_INSTRUCTION = "Listen for {event}. When do you hear {event}?"
NEUTRAL_INSTRUCTION = "Describe the audio."


@dataclass(frozen=True)
class LocalizeOptions:
    """Every choice of the method, as the manifest/engine options carry them."""

    layers: tuple[int, ...]
    """Layers steered and read out (later layers: the effect depends on them)."""
    alpha: float = 4.0
    """Steering strength: alpha * v is added, then the residual is rescaled to its norm."""
    width_seconds: float = 2.0
    """Width of the returned interval."""
    smooth_tokens: int = 3
    """Centred moving average over audio tokens (odd; 1 = none)."""
    lora_scale: Optional[float] = None
    """LoRA scale for all runs (None: the adapter's default)."""


def default_layers(num_layers: int) -> tuple[int, ...]:
    """The later half of the stack, at most 8 layers: 16..23 of 32 for Vicuna-7B; 1 of 2 for tiny."""
    start = num_layers // 2
    return tuple(range(start, min(num_layers, start + 8)))


@dataclass
class Probe:
    """What one prompt run exposes at its last position."""

    residual: dict[int, torch.Tensor]
    """Layer -> residual entering it at the last position, [H] (before any steering)."""
    attention: dict[int, torch.Tensor]
    """Layer -> attention of the last position onto every position, mean over heads, [T]."""


def last_position_attention(attn: Attention, x_normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, lora_scale: float) -> torch.Tensor:
    """Softmax weights of the last query position over all T keys, per head: [heads, T].

    The same arithmetic as Attention.forward (rotated q and k, repeated kv heads, fp32 softmax),
    written out because the forward pass does not return its weights.
    """
    b, t, _ = x_normed.shape
    q = attn._split_heads(attn.q_proj(x_normed, lora_scale), attn.num_heads)
    k = attn._split_heads(attn.k_proj(x_normed, lora_scale), attn.num_kv_heads)
    q = apply_rotary(q, cos, sin)[:, :, -1:]
    k = repeat_kv(apply_rotary(k, cos, sin), attn.num_heads // attn.num_kv_heads)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(attn.head_dim)  # [B, heads, 1, T]
    mask = causal_mask(t, 0, x_normed.device)[-1:]
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = F.softmax(scores.float(), dim=-1)
    return probs[0, :, 0]


def steer_last(x: torch.Tensor, vector: torch.Tensor, alpha: float) -> torch.Tensor:
    """x [1, T, H] with alpha * vector added at the last position, rescaled to the norm it had."""
    last = x[0, -1]
    steered = last + alpha * vector.to(last.dtype)
    steered = steered * (last.norm() / steered.norm().clamp_min(torch.finfo(last.dtype).tiny))
    out = x.clone()
    out[0, -1] = steered
    return out


@torch.no_grad()
def probe(
    decoder: LlamaDecoder,
    inputs_embeds: torch.Tensor,
    layers: tuple[int, ...],
    lora_scale: Optional[float] = None,
    steering: Optional[Mapping[int, torch.Tensor]] = None,
    alpha: float = 0.0,
) -> Probe:
    """One uncached prompt run (inputs_embeds [1, T, H], positions 0..T-1) that records, for each
    layer in `layers`, the residual entering it and the last position's attention; with
    `steering`, alpha * steering[l] is added (and rescaled) to the residual entering layer l."""
    scale = decoder.default_lora_scale if lora_scale is None else lora_scale
    t = inputs_embeds.shape[1]
    cos, sin = rotary_cos_sin(position_ids_from(0, t, inputs_embeds.device), decoder.inv_freq(inputs_embeds.device))
    residual: dict[int, torch.Tensor] = {}
    attention: dict[int, torch.Tensor] = {}
    x = inputs_embeds
    for index, layer in enumerate(decoder.model.layers):
        if index in layers:
            residual[index] = x[0, -1].clone()
            if steering is not None and index in steering:
                x = steer_last(x, steering[index], alpha)
            attention[index] = last_position_attention(layer.self_attn, layer.input_layernorm(x), cos, sin, scale).mean(dim=0)
        x, _ = layer(x, cos, sin, None, scale)
    return Probe(residual, attention)


def steering_vector(focus: Probe, neutral: Probe) -> dict[int, torch.Tensor]:
    """v_l = h_focus(l) - h_neutral(l), per probed layer."""
    return {layer: focus.residual[layer] - neutral.residual[layer] for layer in focus.residual}


def attention_delta(steered: Probe, plain: Probe, audio_start: int, num_audio: int) -> torch.Tensor:
    """Steered minus unsteered attention on the audio tokens, mean over the probed layers: [N]."""
    layers = sorted(plain.attention)
    window = slice(audio_start, audio_start + num_audio)
    diffs = [steered.attention[layer][window] - plain.attention[layer][window] for layer in layers]
    return torch.stack(diffs).mean(dim=0)


def token_time_map(num_chunks: int, tokens_per_chunk: int, window_frames: int, stride_frames: int, frame_seconds: float = 0.02, chunk_seconds: float = 30.0) -> torch.Tensor:
    """[num_chunks * tokens_per_chunk, 2] (start, end) seconds of each audio token (as the engine's tokenTimeMap)."""
    rows = []
    for c in range(num_chunks):
        for i in range(tokens_per_chunk):
            start = c * chunk_seconds + i * stride_frames * frame_seconds
            rows.append((start, start + window_frames * frame_seconds))
    return torch.tensor(rows, dtype=torch.float64)


def smooth(values: torch.Tensor, tokens: int) -> torch.Tensor:
    """Centred moving average over `tokens` (odd) neighbours; the ends average what exists."""
    if tokens <= 1:
        return values.double()
    assert tokens % 2 == 1, "smoothing width must be odd"
    v = values.double()
    half = tokens // 2
    padded = F.pad(v[None, None], (half, half))[0, 0]
    counts = F.pad(torch.ones_like(v)[None, None], (half, half))[0, 0]
    kernel = torch.ones(tokens, dtype=torch.float64)
    total = F.conv1d(padded[None, None], kernel[None, None])[0, 0]
    n = F.conv1d(counts[None, None], kernel[None, None])[0, 0]
    return total / n


@dataclass
class Localization:
    start: float
    end: float
    confidence: float
    times: torch.Tensor
    """[N] centre time of each audio token, seconds."""
    delta: torch.Tensor
    """[N] smoothed delta per audio token."""


def best_interval(delta: torch.Tensor, time_map: torch.Tensor, width_seconds: float, duration_seconds: float) -> Localization:
    """The interval of `width_seconds` (clipped to the recording) whose token centres carry the
    largest summed delta. Candidates begin or end at a token centre (every distinct set of tokens
    a window can hold is among them); where several hold the same largest sum, the interval is
    centred between the first and the last of them, so a short bump sits in its middle."""
    centres = time_map.mean(dim=1)
    width = min(width_seconds, duration_seconds)
    latest = max(duration_seconds - width, 0.0)

    def clip(start: float) -> float:
        return min(max(start, 0.0), latest)

    def window_sum(start: float) -> float:
        return float(delta[(centres >= start) & (centres <= start + width)].sum())

    candidates = sorted({clip(c) for c in centres.tolist()} | {clip(c - width) for c in centres.tolist()})
    sums = [window_sum(start) for start in candidates]
    best = max(sums)
    tied = [start for start, total in zip(candidates, sums) if total >= best - 1e-12]
    start = (tied[0] + tied[-1]) / 2 if window_sum((tied[0] + tied[-1]) / 2) >= best - 1e-12 else tied[0]
    inside = (centres >= start) & (centres <= start + width)
    positive = delta.clamp_min(0)
    mass = float(positive.sum())
    confidence = float(positive[inside].sum()) / mass if mass > 0 else 0.0
    return Localization(start, start + width, confidence, centres, delta)


@torch.no_grad()
def localize(
    decoder: LlamaDecoder,
    focus_embeds: torch.Tensor,
    neutral_embeds: torch.Tensor,
    audio_starts: tuple[int, int],
    num_audio: int,
    time_map: torch.Tensor,
    duration_seconds: float,
    options: LocalizeOptions,
    query_embeds: Optional[torch.Tensor] = None,
    query_audio_start: Optional[int] = None,
) -> Localization:
    """The whole method for one event. `audio_starts` are the first audio position in the focus
    and neutral prompts; the query prompt defaults to the neutral one."""
    layers = options.layers
    focus = probe(decoder, focus_embeds, layers, options.lora_scale)
    neutral = probe(decoder, neutral_embeds, layers, options.lora_scale)
    vector = steering_vector(focus, neutral)
    query = neutral_embeds if query_embeds is None else query_embeds
    query_start = audio_starts[1] if query_audio_start is None else query_audio_start
    plain = neutral if query_embeds is None else probe(decoder, query, layers, options.lora_scale)
    steered = probe(decoder, query, layers, options.lora_scale, vector, options.alpha)
    delta = smooth(attention_delta(steered, plain, query_start, num_audio), options.smooth_tokens)
    return best_interval(delta, time_map, options.width_seconds, duration_seconds)
