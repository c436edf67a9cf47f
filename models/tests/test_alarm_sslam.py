"""SSLAM (ALARM-CA's EAT encoder): config, features, the encoder against a float64 written-out
formulation, the strict key layout, and the per-chunk ONNX graph in onnxruntime-web."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alarm.adapter import AdapterConfig, AlarmAdapter, pad_to_even
from alarm.export_sslam import SSLAMChunk, export_sslam_encoder, write_sslam_encoder
from alarm.sslam import (
    SSLAM_AS2M,
    SSLAMConfig,
    SSLAMEncoder,
    checkpoint_shapes,
    encoder_frames,
    encoder_state_from_checkpoint,
    hidden_states,
    ignored_checkpoint_keys,
    parameter_count,
    sincos_positions,
    sslam_features,
)
from alarm.tiny_sslam import TINY_HF_CONFIG, tiny_sslam_config, tiny_sslam_state
from salmonn.ort_bridge import OrtSession, node_available

# EATConfig's fields as configuration_eat.py defines them, with the fine-tuned variant's values
REAL_HF_CONFIG = {
    "architectures": ["EATModel"], "model_type": "eat", "embed_dim": 768, "depth": 12, "num_heads": 12,
    "patch_size": 16, "stride": 16, "in_chans": 1, "mel_bins": 128, "max_length": 768, "num_classes": 527,
    "model_variant": "finetune", "mlp_ratio": 4.0, "qkv_bias": True, "drop_rate": 0.0, "attn_drop_rate": 0.0,
    "activation_dropout": 0.0, "post_mlp_drop": 0.0, "start_drop_path_rate": 0.0, "end_drop_path_rate": 0.0,
    "layer_norm_first": False, "norm_eps": 1e-6, "norm_affine": True, "fixed_positions": True,
    "img_size": [1024, 128],
}
ALARM_CA_LAYERS = [3, 7, 11]
TOL = 1e-4  # test_alarm_onnx.py's fp32 tolerance (max error relative to max(1, max |expected|))


def close(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / max(1.0, float(np.abs(expected).max())))


@pytest.fixture(scope="module")
def tiny() -> SSLAMEncoder:
    enc = SSLAMEncoder(tiny_sslam_config())
    enc.load_state_dict(tiny_sslam_state(seed=0), strict=True)
    return enc.eval()


def tiny_adapter(width: int) -> AlarmAdapter:
    """ALARM-CA's sslam adapter entry (alarm_ca.yaml) at tiny widths, with uneven layer weights."""
    adapter = AlarmAdapter(AdapterConfig.from_alarm({
        "encoder_name": "sslam", "adapter_name": "downsampler_conformer",
        "layer_fusion_config": {"layer_fusion_type": "weighted_average"}, "audio_encoder_layers": ALARM_CA_LAYERS,
        "norm_type": "layer", "pre_average": True, "downsampler_depth": 1, "use_conformer": False,
        "encoder_embedding_dim": width, "adapter_embedding_dim": 48, "llm_embedding_dim": 40,
    }))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.dim() > 1 else 0.5) + (1.0 if p.dim() == 1 else 0.0))
    return adapter.eval()


# --------------------------------------------------------------------------------------- config


def test_config_real_and_tiny():
    assert SSLAMConfig.from_hf_config(REAL_HF_CONFIG) == SSLAM_AS2M
    assert (SSLAM_AS2M.chunk_tokens, SSLAM_AS2M.freq_patches, SSLAM_AS2M.mlp_dim) == (512, 8, 3072)
    cfg = tiny_sslam_config()
    assert (cfg.embed_dim, cfg.depth, cfg.chunk_tokens) == (32, 12, 512)


@pytest.mark.parametrize("change, field", [
    ({"cosine_attention": True}, "cosine_attention"),
    ({"layer_norm_first": True}, "layer_norm_first"),
    ({"model_variant": "classify"}, "model_variant"),
    ({"stride": 10}, "stride"),
    ({"mel_bins": 64}, "mel_bins"),
    ({"in_chans": 3}, "in_chans"),
    ({"max_length": 32}, "max_length"),
])
def test_config_refuses_unknown_or_unsupported(change, field):
    with pytest.raises(ValueError, match=field):
        SSLAMConfig.from_hf_config({**REAL_HF_CONFIG, **change})


def test_real_parameter_count_matches_the_published_checkpoint():
    """90,379,535 values in ta012/SSLAM_AS2M_Finetuned's safetensors (a third-party count): the
    layout here with the 6144-row position table and the 527-class head gives exactly that."""
    assert parameter_count(SSLAM_AS2M, with_ignored=True) == 90_379_535
    assert parameter_count(SSLAM_AS2M) == 89_972_736
    assert checkpoint_shapes(SSLAM_AS2M)["model.fixed_positional_encoder.positions"] == (1, 6144, 768)


