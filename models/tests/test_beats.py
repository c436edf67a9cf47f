"""BEATs: config, fbank front end, token counts, position buckets, checkpoint layout, ONNX export."""

from __future__ import annotations

import math

import onnx
import pytest
import torch
import torchaudio.compliance.kaldi as kaldi
from torch import nn

from salmonn.beats import (
    BeatsAttention,
    BeatsConfig,
    BeatsEncoder,
    beats_num_tokens,
    beats_state_dict_from_checkpoint,
    fold_weight_norm,
    kaldi_fbank,
    relative_position_bucket,
    relative_positions,
)

# the cfg of BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt (architecture + training-only keys)
REAL_CFG = dict(
    input_patch_size=16, embed_dim=512, conv_bias=False, encoder_layers=12, encoder_embed_dim=768,
    encoder_ffn_embed_dim=3072, encoder_attention_heads=12, activation_fn="gelu",
    layer_norm_first=False, deep_norm=True, conv_pos=128, conv_pos_groups=16,
    relative_position_embedding=True, num_buckets=320, max_distance=800, gru_rel_pos=True,
    dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.05,
    dropout_input=0.0, layer_wise_gradient_decay_ratio=0.6, finetuned_model=True,
    predictor_dropout=0.0, predictor_class=527,
)
# same structure (post-LN, deep_norm, gated relative positions, projection 32 -> 48), tiny sizes
TINY = BeatsConfig.from_cfg({
    **REAL_CFG, "embed_dim": 32, "encoder_layers": 2, "encoder_embed_dim": 48,
    "encoder_ffn_embed_dim": 96, "encoder_attention_heads": 4, "conv_pos": 8, "conv_pos_groups": 4,
})


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter non-trivial values (gates, LayerNorms and biases included)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.1 if p.dim() > 1 else 0.5) + (1.0 if p.dim() != 2 else 0.0))
    return model.eval()


# ---------------------------------------------------------------------------------- config


def test_config_from_real_cfg():
    cfg = BeatsConfig.from_cfg(REAL_CFG)
    assert cfg.deep_norm and cfg.gru_rel_pos and cfg.relative_position_embedding
    assert not cfg.layer_norm_first and cfg.embed_dim == 512 and cfg.max_distance == 800
    with pytest.raises(ValueError, match="unknown"):
        BeatsConfig.from_cfg({**REAL_CFG, "new_knob": 1})


def test_class_defaults():
    cfg = BeatsConfig()
    assert (cfg.input_patch_size, cfg.num_buckets, cfg.max_distance, cfg.deep_norm) == (-1, 320, 1280, False)
    with pytest.raises(ValueError):
        BeatsEncoder(cfg)  # the placeholder patch size must come from a real cfg


def test_deep_norm_alpha():
    assert BeatsConfig.from_cfg(REAL_CFG).deep_norm_alpha == pytest.approx(24 ** 0.25)  # 2.2134
    assert BeatsConfig.from_cfg(REAL_CFG).deep_norm_alpha == pytest.approx(2.213363839400643)
    assert BeatsConfig.from_cfg({**REAL_CFG, "deep_norm": False}).deep_norm_alpha == 1.0


# ---------------------------------------------------------------------------------- front end


def kaldi_mel(hz: float) -> float:
    return 1127.0 * math.log(1.0 + hz / 700.0)


def test_fbank_tone_peaks_in_the_right_bin():
    t = torch.arange(16000) / 16000.0
    fb = kaldi_fbank(0.5 * torch.sin(2 * math.pi * 440.0 * t))
    assert fb.shape == (98, 128)
    # Kaldi puts 128 triangles equally spaced in mel between 20 Hz and 8 kHz; bin k is centred at
    # mel_lo + (k + 1) * spacing
    lo, hi = kaldi_mel(20.0), kaldi_mel(8000.0)
    expected = (kaldi_mel(440.0) - lo) / ((hi - lo) / 129) - 1  # ~22.8
    peak = int(fb.mean(dim=0).argmax())
    assert abs(peak - expected) <= 1.0


