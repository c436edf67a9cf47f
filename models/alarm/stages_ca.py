"""ALARM-CA's audio side stage by stage (the features and encoder part, `encoder_stages`, is
ALARM-P's too: alarm/stages_p.py), cut as the bundle's graphs cut it (what a runtime
computes, docs/bundle-format-2.md "Fused ALARM (ALARM-CA) in format 2"), from the reference
modules; used for the goldens (make_alarm_ca_goldens.py) and the graph tests:

    whisper  features per 30 s piece (mel [128, 3000]) -> encoder.whisper per piece -> cut to
             melFrames // 2 -> adapter.whisper
    w2vbert  features over the recording, cut to the real stacked frames (the odd last one is
             padding) -> pieces of <= 1500 -> encoder.w2vbert each -> adapter.w2vbert
    sslam    fbank over the recording, zero-padded to 1024-frame chunks -> encoder.sslam each ->
             cut to fbankFrames // 2 -> adapter.sslam
    muq      24 kHz waveform, zero-padded to 30 s chunks -> encoder.muq each (with its frame
             mask) -> cut to samples // 960 -> adapter.muq
    then the connector on the four adapter outputs and the main (Whisper) adapter length, and
    the first max(1, max adapter length) rows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List

import torch
from torch import Tensor, nn

from salmonn.export import fake_quantize_linears

from . import muq, sslam, w2vbert
from .export import AdapterRecording, EncoderChunk
from .export_ca import MlpAdapterRecording
from .export_fusion import FusionRecording, int4_fusion_reference
from .export_muq import MuQChunk
from .export_sslam import SSLAMChunk
from .export_w2vbert import W2VBertChunk
from .export_perceiver import int4_perceiver_reference
from .fusion import fused_length
from .perceiver import MultiPerceiverFusion
from .model import AlarmAudio
from .whisper_v3 import alarm_whisper_features
from .whisper_v3 import encoder_frames as whisper_frames

ENCODERS = ("whisper", "w2vbert", "sslam", "muq")


@dataclass
class EncoderStages:
    chunks: List[Tensor]  # each chunk's graph input (muq: the waveform chunk)
    masks: List[Tensor]  # muq only: each chunk's frame mask [frames]
    real_length: int  # ALARM's length of the features (melFrames, stacked frames, fbank frames, samples)
    frames: int  # realFrames: the encoder frames the adapter reads
    encoder_out: List[Tensor]  # per chunk [frames per chunk, A]
    adapted: Tensor  # [T', D]
    adapter_length: int  # ALARM's adapter length (floor(frames / downsample))
    real: Tensor = field(default_factory=lambda: torch.empty(0))  # the chunks' outputs cut to `frames`


@dataclass
class FusedStages:
    encoders: Dict[str, EncoderStages]
    main_length: int
    fused: Tensor  # the connector's output [max T', D]
    audio: Tensor  # [S, D]


def int4_audio(audio: AlarmAudio) -> AlarmAudio:
    """The audio side holding exactly the weights of the int4 graphs: every Linear fake-quantized
    (ALARM-CA's attention in_proj_weight too), except encoder.muq, which stays fp32."""
    q = copy.deepcopy(audio)
    for name in ("whisper", "w2vbert", "sslam"):
        q.encoders[name] = fake_quantize_linears(q.encoders[name])
    q.adapters = fake_quantize_linears(q.adapters)
    if isinstance(q.fusion, MultiPerceiverFusion):
        q.fusion = int4_perceiver_reference(q.fusion)
    else:
        q.fusion = int4_fusion_reference(q.fusion)
    return q.eval()


def _features(audio: AlarmAudio, wave: Tensor) -> Dict[str, EncoderStages]:
    out: Dict[str, EncoderStages] = {}
    mel, mel_frames = alarm_whisper_features(wave, audio.encoder_configs["whisper"].num_mel_bins)
    out["whisper"] = EncoderStages(list(mel.split(3000, dim=1)), [], mel_frames, whisper_frames(mel_frames), [],
                                   torch.empty(0), 0)
    feats, stacked = w2vbert.w2vbert_features(wave)
    real = feats[:stacked]
    out["w2vbert"] = EncoderStages(list(real.split(w2vbert.CHUNK_FRAMES)), [], stacked, stacked, [], torch.empty(0), 0)
    fbank, frames = sslam.sslam_features(wave)
    out["sslam"] = EncoderStages(list(fbank.split(sslam.CHUNK_FRAMES)), [], frames, frames // 2, [], torch.empty(0), 0)
    wave24, samples = muq.muq_features(wave)
    chunks = list(wave24.split(muq.CHUNK_SAMPLES))
    masks = [muq.frame_mask(samples - i * muq.CHUNK_SAMPLES) for i in range(len(chunks))]
    out["muq"] = EncoderStages(chunks, masks, samples, samples // muq.SAMPLES_PER_FRAME, [], torch.empty(0), 0)
    return out


def encoder_graphs(audio: AlarmAudio) -> Dict[str, nn.Module]:
    """The modules the `encoder.<enc>` graphs are traced from (each with its adapter's per-frame
    steps folded in: the layer average and, for a conv adapter, input_proj)."""
    a = audio.adapters
    return {
        "whisper": EncoderChunk(audio).eval(),
        "w2vbert": W2VBertChunk(audio.encoders["w2vbert"], a["w2vbert"]).eval(),
        "sslam": SSLAMChunk(audio.encoders["sslam"], a["sslam"]).eval(),
        "muq": MuQChunk(audio.encoders["muq"], a["muq"].cfg.audio_encoder_layers, a["muq"].layer_fusion).eval(),
    }


@torch.no_grad()
def encoder_stages(audio: AlarmAudio, wave: Tensor) -> Dict[str, EncoderStages]:
    """Features and every encoder graph per chunk; `real` = the chunks' outputs cut to realFrames
    (what the adapter graphs read). Shared by ALARM-CA and ALARM-P (alarm/stages_p.py)."""
    stages = _features(audio, wave)
    graphs = encoder_graphs(audio)
    for name in ENCODERS:
        s = stages[name]
        if name == "muq":
            s.encoder_out = [graphs[name](c[None], m[None])[0] for c, m in zip(s.chunks, s.masks)]
        else:
            s.encoder_out = [graphs[name](c[None])[0] for c in s.chunks]
        s.real = torch.cat(s.encoder_out)[: s.frames]
    return stages


@torch.no_grad()
def fused_stages(audio: AlarmAudio, wave: Tensor) -> FusedStages:
    stages = encoder_stages(audio, wave)
    a = audio.adapters
    for name in ENCODERS:
        s = stages[name]
        cfg = a[name].cfg
        if cfg.adapter_name == "mlp":
            s.adapted = MlpAdapterRecording(audio, name).eval()(s.real[None])[0]
        else:
            s.adapted = AdapterRecording(audio, name).eval()(s.real[None])[0]
        s.adapter_length = cfg.out_length(s.frames)
    order = audio.fusion.cfg.encoders
    main_length = stages[audio.fusion.cfg.main_encoder].adapter_length
    fused = FusionRecording(audio.fusion).eval()(*[stages[e].adapted[None] for e in order],
                                                  torch.tensor([main_length]))[0]
    rows = fused_length({e: stages[e].adapter_length for e in ENCODERS})
    return FusedStages(stages, main_length, fused, fused[:rows])
