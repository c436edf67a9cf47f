"""ALARM's audio fusion: "sum", ALARM-CA's cross-attention fusion of several encoders and
ALARM-P's "multiperceiver" (alarm/perceiver.py).

Facts from github Blinorot/ALARM (src/):
* model/audio/audio_fusion.py `AudioFusion`: `pad_outputs` zero-pads every adapter output at the
  END of the time axis to the longest one (after the adapters, before anything else); "sum" adds
  the padded outputs, any other `fusion_type` builds `fusion_model_dict[type](**fusion_config)`
  (the whole `audio_fusion_config`, so `fusion_type`, `llm_embedding_dim`, `dropout` arrive as
  keyword arguments too) and calls it with the padded outputs and the adapters' lengths.
  `calc_length` (no fusion model defines its own): the max over the encoders of their adapter
  lengths.
* model/audio/fusion_implementations/crossattention.py `CrossAttentionFusion` (checkpoint keys
  under `model.audio_fusion.fusion_model.`):
    - `in_proj.<enc>`: Linear(llm_embedding_dim -> hidden_dim) for the main encoder and every
      conditional encoder (a ModuleDict: one per name, so a main encoder also listed as
      conditional has one); `out_proj`: Linear(hidden_dim -> llm_embedding_dim).
    - `condition_modules.<enc>.<i>`: for each conditional encoder (zipped with
      `num_hidden_layers`, so a shorter list silently drops encoders: refused here), that many
      torch `nn.TransformerDecoderLayer(d_model=hidden_dim, nhead=num_attention_heads,
      dim_feedforward=ffn_dims, dropout, activation=gelu, norm_first=True, batch_first=True)`:
      keys self_attn.{in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias},
      multihead_attn.{same}, linear1, linear2, norm1, norm2, norm3 (LayerNorm eps 1e-5).
    - forward: x = in_proj[main](main output); for each conditional encoder IN THE CONFIG'S
      ORDER (`conditional_encoders`), memory = in_proj[enc](its padded output), then each of its
      layers: x = layer(tgt=x, memory=memory, tgt_key_padding_mask=M, memory_key_padding_mask=M)
      where M (True = masked) is `arange(T) >= lengths[main_encoder]` for BOTH masks: the
      memory mask is built from the MAIN encoder's length, not the conditional encoder's own.
      Then x += in_proj[main](main) when use_skip_connection; out = out_proj(x).
    - defaults of the signature: hidden_dim 1024, ffn_dims 4096, dropout 0.1, 16 heads,
      num_hidden_layers [2, 2, 2], main "whisper", conditional ["w2vbert", "muq", "sslam"],
      use_skip_connection false. ALARM-CA (configs/model/alarm_ca.yaml): llm_embedding_dim 1024,
      hidden_dim 1024, ffn_dims 4096, 16 heads, num_hidden_layers [1, 1, 1], the default
      encoders and order, no skip connection.
* torch's TransformerDecoderLayer with norm_first (eval: dropout off):
      x = x + SelfAttn(norm1(x), key_padding_mask=tgt mask)
      x = x + CrossAttn(norm2(x), memory, key_padding_mask=memory mask)   (memory NOT normalized)
      x = x + linear2(gelu(linear1(norm3(x))))                              (exact erf GELU)
  Attention: q, k, v = in_proj rows [0:D], [D:2D], [2D:3D]; per head softmax(q k^T / sqrt(d_h)
  with masked keys at -inf) v; heads concatenated; out_proj.

How many fused rows reach the LLM (model/llm_audio_wrapper.py `get_audio_embeddings`, called by
`prepare_multimodal_inputs`, which wrapped_llms/qwen3.py's forward and generate use):
  encoder lengths = each encoder's calc_length of its feature length (whisper mel // 2, w2vbert
  its feature frames, sslam fbank frames // 2, muq 24 kHz samples // 960); each adapter trims its
  encoder's states to the batch's longest length (batch 1: its own), outputs ceil(len / 2) rows
  (conv downsampler) or len rows (mlp / identity), and reports len // 2 or len; the fusion pads
  to the longest output T_max and returns [B, T_max, D]; the length is max over encoders of the
  adapter lengths, clamped to >= 1; the LLM reads rows [0, that). So rows at and past the MAIN
  encoder's length are read whenever another encoder's adapter length is longer.
Those rows are not fully masked: the masks hide KEYS (self-attention: main rows >= main length;
cross-attention: the conditional encoder's rows >= main length), never queries, so every query
row, inside or past the main length, attends to the keys [0, main length). A conditional
encoder shorter than the main one contributes its zero padding (after in_proj: in_proj's bias)
as attended keys, exactly as ALARM does, because padding happens before in_proj.

ALARM-P ("multiperceiver", fusion_implementations/perceiver.py MultiPerceiverFusion, reference in
alarm/perceiver.py): AudioFusion pads every adapter output to the longest as above, the fusion
runs each conditional encoder's perceiver with that encoder's OWN adapter length as its key mask
and returns [cond_start_emb, latents (config order), cond_end_emb, main output (padded)]; it has
`calc_length` = lengths[main] + sum(num_latents) + 2, which AudioFusion.calc_length uses instead of
the max, so the LLM reads exactly the leading rows and the main encoder's real rows (clamped to
>= 1 as always). Its forward returns a tuple (output, None) that AudioFusion and the identity
postprocessing pass on as they are, and get_audio_embeddings' `audio[i, : lengths[i]]` would then
fail on the tuple: the released code cannot run ALARM-P as it stands; the tensor is what is meant. "perceiver" (PerceiverFusion: ONE perceiver over the conditional
outputs concatenated, masked with the MAIN encoder's length) is in fusion_model_dict too, but no
released config uses it: it is refused here.

The one fully-masked case is a main length of 0 (Whisper: under 4 mel frames, i.e. at most 480
samples = 30 ms at 16 kHz): every key is masked and torch 1.13's attention returns NaN in every
row (tests/test_alarm_fusion.py shows it on nn.TransformerDecoderLayer). This module and its
ONNX graph clamp the main length to at least 1 instead, so such audio yields finite embeddings
(ALARM's own output there is NaN, or whatever the attention backend makes of an all -inf row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .perceiver import MultiPerceiverConfig, MultiPerceiverFusion

FUSION_TYPES = ("sum", "crossattention", "multiperceiver")
NOT_YET = ("perceiver",)  # ALARM's single PerceiverFusion: in fusion_model_dict, in no released config


@dataclass(frozen=True)
class CrossAttentionConfig:
    """ALARM's `audio_fusion_config` for fusion_type "crossattention" (defaults: their signature's)."""

    llm_embedding_dim: int
    hidden_dim: int = 1024
    ffn_dims: int = 4096
    num_attention_heads: int = 16
    num_hidden_layers: Tuple[int, ...] = (2, 2, 2)
    main_encoder: str = "whisper"
    conditional_encoders: Tuple[str, ...] = ("w2vbert", "muq", "sslam")
    use_skip_connection: bool = False
    dropout: float = 0.1  # training only; inference runs in eval mode

    @classmethod
    def from_alarm(cls, d: Mapping[str, Any]) -> "CrossAttentionConfig":
        known = {"fusion_type", "llm_embedding_dim", "hidden_dim", "ffn_dims", "num_attention_heads",
                 "num_hidden_layers", "main_encoder", "conditional_encoders", "use_skip_connection", "dropout"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"audio_fusion_config: unknown fields {unknown} for crossattention")
        if d.get("fusion_type", "crossattention") != "crossattention":
            raise ValueError(f"audio_fusion_config.fusion_type {d.get('fusion_type')!r} is not 'crossattention'")
        kw: Dict[str, Any] = {k: v for k, v in d.items() if k in known and k != "fusion_type"}
        if "llm_embedding_dim" not in kw:
            raise ValueError("audio_fusion_config.llm_embedding_dim is required")
        for name in ("num_hidden_layers", "conditional_encoders"):
            if name in kw:
                kw[name] = tuple(kw[name])
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.hidden_dim % self.num_attention_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not a multiple of num_attention_heads "
                             f"{self.num_attention_heads}")
        if len(self.num_hidden_layers) != len(self.conditional_encoders):
            raise ValueError(f"num_hidden_layers {list(self.num_hidden_layers)} does not give one depth per "
                             f"conditional encoder {list(self.conditional_encoders)}")
        if len(set(self.conditional_encoders)) != len(self.conditional_encoders):
            # ALARM's ModuleDict would keep the last stack and run it once per mention
            raise ValueError(f"conditional_encoders name an encoder twice: {list(self.conditional_encoders)}")
        if any(n < 0 for n in self.num_hidden_layers):
            raise ValueError(f"num_hidden_layers {list(self.num_hidden_layers)} has a negative depth")

    @property
    def encoders(self) -> Tuple[str, ...]:
        """Every encoder the fusion reads, once: the main one first, then the conditional ones in
        order. The main encoder may also be a conditional one (ALARM's code allows it: both share
        `in_proj.<main>`)."""
        return (self.main_encoder,) + tuple(e for e in self.conditional_encoders if e != self.main_encoder)


FusionConfig = Union[CrossAttentionConfig, MultiPerceiverConfig]
FusionModule = Union["CrossAttentionFusion", MultiPerceiverFusion]


def fusion_config_from_alarm(d: Optional[Mapping[str, Any]]) -> Tuple[str, Optional[FusionConfig]]:
    """ALARM's `audio_fusion_config` -> (fusion_type, its CrossAttentionConfig / MultiPerceiverConfig,
    or None for "sum")."""
    fusion_type = str((d or {}).get("fusion_type"))
    if fusion_type in NOT_YET:
        raise ValueError(f"fusion {fusion_type!r} (ALARM's single PerceiverFusion, used by no released "
                         "config) is not implemented")
    if fusion_type not in FUSION_TYPES:
        raise ValueError(f"fusion {fusion_type!r} is not one of {FUSION_TYPES}")
    if fusion_type == "sum":
        return fusion_type, None
    assert d is not None
    if fusion_type == "multiperceiver":
        return fusion_type, MultiPerceiverConfig.from_alarm(d)
    return fusion_type, CrossAttentionConfig.from_alarm(d)


def build_fusion(cfg: Optional[FusionConfig]) -> Optional[FusionModule]:
    """The fusion module of a config (None for "sum")."""
    if cfg is None:
        return None
    if isinstance(cfg, MultiPerceiverConfig):
        return MultiPerceiverFusion.from_config(cfg)
    return CrossAttentionFusion(cfg)


# ==============================================================================================
# Padding and masks


def pad_outputs(outputs: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """AudioFusion.pad_outputs: every [B, T_e, D] zero-padded at the end to the longest T."""
    longest = max(x.shape[-2] for x in outputs.values())
    return {name: F.pad(x, (0, 0, 0, longest - x.shape[-2])) for name, x in outputs.items()}


def key_padding_mask(frames: int, length: Tensor) -> Tensor:
    """[B, frames] bool, True where a key is masked out: positions >= length (lengths [B])."""
    return torch.arange(frames, device=length.device)[None, :] >= length[:, None]


# ==============================================================================================
# The decoder layer (torch's nn.TransformerDecoderLayer, norm_first, GELU, batch first, eval)


class MultiheadAttention(nn.Module):
    """Keys as torch's nn.MultiheadAttention with equal q/k/v widths: in_proj_weight [3D, D],
    in_proj_bias [3D], out_proj (Linear D -> D)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _split_heads(self, x: Tensor) -> Tensor:
        """[B, T, D] -> [B, heads, T, D / heads]."""
        b, t, d = x.shape
        return x.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, query: Tensor, key_value: Tensor, masked_keys: Tensor) -> Tensor:
        """query [B, Tq, D], key_value [B, Tk, D], masked_keys [B, Tk] (True = ignore) -> [B, Tq, D]."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = self._split_heads(F.linear(query, w_q, b_q))
        k = self._split_heads(F.linear(key_value, w_k, b_k))
        v = self._split_heads(F.linear(key_value, w_v, b_v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(masked_keys[:, None, None, :], float("-inf"))
        heads = torch.softmax(scores, dim=-1) @ v  # [B, H, Tq, Dh]
        b, h, t, dh = heads.shape
        return self.out_proj(heads.transpose(1, 2).reshape(b, t, h * dh))


class DecoderLayer(nn.Module):
    """Pre-norm transformer decoder layer: self-attention, cross-attention to `memory`, GELU FFN."""

    def __init__(self, width: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(width, heads)
        self.multihead_attn = MultiheadAttention(width, heads)
        self.linear1 = nn.Linear(width, ffn)
        self.linear2 = nn.Linear(ffn, width)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.norm3 = nn.LayerNorm(width)

    def forward(self, x: Tensor, memory: Tensor, tgt_mask: Tensor, memory_mask: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.self_attn(h, h, tgt_mask)
        x = x + self.multihead_attn(self.norm2(x), memory, memory_mask)
        return x + self.linear2(F.gelu(self.linear1(self.norm3(x))))


# ==============================================================================================
# The fusion


class CrossAttentionFusion(nn.Module):
    """State-dict keys are ALARM's below `model.audio_fusion.fusion_model.`."""

    def __init__(self, cfg: CrossAttentionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_dim
        self.condition_modules = nn.ModuleDict({
            name: nn.ModuleList(DecoderLayer(d, cfg.num_attention_heads, cfg.ffn_dims) for _ in range(depth))
            for name, depth in zip(cfg.conditional_encoders, cfg.num_hidden_layers)})
        self.in_proj = nn.ModuleDict({name: nn.Linear(cfg.llm_embedding_dim, d) for name in cfg.encoders})
        self.out_proj = nn.Linear(d, cfg.llm_embedding_dim)

    def forward(self, padded: Mapping[str, Tensor], main_length: Tensor) -> Tensor:
        """Adapter outputs padded to one length T ({encoder: [B, T, llm_dim]}) and the main
        encoder's adapter lengths [B] -> fused [B, T, llm_dim] (every row; see the module doc)."""
        cfg = self.cfg
        main = self.in_proj[cfg.main_encoder](padded[cfg.main_encoder])
        mask = key_padding_mask(main.shape[1], main_length.clamp(min=1))  # one mask for tgt AND memory
        x = main
        for name in cfg.conditional_encoders:
            memory = self.in_proj[name](padded[name])
            for layer in self.condition_modules[name]:
                x = layer(x, memory, mask, mask)
        if cfg.use_skip_connection:
            x = x + main
        return self.out_proj(x)


def fused_length(adapter_lengths: Mapping[str, int], cfg: Optional[FusionConfig] = None) -> int:
    """Rows the LLM reads: AudioFusion.calc_length clamped to >= 1. "sum" and cross-attention: the
    max over encoders; multiperceiver: its own calc_length, lengths[main] + sum(latents) + 2."""
    if isinstance(cfg, MultiPerceiverConfig):
        return max(1, adapter_lengths[cfg.main_encoder] + cfg.leading_rows)
    return max(1, max(adapter_lengths.values()))


def fuse(fusion: Optional[FusionModule], adapter_outputs: Mapping[str, Tensor],
         adapter_lengths: Mapping[str, int]) -> Tensor:
    """AudioFusion.forward then the LLM's cut, batch 1: {encoder: [1, T_e, D_e]} and each encoder's
    adapter length -> the audio embeddings [S, D], S = fused_length(adapter_lengths, its config)."""
    padded = pad_outputs(adapter_outputs)
    if fusion is None:  # "sum"
        out = torch.stack(list(padded.values())).sum(dim=0)
    elif isinstance(fusion, MultiPerceiverFusion):  # each conditional encoder masked by its own length
        out = fusion(padded, {name: torch.tensor([n]) for name, n in adapter_lengths.items()})
    else:
        main = fusion.cfg.main_encoder
        out = fusion(padded, torch.tensor([adapter_lengths[main]]))
    return out[0, : fused_length(adapter_lengths, None if fusion is None else fusion.cfg)]