def test_fbank_normalisation():
    wave = torch.randn(16000) * 0.1
    ref = kaldi.fbank(wave[None] * 2 ** 15, num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10)
    assert torch.allclose(kaldi_fbank(wave), (ref - 15.41663) / (2 * 6.55582))


@pytest.mark.parametrize("seconds,tokens", [(1, 48), (10, 496), (30, 1496)])
def test_token_counts(seconds, tokens):
    n = 16000 * seconds
    assert beats_num_tokens(n) == tokens
    frames = kaldi_fbank(torch.randn(n) * 0.1).shape[0]
    assert frames == 1 + (n - 400) // 160  # 98, 998, 2998
    assert (frames // 16) * 8 == tokens


def test_encoder_token_count_and_shape():
    enc = randomised(BeatsEncoder(TINY))
    with torch.no_grad():
        out = enc(kaldi_fbank(torch.randn(16000) * 0.1)[None])
    assert out.shape == (1, 48, 48)


def test_tokens_are_time_major():
    """Token i*8 + f is the patch of frames 16i..16i+15 and mel bins 16f..16f+15."""
    enc = BeatsEncoder(TINY)
    fbank = torch.zeros(1, 64, 128)
    fbank[0, 32:48, 80:96] = 1.0  # time patch 2, frequency patch 5
    with torch.no_grad():
        nn.init.ones_(enc.patch_embedding.weight)
        tokens = enc.patchify(fbank)
    assert tokens.shape == (1, 32, 32)
    assert tokens[0, :, 0].nonzero().flatten().tolist() == [2 * 8 + 5]


# ---------------------------------------------------------------------------------- positions


def test_relative_position_bucket_hand_values():
    rel = torch.tensor([0, 1, -1, 79, -79, 80, -80, 200, -200, 400, 800, -800, 5000, -100000])
    # half = 160 buckets per direction (keys after the query get +160); max_exact = 80;
    # beyond: 80 + floor(log10(d / 80) * 80), capped at 159
    #   200 -> 80 + floor(0.39794 * 80) = 111;  400 -> 80 + floor(0.69897 * 80) = 135
    expected = [0, 161, 1, 239, 79, 240, 80, 271, 111, 295, 319, 159, 319, 159]
    assert relative_position_bucket(rel, 320, 800).tolist() == expected


def test_relative_positions_matrix():
    rel = relative_positions(torch.zeros(1, 4, 2))
    assert rel.tolist() == [[0, 1, 2, 3], [-1, 0, 1, 2], [-2, -1, 0, 1], [-3, -2, -1, 0]]


def test_attention_equals_plain_formula():
    """The alpha=32 trick and the gate are just a reordering of softmax(q k^T / sqrt(d) + g * bias)."""
    attn = randomised(BeatsAttention(TINY))
    x = torch.randn(1, 10, 48)
    bias = torch.randn(1, 4, 10, 10)
    with torch.no_grad():
        ours = attn(x, bias)
        q = attn._split_heads(attn.q_proj(x))
        k = attn._split_heads(attn.k_proj(x))
        v = attn._split_heads(attn.v_proj(x))
        gate_logits = attn.grep_linear(q).reshape(1, 4, 10, 2, 4).sum(-1).sigmoid()
        gate = gate_logits[..., :1] * (gate_logits[..., 1:] * attn.grep_a - 1) + 2
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(12) + gate * bias, dim=-1)
        ref = attn.out_proj((w @ v).transpose(1, 2).reshape(1, 10, 48))
    assert torch.allclose(ours, ref, atol=1e-5)


# ---------------------------------------------------------------------------------- checkpoint


def test_fold_weight_norm_equals_torch_weight_norm():
    torch.manual_seed(0)
    conv = nn.utils.weight_norm(nn.Conv1d(48, 48, kernel_size=8, padding=4, groups=4), name="weight", dim=2)
    with torch.no_grad():
        conv.weight_g.mul_(torch.rand_like(conv.weight_g) * 3)
        conv(torch.randn(1, 48, 5))  # the forward pre-hook recomputes conv.weight
    assert torch.equal(fold_weight_norm(conv.weight_g, conv.weight_v, dim=2), conv.weight)


