"""Whisper large-v3 encoder as ALARM uses it: 128 mel bins, 30 s chunks, chosen hidden layers.

The encoder architecture is Whisper large-v2's (salmonn/whisper.py, reused as is) with
`num_mel_bins` 128 instead of 80; `openai/whisper-large-v3`'s config.json says so, and the rest
(d_model 1280, 32 layers, 20 heads, ffn 5120, 1500 positions) is unchanged.

ALARM's facts (github Blinorot/ALARM):
* src/model/audio/feature_extractor_implementations/whisper.py: audio (16 kHz, mono: channels
  averaged in audio_feature_extractor.py) is split into 30 s pieces; each piece goes through HF's
  `WhisperFeatureExtractor` (whisper-large-v3: 128 bins, padded to 30 s, with
  `return_attention_mask=True`); the pieces' features are concatenated in time and the length is
  the number of attended mel frames (the sample mask taken every 160 samples, summed).
* src/model/audio/encoder_implementations/base.py + whisper.py: the features are cut back into
  3000-frame pieces, each encoded with `output_hidden_states=True`, and the stacked hidden
  states [33, B, 1500, 1280] of the pieces are concatenated in time. Length // 2 afterwards.
  (HF's Whisper encoder ignores the attention mask.)
* HF's hidden-state tuple: index 0 = the input of layer 0 (conv stem + positions), index i =
  the output of layer i (1-based) for i < 32, index 32 = the FINAL LayerNorm of the last
  output. ALARM takes [7, 15, 23, 31] (src/configs/model/whisper_batch.yaml), so the last
  layer and the final LayerNorm are loaded but never needed: `hidden_states` stops early.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from salmonn.whisper import (
    HOP_LENGTH,
    N_FFT,
    N_SAMPLES,
    SAMPLE_RATE,
    WhisperConfig,
    WhisperEncoder,
    pad_or_trim,
    whisper_mel_filters,
)

N_MELS_V3 = 128
WHISPER_LARGE_V3 = WhisperConfig(num_mel_bins=N_MELS_V3)


def log_mel_v3(wave: Tensor, n_mels: int = N_MELS_V3) -> Tensor:
    """HF WhisperFeatureExtractor features of one <= 30 s piece [n] -> float32 [n_mels, 3000].

    The same recipe as salmonn.whisper.log_mel_spectrogram (zero-pad to 30 s, centred reflect-
    padded STFT of 400 with hop 160 in float64, Slaney mel filters, log10 with floor 1e-10, drop
    the last frame, clamp to max - 8, (x + 4) / 4), with `n_mels` filters.
    """
    if wave.dim() != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {tuple(wave.shape)}")
    wave = pad_or_trim(wave.to(torch.float32)).to(torch.float64)
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    stft = torch.stft(wave, n_fft=N_FFT, hop_length=HOP_LENGTH, window=window,
                      center=True, pad_mode="reflect", return_complex=True)
    mel = whisper_mel_filters(n_mels, N_FFT, SAMPLE_RATE) @ (stft.abs() ** 2)
    log_mel = torch.clamp(mel, min=1e-10).log10().to(torch.float32)[:, :-1]
    log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
    return (log_mel + 4.0) / 4.0


def attended_frames(n_samples: int) -> int:
    """Mel frames HF marks as attended for a piece of n (<= 480000) samples: the sample mask
    taken every 160th sample, i.e. ceil(n / 160)."""
    return math.ceil(min(n_samples, N_SAMPLES) / HOP_LENGTH)


def alarm_whisper_features(wave: Tensor, n_mels: int = N_MELS_V3) -> Tuple[Tensor, int]:
    """ALARM's Whisper features of a mono 16 kHz waveform: ([n_mels, 3000 * pieces], length in
    attended mel frames). Audio longer than 30 s gives several pieces."""
    if wave.dim() != 1 or wave.numel() == 0:
        raise ValueError("expected a non-empty 1-D waveform")
    pieces = wave.split(N_SAMPLES)
    mel = torch.cat([log_mel_v3(p, n_mels) for p in pieces], dim=-1)
    return mel, sum(attended_frames(p.numel()) for p in pieces)


def encoder_frames(mel_frames: int) -> int:
    """ALARM's WhisperEncoder.calc_length: the conv stem halves the frame count."""
    return mel_frames // 2


@torch.no_grad()
def hidden_states(encoder: WhisperEncoder, mel: Tensor, layers: Sequence[int]) -> Tensor:
    """HF-indexed hidden states `layers` of the encoder for mel [B, n_mels, 3000 * pieces]
    -> [len(layers), B, 1500 * pieces, d_model]; each 3000-frame piece is encoded on its own.

    Runs only as many layers as the largest index needs (index 32 of large-v3 would be the final
    LayerNorm of the last layer's output)."""
    n_layers = len(encoder.layers)
    if any(i < 0 or i > n_layers for i in layers):
        raise ValueError(f"hidden-state indexes must be within 0..{n_layers}, got {list(layers)}")
    frames = encoder.cfg.input_frames
    if mel.shape[-1] % frames != 0:
        raise ValueError(f"mel length {mel.shape[-1]} is not a multiple of {frames}")
    wanted = set(layers)
    deepest = max(layers)
    outputs: List[Tensor] = []
    for piece in mel.split(frames, dim=-1):
        x = F.gelu(encoder.conv1(piece))
        x = F.gelu(encoder.conv2(x)).transpose(1, 2) + encoder.embed_positions.weight
        states = {0: x} if 0 in wanted else {}
        for i, layer in enumerate(encoder.layers[: min(deepest, n_layers)], start=1):
            x = layer(x)
            if i in wanted:
                states[i] = encoder.layer_norm(x) if i == n_layers else x
        outputs.append(torch.stack([states[i] for i in layers]))
    return torch.cat(outputs, dim=-2)
