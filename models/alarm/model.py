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

Fused models (ALARM-CA, src/configs/model/alarm_ca.yaml): several encoders, each with its own
features, hidden states and adapter, then the fusion (alarm/fusion.py: "sum" adds the padded
adapter outputs, "crossattention" is ALARM-CA's), cut to max(1, max over encoders of the adapter
lengths) rows. ALARM's AudioEncoder / AudioAdapter hold the encoders sorted by name; each encoder
is an entry of `ENCODERS` (name -> what its module provides: whisper, w2vbert, sslam, muq, i.e.
all four of ALARM-CA); an encoder ALARM has but without an entry would be refused with "not
implemented yet".

ALARM-P (src/configs/model/alarm_p.yaml): the same four encoders; Whisper keeps its conv
downsampler + llm_proj (its output is the LLM's width), the conditional encoders have `identity`
adapters without llm_proj (the weighted layer average only: their output is the encoder's own
width, which must be the perceiver's `conditional_embedding_dim` for that encoder), and the
"multiperceiver" fusion (alarm/perceiver.py) puts 2 + sum(num_latents) rows before Whisper's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from salmonn.whisper import WhisperConfig, WhisperEncoder

from . import muq as muq_module
from . import sslam as sslam_module
from . import w2vbert as w2vbert_module
from .adapter import AdapterConfig, AlarmAdapter
from .fusion import FusionConfig, FusionModule, build_fusion, fuse, fused_length, fusion_config_from_alarm
from .perceiver import MultiPerceiverConfig
from .qwen3 import Qwen3Config
from .whisper_v3 import WHISPER_LARGE_V3, alarm_whisper_features, encoder_frames, hidden_states

# Every encoder name ALARM's code knows (src/model/audio/encoder_implementations/__init__.py).
ALARM_ENCODERS = ("whisper", "w2vbert", "sslam", "muq")

# (encoder, its config, mono 16 kHz waveform, adapter layers) -> (hidden states [L, 1, T, D] of those
# layers, the encoder's length as ALARM's calc_length gives it)
EncodeFn = Callable[[nn.Module, Any, Tensor, Sequence[int]], Tuple[Tensor, int]]


def _no_ignored_keys(cfg: Any) -> Dict[str, Tuple[int, ...]]:
    return {}


@dataclass(frozen=True)
class EncoderEntry:
    """What the model needs of one encoder module (models/alarm/<enc>.py)."""

    default_config: Any  # the released encoder's config (ALARM's code hard-codes the HF model)
    build: Callable[[Any], nn.Module]  # state-dict keys = the checkpoint's below ...encoders.<enc>.encoder.
    encode: EncodeFn
    # checkpoint keys (below the encoder's prefix) -> shape, of modules that never run in ALARM
    # (quantizers, heads): the strict loader checks their names and shapes and reads nothing
    ignored_checkpoint_keys: Callable[[Any], Dict[str, Tuple[int, ...]]] = _no_ignored_keys


def interface_entry(default_config: Any, encoder_cls: Callable[[Any], nn.Module],
                    features: Callable[[Tensor], Tuple[Tensor, int]],
                    states: Callable[[nn.Module, Tensor, Sequence[int]], Tensor],
                    frames: Callable[[Any, int], int],
                    ignored_checkpoint_keys: Callable[[Any], Dict[str, Tuple[int, ...]]] = _no_ignored_keys,
                    masked: bool = False) -> EncoderEntry:
    """An entry from the functions every encoder module has (docs of the fused-ALARM design):
    `<enc>_features(wave) -> (features, real length)`, `hidden_states(enc, features, layers)`,
    `encoder_frames(cfg, real length)`, `ignored_checkpoint_keys(cfg)`.

    masked: `hidden_states` also takes `length=` (the real length), because ALARM hands that
    encoder an attention mask over its padding (w2vbert's odd last frame, muq's zero samples)."""

    def encode(encoder: nn.Module, cfg: Any, wave: Tensor, layers: Sequence[int]) -> Tuple[Tensor, int]:
        feats, length = features(wave)
        hidden = states(encoder, feats, layers, length=length) if masked else states(encoder, feats, layers)
        return hidden, frames(cfg, length)

    return EncoderEntry(default_config, encoder_cls, encode, ignored_checkpoint_keys)


def _whisper_encode(encoder: nn.Module, cfg: WhisperConfig, wave: Tensor, layers: Sequence[int]) -> Tuple[Tensor, int]:
    mel, mel_frames = alarm_whisper_features(wave, cfg.num_mel_bins)
    return hidden_states(encoder, mel[None], layers), encoder_frames(mel_frames)


# Adding an encoder is one entry here (plus its import).
ENCODERS: Dict[str, EncoderEntry] = {
    "whisper": EncoderEntry(WHISPER_LARGE_V3, WhisperEncoder, _whisper_encode),
    "w2vbert": interface_entry(w2vbert_module.W2V_BERT_2_0, w2vbert_module.W2VBertEncoder,
                               w2vbert_module.w2vbert_features, w2vbert_module.hidden_states,
                               w2vbert_module.encoder_frames, w2vbert_module.ignored_checkpoint_keys, masked=True),
    "sslam": interface_entry(sslam_module.SSLAM_AS2M, sslam_module.SSLAMEncoder, sslam_module.sslam_features,
                             sslam_module.hidden_states, sslam_module.encoder_frames,
                             sslam_module.ignored_checkpoint_keys),
    "muq": interface_entry(muq_module.MUQ_LARGE_MSD_ITER, muq_module.MuQEncoder, muq_module.muq_features,
                           muq_module.hidden_states, muq_module.encoder_frames, muq_module.ignored_checkpoint_keys,
                           masked=True),
}


# each encoder's output width (the channels of its hidden states) from its config
ENCODER_WIDTHS: Dict[str, Callable[[Any], int]] = {
    "whisper": lambda c: c.d_model, "w2vbert": lambda c: c.hidden_size,
    "sslam": lambda c: c.embed_dim, "muq": lambda c: c.encoder_dim,
}


@dataclass(frozen=True)
class AlarmConfig:
    llm: Qwen3Config
    encoders: Tuple[str, ...]  # sorted by name, as ALARM's ModuleDicts hold them
    adapters: Tuple[AdapterConfig, ...]  # in the order of `encoders`
    fusion_type: str
    postprocessing_type: str
    use_explicit_audio_tokens: bool
    audio_sep_d_embed: int
    fusion: Optional[FusionConfig] = None  # CrossAttentionConfig or MultiPerceiverConfig; None for "sum"

    @classmethod
    def from_hf_config(cls, d: Mapping[str, Any]) -> "AlarmConfig":
        if d.get("model_type") != "qwen3_audio":
            raise ValueError(f"model_type {d.get('model_type')!r} is not ALARM's 'qwen3_audio'")
        encoders = tuple(sorted(e["encoder_name"] for e in d["audio_encoder_configs"]))
        adapters = tuple(sorted((AdapterConfig.from_alarm(a) for a in d["audio_adapter_configs"]),
                                key=lambda a: a.encoder_name))
        fusion_type, fusion = fusion_config_from_alarm(d.get("audio_fusion_config"))
        post = (d.get("audio_postprocessing_config") or {}).get("postprocessing_type")
        cfg = cls(
            llm=Qwen3Config.from_hf_config(d),
            encoders=encoders,
            adapters=adapters,
            fusion_type=fusion_type,
            postprocessing_type=str(post),
            use_explicit_audio_tokens=bool(d.get("use_explicit_audio_tokens", False)),
            audio_sep_d_embed=int(d.get("audio_sep_d_embed", 1024)),
            fusion=fusion,
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        unknown = [e for e in self.encoders if e not in ALARM_ENCODERS]
        if unknown:
            raise ValueError(f"encoders {unknown} are not ALARM encoders {list(ALARM_ENCODERS)}")
        missing = [e for e in self.encoders if e not in ENCODERS]
        if missing:
            raise ValueError(f"encoders {missing} are not implemented yet (implemented: {sorted(ENCODERS)})")
        if len(set(self.encoders)) != len(self.encoders):
            raise ValueError(f"an encoder is listed twice in audio_encoder_configs: {list(self.encoders)}")
        if tuple(a.encoder_name for a in self.adapters) != self.encoders:
            raise ValueError("every encoder needs exactly one adapter")
        self._validate_fusion()
        if self.postprocessing_type != "identity":
            raise ValueError(f"postprocessing {self.postprocessing_type!r} is not supported")
        if self.use_explicit_audio_tokens:
            raise ValueError("use_explicit_audio_tokens=true is not in any released ALARM config")
        for a in self.adapters:
            if self.perceiver_reads(a.encoder_name):
                self._validate_perceiver_input(a)
                continue
            out = a.llm_embedding_dim if a.use_llm_proj else a.width
            if out != self.llm.hidden_size:
                raise ValueError(f"adapter {a.encoder_name} outputs {out} channels, the LLM takes {self.llm.hidden_size}")
        if self.audio_sep_d_embed != self.llm.hidden_size:
            raise ValueError(f"audio_sep_d_embed {self.audio_sep_d_embed} != hidden_size {self.llm.hidden_size}")

    def _validate_fusion(self) -> None:
        if self.fusion_type == "sum":
            if self.fusion is not None:
                raise ValueError("fusion 'sum' takes no cross-attention settings")
            return
        if self.fusion is None:
            raise ValueError(f"fusion {self.fusion_type!r} needs its settings")
        if set(self.fusion.encoders) != set(self.encoders):
            raise ValueError(f"the fusion reads encoders {sorted(set(self.fusion.encoders))}, "
                             f"the model has {list(self.encoders)}")
        if self.fusion.llm_embedding_dim != self.llm.hidden_size:
            raise ValueError(f"fusion llm_embedding_dim {self.fusion.llm_embedding_dim} != hidden_size "
                             f"{self.llm.hidden_size}")

    def perceiver_reads(self, encoder: str) -> bool:
        """True for a conditional encoder of the multiperceiver fusion: its adapter output goes to a
        perceiver (of conditional_embedding_dim channels), not to the LLM."""
        return isinstance(self.fusion, MultiPerceiverConfig) and encoder in self.fusion.conditional_encoders

    def _validate_perceiver_input(self, a: AdapterConfig) -> None:
        """With llm_proj the width is known here; without it (ALARM-P's identity adapters) it is the
        encoder's, checked against the encoder's config when AlarmAudio is built."""
        assert isinstance(self.fusion, MultiPerceiverConfig)
        want = self.fusion.input_dim(a.encoder_name)
        if a.use_llm_proj and a.llm_embedding_dim != want:
            raise ValueError(f"adapter {a.encoder_name} outputs {a.llm_embedding_dim} channels, its perceiver "
                             f"takes {want} (conditional_embedding_dim)")
        if not a.use_llm_proj and a.adapter_name != "identity":
            out = a.width
            if out != want:
                raise ValueError(f"adapter {a.encoder_name} outputs {out} channels, its perceiver takes {want} "
                                 "(conditional_embedding_dim)")

    def adapter(self, encoder: str) -> AdapterConfig:
        return self.adapters[self.encoders.index(encoder)]

    @property
    def whisper_adapter(self) -> AdapterConfig:
        return self.adapter("whisper")


def audio_token_count(cfg: AlarmConfig, mel_frames: int) -> int:
    """Audio embeddings the LLM sees for `mel_frames` attended Whisper frames (clamped to >= 1);
    the single-encoder Whisper model."""
    return max(1, cfg.whisper_adapter.out_length(encoder_frames(mel_frames)))


def fused_token_count(cfg: AlarmConfig, encoder_lengths: Mapping[str, int]) -> int:
    """Audio embeddings the LLM sees, any model, for each encoder's length (its calc_length):
    max(1, max over encoders of the adapter lengths); ALARM-P: Whisper's adapter length + 2 +
    sum(num_latents)."""
    return fused_length({e: cfg.adapter(e).out_length(encoder_lengths[e]) for e in cfg.encoders}, cfg.fusion)


class AlarmAudio(nn.Module):
    """The encoders + their adapters + the fusion + the two separator embeddings. State-dict keys
    are ours (`encoders.<enc>.*`, `adapters.<enc>.*`, `fusion.*`, `audio_start_emb`,
    `audio_end_emb`); alarm/checkpoints.py maps ALARM's `model.audio_encoder.encoders.<enc>.encoder.*`,
    `model.audio_adapter.adapters.*`, `model.audio_fusion.fusion_model.*`, `model.audio_start_emb`,
    `model.audio_end_emb` onto them.

    whisper: Whisper's config (kept as its own argument: the single-encoder callers pass it);
    encoder_configs: the other encoders' configs by name (default: each entry's released one)."""

    def __init__(self, cfg: AlarmConfig, whisper: WhisperConfig = WHISPER_LARGE_V3,
                 encoder_configs: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        self.cfg = cfg
        configs = {name: ENCODERS[name].default_config for name in cfg.encoders}
        if "whisper" in configs:
            configs["whisper"] = whisper
        configs.update({k: v for k, v in (encoder_configs or {}).items() if k in configs})
        self.encoder_configs: Dict[str, Any] = configs
        self.encoders = nn.ModuleDict({name: ENCODERS[name].build(configs[name]) for name in cfg.encoders})
        self.adapters = nn.ModuleDict({a.encoder_name: AlarmAdapter(a) for a in cfg.adapters})
        self._check_perceiver_widths()
        self.fusion: Optional[FusionModule] = build_fusion(cfg.fusion)
        d = cfg.audio_sep_d_embed
        self.audio_start_emb = nn.Parameter(torch.zeros(1, d))
        self.audio_end_emb = nn.Parameter(torch.zeros(1, d))

    def adapter_output_width(self, encoder: str) -> int:
        """Channels of one encoder's adapter output (identity without llm_proj: the encoder's)."""
        a = self.cfg.adapter(encoder)
        if a.use_llm_proj:
            return a.llm_embedding_dim
        if a.adapter_name == "identity":
            return ENCODER_WIDTHS[encoder](self.encoder_configs[encoder])
        return a.width

    def _check_perceiver_widths(self) -> None:
        f = self.cfg.fusion
        if not isinstance(f, MultiPerceiverConfig):
            return
        for name in f.conditional_encoders:
            got, want = self.adapter_output_width(name), f.input_dim(name)
            if got != want:
                raise ValueError(f"adapter {name} outputs {got} channels, its perceiver takes {want} "
                                 "(conditional_embedding_dim)")

    @property
    def whisper(self) -> WhisperEncoder:
        return self.encoders["whisper"]

    @property
    def whisper_cfg(self) -> WhisperConfig:
        return self.encoder_configs["whisper"]

    @torch.no_grad()
    def embeddings_from_mel(self, mel: Tensor, mel_frames: int) -> Tensor:
        """Single-encoder Whisper model: mel [n_mels, 3000 * pieces] with `mel_frames` attended
        frames -> audio embeddings [S, D]."""
        acfg = self.cfg.whisper_adapter
        states = hidden_states(self.whisper, mel[None], acfg.audio_encoder_layers)  # [L, 1, T, E]
        length = encoder_frames(mel_frames)
        out = self.adapters["whisper"](states, torch.tensor([length]))  # [1, T', D]
        return out[0, : audio_token_count(self.cfg, mel_frames)]

    @torch.no_grad()
    def fused_embeddings(self, wave: Tensor) -> Tensor:
        """Any model, as ALARM's get_audio_embeddings: every encoder and adapter, then the fusion
        and the cut to max(1, max adapter length) rows -> [S, D]."""
        outputs: Dict[str, Tensor] = {}
        lengths: Dict[str, int] = {}
        for name in self.cfg.encoders:
            acfg = self.cfg.adapter(name)
            states, length = ENCODERS[name].encode(self.encoders[name], self.encoder_configs[name], wave,
                                                   acfg.audio_encoder_layers)
            outputs[name] = self.adapters[name](states, torch.tensor([length]))
            lengths[name] = acfg.out_length(length)
        return fuse(self.fusion, outputs, lengths)

    @torch.no_grad()
    def forward(self, wave: Tensor) -> Tensor:
        """Mono 16 kHz waveform [n] -> audio embeddings [S, D] (S = 25 per second of audio)."""
        if self.cfg.encoders == ("whisper",) and self.fusion is None:
            mel, frames = alarm_whisper_features(wave, self.whisper_cfg.num_mel_bins)
            return self.embeddings_from_mel(mel, frames)
        return self.fused_embeddings(wave)


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
