"""Whisper speech encoder (the half of Whisper that SALMONN uses), plus its log-mel front end.

SALMONN feeds every clip through the encoder of `openai/whisper-large-v2`, always padded to 30 s:
    waveform (16 kHz) -> log-mel [80, 3000] -> WhisperEncoder -> [1500, 1280]

Parameter names mirror Hugging Face's `WhisperEncoder`, so the encoder part of an HF checkpoint
(keys `model.encoder.*` with that prefix stripped) loads with `load_state_dict(strict=True)`.

The front end must agree with HF's numpy `WhisperFeatureExtractor` (the browser side uses the
@huggingface/transformers port of it), so the details below follow that extractor:
  * input cast to float32, zero-padded (or cut) at the end to 30 s = 480000 samples;
  * frames of 400 samples every 160, centred (reflect padding of 200 on both sides), periodic Hann
    window, real FFT of size 400, power spectrum, computed in float64;
  * Slaney mel filters (0..8000 Hz, area normalised), floor 1e-10, log10, cast to float32;
  * the last of the 3001 frames is dropped, then max(x, max(x) - 8) and (x + 4) / 4; no dither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480000 samples = 30 s
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames


# ----------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class WhisperConfig:
    """Encoder hyper-parameters, named as in HF's `WhisperConfig`. Defaults: whisper-large-v2."""

    num_mel_bins: int = 80
    d_model: int = 1280
    encoder_layers: int = 32
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    max_source_positions: int = 1500  # encoder output frames; the input has twice as many

    @classmethod
    def from_hf_config(cls, d: Dict[str, Any]) -> "WhisperConfig":
        """Build from an HF `config.json` dict; decoder and training keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def input_frames(self) -> int:
        # conv2 has stride 2, so the mel input is twice as long as the position table
        return 2 * self.max_source_positions


# ----------------------------------------------------------------------------------------------
# Log-mel front end


def _hz_to_mel_slaney(hz: Tensor) -> Tensor:
    """Slaney mel scale: linear below 1 kHz (3 mel per 200 Hz), logarithmic above."""
    min_log_hz, min_log_mel = 1000.0, 15.0
    logstep = 27.0 / math.log(6.4)
    linear = 3.0 * hz / 200.0
    log_part = min_log_mel + torch.log(torch.clamp(hz, min=min_log_hz) / min_log_hz) * logstep
    return torch.where(hz >= min_log_hz, log_part, linear)


def _mel_to_hz_slaney(mel: Tensor) -> Tensor:
    """Inverse of `_hz_to_mel_slaney`."""
    min_log_hz, min_log_mel = 1000.0, 15.0
    logstep = math.log(6.4) / 27.0
    linear = 200.0 * mel / 3.0
    log_part = min_log_hz * torch.exp(logstep * (mel - min_log_mel))
    return torch.where(mel >= min_log_mel, log_part, linear)


def whisper_mel_filters(n_mels: int = 80, n_fft: int = 400, sr: int = 16000) -> Tensor:
    """Slaney-scale, Slaney-normalised triangular mel filters, float64 [n_mels, n_fft // 2 + 1].

    Same values as HF `mel_filter_bank(n_fft // 2 + 1, n_mels, 0.0, sr / 2, sr, norm="slaney",
    mel_scale="slaney")` (which is [n_freqs, n_mels]; ours is transposed, ready for `filters @ spec`).
    """
    dtype = torch.float64
    n_freqs = n_fft // 2 + 1
    # FFT bin centre frequencies, 0 .. Nyquist
    fft_freqs = torch.linspace(0.0, float(sr // 2), n_freqs, dtype=dtype)
    # n_mels + 2 points equally spaced on the mel scale; filter m spans points m .. m + 2
    mel_min = _hz_to_mel_slaney(torch.tensor(0.0, dtype=dtype))
    mel_max = _hz_to_mel_slaney(torch.tensor(sr / 2, dtype=dtype))
    edges_hz = _mel_to_hz_slaney(torch.linspace(float(mel_min), float(mel_max), n_mels + 2, dtype=dtype))

    widths = edges_hz[1:] - edges_hz[:-1]  # [n_mels + 1]
    offsets = edges_hz[None, :] - fft_freqs[:, None]  # [n_freqs, n_mels + 2]
    rising = -offsets[:, :-2] / widths[:-1]  # ramps up from the left edge to the centre
    falling = offsets[:, 2:] / widths[1:]  # ramps down from the centre to the right edge
    triangles = torch.clamp(torch.minimum(rising, falling), min=0.0)  # [n_freqs, n_mels]

    # Slaney normalisation: every filter gets (roughly) the same area, 2 / bandwidth in Hz
    area_norm = 2.0 / (edges_hz[2:] - edges_hz[:-2])
    return (triangles * area_norm[None, :]).T.contiguous()


def pad_or_trim(wave: Tensor, length: int = N_SAMPLES) -> Tensor:
    """Zero-pad at the end, or cut, a 1-D waveform to exactly `length` samples."""
    if wave.shape[0] >= length:
        return wave[:length]
    return F.pad(wave, (0, length - wave.shape[0]))


def log_mel_spectrogram(wave: Tensor) -> Tensor:
    """Whisper input features of a mono 16 kHz waveform [n] -> float32 [80, 3000]."""
    if wave.dim() != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {tuple(wave.shape)}")
    # HF first turns the audio into float32, then works in float64 (numpy FFT)
    wave = pad_or_trim(wave.to(torch.float32)).to(torch.float64)

    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    stft = torch.stft(
        wave, n_fft=N_FFT, hop_length=HOP_LENGTH, window=window,
        center=True, pad_mode="reflect", return_complex=True,
    )  # [201, 3001]
    power = stft.abs() ** 2

    mel = whisper_mel_filters(80, N_FFT, SAMPLE_RATE) @ power  # [80, 3001]
    log_mel = torch.clamp(mel, min=1e-10).log10().to(torch.float32)
    log_mel = log_mel[:, :-1]  # Whisper drops the frame centred on the very last sample

    # keep an 80 dB dynamic range below the loudest bin, then scale to roughly [-1, 1]
    log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
    return (log_mel + 4.0) / 4.0


# ----------------------------------------------------------------------------------------------
# Encoder


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's fixed position table [length, channels]: sines in the first half, cosines after."""
    if channels % 2 != 0:
        raise ValueError(f"channels must be even, got {channels}")
    log_timescale_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_timescale_increment * torch.arange(channels // 2))
    scaled_time = torch.arange(length).view(-1, 1) * inv_timescales.view(1, -1)
    return torch.cat([scaled_time.sin(), scaled_time.cos()], dim=1)


class SinusoidalPositions(nn.Module):
    """Holds the sinusoid table as the buffer `weight`, so the HF key `embed_positions.weight`
    (a frozen nn.Embedding there) loads into it."""

    def __init__(self, num_positions: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("weight", sinusoids(num_positions, dim))


class WhisperAttention(nn.Module):
    """Multi-head self-attention; like Whisper, the key projection has no bias."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError("d_model must be divisible by the number of heads")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.scaling = self.head_dim ** -0.5
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, Dh]

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q = self._split_heads(self.q_proj(x) * self.scaling)
        k = self._split_heads(self.k_proj(x))
        v = self._split_heads(self.v_proj(x))
        weights = torch.softmax(q @ k.transpose(-1, -2), dim=-1)  # [B, H, T, T]
        out = (weights @ v).transpose(1, 2).reshape(b, t, d)
        return self.out_proj(out)


class WhisperEncoderLayer(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + fc2(gelu(fc1(ln(x))))."""

    def __init__(self, cfg: WhisperConfig) -> None:
        super().__init__()
        self.self_attn = WhisperAttention(cfg.d_model, cfg.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.encoder_ffn_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        x = x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        return x


class WhisperEncoder(nn.Module):
    """Log-mel [B, 80, 3000] -> hidden states [B, 1500, d_model] (after the final LayerNorm)."""

    def __init__(self, cfg: WhisperConfig = WhisperConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv1d(cfg.num_mel_bins, cfg.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.d_model, cfg.d_model, kernel_size=3, stride=2, padding=1)
        self.embed_positions = SinusoidalPositions(cfg.max_source_positions, cfg.d_model)
        self.layers = nn.ModuleList(WhisperEncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, mel: Tensor) -> Tensor:
        # The position table has a fixed number of rows, so the input length is fixed too
        # (Whisper always sees 30 s); HF raises on any other length, and so do we.
        if not torch.jit.is_tracing() and mel.shape[-1] != self.cfg.input_frames:
            raise ValueError(f"expected {self.cfg.input_frames} mel frames, got {mel.shape[-1]}")
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x))  # [B, d_model, 1500]
        x = x.transpose(1, 2) + self.embed_positions.weight
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)
