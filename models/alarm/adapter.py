"""ALARM's per-encoder audio adapters: layer fusion, then a conv downsampler (or MLP / identity),
then a linear projection into the LLM's embedding space.

Facts from github Blinorot/ALARM, src/model/audio/adapter_implementations/:
* base.py: the adapter takes the encoder's stacked hidden states, keeps `audio_encoder_layers`,
  cuts the time axis to the longest real length in the batch ("trim_extra_padding", default on),
  then with `pre_average` (every released config) fuses the layers FIRST and runs one adapter
  module on the result; `llm_proj` (Linear adapter_dim -> llm_dim, with bias) comes last unless
  `use_llm_proj` is false. Lengths pass through unchanged.
* layer_fusion/weighted_average.py: `layer_weights` [n_layers], zeros at init; output =
  sum_i softmax(layer_weights)_i * layer_i. Only built when more than one layer is taken.
* downsampler_conformer.py: `input_proj` Linear(encoder_dim -> adapter_dim) when they differ
  (else identity, no keys); the time axis is zero-padded at the end to an even length (after
  input_proj); `downsampler` = Sequential of
      0: [Conv1d(E, 2E, k=3, s=1, p=1), GELU, Norm(2E)]
      1: [Conv1d(2E, E, k=4, s=2, p=1), GELU, Norm(E)]          (halves the length)
      d: [Conv1d(E, E, k=4, s=2, p=1), GELU, Norm(E)]  for further downsampler_depth
  with Norm = BatchNorm1d (norm_type "batch": Whisper's adapter, running statistics at
  inference) or a LayerNorm over channels wrapped as `.norm` (norm_type "layer"). An optional
  torchaudio Conformer follows; every released config sets use_conformer false (refused here).
  Length: lengths // 2**downsampler_depth.
* mlp.py: `model` = [Linear(E, H), GELU, Linear(H, H), GELU] (MuQ's adapter in ALARM-CA).
* identity.py: nothing (the secondary encoders of ALARM-P).
GELU is torch's default (exact erf) form throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

ADAPTER_NAMES = ("downsampler_conformer", "mlp", "identity")


@dataclass(frozen=True)
class AdapterConfig:
    """One entry of ALARM's `audio_adapter_configs` (names as there; defaults as in their code)."""

    encoder_name: str
    adapter_name: str
    audio_encoder_layers: Tuple[int, ...]
    adapter_embedding_dim: int
    llm_embedding_dim: int
    pre_average: bool = True
    trim_extra_padding: bool = True
    use_llm_proj: bool = True
    layer_fusion_type: str = "weighted_average"
    encoder_embedding_dim: int = 1024
    # downsampler_conformer
    downsampler_depth: int = 1
    norm_type: str = "layer"
    use_downsampler: bool = True
    use_conformer: bool = True
    # mlp
    hidden_dim: int = 1024

    @classmethod
    def from_alarm(cls, d: Mapping[str, Any]) -> "AdapterConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names and k != "audio_encoder_layers"}
        fusion = d.get("layer_fusion_config") or {}
        if "layer_fusion_type" in fusion:
            kw["layer_fusion_type"] = fusion["layer_fusion_type"]
        cfg = cls(audio_encoder_layers=tuple(int(i) for i in d["audio_encoder_layers"]), **kw)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.adapter_name not in ADAPTER_NAMES:
            raise ValueError(f"adapter {self.adapter_name!r} is not one of {ADAPTER_NAMES}")
        if not self.pre_average:
            raise ValueError("pre_average=false (one adapter per layer) is not in any released ALARM config")
        if len(self.audio_encoder_layers) > 1 and self.layer_fusion_type != "weighted_average":
            raise ValueError(f"layer fusion {self.layer_fusion_type!r} is not supported")
        if self.adapter_name == "downsampler_conformer":
            if self.use_conformer:
                raise ValueError("the Conformer block (use_conformer=true) is not in any released ALARM config")
            if self.norm_type not in ("batch", "layer"):
                raise ValueError(f"norm_type {self.norm_type!r} is not 'batch' or 'layer'")

    @property
    def width(self) -> int:
        """Channels that reach llm_proj (the adapter module's output width)."""
        if self.adapter_name == "downsampler_conformer":
            return self.adapter_embedding_dim
        if self.adapter_name == "mlp":
            return self.hidden_dim
        return self.encoder_embedding_dim if not self.use_llm_proj else self.adapter_embedding_dim

    def out_length(self, length: int) -> int:
        """calc_length: tokens after the adapter for `length` encoder frames."""
        if self.adapter_name == "downsampler_conformer" and self.use_downsampler:
            return length // (2 ** self.downsampler_depth)
        return length


