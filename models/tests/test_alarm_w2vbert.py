"""w2v-BERT 2.0 as ALARM-CA uses it (models/alarm/w2vbert.py), on a tiny random encoder:

* each conformer part against a written-out float64 formulation of HF's code (the relative-key
  term as HF's einsum over a [T, T, d] table, the causal depthwise conv as a loop over taps);
* the HF hidden-state indexing, the masked last frame, ALARM's 1500-frame pieces;
* the features against @huggingface/transformers' SeamlessM4TFeatureExtractor in Node (what the
  engine runs) and the fbank against torchaudio's Kaldi fbank (what HF's Python once used);
* the real key layout and parameter count, the strict loader;
* the exported `encoder.w2vbert` graph in onnxruntime-web against the PyTorch chunk.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from torch import Tensor

from alarm.adapter import AdapterConfig, AlarmAdapter
from alarm.export_w2vbert import W2VBertChunk, export_w2vbert_encoder
from alarm.tiny_w2vbert import TINY_W2VBERT_HF, TINY_W2VBERT_LAYERS, tiny_w2vbert_config, tiny_w2vbert_state
from alarm.w2vbert import (ALARM_CA_LAYERS, CHUNK_FRAMES, FRAMES_PER_SECOND, W2V_BERT_2_0, W2V_BERT_2_0_HF,
                           W2VBertConfig, W2VBertEncoder, encoder_frames, feature_frames, hidden_states,
                           ignored_checkpoint_keys, load_w2vbert_state, log_mel_fbank, parameter_count,
                           relative_distance_index, w2vbert_features)
from salmonn.checkpoints import _on_meta_device
from salmonn.export import fake_quantize_linears
from salmonn.onnx_decoder import save_model
from salmonn.ort_bridge import OrtSession, node_available

REPO = Path(__file__).resolve().parents[2]
FEATURES_SCRIPT = REPO / "models" / "tools" / "seamless_features.mjs"
needs_node = pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")
TOL = {"fp32": 1e-4, "int4": 1e-3}


def close(actual: np.ndarray, expected: np.ndarray) -> float:
    """Max abs error relative to max(1, max |expected|) (test_alarm_onnx.py's measure)."""
    return float(np.abs(actual - expected).max() / max(1.0, float(np.abs(expected).max())))


@pytest.fixture(scope="module")
def tiny() -> W2VBertEncoder:
    enc = W2VBertEncoder(tiny_w2vbert_config()).eval()
    load_w2vbert_state(enc, tiny_w2vbert_state(seed=0))
    return enc


# ---------------------------------------------------------------------------------------------
# HF's computation written out in float64


def layer_norm(x: Tensor, p: Dict[str, Tensor], name: str, eps: float) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * p[f"{name}.weight"] + p[f"{name}.bias"]


def swish(x: Tensor) -> Tensor:
    return x / (1.0 + torch.exp(-x))


def linear(x: Tensor, p: Dict[str, Tensor], name: str) -> Tensor:
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def ref_attention(x: Tensor, p: Dict[str, Tensor], cfg: W2VBertConfig, mask: Optional[Tensor]) -> Tensor:
    b, t, _ = x.shape
    h, d = cfg.num_attention_heads, cfg.head_size
    q, k, v = (linear(x, p, f"self_attn.linear_{n}").view(b, t, h, d).transpose(1, 2) for n in "qkv")
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    left, right = cfg.left_max_position_embeddings, cfg.right_max_position_embeddings
    rows = [[min(max(j - i, -left), right) + left for j in range(t)] for i in range(t)]
    table = p["self_attn.distance_embedding.weight"][torch.tensor(rows)]  # [T, T, d], as HF builds it
    scores = scores + torch.einsum("bhld,lrd->bhlr", q, table) / math.sqrt(d)
    if mask is not None:
        scores = scores + (1.0 - mask[:, None, None, :].double()) * torch.finfo(torch.float64).min
    context = torch.softmax(scores, dim=-1) @ v
    return linear(context.transpose(1, 2).reshape(b, t, h * d), p, "self_attn.linear_out")


def ref_conv(x: Tensor, p: Dict[str, Tensor], cfg: W2VBertConfig, mask: Optional[Tensor]) -> Tensor:
    hidden, taps = cfg.hidden_size, cfg.conv_depthwise_kernel_size
    y = layer_norm(x, p, "conv_module.layer_norm", cfg.layer_norm_eps)
    if mask is not None:
        y = y * mask[..., None].double()
    a = y @ p["conv_module.pointwise_conv1.weight"][:, :, 0].T
    gated = a[..., :hidden] * torch.sigmoid(a[..., hidden:])
    w = p["conv_module.depthwise_conv.weight"][:, 0, :]  # [H, K]
    out = torch.zeros_like(gated)
    for t in range(gated.shape[1]):  # causal: output t sees inputs t - K + 1 .. t
        for tap in range(taps):
            src = t - (taps - 1) + tap
            if src >= 0:
                out[:, t] += w[:, tap] * gated[:, src]
    out = swish(layer_norm(out, p, "conv_module.depthwise_layer_norm", cfg.layer_norm_eps))
    return out @ p["conv_module.pointwise_conv2.weight"][:, :, 0].T


def ref_layer(x: Tensor, p: Dict[str, Tensor], cfg: W2VBertConfig, mask: Optional[Tensor]) -> Tensor:
    eps = cfg.layer_norm_eps

    def ffn(z: Tensor, name: str) -> Tensor:
        return linear(swish(linear(z, p, f"{name}.intermediate_dense")), p, f"{name}.output_dense")

    x = x + 0.5 * ffn(layer_norm(x, p, "ffn1_layer_norm", eps), "ffn1")
    x = x + ref_attention(layer_norm(x, p, "self_attn_layer_norm", eps), p, cfg, mask)
    x = x + ref_conv(x, p, cfg, mask)
    x = x + 0.5 * ffn(layer_norm(x, p, "ffn2_layer_norm", eps), "ffn2")
    return layer_norm(x, p, "final_layer_norm", eps)


def ref_hidden_states(state: Dict[str, Tensor], cfg: W2VBertConfig, features: Tensor,
                      mask: Optional[Tensor] = None) -> List[Tensor]:
    """HF's tuple: [projection output, layer 1 output, ..., layer N output], float64."""
    p = {k: v.double() for k, v in state.items()}
    x = linear(layer_norm(features.double(), p, "feature_projection.layer_norm", cfg.layer_norm_eps), p,
               "feature_projection.projection")
    if mask is not None:
        x = x * mask[..., None].double()
    out = [x]
    for i in range(cfg.num_hidden_layers):
        prefix = f"encoder.layers.{i}."
        x = ref_layer(x, {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}, cfg, mask)
        out.append(x)
    return out


def test_distance_index_is_the_clamped_offset():
    index = relative_distance_index(12, left=4, right=2)
    expected = [[min(max(j - i, -4), 2) + 4 for j in range(12)] for i in range(12)]
    assert index.tolist() == expected


@pytest.mark.parametrize("masked", [False, True], ids=["all_real", "last_frames_padded"])
def test_layers_match_the_float64_formulation(tiny, masked):
    cfg = tiny.cfg
    features = torch.randn(2, 23, 160, generator=torch.Generator().manual_seed(1))
    mask = None
    if masked:
        mask = torch.ones(2, 23, dtype=torch.int64)
        mask[1, 20:] = 0
    expected = ref_hidden_states(tiny.state_dict(), cfg, features, mask)
    every = list(range(cfg.num_hidden_layers + 1))
    as_f64 = W2VBertEncoder(cfg).double().eval()
    as_f64.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        got64 = as_f64(features.double(), every, mask)
        got32 = tiny(features, every, mask)
    for i in every:
        assert torch.allclose(got64[i], expected[i], atol=1e-10), f"hidden state {i} (float64)"
        assert close(got32[i].numpy(), expected[i].numpy()) < 1e-4, f"hidden state {i} (float32)"


def test_hidden_states_follow_hf_indexing(tiny):
    features = torch.randn(1, 30, 160, generator=torch.Generator().manual_seed(2))
    expected = ref_hidden_states(tiny.state_dict(), tiny.cfg, features)
    got = hidden_states(tiny, features, [4, 0, 2])
    assert got.shape == (3, 1, 30, 32)
    for row, index in enumerate([4, 0, 2]):
        assert close(got[row].numpy(), expected[index].numpy()) < 1e-4


def test_a_masked_last_frame_equals_cropping_it(tiny):
    """An odd fbank frame count masks the last stacked frame; cropping it changes no real frame."""
    features = torch.randn(1, 41, 160, generator=torch.Generator().manual_seed(3))
    masked = hidden_states(tiny, features, TINY_W2VBERT_LAYERS, length=40)
    cropped = hidden_states(tiny, features[:, :40], TINY_W2VBERT_LAYERS)
    unmasked = hidden_states(tiny, features, TINY_W2VBERT_LAYERS)
    assert torch.allclose(masked[:, :, :40], cropped, atol=1e-5)
    assert not torch.allclose(unmasked[:, :, :40], cropped, atol=1e-3)  # the mask does matter


def test_pieces_of_1500_frames_are_encoded_apart(tiny):
    features = torch.randn(1, CHUNK_FRAMES + 9, 160, generator=torch.Generator().manual_seed(4))
    whole = hidden_states(tiny, features, TINY_W2VBERT_LAYERS)
    first = hidden_states(tiny, features[:, :CHUNK_FRAMES], TINY_W2VBERT_LAYERS)
    second = hidden_states(tiny, features[:, CHUNK_FRAMES:], TINY_W2VBERT_LAYERS)
    assert whole.shape == (3, 1, CHUNK_FRAMES + 9, 32)
    assert torch.equal(whole, torch.cat([first, second], dim=-2))
    with torch.no_grad():
        joint = tiny(features[:, CHUNK_FRAMES - 40:], TINY_W2VBERT_LAYERS)
    assert not torch.allclose(joint[:, :, 40:], second, atol=1e-3)  # a single pass would differ


# ---------------------------------------------------------------------------------------------
# Features


def waveforms() -> Dict[str, np.ndarray]:
    g = np.random.default_rng(5)
    return {
        "short_0_3s": (g.standard_normal(4800) * 0.1).astype(np.float32),
        "odd_frames": (np.sin(np.arange(48077) * 0.031) * 0.3 + g.standard_normal(48077) * 0.01).astype(np.float32),
        "speechlike_31s": (g.standard_normal(31 * 16000) * np.abs(np.sin(np.arange(31 * 16000) / 900.0)) * 0.2
                           ).astype(np.float32),
    }


@needs_node
def test_features_match_transformers_js(tmp_path):
    """The engine's extractor gets ALARM's input (160 zeros each side); both sides must agree."""
    waves = waveforms()
    (tmp_path / "in").mkdir()
    for name, wave in waves.items():
        np.save(tmp_path / "in" / f"{name}.npy", np.pad(wave, (160, 160)))
    subprocess.run(["node", str(FEATURES_SCRIPT), str(tmp_path / "in"), str(tmp_path / "out")],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    worst = 0.0
    for name, wave in waves.items():
        features, length = w2vbert_features(torch.from_numpy(wave))
        js = np.load(tmp_path / "out" / f"{name}.features.npy")
        js_mask = np.load(tmp_path / "out" / f"{name}.mask.npy")
        assert features.shape == js.shape and (features.shape[0], length) == feature_frames(wave.size), name
        assert int(js_mask.sum()) == length and js_mask[:length].all(), name
        worst = max(worst, float(np.abs(features.numpy() - js).max()))
    print(f"max |python - transformers.js| = {worst:.3g}")
    assert worst < 2e-4


def test_fbank_matches_torchaudio_kaldi():
    wave = torch.from_numpy(waveforms()["short_0_3s"])
    ours = log_mel_fbank(wave)
    theirs = kaldi.fbank((wave * 32768).unsqueeze(0), num_mel_bins=80, sample_frequency=16000, dither=0.0)
    assert ours.shape == theirs.shape
    assert float((ours - theirs.double()).abs().max()) < 1e-3  # torchaudio computes in float32


def test_feature_lengths_and_rates():
    features, length = w2vbert_features(torch.zeros(30 * 16000).normal_(0, 0.1))
    assert features.shape == (1500, 160) and length == 1500  # 50 frames per second
    assert FRAMES_PER_SECOND == 50 and encoder_frames(W2V_BERT_2_0, length) == 1500
    assert feature_frames(16000 + 160) == (51, 50)  # N = 101 fbank frames: one padded stacked frame
    features, length = w2vbert_features(torch.zeros(16160).normal_(0, 0.1))
    assert features.shape == (51, 160) and length == 50
    assert torch.all(features[-1, 80:] == 1.0)  # padding_value 1 in the padded half
    adapter = AdapterConfig.from_alarm(alarm_ca_adapter(1024, 1024, [6, 10, 15, 20, 24]))
    assert adapter.out_length(1500) == 750  # 25 embeddings per second after the adapter
    with pytest.raises(ValueError):
        w2vbert_features(torch.zeros(200))


# ---------------------------------------------------------------------------------------------
# Keys, sizes, configuration


def test_real_keys_and_parameter_count():
    with _on_meta_device():
        enc = W2VBertEncoder(W2V_BERT_2_0)
    shapes = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    assert len(shapes) == 4 + 24 * 32
    assert shapes["feature_projection.projection.weight"] == (1024, 160)
    assert shapes["encoder.layers.23.self_attn.distance_embedding.weight"] == (73, 64)
    assert shapes["encoder.layers.0.conv_module.pointwise_conv1.weight"] == (2048, 1024, 1)
    assert shapes["encoder.layers.0.conv_module.depthwise_conv.weight"] == (1024, 1, 31)
    assert not any("embed_positions" in k or "adapter" in k for k in shapes)
    count = parameter_count(W2V_BERT_2_0)
    assert count["encoder"] == sum(math.prod(s) for s in shapes.values()) == 580_492_096
    assert ignored_checkpoint_keys(W2V_BERT_2_0) == {"masked_spec_embed": (1024,)}
    assert count["state_dict"] == 580_493_120
    assert max(ALARM_CA_LAYERS) == W2V_BERT_2_0.num_hidden_layers


@pytest.mark.parametrize("field, value", [("position_embeddings_type", "rotary"), ("hidden_act", "gelu"),
                                          ("add_adapter", True), ("conv_depthwise_kernel_size", 30),
                                          ("feature_projection_input_dim", 80)])
def test_config_refuses_what_it_does_not_implement(field, value):
    with pytest.raises(ValueError, match=field):
        W2VBertConfig.from_hf_config({**W2V_BERT_2_0_HF, field: value})


def test_no_mask_probability_means_no_ignored_key():
    cfg = W2VBertConfig.from_hf_config({**TINY_W2VBERT_HF, "mask_time_prob": 0.0})
    assert ignored_checkpoint_keys(cfg) == {}


def test_strict_loader_names_the_key(tiny):
    state = tiny_w2vbert_state(seed=0)
    enc = W2VBertEncoder(tiny.cfg)
    load_w2vbert_state(enc, {**state, "masked_spec_embed": torch.zeros(32)})  # ignored, accepted
    key = "encoder.layers.2.self_attn.distance_embedding.weight"
    renamed = {("encoder.layers.2.self_attn.rel_embedding.weight" if k == key else k): v for k, v in state.items()}
    with pytest.raises(ValueError, match="rel_embedding"):
        load_w2vbert_state(enc, renamed)
    with pytest.raises(ValueError, match=key):
        load_w2vbert_state(enc, {k: v for k, v in state.items() if k != key})
    with pytest.raises(ValueError, match=key):
        load_w2vbert_state(enc, {**state, key: torch.zeros(6, 16)})
    with pytest.raises(ValueError, match="masked_spec_embed"):
        load_w2vbert_state(enc, {**state, "masked_spec_embed": torch.zeros(31)})


# ---------------------------------------------------------------------------------------------
# The exported chunk graph


def alarm_ca_adapter(encoder_dim: int, adapter_dim: int, layers: List[int]) -> dict:
    """src/configs/model/alarm_ca.yaml's w2vbert entry with other sizes."""
    return {"encoder_name": "w2vbert", "adapter_name": "downsampler_conformer",
            "layer_fusion_config": {"layer_fusion_type": "weighted_average"}, "audio_encoder_layers": layers,
            "norm_type": "layer", "pre_average": True, "downsampler_depth": 1, "use_conformer": False,
            "encoder_embedding_dim": encoder_dim, "adapter_embedding_dim": adapter_dim, "llm_embedding_dim": 16}


def tiny_adapter(adapter_dim: int) -> AlarmAdapter:
    adapter = AlarmAdapter(AdapterConfig.from_alarm(alarm_ca_adapter(32, adapter_dim, list(TINY_W2VBERT_LAYERS))))
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return adapter.eval()


@needs_node
@pytest.mark.parametrize("adapter_dim", [32, 24], ids=["no_input_proj", "input_proj"])
def test_chunk_graph_matches_pytorch_at_any_length(tmp_path, tiny, adapter_dim):
    adapter = tiny_adapter(adapter_dim)
    assert (adapter.adapter.input_proj is None) == (adapter_dim == 32)  # ALARM-CA: 1024 -> 1024, none
    chunk = W2VBertChunk(tiny, adapter).eval()
    path = tmp_path / "encoder_w2vbert.onnx"
    save_model(export_w2vbert_encoder(tiny, adapter), path)
    g = torch.Generator().manual_seed(7)
    with OrtSession(path) as session:
        for frames in (1, 2, 9, 37, 150):
            features = torch.randn(1, frames, 160, generator=g)
            out = session.run({"input_features": features.numpy()})["encoder_out"]
            with torch.no_grad():
                expected = chunk(features).numpy()
                states = hidden_states(tiny, features, TINY_W2VBERT_LAYERS)
                by_hand = (torch.softmax(adapter.layer_fusion.layer_weights, 0)[:, None, None, None] * states).sum(0)
                if adapter.adapter.input_proj is not None:
                    by_hand = adapter.adapter.input_proj(by_hand)
            assert out.shape == expected.shape == (1, frames, adapter_dim)
            assert close(out, expected) < TOL["fp32"], f"T={frames}"
            assert close(expected, by_hand.numpy()) < 1e-6


@needs_node
def test_chunk_graph_int4(tmp_path, tiny):
    adapter = tiny_adapter(32)
    path = tmp_path / "encoder_w2vbert.onnx"
    model = export_w2vbert_encoder(tiny, adapter, precision="int4")
    linears = sum(isinstance(m, torch.nn.Linear) for m in W2VBertChunk(tiny, adapter).modules())
    # every Linear quantized, the distance table (a MatMul with a constant too) left in fp32
    assert [n.op_type for n in model.graph.node].count("MatMulNBits") == linears == 1 + 4 * 8
    save_model(model, path)
    reference = fake_quantize_linears(W2VBertChunk(tiny, adapter)).eval()
    features = torch.randn(1, 40, 160, generator=torch.Generator().manual_seed(8))
    with OrtSession(path) as session:
        out = session.run({"input_features": features.numpy()})["encoder_out"]
    with torch.no_grad():
        expected = reference(features).numpy()
    assert close(out, expected) < TOL["int4"]
