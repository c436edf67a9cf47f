"""Whisper front end (vs an independent numpy pipeline) and encoder (shapes, keys, ONNX)."""

from __future__ import annotations


import numpy as np
import onnx
import pytest
import torch
from torch import nn

from salmonn.whisper import (
    N_SAMPLES,
    WhisperAttention,
    WhisperConfig,
    WhisperEncoder,
    log_mel_spectrogram,
    sinusoids,
    whisper_mel_filters,
)

TINY = WhisperConfig(num_mel_bins=80, d_model=64, encoder_layers=2, encoder_attention_heads=4,
                     encoder_ffn_dim=128, max_source_positions=20)


# ---------------------------------------------------------------------------------- reference


def numpy_slaney_filters(n_mels: int = 80, n_fft: int = 400, sr: int = 16000) -> np.ndarray:
    """Librosa-style Slaney filters written independently (per-filter loop), [n_mels, n_freqs]."""
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)

    def hz_to_mel(f):
        return 3 * f / 200 if f < 1000 else 15 + np.log(f / 1000) / (np.log(6.4) / 27)

    def mel_to_hz(m):
        return np.where(m < 15, 200 * m / 3, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)))

    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    filters = np.zeros((n_mels, len(fft_freqs)))
    for m in range(n_mels):
        lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (fft_freqs - lo) / (centre - lo)
        down = (hi - fft_freqs) / (hi - centre)
        filters[m] = np.maximum(0, np.minimum(up, down)) * 2 / (hi - lo)
    return filters


def numpy_log_mel(wave: np.ndarray) -> np.ndarray:
    """Whisper features the long way: explicit framing + np.fft.rfft, float64 like HF's numpy path."""
    wave = wave.astype(np.float32)
    wave = np.pad(wave, (0, max(0, N_SAMPLES - len(wave))))[:N_SAMPLES].astype(np.float64)
    padded = np.pad(wave, (200, 200), mode="reflect")
    n_frames = 1 + (len(padded) - 400) // 160
    frames = np.stack([padded[i * 160: i * 160 + 400] for i in range(n_frames)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # [frames, 201]
    mel = numpy_slaney_filters() @ power.T
    log_mel = np.log10(np.maximum(mel, 1e-10)).astype(np.float32)[:, :-1]
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
    return (log_mel + 4.0) / 4.0


# ---------------------------------------------------------------------------------- config


def test_config_defaults_are_large_v2():
    cfg = WhisperConfig()
    assert (cfg.num_mel_bins, cfg.d_model, cfg.encoder_layers) == (80, 1280, 32)
    assert (cfg.encoder_attention_heads, cfg.encoder_ffn_dim, cfg.max_source_positions) == (20, 5120, 1500)
    assert cfg.input_frames == 3000


def test_from_hf_config_ignores_decoder_keys():
    hf = {"d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536,
          "num_mel_bins": 80, "max_source_positions": 1500, "decoder_layers": 4, "vocab_size": 51865,
          "model_type": "whisper"}
    cfg = WhisperConfig.from_hf_config(hf)
    assert cfg == WhisperConfig(80, 384, 4, 6, 1536, 1500)


# ---------------------------------------------------------------------------------- front end


def test_mel_filters_shape_and_values():
    f = whisper_mel_filters()
    assert f.shape == (80, 201) and f.dtype == torch.float64
    assert (f >= 0).all()
    np.testing.assert_allclose(f.numpy(), numpy_slaney_filters(), rtol=1e-10, atol=1e-13)
    # area normalisation: sum over bins * bin width (40 Hz) ~ 1 (up to the coarse sampling)
    areas = f.sum(dim=1) * 40.0
    assert torch.allclose(areas, torch.ones(80, dtype=torch.float64), atol=0.1)
    assert f[0, 1].item() == pytest.approx(0.0248626, abs=1e-7)  # first filter: one 40 Hz bin
    # every filter is a single triangle, peaking between its neighbours
    peaks = f.argmax(dim=1)
    assert (peaks[1:] >= peaks[:-1]).all()
    assert f[:, -1].sum() == 0  # the Nyquist bin is the last filter's right edge
    assert f[-1].max() > 0


@pytest.mark.parametrize("seconds", [1.0, 3.7])
def test_log_mel_matches_numpy_reference(seconds):
    rng = np.random.default_rng(0)
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.05 * rng.standard_normal(len(t))
    ours = log_mel_spectrogram(torch.from_numpy(wave))
    assert ours.shape == (80, 3000) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), numpy_log_mel(wave), atol=1e-5)


