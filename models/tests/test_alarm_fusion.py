"""ALARM-CA's cross-attention fusion (alarm/fusion.py) and its `connector` graph.

* the module against a written-out float64 formulation of the same math (layer norm, multi-head
  attention with key padding, GELU FFN, residuals, end padding, in/out projections) on tiny random
  inputs with unequal encoder lengths, and against torch's own nn.TransformerDecoderLayer
  (norm_first, GELU, batch first) loaded with the same weights;
* the fully-masked case (main length 0): torch gives NaN, the module clamps the length to 1;
* the key layout is ALARM's, loads strictly, and the config refuses what is not implemented;
* the exported graph in onnxruntime-web, ONE graph at several length sets (its axes are dynamic).
"""

from __future__ import annotations

import math
from typing import Dict, Mapping

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from alarm.export_fusion import (FusionRecording, connector_input_names, export_fusion, fusion_input_name,
                                 int4_fusion_reference)
from alarm.fusion import CrossAttentionConfig, CrossAttentionFusion, fuse, fusion_config_from_alarm, pad_outputs
from salmonn.onnx_decoder import save_model
from salmonn.ort_bridge import OrtSession, node_available

# alarm_ca.yaml's audio_fusion_config at tiny widths (same encoders, order and flags)
TINY = dict(fusion_type="crossattention", llm_embedding_dim=16, hidden_dim=24, ffn_dims=40, dropout=0.1,
            num_attention_heads=4, num_hidden_layers=[1, 2, 1], main_encoder="whisper",
            conditional_encoders=["w2vbert", "muq", "sslam"], use_skip_connection=False)


