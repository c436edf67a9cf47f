"""ALARM-CA's MuQ encoder (alarm/muq.py, tiny_muq.py, export_muq.py) on tiny random weights.

(1) the parts against written-out float64 formulations: the DFT basis against torch.fft, the mel
    front end against torchaudio's MelSpectrogram + AmplitudeToDB (torch.stft, what MuQ runs),
    the filter bank against torchaudio's, the conv stem, the rotary self-attention with its key
    mask, the convolution module, a whole conformer layer and the hidden-state indexing;
(2) the features: torchaudio's Resample (ALARM's function) against a float64 windowed-sinc
    formulation of its documented parameters, padding, lengths and MuQ's frame-mask rule;
(3) the strict key layout (tiny state strict; renamed / missing / reshaped keys name the key;
    checkpoint-only keys checked and dropped) and the config reader;
(4) the exported chunk graph in onnxruntime-web (wasm) against the PyTorch chunk, 1e-4 relative.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
import torchaudio

from alarm.adapter import WeightedAverage
from alarm.export_muq import GRAPH_FILE, MuQChunk, write_muq_encoder
from alarm.muq import (CHUNK_SAMPLES, MUQ_LARGE_MSD_ITER, SAMPLES_PER_FRAME, ConformerLayer, ConvolutionModule,
                       MuQConfig, MuQEncoder, SelfAttention, encoder_frames, frame_mask, hidden_states,
                       htk_mel_filter_bank, ignored_checkpoint_keys, load_muq_checkpoint, muq_features,
                       parameter_count, pos_conv_keys, sinc_resample_reference,
                       windowed_dft_basis)
from alarm.tiny_muq import TINY_MUQ_LAYERS, tiny_muq_config, tiny_muq_encoder, tiny_muq_hf_config, tiny_muq_state
from salmonn.ort_bridge import OrtSession, node_available

REPO = Path(__file__).resolve().parents[2]
WEBGPU_OPS_DOC = REPO / "node_modules" / "onnxruntime-web" / "docs" / "webgpu-operators.md"
SHORT_CHUNK = 9600  # 0.4 s: 40 mel frames, 10 encoder frames (ALARM's chunk is 720000)


def close(actual: np.ndarray, expected: np.ndarray) -> float:
    """Max abs error relative to max(1, max |expected|) (as test_alarm_onnx.py)."""
    return float(np.abs(actual - expected).max() / max(1.0, float(np.abs(expected).max())))


def music_like(samples: int, seed: int = 0, rate: int = 24000) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples, dtype=torch.float64) / rate
    tones = sum(a * torch.sin(2 * math.pi * f * t) for a, f in ((0.4, 220.0), (0.2, 1375.5), (0.1, 6000.0)))
    return (tones + 0.05 * torch.randn(samples, generator=g, dtype=torch.float64)).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# (1) parts against float64 formulations


def test_dft_basis_is_the_windowed_one_sided_dft() -> None:
    frames = torch.randn(5, 2048, dtype=torch.float64)
    window = torch.hann_window(2048, periodic=True, dtype=torch.float64)
    spectrum = torch.fft.rfft(frames * window)
    ours = frames @ windowed_dft_basis(2048)
    assert torch.allclose(ours[:, :1025], spectrum.real, atol=1e-9)
    assert torch.allclose(ours[:, 1025:], spectrum.imag, atol=1e-9)


def test_filter_bank_matches_torchaudio() -> None:
    reference = torchaudio.functional.melscale_fbanks(1025, 0.0, 12000.0, 128, 24000, norm=None, mel_scale="htk")
    # torchaudio builds its bank in float32 (e.g. 3.5e-6 where the top filter meets Nyquist)
    assert (htk_mel_filter_bank(1025, 128, 24000) - reference.double()).abs().max() < 5e-5


def test_mel_front_end_matches_torchaudio_stft_path() -> None:
    """MuQ's own path: MelSpectrogram(24000, n_fft 2048, hop 240, 128 mels) -> AmplitudeToDB ->
    drop the last frame -> stats; on music-like audio followed by digital silence (ALARM's padding)."""
    cfg = tiny_muq_config()
    wave = torch.cat([music_like(24000), torch.zeros(4800)])[None]
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=24000, n_fft=2048, hop_length=240, n_mels=128)
    expected = (torchaudio.transforms.AmplitudeToDB()(mel(wave))[..., :-1] - cfg.stat_mean) / cfg.stat_std
    ours = MuQEncoder(cfg).front_end(wave)
    assert ours.shape == expected.shape == (1, 128, 120)
    assert (ours - expected).abs().max() < 2e-3  # 0.04 dB; fp32 matmul DFT vs fp32 FFT


