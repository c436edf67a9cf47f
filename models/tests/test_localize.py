"""Event localization by instruction steering: the reference's pieces, each against an independent path."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from random_decoder import SMALL, random_decoder
from salmonn.llama import LlamaDecoder, position_ids_from, rotary_cos_sin
from salmonn.localize import (
    LocalizeOptions,
    attention_delta,
    best_interval,
    default_layers,
    last_position_attention,
    localize,
    probe,
    smooth,
    steer_last,
    steering_vector,
    token_time_map,
)

CONFIG = replace(SMALL, num_hidden_layers=3)


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def make_decoder(seed: int = 0) -> LlamaDecoder:
    return random_decoder(CONFIG, seed=seed)


def embeds(t: int, seed: int) -> torch.Tensor:
    return torch.randn(1, t, CONFIG.hidden_size, generator=torch.Generator().manual_seed(seed))


def test_last_position_attention_weights_reproduce_the_attention_output():
    """probs @ v through o_proj equals Attention.forward's last row: the weights are the ones used."""
    decoder = make_decoder()
    attn = decoder.model.layers[1].self_attn
    x = embeds(9, seed=3)
    cos, sin = rotary_cos_sin(position_ids_from(0, 9), decoder.inv_freq())
    expected, (_, v) = attn(x, cos, sin, None, 4.0)
    probs = last_position_attention(attn, x, cos, sin, 4.0)  # [heads, T]
    assert probs.shape == (CONFIG.num_attention_heads, 9)
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(CONFIG.num_attention_heads))
    v = v.repeat_interleave(CONFIG.num_attention_heads // CONFIG.num_key_value_heads, dim=1)[0]  # [heads, T, D]
    heads = torch.einsum("ht,htd->hd", probs, v).reshape(1, 1, -1)
    torch.testing.assert_close(attn.o_proj(heads, 4.0)[0, 0], expected[0, -1], rtol=1e-5, atol=1e-6)


def test_probe_residuals_are_the_layer_inputs():
    decoder = make_decoder()
    x = embeds(7, seed=4)
    result = probe(decoder, x, (0, 1, 2))
    cos, sin = rotary_cos_sin(position_ids_from(0, 7), decoder.inv_freq())
    h = x
    for index, layer in enumerate(decoder.model.layers):
        torch.testing.assert_close(result.residual[index], h[0, -1])
        h, _ = layer(h, cos, sin, None, decoder.default_lora_scale)


def test_steering_keeps_the_norm_and_only_touches_the_last_position():
    x = embeds(5, seed=5)
    vector = torch.randn(CONFIG.hidden_size)
    out = steer_last(x, vector, 3.0)
    torch.testing.assert_close(out[0, :-1], x[0, :-1])
    assert math.isclose(float(out[0, -1].norm()), float(x[0, -1].norm()), rel_tol=1e-6)
    assert not torch.allclose(out[0, -1], x[0, -1])
    torch.testing.assert_close(steer_last(x, vector, 0.0), x)


def test_a_zero_vector_changes_nothing_and_a_real_one_moves_attention():
    decoder = make_decoder()
    focus, neutral = embeds(12, seed=6), embeds(12, seed=7)
    layers = (1, 2)
    plain = probe(decoder, neutral, layers)
    zero = {layer: torch.zeros(CONFIG.hidden_size) for layer in layers}
    unchanged = probe(decoder, neutral, layers, steering=zero, alpha=4.0)
    assert float(attention_delta(unchanged, plain, 2, 8).abs().max()) < 1e-6
    vector = steering_vector(probe(decoder, focus, layers), plain)
    steered = probe(decoder, neutral, layers, steering=vector, alpha=4.0)
    delta = attention_delta(steered, plain, 2, 8)
    assert delta.shape == (8,)
    assert float(delta.abs().max()) > 1e-4


def test_time_map_matches_the_engine_rule():
    times = token_time_map(2, 88, 17, 17)
    assert times.shape == (176, 2)
    assert times[0].tolist() == [0.0, 0.34]
    assert times[1].tolist() == pytest.approx([0.34, 0.68])
    assert times[88].tolist() == [30.0, 30.34]


def test_smoothing_is_a_centred_mean_that_keeps_a_constant():
    torch.testing.assert_close(smooth(torch.full((6,), 2.0), 3), torch.full((6,), 2.0, dtype=torch.float64))
    out = smooth(torch.tensor([0.0, 3.0, 0.0, 0.0]), 3)
    torch.testing.assert_close(out, torch.tensor([1.5, 1.0, 1.0, 0.0], dtype=torch.float64))


def test_best_interval_finds_a_planted_bump_with_full_confidence():
    times = token_time_map(1, 88, 17, 17)
    delta = torch.zeros(88, dtype=torch.float64)
    delta[40:46] = 1.0  # centres 13.77 .. 15.47 s
    delta[:5] = -0.5
    found = best_interval(delta, times, 2.0, 30.0)
    assert found.end - found.start == pytest.approx(2.0)
    centres = times.mean(dim=1)
    assert found.start <= float(centres[40]) and float(centres[45]) <= found.end
    assert found.confidence == pytest.approx(1.0)


def test_best_interval_stays_inside_a_short_recording():
    times = token_time_map(1, 88, 17, 17)
    delta = torch.zeros(88, dtype=torch.float64)
    delta[87] = 1.0
    found = best_interval(delta, times, 5.0, 3.0)
    assert (found.start, found.end) == (0.0, 3.0)


def test_localize_end_to_end_on_a_prompt_with_audio_in_the_middle():
    decoder = make_decoder(seed=1)
    audio = embeds(88, seed=8)
    focus = torch.cat([embeds(3, seed=9), audio, embeds(6, seed=10)], dim=1)
    neutral = torch.cat([embeds(3, seed=9), audio, embeds(4, seed=11)], dim=1)
    options = LocalizeOptions(layers=default_layers(CONFIG.num_hidden_layers), width_seconds=3.0)
    assert options.layers == (1, 2)
    found = localize(decoder, focus, neutral, (3, 3), 88, token_time_map(1, 88, 17, 17), 29.9, options)
    assert 0.0 <= found.start < found.end <= 29.9
    assert found.end - found.start == pytest.approx(3.0)
    assert 0.0 <= found.confidence <= 1.0
    assert found.delta.shape == (88,) and found.times.shape == (88,)
    # Deterministic: the same inputs give the same interval.
    again = localize(decoder, focus, neutral, (3, 3), 88, token_time_map(1, 88, 17, 17), 29.9, options)
    assert (again.start, again.end) == (found.start, found.end)
