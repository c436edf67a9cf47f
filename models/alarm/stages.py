"""The audio side of ALARM cut at the bundle's graph boundaries (docs/bundle-format-2.md), so each
graph's input and output can be compared with the reference and stored as goldens:

    per 30 s chunk   mel [n_mels, 3000]  --encoder.whisper-->  encoder_out [1500, A]
    per recording    frames = the chunks' encoder_out concatenated, cut to mel_frames // 2 rows
                     --adapter.whisper-->  adapted [ceil(T / 2), D]
                     audio = adapted's first max(1, mel_frames // 4) rows (fusion "sum" over one
                     encoder is the identity)

`audio_stages(...).audio` equals `AlarmAudio(wave)` (tests/test_alarm_onnx.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor

from .export import AdapterRecording, EncoderChunk
from .model import AlarmAudio, audio_token_count
from .whisper_v3 import alarm_whisper_features, encoder_frames


@dataclass
class AudioStages:
    mels: List[Tensor]         # per chunk [n_mels, 3000]
    mel_frames: int            # attended mel frames over all chunks
    encoder_out: List[Tensor]  # per chunk [1500, A]
    frames: Tensor             # [T, A], T = mel_frames // 2
    adapted: Tensor            # [ceil(T / 2), D]
    audio: Tensor              # [S, D], S = max(1, mel_frames // 4)


@torch.no_grad()
def audio_stages(audio: AlarmAudio, wave: Tensor) -> AudioStages:
    mel, mel_frames = alarm_whisper_features(wave, audio.whisper_cfg.num_mel_bins)
    mels = list(mel.split(3000, dim=-1))
    encoder = EncoderChunk(audio).eval()
    encoder_out = [encoder(m[None])[0] for m in mels]
    frames = torch.cat(encoder_out, dim=0)[: encoder_frames(mel_frames)]
    adapted = AdapterRecording(audio).eval()(frames[None])[0]
    return AudioStages(mels, mel_frames, encoder_out, frames, adapted,
                       adapted[: audio_token_count(audio.cfg, mel_frames)])