def _conv2d_taps(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: tuple) -> torch.Tensor:
    """3x3 conv, padding 1, written as a sum over the nine taps (float64)."""
    padded = F.pad(x, (1, 1, 1, 1))
    h = (x.shape[2] - 1) // stride[0] + 1
    w = (x.shape[3] - 1) // stride[1] + 1
    out = bias[None, :, None, None].expand(x.shape[0], -1, h, w).clone()
    for i in range(3):
        for j in range(3):
            patch = padded[:, :, i: i + stride[0] * (h - 1) + 1: stride[0], j: j + stride[1] * (w - 1) + 1: stride[1]]
            out = out + torch.einsum("bchw,oc->bohw", patch, weight[:, :, i, j])
    return out


def _batch_norm(x: torch.Tensor, p: Dict[str, torch.Tensor], prefix: str, channel_dim: int = 1) -> torch.Tensor:
    shape = [1] * x.dim()
    shape[channel_dim] = -1

    def v(name: str) -> torch.Tensor:
        return p[f"{prefix}.{name}"].view(shape)

    return (x - v("running_mean")) / torch.sqrt(v("running_var") + 1e-5) * v("weight") + v("bias")


def _stem64(mel: torch.Tensor, p: Dict[str, torch.Tensor]) -> torch.Tensor:
    x = mel[:, None]
    for block in ("model.conv.conv.0", "model.conv.conv.1"):
        def conv(name: str, y: torch.Tensor, stride: tuple) -> torch.Tensor:
            return _conv2d_taps(y, p[f"{block}.{name}.weight"], p[f"{block}.{name}.bias"], stride)

        out = torch.relu(_batch_norm(conv("conv1", x, (2, 2)), p, f"{block}.bn1"))
        out = _batch_norm(conv("conv2", out, (1, 1)), p, f"{block}.bn2")
        x = torch.relu(out + _batch_norm(conv("conv3", x, (2, 2)), p, f"{block}.bn3"))
    b, c, f, t = x.shape
    flat = torch.stack([x[:, :, :, k].reshape(b, c * f) for k in range(t)], dim=1)  # frame k: (c, f) c-major
    return flat @ p["model.conv.linear.weight"].T + p["model.conv.linear.bias"]


def _state64(seed: int = 0) -> Dict[str, torch.Tensor]:
    return {k: v.double() for k, v in tiny_muq_state(seed).items()}