def test_log_mel_pads_and_trims_to_30_s():
    torch.manual_seed(0)
    long = torch.randn(16000 * 40) * 0.1
    assert torch.equal(log_mel_spectrogram(long), log_mel_spectrogram(long[:N_SAMPLES]))
    short = torch.randn(8000) * 0.1
    padded = torch.cat([short, torch.zeros(N_SAMPLES - 8000)])
    assert torch.equal(log_mel_spectrogram(short), log_mel_spectrogram(padded))


def test_log_mel_silence_is_floor():
    out = log_mel_spectrogram(torch.zeros(16000))
    assert torch.allclose(out, torch.full_like(out, (-10.0 + 4.0) / 4.0))


# ---------------------------------------------------------------------------------- encoder


def test_sinusoid_table():
    table = sinusoids(1500, 1280)
    assert table.shape == (1500, 1280)
    assert torch.equal(table[0, :640], torch.zeros(640)) and torch.equal(table[0, 640:], torch.ones(640))
    assert table.abs().max() <= 1.0
    t = torch.arange(1500, dtype=torch.float32)
    assert torch.allclose(table[:, 0], torch.sin(t), atol=1e-4)  # fastest sine: timescale 1
    assert torch.allclose(table[:, 640], torch.cos(t), atol=1e-4)
    slowest = 1 / 10000.0  # timescales run geometrically from 1 to 10000
    assert torch.allclose(table[:, 639], torch.sin(t * slowest), atol=1e-5)
    assert torch.allclose(table[:, 1279], torch.cos(t * slowest), atol=1e-5)
    # buffer of the encoder holds exactly this table
    enc = WhisperEncoder(TINY)
    assert torch.equal(enc.embed_positions.weight, sinusoids(20, 64))


def test_encoder_shapes_and_length_check():
    torch.manual_seed(0)
    enc = WhisperEncoder(TINY).eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 80, 40))
    assert out.shape == (2, 20, 64)
    with pytest.raises(ValueError):
        enc(torch.randn(1, 80, 38))


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = WhisperAttention(64, 4).eval()
    ref = nn.MultiheadAttention(64, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, torch.zeros(64), ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
        x = torch.randn(2, 7, 64)
        assert torch.allclose(ours(x), ref(x, x, x, need_weights=False)[0], atol=1e-5)


def test_state_dict_keys_match_hf_encoder():
    keys = set(WhisperEncoder(TINY).state_dict())
    expected = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "embed_positions.weight",
                "layer_norm.weight", "layer_norm.bias"}
    for i in range(2):
        p = f"layers.{i}."
        expected |= {p + f"self_attn.{n}_proj.weight" for n in "qkvo" if n != "o"}
        expected |= {p + "self_attn.out_proj.weight", p + "self_attn.out_proj.bias",
                     p + "self_attn.q_proj.bias", p + "self_attn.v_proj.bias"}
        for ln in ("self_attn_layer_norm", "final_layer_norm", "fc1", "fc2"):
            expected |= {p + ln + ".weight", p + ln + ".bias"}
    assert keys == expected
    assert "layers.0.self_attn.k_proj.bias" not in keys  # Whisper's key projection has no bias


def test_hf_named_state_dict_loads_strict():
    src = WhisperEncoder(TINY)
    hf_style = {"model.encoder." + k: v.clone() for k, v in src.state_dict().items()}
    stripped = {k[len("model.encoder."):]: v for k, v in hf_style.items() if k.startswith("model.encoder.")}
    dst = WhisperEncoder(TINY)
    dst.load_state_dict(stripped, strict=True)
    x = torch.randn(1, 80, 40)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_onnx_export(tmp_path):
    enc = WhisperEncoder(TINY).eval()
    path = tmp_path / "whisper_tiny.onnx"
    torch.onnx.export(enc, (torch.randn(1, 80, 40),), str(path), opset_version=17,
                      input_names=["input_features"], output_names=["last_hidden_state"])
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17
