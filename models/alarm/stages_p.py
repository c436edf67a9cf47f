"""ALARM-P's audio side stage by stage, cut as the bundle's graphs cut it (what a runtime computes,
docs/bundle-format-2.md "ALARM-P in format 2"), from the reference modules; used for the goldens
(make_alarm_p_goldens.py) and the tests:

    features and encoder.<enc> per chunk, each encoder's outputs cut to realFrames: as ALARM-CA
             (alarm/stages_ca.py `encoder_stages`, shared)
    whisper  adapter.whisper on its real frames -> [ceil(realFrames / 2), D]; adapter length
             realFrames // 2 (the main length)
    w2vbert, muq, sslam   identity adapters: adapted = the encoder's real frames [realFrames, C_e]
             (the layer average is already in encoder.<enc>); adapter length = realFrames
    connector on Whisper's adapted rows and the three real-frame inputs -> [leading + T_w, D]
    the LLM reads its first max(0, leading + main length) rows (leading = 2 + sum(num_latents))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch
from torch import Tensor

from .export import AdapterRecording
from .export_perceiver import PerceiverRecording
from .model import AlarmAudio
from .perceiver import MultiPerceiverFusion
from .stages_ca import ENCODERS, EncoderStages, encoder_stages, int4_audio

__all__ = ["ENCODERS", "PerceiverStages", "perceiver_stages", "int4_audio"]


@dataclass
class PerceiverStages:
    encoders: Dict[str, EncoderStages]
    main_length: int  # Whisper's adapter length: realFrames // 2
    leading: int  # 2 + sum(num_latents): the rows before Whisper's
    fused: Tensor  # the connector's audio_tokens [leading + T_w, D]
    audio: Tensor  # the rows the LLM reads [leading + main_length, D]


def _perceiver(audio: AlarmAudio) -> MultiPerceiverFusion:
    if not isinstance(audio.fusion, MultiPerceiverFusion):
        raise ValueError(f"not an ALARM-P model: fusion {audio.cfg.fusion_type!r}")
    return audio.fusion


@torch.no_grad()
def perceiver_stages(audio: AlarmAudio, wave: Tensor) -> PerceiverStages:
    fusion = _perceiver(audio)
    stages = encoder_stages(audio, wave)
    main = fusion.cfg.main_encoder
    for name in ENCODERS:
        s = stages[name]
        cfg = audio.adapters[name].cfg
        if cfg.adapter_name == "identity" and not cfg.use_llm_proj:
            s.adapted = s.real  # the runtime passes the real frames on as they are
        elif name == main and cfg.adapter_name == "downsampler_conformer":
            s.adapted = AdapterRecording(audio, name).eval()(s.real[None])[0]
        else:
            raise ValueError(f"adapter {name!r} ({cfg.adapter_name}) is not one of ALARM-P's")
        s.adapter_length = cfg.out_length(s.frames)
    main_length = stages[main].adapter_length
    fused = PerceiverRecording(fusion).eval()(*[stages[e].adapted[None] for e in fusion.cfg.encoders])[0]
    leading = fusion.cfg.leading_rows
    return PerceiverStages(stages, main_length, leading, fused, fused[: max(0, leading + main_length)])