def test_conv_stem_matches_float64_taps() -> None:
    enc = tiny_muq_encoder()
    mel = torch.randn(1, 128, 40)
    with torch.no_grad():
        ours = enc.model.conv(mel)
    expected = _stem64(mel.double(), _state64())
    assert ours.shape == (1, 10, 32)
    assert (ours.double() - expected).abs().max() < 1e-4


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _attention64(x: torch.Tensor, p: Dict[str, torch.Tensor], prefix: str, heads: int, mask: torch.Tensor,
                 base: float = 10000.0) -> torch.Tensor:
    """HF's rotary self-attention, per head and frame: rotate the INPUT's head slices by angle
    t * base^(-2i / head_dim) pairing i with i + head_dim / 2, project q / k from it and v from the
    raw input, attend over the real keys only."""
    _, t, d = x.shape
    hd = d // heads
    rotated = x.clone()
    for h in range(heads):
        for i in range(hd // 2):
            angle = torch.arange(t, dtype=torch.float64) * base ** (-2.0 * i / hd)
            a, b = x[0, :, h * hd + i], x[0, :, h * hd + i + hd // 2]
            rotated[0, :, h * hd + i] = a * torch.cos(angle) - b * torch.sin(angle)
            rotated[0, :, h * hd + i + hd // 2] = b * torch.cos(angle) + a * torch.sin(angle)

    def lin(name: str, y: torch.Tensor) -> torch.Tensor:
        return y @ p[f"{prefix}.{name}.weight"].T + p[f"{prefix}.{name}.bias"]

    q, k, v = lin("linear_q", rotated)[0], lin("linear_k", rotated)[0], lin("linear_v", x)[0]
    real = mask.bool()
    out = torch.zeros(t, d, dtype=torch.float64)
    for h in range(heads):
        cols = slice(h * hd, (h + 1) * hd)
        scores = q[:, cols] @ k[real][:, cols].T / math.sqrt(hd)
        out[:, cols] = torch.softmax(scores, dim=-1) @ v[real][:, cols]
    return lin("linear_out", out[None])


def _conv_module64(x: torch.Tensor, p: Dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    y = _layer_norm(x, p[f"{prefix}.layer_norm.weight"], p[f"{prefix}.layer_norm.bias"])[0]  # [T, D]
    y = y @ p[f"{prefix}.pointwise_conv1.weight"][:, :, 0].T  # [T, 2D]
    d = y.shape[1] // 2
    y = y[:, :d] * torch.sigmoid(y[:, d:])
    kernel = p[f"{prefix}.depthwise_conv.weight"][:, 0, :]  # [D, K]
    half = kernel.shape[1] // 2
    padded = F.pad(y.T, (half, half))  # [D, T + K - 1]
    y = sum(kernel[:, j: j + 1] * padded[:, j: j + y.shape[0]] for j in range(kernel.shape[1])).T
    y = _batch_norm(y, p, f"{prefix}.batch_norm", channel_dim=1)
    y = y * torch.sigmoid(y)
    return (y @ p[f"{prefix}.pointwise_conv2.weight"][:, :, 0].T)[None]


def _ffn64(x: torch.Tensor, p: Dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    h = x @ p[f"{prefix}.intermediate_dense.weight"].T + p[f"{prefix}.intermediate_dense.bias"]
    h = h * torch.sigmoid(h)
    return h @ p[f"{prefix}.output_dense.weight"].T + p[f"{prefix}.output_dense.bias"]


def _layer64(x: torch.Tensor, p: Dict[str, torch.Tensor], prefix: str, heads: int, mask: torch.Tensor) -> torch.Tensor:
    def ln(name: str, y: torch.Tensor) -> torch.Tensor:
        return _layer_norm(y, p[f"{prefix}.{name}.weight"], p[f"{prefix}.{name}.bias"])

    x = x + 0.5 * _ffn64(ln("ffn1_layer_norm", x), p, f"{prefix}.ffn1")
    x = x + _attention64(ln("self_attn_layer_norm", x), p, f"{prefix}.self_attn", heads, mask)
    x = x + _conv_module64(x, p, f"{prefix}.conv_module")
    x = x + 0.5 * _ffn64(ln("ffn2_layer_norm", x), p, f"{prefix}.ffn2")
    return ln("final_layer_norm", x)


def _masked_inputs(cfg: MuQConfig, frames: int = 12, real: int = 9):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, frames, cfg.encoder_dim, generator=g)
    mask = torch.zeros(1, frames)
    mask[:, :real] = 1
    return x, mask


def _loaded(module: torch.nn.Module, prefix: str, state: Dict[str, torch.Tensor]) -> torch.nn.Module:
    module.load_state_dict({k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")})
    return module.eval()


def test_rotary_self_attention_matches_float64() -> None:
    cfg = tiny_muq_config()
    state = tiny_muq_state()
    prefix = "model.conformer.layers.1.self_attn"
    attn = _loaded(SelfAttention(cfg), prefix, state)
    x, mask = _masked_inputs(cfg)
    enc = MuQEncoder(cfg)
    enc.load_state_dict(state)
    cos, sin = enc.model.conformer.embed_positions(x.shape[1])
    bias = ((1 - mask) * torch.finfo(torch.float32).min)[:, None, None, :]
    with torch.no_grad():
        ours = attn(x, cos, sin, bias)
    expected = _attention64(x.double(), _state64(), prefix, cfg.num_attention_heads, mask[0])
    assert (ours.double() - expected).abs().max() < 1e-5


def test_convolution_module_matches_float64() -> None:
    cfg = tiny_muq_config()
    prefix = "model.conformer.layers.0.conv_module"
    conv = _loaded(ConvolutionModule(cfg), prefix, tiny_muq_state())
    x, _ = _masked_inputs(cfg)
    with torch.no_grad():
        ours = conv(x)
    assert (ours.double() - _conv_module64(x.double(), _state64(), prefix)).abs().max() < 1e-5


def test_conformer_layer_matches_float64() -> None:
    cfg = tiny_muq_config()
    prefix = "model.conformer.layers.2"
    layer = _loaded(ConformerLayer(cfg), prefix, tiny_muq_state())
    enc = tiny_muq_encoder()
    x, mask = _masked_inputs(cfg)
    cos, sin = enc.model.conformer.embed_positions(x.shape[1])
    bias = ((1 - mask) * torch.finfo(torch.float32).min)[:, None, None, :]
    with torch.no_grad():
        ours = layer(x, cos, sin, bias)
    expected = _layer64(x.double(), _state64(), prefix, cfg.num_attention_heads, mask[0])
    assert (ours.double() - expected).abs().max() < 1e-4


def test_hidden_state_indexing_follows_transformers() -> None:
    """[0] = the stem output with padded frames zeroed; [i] = output of layer i; [depth] = the final
    layer_norm of the last output."""
    cfg = tiny_muq_config()
    enc = tiny_muq_encoder()
    p = _state64()
    x, mask = _masked_inputs(cfg)
    with torch.no_grad():
        ours = enc.model.conformer.hidden_states(x, mask, [0, 1, 2, 3]).double()
    h = x.double() * mask.double()[:, :, None]
    expected = [h]
    for i in range(cfg.encoder_depth):
        h = _layer64(h, p, f"model.conformer.layers.{i}", cfg.num_attention_heads, mask[0])
        expected.append(h)
    expected[-1] = _layer_norm(h, p["model.conformer.layer_norm.weight"], p["model.conformer.layer_norm.bias"])
    assert (ours - torch.stack(expected)).abs().max() < 1e-4


# ---------------------------------------------------------------------------------------------
# (2) features


def test_resampler_matches_float64_windowed_sinc() -> None:
    wave = music_like(16000 + 7, rate=16000)
    features, length = muq_features(wave)
    expected = sinc_resample_reference(wave)
    assert length == expected.numel() == math.ceil(1.5 * wave.numel())
    assert (features[:length].double() - expected).abs().max() < 1e-6  # float32 kernel and conv


def test_features_pad_to_30_s_chunks_and_count_real_samples() -> None:
    wave = torch.randn(16000 * 31) * 0.1
    features, length = muq_features(wave)
    assert length == 24000 * 31 and features.shape == (2 * CHUNK_SAMPLES,)
    assert torch.all(features[length:] == 0)
    assert encoder_frames(MUQ_LARGE_MSD_ITER, length) == 31 * 25
    exact, exact_length = muq_features(torch.randn(16000 * 30))
    assert exact.shape == (CHUNK_SAMPLES,) and exact_length == CHUNK_SAMPLES


@pytest.mark.parametrize("real", [1, 959, 960, 961, 5000, 9600])
def test_frame_mask_is_muq_sample_mask_subsampled(real: int) -> None:
    """MuQModel.encoder: skip_n = int(len(mask) / frames); mask[::skip_n][:frames]."""
    samples = torch.zeros(SHORT_CHUNK, dtype=torch.long)
    samples[:real] = 1
    frames = SHORT_CHUNK // SAMPLES_PER_FRAME
    expected = samples[:: int(samples.numel() / frames)][:frames].float()
    assert torch.equal(frame_mask(real, SHORT_CHUNK), expected)


def test_hidden_states_run_chunk_by_chunk_with_masks() -> None:
    enc = tiny_muq_encoder()
    features = torch.cat([music_like(SHORT_CHUNK + 3000), torch.zeros(SHORT_CHUNK - 3000)])
    ours = hidden_states(enc, features, TINY_MUQ_LAYERS, length=SHORT_CHUNK + 3000, chunk_samples=SHORT_CHUNK)
    assert ours.shape == (3, 1, 20, 32)
    with torch.no_grad():
        first = enc.chunk_hidden_states(features[None, :SHORT_CHUNK], torch.ones(1, 10), TINY_MUQ_LAYERS)
        last_mask = frame_mask(3000, SHORT_CHUNK)[None]
        second = enc.chunk_hidden_states(features[None, SHORT_CHUNK:], last_mask, TINY_MUQ_LAYERS)
        unmasked = enc.chunk_hidden_states(features[None, SHORT_CHUNK:], None, TINY_MUQ_LAYERS)
    assert torch.equal(ours, torch.cat([first, second], dim=-2))
    assert (second - unmasked).abs().max() > 1e-3  # the mask changes the last chunk's real frames


def test_full_30_s_chunk_geometry() -> None:
    """A real 30 s chunk: 3001 centred frames (reflect-padded by 1024), 3000 mel frames after the
    drop, 750 encoder frames (the DFT matmul itself is left to the short-chunk tests: speed)."""
    enc = tiny_muq_encoder()
    features, length = muq_features(torch.randn(16000 * 3) * 0.1)
    wave = features[None]
    frames = enc.front_end.frames(wave)
    assert frames.shape == (1, 3001, 2048)
    reflected = F.pad(wave[None], (1024, 1024), mode="reflect")[0, 0]
    for f in (0, 1, 1500, 2999, 3000):
        assert torch.equal(frames[0, f], reflected[240 * f: 240 * f + 2048])
    with torch.no_grad():
        stem = enc.model.conv(torch.randn(1, 128, 3000))
    assert stem.shape == (1, 750, 32) and frame_mask(length).shape == (750,)
    assert encoder_frames(enc.cfg, length) == 75 and int(frame_mask(length).sum()) == 75


# ---------------------------------------------------------------------------------------------
# (3) keys and config


def _checkpoint(cfg: MuQConfig, seed: int = 0, legacy: bool = False) -> Dict[str, torch.Tensor]:
    state = dict(tiny_muq_state(seed))
    ignored = ignored_checkpoint_keys(cfg)
    if legacy:
        for new, old in zip(pos_conv_keys(cfg), pos_conv_keys(cfg, legacy=True)):
            ignored[old] = ignored.pop(new)
    state.update({k: torch.randn(shape) for k, shape in ignored.items()})
    return state


def test_tiny_state_loads_strictly_and_checkpoint_only_keys_are_dropped() -> None:
    cfg = tiny_muq_config()
    enc = MuQEncoder(cfg)
    enc.load_state_dict(tiny_muq_state(), strict=True)
    assert set(enc.state_dict()) == set(tiny_muq_state())
    assert not any(k.startswith("front_end") for k in enc.state_dict())
    for legacy in (False, True):
        load_muq_checkpoint(MuQEncoder(cfg), _checkpoint(cfg, legacy=legacy))
    keys = ignored_checkpoint_keys(cfg)
    assert keys["model.rvq.quantizers.1.in_proj.weight_v"] == (16, 512, 1)
    assert keys["model.conformer.pos_conv_embed.conv.parametrizations.weight.original1"] == (32, 8, 8)
    assert "model.conformer.embed_positions.inv_freq" in enc.state_dict()


@pytest.mark.parametrize("damage", ["rename", "drop", "reshape", "drop_ignored", "reshape_ignored"])
def test_damaged_checkpoint_names_the_key(damage: str) -> None:
    cfg = tiny_muq_config()
    state = _checkpoint(cfg)
    key = "model.conformer.layers.1.self_attn.linear_k.weight"
    ignored = "model.linear.weight"
    if damage == "rename":
        state["model.conformer.layers.1.self_attn.linear_key.weight"] = state.pop(key)
    elif damage == "drop":
        del state[key]
    elif damage == "reshape":
        state[key] = torch.zeros(32, 31)
    elif damage == "drop_ignored":
        del state[ignored]
        key = ignored
    else:
        state[ignored] = torch.zeros(3, 32)
        key = ignored
    with pytest.raises((RuntimeError, ValueError), match=key.replace(".", r"\.")):
        load_muq_checkpoint(MuQEncoder(cfg), state)


def test_config_reader_rejects_unknown_and_unsupported_fields() -> None:
    base = tiny_muq_hf_config()
    assert MuQConfig.from_hf_config(base) == tiny_muq_config()
    cases = {"n_mels": {"n_mels": 64}, "is_flash": {"is_flash": True}, "extra_field": {"extra_field": 1},
             "label_rate": {"label_rate": 50}, "position_embeddings_type": {
                 "w2v2_config": {**base["w2v2_config"], "position_embeddings_type": "relative"}},
             "melspec_2048_std": {"stat": {"melspec_2048_mean": 0.0}}}
    for field, change in cases.items():
        with pytest.raises(ValueError, match=field):
            MuQConfig.from_hf_config({**base, **change})


def test_parameter_count_matches_the_modules_and_the_real_size() -> None:
    cfg = tiny_muq_config()
    assert parameter_count(cfg)["running"] == sum(v.numel() for v in tiny_muq_state().values())
    real = parameter_count(MUQ_LARGE_MSD_ITER)
    assert real["conv_stem"] == 26_240_006 and real["conformer"] == 290_134_060
    assert real["running"] == 316_374_066


# ---------------------------------------------------------------------------------------------
# (4) the chunk graph in onnxruntime-web


@pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")
def test_chunk_graph_matches_pytorch_in_onnxruntime_web(tmp_path: Path) -> None:
    enc = tiny_muq_encoder()
    fusion = WeightedAverage(len(TINY_MUQ_LAYERS))
    with torch.no_grad():
        fusion.layer_weights.copy_(torch.tensor([0.4, -0.3, 0.2]))
    write_muq_encoder(tmp_path, enc, TINY_MUQ_LAYERS, fusion, chunk_samples=SHORT_CHUNK)
    model = onnx.load(str(tmp_path / GRAPH_FILE), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"STFT", "DFT"}, "the mel front end must not need the STFT / DFT ops"
    webgpu_ops = WEBGPU_OPS_DOC.read_text().split("\n") if WEBGPU_OPS_DOC.is_file() else None
    if webgpu_ops is not None:  # onnxruntime-web's own list of WebGPU kernels (Constant becomes an initializer)
        listed = {line.split("|")[1].strip() for line in webgpu_ops if line.startswith("| ")}
        assert ops - {"Constant"} <= listed, f"not in the WebGPU EP: {sorted(ops - {'Constant'} - listed)}"
    assert [i.name for i in model.graph.input] == ["input_values", "frame_mask"]
    chunk = MuQChunk(enc, TINY_MUQ_LAYERS, fusion).eval()
    wave = music_like(SHORT_CHUNK, seed=1)[None]
    with OrtSession(tmp_path / GRAPH_FILE) as session:
        for real in (SHORT_CHUNK, 3000):
            mask = frame_mask(real, SHORT_CHUNK)[None]
            padded = wave * (torch.arange(SHORT_CHUNK) < real)
            out = session.run({"input_values": padded.numpy(), "frame_mask": mask.numpy()})["encoder_out"]
            with torch.no_grad():
                expected = chunk(padded, mask).numpy()
            assert out.shape == expected.shape == (1, 10, 32)
            assert close(out, expected) < 1e-4, f"real samples {real}"
