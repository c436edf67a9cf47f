"""ALARM's Whisper adapter: key names of the real configuration, an op-by-op check, token counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from alarm.adapter import AdapterConfig, AlarmAdapter
from alarm.model import AlarmConfig, audio_token_count, stage_shapes
from alarm.whisper_v3 import WHISPER_LARGE_V3, attended_frames, hidden_states
from salmonn.checkpoints import _on_meta_device
from salmonn.whisper import WhisperConfig, WhisperEncoder

# src/configs/model/whisper_batch.yaml with llm_embedding_dim resolved for Qwen3-4B (2560)
WHISPER_BATCH = {
    "encoder_name": "whisper", "adapter_name": "downsampler_conformer",
    "layer_fusion_config": {"layer_fusion_type": "weighted_average"},
    "audio_encoder_layers": [7, 15, 23, 31], "norm_type": "batch", "pre_average": True,
    "downsampler_depth": 1, "use_conformer": False, "encoder_embedding_dim": 1280,
    "adapter_embedding_dim": 1024, "llm_embedding_dim": 2560,
}
QWEN3_4B = {"vocab_size": 151936, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "rms_norm_eps": 1e-6,
            "rope_theta": 5000000, "tie_word_embeddings": True}
AL_WHISPER = {**QWEN3_4B, "model_type": "qwen3_audio", "use_explicit_audio_tokens": False, "audio_sep_d_embed": 2560,
              "audio_encoder_configs": [{"encoder_name": "whisper"}], "audio_adapter_configs": [WHISPER_BATCH],
              "audio_fusion_config": {"fusion_type": "sum"},
              "audio_postprocessing_config": {"postprocessing_type": "identity"}}


def test_real_adapter_keys_and_shapes() -> None:
    with _on_meta_device():  # shapes only, no memory
        adapter = AlarmAdapter(AdapterConfig.from_alarm(WHISPER_BATCH))
    shapes = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    bn = lambda p, n: {f"{p}.weight": (n,), f"{p}.bias": (n,), f"{p}.running_mean": (n,),  # noqa: E731
                       f"{p}.running_var": (n,), f"{p}.num_batches_tracked": ()}
    want = {
        "layer_fusion.layer_weights": (4,),
        "adapter.input_proj.weight": (1024, 1280), "adapter.input_proj.bias": (1024,),
        "adapter.downsampler.0.0.weight": (2048, 1024, 3), "adapter.downsampler.0.0.bias": (2048,),
        **bn("adapter.downsampler.0.2", 2048),
        "adapter.downsampler.1.0.weight": (1024, 2048, 4), "adapter.downsampler.1.0.bias": (1024,),
        **bn("adapter.downsampler.1.2", 1024),
        "llm_proj.weight": (2560, 1024), "llm_proj.bias": (2560,),
    }
    assert shapes == want


def test_token_counts() -> None:
    cfg = AlarmConfig.from_hf_config(AL_WHISPER)
    s30 = stage_shapes(cfg, 30.0)
    assert s30 == {"mel": (128, 3000), "hidden_states": (4, 1, 1500, 1280), "trimmed": (4, 1, 1500, 1280),
                   "audio_embeddings": (750, 2560)}  # 25 tokens per second
    assert stage_shapes(cfg, 45.0)["audio_embeddings"] == (1125, 2560)
    assert stage_shapes(cfg, 45.0)["mel"] == (128, 6000)
    assert stage_shapes(cfg, 1.0)["audio_embeddings"] == (25, 2560)
    assert attended_frames(16161) == 102  # ceil(16161 / 160): the sample mask taken every 160th
    assert audio_token_count(cfg, 102) == 25  # 102 -> 51 encoder frames -> 51 // 2
    assert audio_token_count(cfg, 2) == 1  # clamped: at least one token


def small_cfg(norm: str) -> AdapterConfig:
    return AdapterConfig.from_alarm({**WHISPER_BATCH, "audio_encoder_layers": [1, 3, 2], "norm_type": norm,
                                     "encoder_embedding_dim": 12, "adapter_embedding_dim": 8, "llm_embedding_dim": 6})


def randomize(m: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, t in list(m.named_parameters()) + list(m.named_buffers()):
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.2)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_matches_op_by_op(norm: str) -> None:
    cfg = small_cfg(norm)
    a = AlarmAdapter(cfg).eval()
    randomize(a, 0)
    sd = a.state_dict()
    stacked = torch.randn(3, 1, 21, 12)
    lengths = torch.tensor([15])
    got = a(stacked, lengths)

    # the facts of base.py / weighted_average.py / downsampler_conformer.py, written out
    x = stacked[:, :, :15]
    w = torch.softmax(sd["layer_fusion.layer_weights"], 0)
    x = sum(w[i] * x[i] for i in range(3))
    x = x @ sd["adapter.input_proj.weight"].T + sd["adapter.input_proj.bias"]
    x = torch.cat([x, torch.zeros(1, 1, 8)], dim=1).transpose(1, 2)  # 15 -> 16 frames, [B, C, T]

    def norm_op(y: torch.Tensor, p: str) -> torch.Tensor:
        if norm == "batch":
            return (y - sd[p + ".running_mean"][:, None]) / torch.sqrt(sd[p + ".running_var"][:, None] + 1e-5) \
                * sd[p + ".weight"][:, None] + sd[p + ".bias"][:, None]
        return F.layer_norm(y.transpose(1, 2), (y.shape[1],), sd[p + ".norm.weight"], sd[p + ".norm.bias"]).transpose(1, 2)

    x = norm_op(F.gelu(F.conv1d(x, sd["adapter.downsampler.0.0.weight"], sd["adapter.downsampler.0.0.bias"], padding=1)), "adapter.downsampler.0.2")
    x = norm_op(F.gelu(F.conv1d(x, sd["adapter.downsampler.1.0.weight"], sd["adapter.downsampler.1.0.bias"], stride=2, padding=1)), "adapter.downsampler.1.2")
    x = x.transpose(1, 2) @ sd["llm_proj.weight"].T + sd["llm_proj.bias"]
    assert got.shape == (1, 8, 6)
    assert torch.allclose(got, x, atol=1e-5)
    assert cfg.out_length(15) == 7  # the pipeline keeps lengths // 2 of the 8 outputs


def test_refuses_what_no_release_uses() -> None:
    with pytest.raises(ValueError, match="Conformer"):
        AdapterConfig.from_alarm({**WHISPER_BATCH, "use_conformer": True})
    with pytest.raises(ValueError, match="pre_average"):
        AdapterConfig.from_alarm({**WHISPER_BATCH, "pre_average": False})
    # every ALARM encoder is implemented now: a second encoder without its adapter is what is refused
    with pytest.raises(ValueError, match="every encoder needs exactly one adapter"):
        AlarmConfig.from_hf_config({**AL_WHISPER, "audio_encoder_configs": [{"encoder_name": "whisper"}, {"encoder_name": "muq"}]})


def test_hidden_state_indexing_is_hfs() -> None:
    """Index 0 = conv stem + positions, i = output of layer i, n_layers = final LayerNorm of it."""
    cfg = WhisperConfig(num_mel_bins=8, d_model=16, encoder_layers=3, encoder_attention_heads=2,
                        encoder_ffn_dim=32, max_source_positions=10)
    torch.manual_seed(0)
    enc = WhisperEncoder(cfg).eval()
    mel = torch.randn(1, 8, 40)  # two 20-frame pieces
    states = hidden_states(enc, mel, [0, 1, 2, 3])
    assert states.shape == (4, 1, 20, 16)
    with torch.no_grad():
        first = mel[..., :20]
        x = F.gelu(enc.conv2(F.gelu(enc.conv1(first)))).transpose(1, 2) + enc.embed_positions.weight
        assert torch.allclose(states[0, :, :10], x, atol=1e-6)
        for i, layer in enumerate(enc.layers, start=1):
            x = layer(x)
            want = enc.layer_norm(x) if i == 3 else x
            assert torch.allclose(states[i, :, :10], want, atol=1e-5)
        assert torch.allclose(states[3, :, 10:], enc(mel[..., 20:]), atol=1e-5)  # the 2nd piece alone
    assert WHISPER_LARGE_V3.num_mel_bins == 128 and WHISPER_LARGE_V3.d_model == 1280