class WeightedAverage(nn.Module):
    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.layer_weights = nn.Parameter(torch.zeros(n_layers))

    def forward(self, stacked: Tensor) -> Tensor:
        """[L, ...] -> [...]: softmax-weighted sum over the first axis."""
        w = torch.softmax(self.layer_weights.float(), dim=0).to(stacked.dtype)
        return (stacked * w.view(-1, *([1] * (stacked.dim() - 1)))).sum(dim=0)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of [B, C, T] (ALARM's TransposeLayerNorm: key `.norm`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def pad_to_even(x: Tensor) -> Tensor:
    """[B, T, C] -> [B, T + (T % 2), C]: one zero frame at the end when T is odd.

    Written without a Python branch on T (append a zero frame, keep the first 2 * ceil(T / 2)),
    so that torch.onnx traces it with T dynamic: the adapter graph runs on any recording length."""
    padded = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)
    return padded[:, : (x.shape[1] + 1) // 2 * 2]


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm1d(channels) if kind == "batch" else ChannelLayerNorm(channels)


class ConvDownsampler(nn.Module):
    """input_proj, even-length padding, conv blocks (the `adapter` of downsampler_conformer)."""

    def __init__(self, cfg: AdapterConfig) -> None:
        super().__init__()
        e = cfg.adapter_embedding_dim
        if cfg.encoder_embedding_dim != e:
            self.input_proj = nn.Linear(cfg.encoder_embedding_dim, e)
        else:
            self.register_module("input_proj", None)
        blocks = [nn.Sequential(nn.Conv1d(e, 2 * e, kernel_size=3, stride=1, padding=1), nn.GELU(), _norm(cfg.norm_type, 2 * e))]
        for depth in range(cfg.downsampler_depth):
            blocks.append(nn.Sequential(
                nn.Conv1d(2 * e if depth == 0 else e, e, kernel_size=4, stride=2, padding=1),
                nn.GELU(), _norm(cfg.norm_type, e)))
        self.downsampler = nn.Sequential(*blocks) if cfg.use_downsampler else None

    def forward(self, x: Tensor) -> Tensor:
        """[B, T, encoder_dim] -> [B, ceil(T / 2) (per depth), adapter_dim]."""
        if self.input_proj is not None:
            x = self.input_proj(x)
        x = pad_to_even(x)
        if self.downsampler is None:
            return x
        return self.downsampler(x.transpose(1, 2)).transpose(1, 2)


class TwoLayerMLP(nn.Module):
    def __init__(self, cfg: AdapterConfig) -> None:
        super().__init__()
        h = cfg.hidden_dim
        self.model = nn.Sequential(nn.Linear(cfg.encoder_embedding_dim, h), nn.GELU(), nn.Linear(h, h), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class AlarmAdapter(nn.Module):
    """One encoder's adapter. State-dict keys are ALARM's below
    `model.audio_adapter.adapters.<encoder_name>.`: `layer_fusion.layer_weights`,
    `adapter.input_proj.*`, `adapter.downsampler.N.{0,2}.*` / `adapter.model.{0,2}.*`, `llm_proj.*`."""

    def __init__(self, cfg: AdapterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = len(cfg.audio_encoder_layers)
        self.layer_fusion = WeightedAverage(n) if n > 1 else None
        if cfg.adapter_name == "downsampler_conformer":
            self.adapter: Optional[nn.Module] = ConvDownsampler(cfg)
        elif cfg.adapter_name == "mlp":
            self.adapter = TwoLayerMLP(cfg)
        else:
            self.adapter = None
        self.llm_proj = nn.Linear(cfg.adapter_embedding_dim, cfg.llm_embedding_dim) if cfg.use_llm_proj else None

    def forward(self, stacked: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """Selected hidden states [L, B, T, encoder_dim] (already the configured layers, in order)
        and encoder lengths [B] -> [B, T', llm_dim] (padded; see `out_length`)."""
        if stacked.shape[0] != len(self.cfg.audio_encoder_layers):
            raise ValueError(f"expected {len(self.cfg.audio_encoder_layers)} layers, got {stacked.shape[0]}")
        if self.cfg.trim_extra_padding and lengths is not None:
            stacked = stacked[:, :, : int(lengths.max())]
        x = stacked[0] if self.layer_fusion is None else self.layer_fusion(stacked)
        if self.adapter is not None:
            x = self.adapter(x)
        return x if self.llm_proj is None else self.llm_proj(x)
