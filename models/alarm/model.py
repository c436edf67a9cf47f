"""The audio side of an ALARM checkpoint and the whole single-encoder pipeline.

    waveform (16 kHz mono)
      -> Whisper large-v3 features, 30 s pieces          whisper_v3.alarm_whisper_features
      -> encoder hidden states [7, 15, 23, 31]            whisper_v3.hidden_states
      -> adapter (weighted average, conv /2, llm_proj)    adapter.AlarmAdapter
      -> fusion "sum" (one encoder: itself), postprocessing "identity"
      -> the first (mel_frames // 2) // 2 vectors (at least 1): 750 for 30 s (25 per second)
      -> between audio_start_emb / audio_end_emb in the prompt   prompt.assemble_embeddings
      -> Qwen3 decoder                                    qwen3.Qwen3Decoder

ALARM's checkpoint (`Qwen3AudioWrappedForCausalLM.save_pretrained`, src/model/wrapped_llms/qwen3.py)
has config.json with model_type "qwen3_audio": Qwen3's LLM fields plus audio_encoder_configs,
audio_adapter_configs, audio_fusion_config, audio_postprocessing_config, audio_sep_d_embed and
use_explicit_audio_tokens (train.py copies the hydra `model.config` into it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple

import torch
from torch import Tensor, nn

from salmonn.whisper import WhisperConfig, WhisperEncoder

from .adapter import AdapterConfig, AlarmAdapter
from .qwen3 import Qwen3Config
from .whisper_v3 import WHISPER_LARGE_V3, alarm_whisper_features, encoder_frames, hidden_states

SUPPORTED_ENCODERS = ("whisper",)


@dataclass(frozen=True)
class AlarmConfig:
    llm: Qwen3Config
    encoders: Tuple[str, ...]
    adapters: Tuple[AdapterConfig, ...]
    fusion_type: str
    postprocessing_type: str
    use_explicit_audio_tokens: bool
    audio_sep_d_embed: int

    @classmethod
    def from_hf_config(cls, d: Mapping[str, Any]) -> "AlarmConfig":
        if d.get("model_type") != "qwen3_audio":
            raise ValueError(f"model_type {d.get('model_type')!r} is not ALARM's 'qwen3_audio'")
        encoders = tuple(sorted(e["encoder_name"] for e in d["audio_encoder_configs"]))
        adapters = tuple(sorted((AdapterConfig.from_alarm(a) for a in d["audio_adapter_configs"]),
                                key=lambda a: a.encoder_name))
        fusion = (d.get("audio_fusion_config") or {}).get("fusion_type")
        post = (d.get("audio_postprocessing_config") or {}).get("postprocessing_type")
        cfg = cls(
            llm=Qwen3Config.from_hf_config(d),
            encoders=encoders,
            adapters=adapters,
            fusion_type=str(fusion),
            postprocessing_type=str(post),
            use_explicit_audio_tokens=bool(d.get("use_explicit_audio_tokens", False)),
            audio_sep_d_embed=int(d.get("audio_sep_d_embed", 1024)),
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        unsupported = [e for e in self.encoders if e not in SUPPORTED_ENCODERS]
        if unsupported:
            raise ValueError(f"encoders {unsupported} are not implemented yet (single-encoder Whisper only)")
        if tuple(a.encoder_name for a in self.adapters) != self.encoders:
            raise ValueError("every encoder needs exactly one adapter")
        if self.fusion_type != "sum" or len(self.encoders) != 1:
            raise ValueError(f"fusion {self.fusion_type!r} over {len(self.encoders)} encoders is not implemented yet")
        if self.postprocessing_type != "identity":
            raise ValueError(f"postprocessing {self.postprocessing_type!r} is not supported")
        if self.use_explicit_audio_tokens:
            raise ValueError("use_explicit_audio_tokens=true is not in any released ALARM config")
        for a in self.adapters:
            out = a.llm_embedding_dim if a.use_llm_proj else a.width
            if out != self.llm.hidden_size:
                raise ValueError(f"adapter {a.encoder_name} outputs {out} channels, the LLM takes {self.llm.hidden_size}")
        if self.audio_sep_d_embed != self.llm.hidden_size:
            raise ValueError(f"audio_sep_d_embed {self.audio_sep_d_embed} != hidden_size {self.llm.hidden_size}")

    @property
    def whisper_adapter(self) -> AdapterConfig:
        return self.adapters[self.encoders.index("whisper")]


def audio_token_count(cfg: AlarmConfig, mel_frames: int) -> int:
    """Audio embeddings the LLM sees for `mel_frames` attended Whisper frames (clamped to >= 1)."""
    return max(1, cfg.whisper_adapter.out_length(encoder_frames(mel_frames)))


class AlarmAudio(nn.Module):
    """Whisper encoder + its adapter + the two separator embeddings. State-dict keys are ours
    (`whisper.*`, `adapters.whisper.*`, `audio_start_emb`, `audio_end_emb`); alarm/checkpoints.py
    maps ALARM's `model.audio_encoder.encoders.whisper.encoder.*`, `model.audio_adapter.adapters.*`,
    `model.audio_start_emb`, `model.audio_end_emb` onto them."""

    def __init__(self, cfg: AlarmConfig, whisper: WhisperConfig = WHISPER_LARGE_V3) -> None:
        super().__init__()
        self.cfg = cfg
        self.whisper_cfg = whisper
        self.whisper = WhisperEncoder(whisper)
        self.adapters = nn.ModuleDict({a.encoder_name: AlarmAdapter(a) for a in cfg.adapters})
        d = cfg.audio_sep_d_embed
        self.audio_start_emb = nn.Parameter(torch.zeros(1, d))
        self.audio_end_emb = nn.Parameter(torch.zeros(1, d))

    @torch.no_grad()
    def embeddings_from_mel(self, mel: Tensor, mel_frames: int) -> Tensor:
        """mel [n_mels, 3000 * pieces] with `mel_frames` attended frames -> audio embeddings [S, D]."""
        acfg = self.cfg.whisper_adapter
        states = hidden_states(self.whisper, mel[None], acfg.audio_encoder_layers)  # [L, 1, T, E]
        length = encoder_frames(mel_frames)
        out = self.adapters["whisper"](states, torch.tensor([length]))  # [1, T', D]
        return out[0, : audio_token_count(self.cfg, mel_frames)]

    @torch.no_grad()
    def forward(self, wave: Tensor) -> Tensor:
        """Mono 16 kHz waveform [n] -> audio embeddings [S, D] (S = 25 per second of audio)."""
        mel, frames = alarm_whisper_features(wave, self.whisper_cfg.num_mel_bins)
        return self.embeddings_from_mel(mel, frames)


def stage_shapes(cfg: AlarmConfig, seconds: float, whisper: WhisperConfig = WHISPER_LARGE_V3) -> Dict[str, Tuple[int, ...]]:
    """Tensor shapes through the pipeline for `seconds` of audio (batch 1)."""
    import math

    samples = round(seconds * 16000)
    pieces = max(1, math.ceil(samples / 480000))
    frames = sum(math.ceil(min(480000, samples - 480000 * i) / 160) for i in range(pieces))
    a = cfg.whisper_adapter
    enc = encoder_frames(frames)
    return {
        "mel": (whisper.num_mel_bins, 3000 * pieces),
        "hidden_states": (len(a.audio_encoder_layers), 1, 1500 * pieces, whisper.d_model),
        "trimmed": (len(a.audio_encoder_layers), 1, enc, whisper.d_model),
        "audio_embeddings": (audio_token_count(cfg, frames), cfg.llm.hidden_size),
    }