# ------------------------------------------------------------------------------------- features


def kaldi_fbank_float64(wave: np.ndarray) -> np.ndarray:
    """Kaldi fbank written out in float64 with ALARM's options: 400-sample frames every 160
    (snip_edges), per-frame DC removal, pre-emphasis 0.97, symmetric Hann window, 512-point power
    spectrum, 128 triangular filters on the Kaldi mel scale from 20 Hz to 8 kHz, natural log
    floored at float32 epsilon. No energy column, no dither, no 16-bit scaling."""
    n_frames = 1 + (len(wave) - 400) // 160
    frames = np.stack([wave[i * 160: i * 160 + 400] for i in range(n_frames)]).astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    frames = np.concatenate([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], axis=1)
    frames *= 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)
    power = np.abs(np.fft.rfft(frames, n=512, axis=1)) ** 2  # [frames, 257]

    def mel(hz):
        return 1127.0 * np.log(1.0 + np.asarray(hz) / 700.0)

    low, high = mel(20.0), mel(8000.0)
    delta = (high - low) / (128 + 1)
    bin_mel = mel(np.arange(256) * 16000 / 512)
    banks = np.zeros((128, 257))
    for b in range(128):
        left, center, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        up = (bin_mel - left) / (center - left)
        down = (right - bin_mel) / (right - center)
        banks[b, :256] = np.maximum(0.0, np.minimum(up, down))
    return np.log(np.maximum(power @ banks.T, np.finfo(np.float32).eps))


def alarm_features_float64(wave: np.ndarray) -> tuple[np.ndarray, int]:
    """SSLAMFeatureExtractor in float64: mean removal, 160 zeros each side, fbank, pad with zero
    frames to a multiple of 1024, then (x + 4.268) / (2 * 4.569)."""
    wave = np.pad(wave.astype(np.float64) - wave.astype(np.float64).mean(), 160)
    fbank = kaldi_fbank_float64(wave)
    n = fbank.shape[0]
    padded = np.concatenate([fbank, np.zeros((-n % 1024, 128))])
    return (padded + 4.268) / (2 * 4.569), n


@pytest.mark.parametrize("samples", [400, 48_000, 163_760, 200_123])
def test_features_match_a_float64_kaldi_formulation(samples):
    """163,760 samples give exactly 1024 frames: no padding chunk is added."""
    g = torch.Generator().manual_seed(samples)
    t = torch.arange(samples) / 16000
    wave = 0.1 * torch.randn(samples, generator=g) + 0.3 * torch.sin(2 * math.pi * 440 * t) + 0.05
    features, frames = sslam_features(wave)
    expected, expected_frames = alarm_features_float64(wave.numpy())
    assert frames == expected_frames == 1 + (samples + 320 - 400) // 160
    assert features.shape == (1024 * math.ceil(frames / 1024), 128) == expected.shape
    np.testing.assert_allclose(features.numpy(), expected, atol=2e-4, rtol=0)
    assert torch.allclose(features[frames:], torch.tensor(4.268 / 9.138))  # padding frames are not 0


def test_features_remove_the_mean_before_padding():
    """A constant offset changes nothing (it would, in the edge frames, if the padding came first)."""
    wave = 0.1 * torch.randn(16_000, generator=torch.Generator().manual_seed(1))
    a, _ = sslam_features(wave)
    b, _ = sslam_features(wave + 0.5)
    assert torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError):
        sslam_features(torch.zeros(79))


def test_encoder_frames_is_alarms_calc_length():
    assert encoder_frames(SSLAM_AS2M, 1200) == 600 and encoder_frames(SSLAM_AS2M, 1023) == 511


# ------------------------------------------------------------------- encoder against float64


def sincos_float64(rows: int, width: int, d: int) -> np.ndarray:
    """EAT's table written out per entry: row r = (time t, frequency f) = divmod(r, width);
    channels [sin f w_j, cos f w_j, sin t w_j, cos t w_j], w_j = 10000^(-j / (d / 4))."""
    table = np.zeros((rows, d))
    q = d // 4
    for r in range(rows):
        t, f = divmod(r, width)
        for j in range(q):
            w = 10000.0 ** (-j / q)
            table[r, j], table[r, q + j] = math.sin(f * w), math.cos(f * w)
            table[r, 2 * q + j], table[r, 3 * q + j] = math.sin(t * w), math.cos(t * w)
    return table


def test_position_table_is_eats_sincos_time_major():
    cfg = tiny_sslam_config()
    ours = sincos_positions(cfg)[0].numpy()
    assert ours.shape == (96 * 8, 32)
    np.testing.assert_allclose(ours, sincos_float64(96 * 8, 8, 32), atol=1e-6)