def tiny_fusion(seed: int = 0, **changes) -> CrossAttentionFusion:
    cfg = CrossAttentionConfig.from_alarm({**TINY, **changes})
    fusion = CrossAttentionFusion(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in fusion.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("norm3.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
    return fusion


def adapter_outputs(lengths: Mapping[str, int], width: int = 16, seed: int = 1) -> Dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(1, t, width, generator=g) for name, t in lengths.items()}


# ---------------------------------------------------------------------------------------------
# The same math written out in float64


def layer_norm64(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def attention64(s: Mapping[str, Tensor], prefix: str, query: Tensor, keys: Tensor, valid: Tensor, heads: int) -> Tensor:
    """query [Tq, D], keys [Tk, D], valid [Tk] bool -> [Tq, D], one head at a time."""
    d = query.shape[-1]
    w, b = s[prefix + "in_proj_weight"], s[prefix + "in_proj_bias"]
    q = query @ w[:d].T + b[:d]
    k = keys @ w[d:2 * d].T + b[d:2 * d]
    v = keys @ w[2 * d:].T + b[2 * d:]
    dh = d // heads
    outs = []
    for h in range(heads):
        cols = slice(h * dh, (h + 1) * dh)
        scores = q[:, cols] @ k[:, cols].T / math.sqrt(dh)
        weights = torch.exp(scores - scores[:, valid].max(dim=-1, keepdim=True).values) * valid[None, :]
        weights = weights / weights.sum(dim=-1, keepdim=True)
        outs.append(weights @ v[:, cols])
    return torch.cat(outs, dim=-1) @ s[prefix + "out_proj.weight"].T + s[prefix + "out_proj.bias"]


def gelu64(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def reference_fusion64(fusion: CrossAttentionFusion, outputs: Mapping[str, Tensor], main_length: int) -> Tensor:
    """ALARM's AudioFusion (pad at the end) + CrossAttentionFusion, batch 1, float64 -> [T, D]."""
    cfg = fusion.cfg
    s = {k: v.double() for k, v in fusion.state_dict().items()}
    frames = max(x.shape[1] for x in outputs.values())
    padded = {n: torch.cat([x[0].double(), torch.zeros(frames - x.shape[1], x.shape[2], dtype=torch.float64)])
              for n, x in outputs.items()}

    def linear(prefix: str, x: Tensor) -> Tensor:
        return x @ s[prefix + "weight"].T + s[prefix + "bias"]

    valid = torch.arange(frames) < main_length  # keys of BOTH attentions, from the main length
    main = linear(f"in_proj.{cfg.main_encoder}.", padded[cfg.main_encoder])
    x = main
    for name, depth in zip(cfg.conditional_encoders, cfg.num_hidden_layers):
        memory = linear(f"in_proj.{name}.", padded[name])
        for i in range(depth):
            p = f"condition_modules.{name}.{i}."
            h = layer_norm64(x, s[p + "norm1.weight"], s[p + "norm1.bias"])
            x = x + attention64(s, p + "self_attn.", h, h, valid, cfg.num_attention_heads)
            h = layer_norm64(x, s[p + "norm2.weight"], s[p + "norm2.bias"])
            x = x + attention64(s, p + "multihead_attn.", h, memory, valid, cfg.num_attention_heads)
            h = layer_norm64(x, s[p + "norm3.weight"], s[p + "norm3.bias"])
            x = x + linear(p + "linear2.", gelu64(linear(p + "linear1.", h)))
    if cfg.use_skip_connection:
        x = x + main
    return linear("out_proj.", x)


LENGTH_SETS = [
    # main shorter than two others (rows past the main length are read), main odd-sized
    ({"whisper": 7, "w2vbert": 9, "muq": 8, "sslam": 6}, 6),
    # main longest; a conditional encoder shorter than the main length (its padding is attended)
    ({"whisper": 11, "w2vbert": 10, "muq": 11, "sslam": 5}, 10),
    # one frame
    ({"whisper": 1, "w2vbert": 1, "muq": 1, "sslam": 1}, 1),
]


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("lengths,main_length", LENGTH_SETS)
def test_fusion_matches_float64_formulation(lengths, main_length, skip):
    fusion = tiny_fusion(use_skip_connection=skip)
    outputs = adapter_outputs(lengths)
    with torch.no_grad():
        got = fusion(pad_outputs(outputs), torch.tensor([main_length]))[0]
    expected = reference_fusion64(fusion, outputs, main_length)
    assert got.shape == (max(lengths.values()), 16)
    assert torch.allclose(got.double(), expected, atol=2e-5, rtol=1e-5), float((got.double() - expected).abs().max())


def torch_layers(fusion: CrossAttentionFusion) -> Dict[str, nn.ModuleList]:
    """torch's own TransformerDecoderLayer stacks (as ALARM builds them) with the fusion's weights."""
    cfg = fusion.cfg
    stacks = {}
    for name, depth in zip(cfg.conditional_encoders, cfg.num_hidden_layers):
        stack = nn.ModuleList(nn.TransformerDecoderLayer(
            d_model=cfg.hidden_dim, nhead=cfg.num_attention_heads, dim_feedforward=cfg.ffn_dims, dropout=cfg.dropout,
            activation=nn.functional.gelu, norm_first=True, batch_first=True) for _ in range(depth))
        stack.load_state_dict(fusion.condition_modules[name].state_dict(), strict=True)
        stacks[name] = stack.eval()
    return stacks


def run_torch_layers(fusion: CrossAttentionFusion, outputs: Mapping[str, Tensor], main_length: int) -> Tensor:
    cfg = fusion.cfg
    padded = pad_outputs(outputs)
    stacks = torch_layers(fusion)
    main = fusion.in_proj[cfg.main_encoder](padded[cfg.main_encoder])
    mask = torch.arange(main.shape[1])[None, :] >= torch.tensor([main_length])[:, None]
    x = main
    for name in cfg.conditional_encoders:
        memory = fusion.in_proj[name](padded[name])
        for layer in stacks[name]:
            x = layer(tgt=x, memory=memory, tgt_key_padding_mask=mask, memory_key_padding_mask=mask)
    return fusion.out_proj(x)[0]


@pytest.mark.parametrize("lengths,main_length", LENGTH_SETS[:2])
def test_fusion_matches_torch_transformer_decoder_layer(lengths, main_length):
    fusion = tiny_fusion(seed=5)
    outputs = adapter_outputs(lengths, seed=6)
    with torch.no_grad():
        got = fusion(pad_outputs(outputs), torch.tensor([main_length]))[0]
        expected = run_torch_layers(fusion, outputs, main_length)
    assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())


def test_main_length_zero_is_nan_in_torch_and_clamped_to_one_here():
    fusion = tiny_fusion(seed=7)
    outputs = adapter_outputs({"whisper": 1, "w2vbert": 3, "muq": 2, "sslam": 3}, seed=8)
    with torch.no_grad():
        assert torch.isnan(run_torch_layers(fusion, outputs, 0)).all()
        zero = fusion(pad_outputs(outputs), torch.tensor([0]))
        one = fusion(pad_outputs(outputs), torch.tensor([1]))
    assert torch.isfinite(zero).all() and torch.equal(zero, one)


def test_conditional_order_and_main_mask_matter():
    """Swapping the conditional order, or the main length, changes the output (they are used)."""
    lengths, main_length = LENGTH_SETS[0]
    outputs = adapter_outputs(lengths)
    fusion = tiny_fusion(num_hidden_layers=[1, 1, 1])
    swapped = CrossAttentionFusion(CrossAttentionConfig.from_alarm(
        {**TINY, "num_hidden_layers": [1, 1, 1], "conditional_encoders": ["sslam", "muq", "w2vbert"]})).eval()
    swapped.load_state_dict(fusion.state_dict(), strict=True)
    with torch.no_grad():
        a = fusion(pad_outputs(outputs), torch.tensor([main_length]))
        b = swapped(pad_outputs(outputs), torch.tensor([main_length]))
        c = fusion(pad_outputs(outputs), torch.tensor([main_length + 1]))
    assert not torch.allclose(a, b, atol=1e-3) and not torch.allclose(a, c, atol=1e-3)


def test_fuse_cuts_to_the_longest_adapter_length():
    fusion = tiny_fusion()
    lengths, main_length = LENGTH_SETS[0]
    outputs = adapter_outputs(lengths)
    adapter_lengths = {"whisper": main_length, "w2vbert": 8, "muq": 8, "sslam": 6}
    with torch.no_grad():
        audio = fuse(fusion, outputs, adapter_lengths)
        full = fusion(pad_outputs(outputs), torch.tensor([main_length]))[0]
    assert torch.equal(audio, full[:8])
    summed = fuse(None, {"whisper": outputs["whisper"], "muq": outputs["muq"]}, {"whisper": 3, "muq": 0})
    assert summed.shape == (3, 16)
    assert torch.equal(summed, (outputs["whisper"][0] + outputs["muq"][0, :7])[:3])


# ---------------------------------------------------------------------------------------------
# Key layout and configuration


def expected_keys(cfg: CrossAttentionConfig) -> list:
    per_layer = [f"{a}.{p}" for a in ("self_attn", "multihead_attn") for p in
                 ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")]
    per_layer += [f"{m}.{p}" for m in ("linear1", "linear2", "norm1", "norm2", "norm3") for p in ("weight", "bias")]
    keys = [f"condition_modules.{e}.{i}.{k}" for e, n in zip(cfg.conditional_encoders, cfg.num_hidden_layers)
            for i in range(n) for k in per_layer]
    keys += [f"in_proj.{e}.{p}" for e in cfg.encoders for p in ("weight", "bias")]
    return sorted(keys + ["out_proj.weight", "out_proj.bias"])


def test_key_layout_is_alarms_and_loads_strictly():
    fusion = tiny_fusion()
    state = fusion.state_dict()
    assert sorted(state) == expected_keys(fusion.cfg)
    assert list(state["condition_modules.muq.1.self_attn.in_proj_weight"].shape) == [72, 24]
    assert list(state["condition_modules.sslam.0.linear1.weight"].shape) == [40, 24]
    assert list(state["in_proj.whisper.weight"].shape) == [24, 16] and list(state["out_proj.weight"].shape) == [16, 24]
    fresh = CrossAttentionFusion(fusion.cfg)
    fresh.load_state_dict(state, strict=True)
    renamed = dict(state)
    renamed["condition_modules.muq.1.self_attn.in_proj_w"] = renamed.pop("condition_modules.muq.1.self_attn.in_proj_weight")
    with pytest.raises(RuntimeError, match="in_proj_weight"):
        fresh.load_state_dict(renamed, strict=True)
    wrong = dict(state, **{"in_proj.sslam.weight": torch.zeros(24, 17)})
    with pytest.raises(RuntimeError, match="in_proj.sslam.weight"):
        fresh.load_state_dict(wrong, strict=True)


def test_config_reads_alarm_ca_and_refuses_what_is_not_there():
    kind, cfg = fusion_config_from_alarm({**TINY, "llm_embedding_dim": 1024, "hidden_dim": 1024, "ffn_dims": 4096,
                                          "num_attention_heads": 16, "num_hidden_layers": [1, 1, 1]})
    assert kind == "crossattention" and cfg.encoders == ("whisper", "w2vbert", "muq", "sslam")
    assert sum(p.numel() for p in CrossAttentionFusion(cfg).parameters()) == (
        4 * (1024 * 1024 + 1024) + 1024 * 1024 + 1024  # in_proj x4, out_proj
        + 3 * (2 * (3 * 1024 * 1024 + 3 * 1024 + 1024 * 1024 + 1024) + 2 * 1024 * 4096 + 4096 + 1024 + 3 * 2048))
    assert fusion_config_from_alarm({"fusion_type": "sum"}) == ("sum", None)
    kind, p_cfg = fusion_config_from_alarm({"fusion_type": "multiperceiver", "num_latents": [20, 20, 20]})
    assert kind == "multiperceiver" and p_cfg.encoders == ("whisper", "w2vbert", "muq", "sslam")
    # ALARM's single PerceiverFusion: in fusion_model_dict, in no released config
    with pytest.raises(ValueError, match="'perceiver'.*not implemented"):
        fusion_config_from_alarm({"fusion_type": "perceiver"})
    with pytest.raises(ValueError, match="num_hidden_layers"):
        fusion_config_from_alarm({**TINY, "num_hidden_layers": [1, 1]})
    with pytest.raises(ValueError, match="num_latents"):
        fusion_config_from_alarm({**TINY, "num_latents": [20]})
    with pytest.raises(ValueError, match="not a multiple"):
        fusion_config_from_alarm({**TINY, "num_attention_heads": 5})


# ---------------------------------------------------------------------------------------------
# The connector graph in onnxruntime-web


@pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")
def test_connector_graph_one_graph_for_every_length_set(tmp_path):
    fusion = tiny_fusion(seed=9)
    path = tmp_path / "connector.onnx"
    save_model(export_fusion(fusion), path)
    assert connector_input_names(fusion) == ["adapted_whisper", "adapted_w2vbert", "adapted_muq", "adapted_sslam",
                                             "main_length"]
    module = FusionRecording(fusion).eval()
    with OrtSession(path) as session:
        for lengths, main_length in LENGTH_SETS + [({"whisper": 750, "w2vbert": 751, "muq": 750, "sslam": 768}, 750),
                                                   ({"whisper": 3, "w2vbert": 0, "muq": 2, "sslam": 4}, 0)]:
            outputs = adapter_outputs(lengths, seed=10)
            feeds = {fusion_input_name(n): outputs[n].numpy() for n in fusion.cfg.encoders}
            feeds["main_length"] = np.array([main_length], np.int64)
            got = session.run(feeds)["audio_tokens"]
            with torch.no_grad():
                expected = fusion(pad_outputs(outputs), torch.tensor([main_length])).numpy()
                traced_twin = module(*(outputs[n] for n in fusion.cfg.encoders), torch.tensor([main_length])).numpy()
            np.testing.assert_array_equal(traced_twin, expected)
            assert got.shape == expected.shape == (1, max(lengths.values()), 16)
            err = float(np.abs(got - expected).max() / max(1.0, float(np.abs(expected).max())))
            assert err < 1e-4, f"{lengths}: {err}"


@pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")
def test_connector_graph_int4(tmp_path):
    """int4: MatMulNBits for every projection, in_proj_weight included, against the reference
    holding the same dequantized weights (tolerance of the int4 graph tests)."""
    fusion = tiny_fusion(seed=11)
    path = tmp_path / "connector_q4.onnx"
    model = export_fusion(fusion, "int4")
    ops = [n.op_type for n in model.graph.node]
    layers = sum(fusion.cfg.num_hidden_layers)
    # per layer q, k, v and out_proj of both attentions + the FFN's two; in_proj per encoder; out_proj
    assert ops.count("MatMulNBits") == layers * (2 * 4 + 2) + 4 + 1
    assert ops.count("MatMul") == layers * 2 * 2  # only q k^T and weights v (activations by activations)
    save_model(model, path)
    reference = int4_fusion_reference(fusion)
    with OrtSession(path) as session:
        for lengths, main_length in LENGTH_SETS[:2]:
            outputs = adapter_outputs(lengths, seed=12)
            feeds = {fusion_input_name(n): outputs[n].numpy() for n in fusion.cfg.encoders}
            feeds["main_length"] = np.array([main_length], np.int64)
            got = session.run(feeds)["audio_tokens"]
            with torch.no_grad():
                expected = reference(pad_outputs(outputs), torch.tensor([main_length])).numpy()
            err = float(np.abs(got - expected).max() / max(1.0, float(np.abs(expected).max())))
            assert err < 1e-3, f"{lengths}: {err}"
