"""The steering probe graph against the PyTorch reference (localize.probe), run by onnxruntime-web in Node."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from random_decoder import SMALL, random_decoder
from salmonn.llama import LlamaDecoder, position_ids_from, rotary_cos_sin
from salmonn.localize import probe
from salmonn.onnx_decoder import save_model
from salmonn.onnx_probe import build_probe_model
from salmonn.ort_bridge import node_available, run_onnx

pytestmark = pytest.mark.skipif(not node_available(), reason="needs node and onnxruntime-web (npm ci)")

CONFIG = SMALL


def make_decoder(seed: int = 0) -> LlamaDecoder:
    return random_decoder(CONFIG, seed=seed)


@torch.no_grad()
def residual_entering(decoder: LlamaDecoder, embeds: torch.Tensor, layer: int, lora_scale: float) -> torch.Tensor:
    t = embeds.shape[1]
    cos, sin = rotary_cos_sin(position_ids_from(0, t), decoder.inv_freq())
    x = embeds
    for block in decoder.model.layers[:layer]:
        x, _ = block(x, cos, sin, None, lora_scale)
    return x


@pytest.mark.parametrize("steer", [False, True])
def test_probe_graph_matches_the_reference(tmp_path, steer):
    decoder = make_decoder()
    first, last, t, scale = 2, 3, 23, 2.5
    embeds = torch.randn(1, t, CONFIG.hidden_size, generator=torch.Generator().manual_seed(5))
    layers = tuple(range(first, last + 1))
    vectors = {l: torch.randn(CONFIG.hidden_size, generator=torch.Generator().manual_seed(10 + l)) * 3 for l in layers}
    expected = probe(decoder, embeds, layers, scale, vectors if steer else None, 1.0)

    path = tmp_path / "decoder_probe.onnx"
    save_model(build_probe_model(CONFIG, decoder.state_dict(), first, last), path)
    steer_input = np.stack([vectors[l].numpy() if steer else np.zeros(CONFIG.hidden_size) for l in layers]).astype(np.float32)
    out = run_onnx(path, {
        "hidden_in": residual_entering(decoder, embeds, first, scale).numpy().astype(np.float32),
        "position_ids": np.arange(t, dtype=np.int64)[None],
        "lora_scale": np.array(scale, dtype=np.float32),
        "steer": steer_input,
    })
    assert out["residual_last"].shape == (2, CONFIG.hidden_size)
    assert out["attention_last"].shape == (2, CONFIG.num_attention_heads, t)
    for j, layer in enumerate(layers):
        np.testing.assert_allclose(out["residual_last"][j], expected.residual[layer].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["attention_last"][j].mean(axis=0), expected.attention[layer].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["attention_last"].sum(axis=-1), 1.0, rtol=1e-5)


def test_probe_layers_must_exist():
    with pytest.raises(ValueError, match="outside"):
        build_probe_model(CONFIG, make_decoder().state_dict(), 3, 4)
