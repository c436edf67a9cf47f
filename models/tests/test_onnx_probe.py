"""The steering probe graph against the PyTorch reference (localize.probe), run by onnxruntime-web in Node."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from random_decoder import SMALL, random_decoder
from salmonn.llama import LlamaDecoder, position_ids_from, rotary_cos_sin
from salmonn.localize import probe
import copy

from salmonn.onnx_decoder import reference_weights, save_model
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


def reference_for(decoder: LlamaDecoder, precision: str) -> LlamaDecoder:
    """The weight-exact reference of a `precision` graph (int4: dequantized linears)."""
    if precision == "fp32":
        return decoder
    ref = copy.deepcopy(decoder)
    ref.load_state_dict(reference_weights(decoder.state_dict(), precision))
    return ref


@pytest.mark.parametrize("steer,precision,first,last", [
    (False, "fp32", 2, 3), (True, "fp32", 2, 3), (True, "int4", 2, 3), (True, "fp32", 3, 3),
])
def test_probe_graph_matches_the_reference(tmp_path, steer, precision, first, last):
    decoder = make_decoder()
    reference = reference_for(decoder, precision)
    t, scale = 35, 2.5
    embeds = torch.randn(1, t, CONFIG.hidden_size, generator=torch.Generator().manual_seed(5))
    layers = tuple(range(first, last + 1))
    vectors = {l: torch.randn(CONFIG.hidden_size, generator=torch.Generator().manual_seed(10 + l)) * 3 for l in layers}
    expected = probe(reference, embeds, layers, scale, vectors if steer else None, 1.0)

    path = tmp_path / "decoder_probe.onnx"
    save_model(build_probe_model(CONFIG, decoder.state_dict(), first, last, precision=precision), path)
    steer_input = np.stack([vectors[l].numpy() if steer else np.zeros(CONFIG.hidden_size) for l in layers]).astype(np.float32)
    out = run_onnx(path, {
        "hidden_in": residual_entering(reference, embeds, first, scale).numpy().astype(np.float32),
        "position_ids": np.arange(t, dtype=np.int64)[None],
        "lora_scale": np.array(scale, dtype=np.float32),
        "steer": steer_input,
    })
    assert out["residual_last"].shape == (len(layers), CONFIG.hidden_size)
    assert out["attention_last"].shape == (len(layers), CONFIG.num_attention_heads, t)
    for j, layer in enumerate(layers):
        np.testing.assert_allclose(out["residual_last"][j], expected.residual[layer].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["attention_last"][j].mean(axis=0), expected.attention[layer].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["attention_last"].sum(axis=-1), 1.0, rtol=1e-5)


def test_the_last_probed_layer_stops_at_its_read_out():
    """Nothing after the last read-out reaches an output, so none of it is built: a one-layer probe
    has no GroupQueryAttention (inexact for 32+ new tokens on some WebGPU devices) and no MLP."""
    ops = [node.op_type for node in build_probe_model(CONFIG, make_decoder().state_dict(), 3, 3).graph.node]
    assert "GroupQueryAttention" not in ops and "Sigmoid" not in ops
    two = [node.op_type for node in build_probe_model(CONFIG, make_decoder().state_dict(), 2, 3).graph.node]
    assert two.count("GroupQueryAttention") == 1


def test_probe_layers_must_exist():
    with pytest.raises(ValueError, match="outside"):
        build_probe_model(CONFIG, make_decoder().state_dict(), 3, 4)
