"""SALMONN connector: window rule, fusion padding, Q-Former blocks, checkpoint keys, ONNX export."""

from __future__ import annotations

import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from salmonn.beats import beats_num_tokens
from salmonn.connector import (
    CONNECTOR_IGNORED_KEYS,
    BertAttention,
    ConnectorConfig,
    SalmonnConnector,
    connector_state_dict_from_salmonn,
    split_windows,
    window_frames_for,
)

# real window rule and 1500 Whisper frames, tiny widths
TINY = ConnectorConfig(speech_width=24, audio_width=16, qformer_hidden=32, qformer_layers=2,
                       qformer_heads=4, qformer_ffn=64, llm_hidden=40)


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.dim() > 1 else 0.5) + (1.0 if p.dim() == 1 else 0.0))
    return model.eval()


def test_defaults_and_window_rule():
    cfg = ConnectorConfig()
    assert window_frames_for() == 17 == cfg.window_frames == cfg.stride_frames
    assert window_frames_for(0.333333, 1500, 30) == round(1500 * 0.333333 / 30)
    assert cfg.encoder_width == 2048 and cfg.llm_hidden == 4096 and cfg.layer_norm_eps == 1e-12
    assert (cfg.qformer_hidden, cfg.qformer_layers, cfg.qformer_heads, cfg.qformer_ffn) == (768, 2, 12, 3072)