def layer_norm64(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def reference_hidden_float64(state: dict, cfg: SSLAMConfig, features: np.ndarray, layers) -> np.ndarray:
    """The whole of ALARM's get_hidden_states in float64 numpy, from the raw state dict:
    explicit 16x16 patches (time-major), + positions, CLS first, pre_norm, post-LN blocks with
    per-head softmax attention and erf-GELU MLP; CLS dropped; chunks of 1024 frames concatenated."""
    s = {k: v.double().numpy() for k, v in state.items()}
    d, h, p, eps = cfg.embed_dim, cfg.num_heads, cfg.patch_size, cfg.norm_eps
    hd = d // h
    erf = np.vectorize(math.erf)
    out = []
    for chunk in np.split(features.astype(np.float64), features.shape[0] // 1024):
        patches = chunk.reshape(1024 // p, p, 128 // p, p).transpose(0, 2, 1, 3).reshape(-1, p * p)
        x = patches @ s["model.local_encoder.proj.weight"].reshape(d, -1).T + s["model.local_encoder.proj.bias"]
        x = x + s["model.fixed_positional_encoder.positions"][0, : x.shape[0]]
        x = np.concatenate([s["model.extra_tokens"][0], x])
        x = layer_norm64(x, s["model.pre_norm.weight"], s["model.pre_norm.bias"], eps)
        states = []
        for i in range(max(layers) + 1):
            b = f"model.blocks.{i}."
            qkv = x @ s[b + "attn.qkv.weight"].T + s[b + "attn.qkv.bias"]
            heads = []
            for j in range(h):
                q = qkv[:, j * hd:(j + 1) * hd]
                k = qkv[:, d + j * hd: d + (j + 1) * hd]
                v = qkv[:, 2 * d + j * hd: 2 * d + (j + 1) * hd]
                logits = q @ k.T / math.sqrt(hd)
                weights = np.exp(logits - logits.max(-1, keepdims=True))
                heads.append(weights / weights.sum(-1, keepdims=True) @ v)
            attn = np.concatenate(heads, axis=1) @ s[b + "attn.proj.weight"].T + s[b + "attn.proj.bias"]
            x = layer_norm64(x + attn, s[b + "norm1.weight"], s[b + "norm1.bias"], eps)
            hidden = x @ s[b + "mlp.fc1.weight"].T + s[b + "mlp.fc1.bias"]
            hidden = 0.5 * hidden * (1 + erf(hidden / math.sqrt(2)))
            x = layer_norm64(x + hidden @ s[b + "mlp.fc2.weight"].T + s[b + "mlp.fc2.bias"],
                             s[b + "norm2.weight"], s[b + "norm2.bias"], eps)
            states.append(x[1:])
        out.append(np.stack([states[i] for i in layers]))
    return np.concatenate(out, axis=1)[:, None]


def test_hidden_states_match_float64_over_two_chunks(tiny):
    features, frames = sslam_features(0.1 * torch.randn(12 * 16000, generator=torch.Generator().manual_seed(2)))
    assert features.shape[0] == 2048 and frames == 1200
    layers = [0, 3, 7, 11]
    ours = hidden_states(tiny, features, layers)
    assert ours.shape == (4, 1, 1024, 32)
    expected = reference_hidden_float64(tiny_sslam_state(seed=0), tiny.cfg, features.numpy(), layers)
    assert close(ours.numpy(), expected) < 1e-5


def test_hidden_state_indexes_and_shapes(tiny):
    features = torch.randn(1, 1024, 128, generator=torch.Generator().manual_seed(3))
    picked = hidden_states(tiny, features, [11, 3])
    both = hidden_states(tiny, features, [3, 11])
    assert torch.equal(picked[0], both[1]) and torch.equal(picked[1], both[0])
    with pytest.raises(ValueError, match="0..11"):
        hidden_states(tiny, features, [12])
    with pytest.raises(ValueError, match="1024"):
        hidden_states(tiny, features[:, :1000], [3])


# ----------------------------------------------------------------------------------- key layout


def test_state_dict_is_the_remote_code_models_layout(tiny):
    shapes = {k: tuple(v.shape) for k, v in tiny.state_dict().items()}
    assert shapes == checkpoint_shapes(tiny.cfg)
    # the names written out from EAT's HF modules (block 0; blocks 1..11 alike)
    assert {k for k in shapes if not k.startswith("model.blocks.")} == {
        "model.local_encoder.proj.weight", "model.local_encoder.proj.bias", "model.extra_tokens",
        "model.fixed_positional_encoder.positions", "model.pre_norm.weight", "model.pre_norm.bias"}
    assert {k[len("model.blocks.0."):] for k in shapes if k.startswith("model.blocks.0.")} == {
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
        "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"}
    assert len({k.split(".")[2] for k in shapes if k.startswith("model.blocks.")}) == 12


def test_strict_load_names_the_offending_key(tiny):
    good = tiny_sslam_state(seed=1)
    SSLAMEncoder(tiny.cfg).load_state_dict(good, strict=True)
    renamed = dict(good)
    renamed["model.blocks.4.attn.qkv_proj.weight"] = renamed.pop("model.blocks.4.attn.qkv.weight")
    with pytest.raises(RuntimeError, match=r"model\.blocks\.4\.attn\.qkv_proj\.weight"):
        SSLAMEncoder(tiny.cfg).load_state_dict(renamed, strict=True)
    missing = {k: v for k, v in good.items() if k != "model.fixed_positional_encoder.positions"}
    with pytest.raises(RuntimeError, match=r"model\.fixed_positional_encoder\.positions"):
        SSLAMEncoder(tiny.cfg).load_state_dict(missing, strict=True)
    wrong = {**good, "model.extra_tokens": torch.zeros(1, 2, 32)}
    with pytest.raises(RuntimeError, match=r"size mismatch for model\.extra_tokens"):
        SSLAMEncoder(tiny.cfg).load_state_dict(wrong, strict=True)


def test_checkpoint_head_keys_are_checked_and_dropped(tiny):
    full = tiny_sslam_state(seed=1, with_ignored=True)
    assert set(ignored_checkpoint_keys(tiny.cfg)) == {"model.fc_norm.weight", "model.fc_norm.bias",
                                                      "model.head.weight", "model.head.bias"}
    SSLAMEncoder(tiny.cfg).load_state_dict(encoder_state_from_checkpoint(tiny.cfg, full), strict=True)
    with pytest.raises(KeyError, match=r"model\.head\.bias"):
        encoder_state_from_checkpoint(tiny.cfg, {k: v for k, v in full.items() if k != "model.head.bias"})
    with pytest.raises(ValueError, match=r"model\.head\.weight"):
        encoder_state_from_checkpoint(tiny.cfg, {**full, "model.head.weight": torch.zeros(6, 32)})
    pretrain = SSLAMConfig.from_hf_config({**TINY_HF_CONFIG, "model_variant": "pretrain"})
    assert ignored_checkpoint_keys(pretrain) == {}


# ---------------------------------------------------------------------------------------- ONNX


def test_chunk_module_folds_the_adapters_per_frame_steps_in_alarms_order(tiny):
    """Chunk outputs concatenated and trimmed to lengths // 2, then the rest of the adapter, equal
    ALARM's adapter on the stacked hidden states (trim, fuse, input_proj, pad, convs, llm_proj)."""
    adapter = tiny_adapter(32)
    wave = 0.1 * torch.randn(11 * 16000 + 77, generator=torch.Generator().manual_seed(4))
    features, frames = sslam_features(wave)
    tokens = encoder_frames(tiny.cfg, frames)
    chunk = SSLAMChunk(tiny, adapter).eval()
    with torch.no_grad():
        per_chunk = torch.cat([chunk(c) for c in features[None].split(1024, dim=1)], dim=1)
        rest = pad_to_even(per_chunk[:, :tokens])  # what the per-recording adapter graph does
        ours = adapter.llm_proj(adapter.adapter.downsampler(rest.transpose(1, 2)).transpose(1, 2))
        stacked = hidden_states(tiny, features, ALARM_CA_LAYERS)
        alarm = adapter(stacked, torch.tensor([tokens]))
    assert per_chunk.shape == (1, 1024, 48) and alarm.shape == (1, math.ceil(tokens / 2), 40)
    assert close(ours.numpy(), alarm.numpy()) < 1e-5


@pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")
def test_chunk_graph_in_onnxruntime_web(tmp_path, tiny):
    adapter = tiny_adapter(32)
    path = write_sslam_encoder(tmp_path, tiny, adapter)
    assert path.name == "encoder_sslam.onnx"
    chunk = SSLAMChunk(tiny, adapter).eval()
    g = torch.Generator().manual_seed(6)
    with OrtSession(path) as session:
        for seconds in (3.0, 10.24):
            features, _ = sslam_features(0.1 * torch.randn(round(seconds * 16000), generator=g))
            features = features[None, :1024]
            out = session.run({"input_features": features.numpy()})["encoder_out"]
            with torch.no_grad():
                expected = chunk(features).numpy()
            assert out.shape == expected.shape == (1, 512, 48)
            assert close(out, expected) < TOL, f"{seconds} s"
    with pytest.raises(ValueError, match="sslam"):
        export_sslam_encoder(tiny, AlarmAdapter(AdapterConfig.from_alarm({
            "encoder_name": "w2vbert", "adapter_name": "downsampler_conformer", "audio_encoder_layers": [1, 2],
            "use_conformer": False, "encoder_embedding_dim": 32, "adapter_embedding_dim": 48,
            "llm_embedding_dim": 40})))