def checkpoint_like_state(cfg: BeatsConfig) -> dict:
    """A state dict laid out like the real checkpoint's `model`: weight-normed pos_conv + predictor."""
    state = randomised(BeatsEncoder(cfg)).state_dict()
    w = state.pop("encoder.pos_conv.0.weight")
    state["encoder.pos_conv.0.weight_g"] = w.transpose(2, -1).reshape(-1, w.shape[2]).norm(dim=0).reshape(1, 1, -1)
    state["encoder.pos_conv.0.weight_v"] = w * 3.0  # direction only; g carries the scale
    state["predictor.weight"] = torch.zeros(527, cfg.encoder_embed_dim)
    state["predictor.bias"] = torch.zeros(527)
    return state


def test_state_dict_keys_mirror_checkpoint():
    enc = BeatsEncoder(TINY)
    keys = set(enc.state_dict())
    for name in [
        "patch_embedding.weight", "layer_norm.weight", "layer_norm.bias",
        "post_extract_proj.weight", "post_extract_proj.bias",
        "encoder.pos_conv.0.weight", "encoder.pos_conv.0.bias",
        "encoder.layer_norm.weight", "encoder.layer_norm.bias",
        "encoder.layers.0.self_attn.k_proj.weight", "encoder.layers.0.self_attn.k_proj.bias",
        "encoder.layers.1.self_attn.q_proj.bias", "encoder.layers.1.self_attn.out_proj.weight",
        "encoder.layers.0.self_attn.relative_attention_bias.weight",
        "encoder.layers.1.self_attn.relative_attention_bias.weight",
        "encoder.layers.1.self_attn.grep_linear.weight", "encoder.layers.1.self_attn.grep_linear.bias",
        "encoder.layers.1.self_attn.grep_a",
        "encoder.layers.0.self_attn_layer_norm.weight", "encoder.layers.0.fc1.weight",
        "encoder.layers.0.fc2.bias", "encoder.layers.0.final_layer_norm.bias",
    ]:
        assert name in keys, name
    assert "patch_embedding.bias" not in keys  # conv_bias=False
    assert len(keys) == 9 + 2 * 20  # 9 outside the layers, 20 per layer
    # the relative position table is one module shared by all layers
    layers = enc.encoder.layers
    assert layers[0].self_attn.relative_attention_bias is layers[1].self_attn.relative_attention_bias
    assert enc.state_dict()["encoder.layers.0.self_attn.relative_attention_bias.weight"].shape == (320, 4)


def test_checkpoint_layout_loads_strict():
    state = checkpoint_like_state(TINY)
    enc = BeatsEncoder(TINY)
    enc.load_state_dict(beats_state_dict_from_checkpoint(state), strict=True)
    folded = enc.encoder.pos_conv[0].weight
    expected = fold_weight_norm(state["encoder.pos_conv.0.weight_g"], state["encoder.pos_conv.0.weight_v"])
    assert torch.equal(folded, expected)


# ---------------------------------------------------------------------------------- export


def test_trace_generalises_to_other_lengths():
    """What ONNX exports is the trace: traced at one length, it must match eager at others."""
    enc = randomised(BeatsEncoder(TINY))
    with torch.no_grad():
        traced = torch.jit.trace(enc, (torch.randn(1, 98, 128),), check_trace=False)
        for frames in (160, 331):
            x = torch.randn(1, frames, 128)
            assert torch.allclose(traced(x), enc(x), atol=1e-6)


def test_onnx_export_dynamic_time(tmp_path):
    enc = randomised(BeatsEncoder(TINY))
    path = tmp_path / "beats_tiny.onnx"
    torch.onnx.export(
        enc, (torch.randn(1, 98, 128),), str(path), opset_version=17,
        input_names=["fbank"], output_names=["features"],
        dynamic_axes={"fbank": {1: "frames"}, "features": {1: "tokens"}},
    )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_param == "frames" and dims[2].dim_value == 128