def salmonn_unfold_windows(x: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """Windows the way SALMONN builds them: F.unfold over [B, C, 1, T], then back to frames."""
    b, t, c = x.shape
    cols = F.unfold(x.transpose(1, 2).unsqueeze(2), kernel_size=(1, window), stride=(1, stride))
    n = cols.shape[-1]
    return cols.view(b, c, window, n).permute(0, 3, 2, 1).reshape(b * n, window, c)


@pytest.mark.parametrize("window,stride", [(17, 17), (17, 8), (5, 5)])
def test_split_windows_matches_unfold(window, stride):
    x = torch.randn(2, 1500, 6)
    ours = split_windows(x, window, stride)
    assert ours.shape[1] == (1500 - window) // stride + 1
    assert torch.equal(ours.reshape(-1, window, 6), salmonn_unfold_windows(x, window, stride))


@pytest.mark.parametrize("seconds", [1, 10, 30])
def test_always_88_windows(seconds):
    conn = randomised(SalmonnConnector(TINY))
    speech = torch.randn(1, 1500, 24)
    audio = torch.randn(1, beats_num_tokens(16000 * seconds), 16)
    with torch.no_grad():
        out = conn(speech, audio)
    assert split_windows(torch.zeros(1, 1500, 1), 17, 17).shape[1:3] == (88, 17)
    assert out.shape == (1, 88, 40)


def test_last_four_frames_are_dropped():
    conn = randomised(SalmonnConnector(TINY))
    speech, audio = torch.randn(1, 1500, 24), torch.randn(1, 496, 16)
    changed = speech.clone()
    changed[:, 1496:] += 10.0  # 88 * 17 = 1496: frames 1496..1499 belong to no window
    with torch.no_grad():
        assert torch.equal(conn(speech, audio), conn(changed, audio))
        changed[:, 1495] += 10.0
        assert not torch.equal(conn(speech, audio), conn(changed, audio))


def test_fusion_pads_the_shorter_stream_with_zeros():
    conn = randomised(SalmonnConnector(TINY))
    with torch.no_grad():
        fused = conn.fuse(torch.randn(1, 1500, 24), torch.randn(1, 48, 16))
        assert fused.shape == (1, 1500, 40)
        assert torch.equal(fused[0, 48:, 24:], torch.zeros(1452, 16))  # after ln_audio, then padded
        longer = conn.fuse(torch.randn(1, 1500, 24), torch.randn(1, 1510, 16))
        assert longer.shape == (1, 1510, 40) and torch.equal(longer[0, 1500:, :24], torch.zeros(10, 24))


def test_cross_attention_block_matches_torch_mha():
    """attention.self + attention.output == post-LN(residual + MHA(q, window)) with kdim = 2048-like."""
    block = randomised(BertAttention(32, 4, 40, eps=1e-12))
    mha = nn.MultiheadAttention(32, 4, kdim=40, vdim=40, batch_first=True).eval()
    att = block.self
    with torch.no_grad():
        mha.q_proj_weight.copy_(att.query.weight)
        mha.k_proj_weight.copy_(att.key.weight)
        mha.v_proj_weight.copy_(att.value.weight)
        mha.in_proj_bias.copy_(torch.cat([att.query.bias, att.key.bias, att.value.bias]))
        mha.out_proj.weight.copy_(block.output.dense.weight)
        mha.out_proj.bias.copy_(block.output.dense.bias)
        q, frames = torch.randn(5, 1, 32), torch.randn(5, 17, 40)
        ref = block.output.LayerNorm(mha(q, frames, frames, need_weights=False)[0] + q)
        assert torch.allclose(block(q, frames), ref, atol=1e-5)


def test_state_dict_keys_match_salmonn():
    keys = set(SalmonnConnector(TINY).state_dict())
    expected = {
        "speech_query_tokens", "ln_speech.weight", "ln_speech.bias", "ln_audio.weight", "ln_audio.bias",
        "speech_llama_proj.weight", "speech_llama_proj.bias",
        "speech_Qformer.bert.embeddings.LayerNorm.weight", "speech_Qformer.bert.embeddings.LayerNorm.bias",
    }
    for i in range(2):
        p = f"speech_Qformer.bert.encoder.layer.{i}."
        for att in ("attention", "crossattention"):
            for n in ("self.query", "self.key", "self.value", "output.dense", "output.LayerNorm"):
                expected |= {f"{p}{att}.{n}.weight", f"{p}{att}.{n}.bias"}
        for n in ("intermediate_query.dense", "output_query.dense", "output_query.LayerNorm"):
            expected |= {f"{p}{n}.weight", f"{p}{n}.bias"}
    assert keys == expected
    sd = SalmonnConnector(TINY).state_dict()
    assert sd["speech_Qformer.bert.encoder.layer.1.crossattention.self.key.weight"].shape == (32, 40)
    assert sd["speech_query_tokens"].shape == (1, 1, 32)


def test_salmonn_checkpoint_filtering_loads_strict():
    src = randomised(SalmonnConnector(TINY))
    ckpt = dict(src.state_dict())
    # what else a SALMONN .pth may hold under or beside the connector's prefixes
    ckpt["speech_Qformer.bert.embeddings.position_ids"] = torch.arange(512)[None]
    ckpt["speech_Qformer.bert.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(64, 32)
    ckpt["speech_Qformer.bert.encoder.layer.1.output.LayerNorm.bias"] = torch.zeros(32)
    ckpt["llama_model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"] = torch.zeros(8, 40)
    dst = SalmonnConnector(TINY)
    dst.load_state_dict(connector_state_dict_from_salmonn(ckpt), strict=True)
    speech, audio = torch.randn(1, 1500, 24), torch.randn(1, 48, 16)
    with torch.no_grad():
        assert torch.equal(src(speech, audio), dst(speech, audio))
    assert len(CONNECTOR_IGNORED_KEYS) >= 5


def test_trace_generalises_to_other_audio_lengths():
    conn = randomised(SalmonnConnector(TINY))
    speech = torch.randn(1, 1500, 24)
    with torch.no_grad():
        traced = torch.jit.trace(conn, (speech, torch.randn(1, 48, 16)), check_trace=False)
        for n in (496, 1496):
            audio = torch.randn(1, n, 16)
            assert torch.allclose(traced(speech, audio), conn(speech, audio), atol=1e-5)


def test_onnx_export_dynamic_audio(tmp_path):
    conn = randomised(SalmonnConnector(TINY))
    path = tmp_path / "connector_tiny.onnx"
    torch.onnx.export(
        conn, (torch.randn(1, 1500, 24), torch.randn(1, 48, 16)), str(path), opset_version=17,
        input_names=["speech", "audio"], output_names=["audio_embeds"],
        dynamic_axes={"audio": {1: "audio_frames"}},
    )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = model.graph.input[1].type.tensor_type.shape.dim
    assert dims[1].dim_param == "audio_frames"
    # (the window count is computed from shapes, so ONNX shape inference leaves it symbolic)
    assert len(model.graph.output[0].type.tensor_type.shape.dim) == 3
