"""ALARM-P's fusion: one Perceiver encoder per conditional encoder ("multiperceiver").

Facts from github Blinorot/ALARM (src/model/audio/fusion_implementations/):
* perceiver.py `MultiPerceiverFusion` (checkpoint keys under `model.audio_fusion.fusion_model.`):
    - `perceiver.<enc>`: a `PerceiverEncoder` per conditional encoder (ModuleDict, config order),
      its input adapter is the identity (input width = `conditional_embedding_dim[i]`).
    - `out_proj.<enc>`: Linear(num_latent_channels[i] -> llm_embedding_dim).
    - `cond_start_emb`, `cond_end_emb`: Parameters of shape (1, llm_embedding_dim).
    - forward: for each conditional encoder in config order, pad mask = arange(T) >= lengths[enc]
      (its OWN length; True = masked), latents = out_proj[enc](perceiver[enc](x, pad_mask));
      output rows = [cond_start_emb, latents (enc order), cond_end_emb, main encoder output].
    - calc_length: lengths[main] + sum(num_latents) + 2.
* helpers/perceiver/modules.py `PerceiverEncoder` (krasserm perceiver-io derived):
    - `latent_provider._query`: Parameter (num_latents, num_latent_channels).
    - `cross_attn_1` = CrossAttentionLayer, an nn.Sequential of
      [0] Residual(CrossAttention)  keys `0.module.q_norm`, `0.module.kv_norm` (LayerNorm),
          `0.module.attention.{q,k,v,o}_proj` (Linear, bias on),
      [1] Residual(MLP)  keys `1.module.0` (LayerNorm), `1.module.1` (Linear D -> w*D),
          `1.module.3` (Linear w*D -> D); index 2 is the exact GELU.
      x = x + Attn(q_norm(x), kv_norm(x_kv)); x = x + MLP(x).
    - `self_attn_1` = SelfAttentionBlock, an nn.Sequential of layers `<i>`, each
      [0] Residual(SelfAttention) keys `0.module.norm`, `0.module.attention.{q,k,v,o}_proj`,
      [1] Residual(MLP) as above.
    - blocks 2..N reuse `cross_attn_1` / `self_attn_1` when the first layer/block is "shared"
      (the module OBJECT is reused in forward; `cross_attn_n` / `self_attn_n` are only
      registered when not shared). So a shared block appears ONCE in the state_dict.
      Cross-attention runs in block i only while i < num_cross_attention_layers.
    - MultiHeadAttention: qk/v channels default to the query input width; q scaled by
      (qk_channels / heads)^-0.5; masked logits filled with -finfo.max before softmax.
* configs/model/alarm_p.yaml: 20 latents x 3, 768 latent channels, 4 cross heads, 1 cross layer,
  4 self heads, 3 blocks x 6 layers, first block shared, widening 1, dims [1024, 1024, 768].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
import torch.nn.functional as F


@dataclass(frozen=True)
class PerceiverConfig:
    input_dim: int
    num_latents: int = 20
    latent_dim: int = 768
    cross_heads: int = 4
    cross_layers: int = 1
    self_heads: int = 4
    self_blocks: int = 3
    layers_per_block: int = 6
    widening: int = 1
    first_cross_shared: bool = False
    first_block_shared: bool = True

    def validate(self) -> None:
        if self.cross_layers < 1 or self.self_blocks < 1 or self.cross_layers > self.self_blocks:
            raise ValueError(f"perceiver: need 1 <= cross layers ({self.cross_layers}) <= blocks ({self.self_blocks})")
        if self.cross_layers > 1 and not self.first_cross_shared:
            raise NotImplementedError("perceiver: an unshared extra cross-attention layer is not implemented")
        if self.self_blocks > 1 and not self.first_block_shared:
            raise NotImplementedError("perceiver: an unshared extra self-attention block is not implemented")


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/o projections (keys q_proj, k_proj, v_proj, o_proj)."""

    def __init__(self, q_dim: int, kv_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(q_dim, q_dim)
        self.k_proj = nn.Linear(kv_dim, q_dim)
        self.v_proj = nn.Linear(kv_dim, q_dim)
        self.o_proj = nn.Linear(q_dim, q_dim)

    def forward(self, x_q: Tensor, x_kv: Tensor, pad_mask: Optional[Tensor] = None) -> Tensor:
        b, n, d = x_q.shape
        split = lambda t: t.reshape(b, t.shape[1], self.heads, d // self.heads).transpose(1, 2)
        q = split(self.q_proj(x_q)) * (d // self.heads) ** -0.5
        k, v = split(self.k_proj(x_kv)), split(self.v_proj(x_kv))
        logits = q @ k.transpose(-1, -2)
        if pad_mask is not None:  # (b, T), True = padding
            logits = logits.masked_fill(pad_mask[:, None, None, :], -torch.finfo(logits.dtype).max)
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        return self.o_proj(out)


class _Residual(nn.Module):
    """Key path `module.*`, as ALARM's Residual wrapper names it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def _mlp(dim: int, widening: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, widening * dim), nn.GELU(),
                         nn.Linear(widening * dim, dim))


class CrossAttentionBody(nn.Module):
    def __init__(self, q_dim: int, kv_dim: int, heads: int) -> None:
        super().__init__()
        self.q_norm = nn.LayerNorm(q_dim)
        self.kv_norm = nn.LayerNorm(kv_dim)
        self.attention = Attention(q_dim, kv_dim, heads)


class SelfAttentionBody(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = Attention(dim, dim, heads)


class CrossAttentionLayer(nn.Sequential):
    def __init__(self, cfg: PerceiverConfig) -> None:
        super().__init__(_Residual(CrossAttentionBody(cfg.latent_dim, cfg.input_dim, cfg.cross_heads)),
                         _Residual(_mlp(cfg.latent_dim, cfg.widening)))

    def forward(self, latents: Tensor, x: Tensor, pad_mask: Optional[Tensor]) -> Tensor:  # type: ignore[override]
        body: CrossAttentionBody = self[0].module
        latents = latents + body.attention(body.q_norm(latents), body.kv_norm(x), pad_mask)
        return latents + self[1].module(latents)


class SelfAttentionLayer(nn.Sequential):
    def __init__(self, cfg: PerceiverConfig) -> None:
        super().__init__(_Residual(SelfAttentionBody(cfg.latent_dim, cfg.self_heads)),
                         _Residual(_mlp(cfg.latent_dim, cfg.widening)))

    def forward(self, latents: Tensor) -> Tensor:  # type: ignore[override]
        body: SelfAttentionBody = self[0].module
        normed = body.norm(latents)
        latents = latents + body.attention(normed, normed)
        return latents + self[1].module(latents)


class LatentProvider(nn.Module):
    def __init__(self, cfg: PerceiverConfig) -> None:
        super().__init__()
        self._query = nn.Parameter(torch.zeros(cfg.num_latents, cfg.latent_dim))


class PerceiverEncoder(nn.Module):
    """Latents cross-attend once to the input, then a (shared) self-attention block runs N times."""

    def __init__(self, cfg: PerceiverConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.latent_provider = LatentProvider(cfg)
        self.cross_attn_1 = CrossAttentionLayer(cfg)
        self.self_attn_1 = nn.Sequential(*[SelfAttentionLayer(cfg) for _ in range(cfg.layers_per_block)])

    def forward(self, x: Tensor, pad_mask: Optional[Tensor] = None) -> Tensor:
        latents = self.latent_provider._query.unsqueeze(0).expand(x.shape[0], -1, -1)
        for block in range(self.cfg.self_blocks):
            if block < self.cfg.cross_layers:
                latents = self.cross_attn_1(latents, x, pad_mask)
            latents = self.self_attn_1(latents)
        return latents


def padding_mask(frames: int, lengths: Tensor) -> Tensor:
    """True where a frame is padding: arange(T) >= length."""
    return torch.arange(frames)[None, :] >= lengths[:, None]


@dataclass(frozen=True)
class MultiPerceiverConfig:
    """ALARM's `audio_fusion_config` for fusion_type "multiperceiver": the LLM width, the main
    encoder, and one PerceiverConfig per conditional encoder in config order."""

    llm_embedding_dim: int
    main_encoder: str
    conditional: Tuple[Tuple[str, PerceiverConfig], ...]

    @classmethod
    def from_alarm(cls, d: Mapping[str, object]) -> "MultiPerceiverConfig":
        return multiperceiver_config_from_alarm(d)

    def validate(self) -> None:
        names = self.conditional_encoders
        if len(set(names)) != len(names):
            # ALARM's ModuleDict would keep one perceiver and run it once per mention
            raise ValueError(f"conditional_encoders name an encoder twice: {list(names)}")
        if self.main_encoder in names:  # ALARM's code would run it both ways; no released config does
            raise ValueError(f"the main encoder {self.main_encoder!r} is also a conditional encoder "
                             "(not in any released ALARM config)")
        for _, c in self.conditional:
            c.validate()

    @property
    def conditional_encoders(self) -> Tuple[str, ...]:
        return tuple(name for name, _ in self.conditional)

    @property
    def encoders(self) -> Tuple[str, ...]:
        """Every encoder the fusion reads: the main one first, then the conditional ones in order."""
        return (self.main_encoder,) + self.conditional_encoders

    @property
    def total_latents(self) -> int:
        return sum(c.num_latents for _, c in self.conditional)

    @property
    def leading_rows(self) -> int:
        """Rows before the main encoder's: cond_start_emb, every encoder's latents, cond_end_emb."""
        return self.total_latents + 2

    def input_dim(self, encoder: str) -> int:
        return dict(self.conditional)[encoder].input_dim


class MultiPerceiverFusion(nn.Module):
    def __init__(self, llm_dim: int, main_encoder: str, conditional: Mapping[str, PerceiverConfig]) -> None:
        super().__init__()
        self.cfg = MultiPerceiverConfig(llm_dim, main_encoder, tuple(conditional.items()))
        self.cfg.validate()
        self.main_encoder = main_encoder
        self.conditional: List[str] = list(conditional)
        self.perceiver = nn.ModuleDict({name: PerceiverEncoder(c) for name, c in conditional.items()})
        self.out_proj = nn.ModuleDict({name: nn.Linear(c.latent_dim, llm_dim) for name, c in conditional.items()})
        self.cond_start_emb = nn.Parameter(torch.zeros(1, llm_dim))
        self.cond_end_emb = nn.Parameter(torch.zeros(1, llm_dim))

    @classmethod
    def from_config(cls, cfg: MultiPerceiverConfig) -> "MultiPerceiverFusion":
        return cls(cfg.llm_embedding_dim, cfg.main_encoder, dict(cfg.conditional))

    def total_latents(self) -> int:
        return self.cfg.total_latents

    def latents(self, outputs: Mapping[str, Tensor], lengths: Mapping[str, Tensor]) -> Tensor:
        rows = []
        for name in self.conditional:
            x = outputs[name]
            lat = self.perceiver[name](x, padding_mask(x.shape[1], lengths[name]))
            rows.append(self.out_proj[name](lat))
        return torch.cat(rows, dim=1)

    def forward(self, outputs: Mapping[str, Tensor], lengths: Mapping[str, Tensor]) -> Tensor:
        main = outputs[self.main_encoder]
        b, _, d = main.shape
        lat = self.latents(outputs, lengths)
        return torch.cat([self.cond_start_emb.expand(b, 1, d), lat,
                          self.cond_end_emb.expand(b, 1, d), main], dim=1)

    def fused_length(self, main_length: int) -> int:
        return main_length + self.total_latents() + 2


def load_strict(module: nn.Module, state: Mapping[str, Tensor], prefix: str = "") -> None:
    """Load `state` (keys as ALARM names them, under `prefix`) refusing unknown, missing or
    wrong-shape keys, each error naming the key."""
    expected = {prefix + k: v for k, v in module.state_dict().items()}
    unknown = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    if unknown:
        raise KeyError(f"perceiver checkpoint: unknown key {unknown[0]}")
    if missing:
        raise KeyError(f"perceiver checkpoint: missing key {missing[0]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(f"perceiver checkpoint: {key} has shape {tuple(value.shape)}, "
                             f"expected {tuple(expected[key].shape)}")
    module.load_state_dict({k[len(prefix):]: v for k, v in state.items()}, strict=True)


def multiperceiver_from_alarm(fusion: Mapping[str, object]) -> MultiPerceiverFusion:
    """Build the fusion from ALARM's `audio_fusion_config` dict (fusion_type "multiperceiver")."""
    return MultiPerceiverFusion.from_config(multiperceiver_config_from_alarm(fusion))


def multiperceiver_config_from_alarm(fusion: Mapping[str, object]) -> MultiPerceiverConfig:
    """ALARM's `audio_fusion_config` dict (fusion_type "multiperceiver") -> MultiPerceiverConfig.

    List settings are per conditional encoder, in `conditional_encoders` order; a list shorter
    than the encoders is refused (ALARM indexes them by position)."""
    if fusion.get("fusion_type") != "multiperceiver":
        raise ValueError(f"fusion {fusion.get('fusion_type')!r} is not 'multiperceiver'")
    names = list(fusion.get("conditional_encoders", ["w2vbert", "muq", "sslam"]))  # type: ignore[arg-type]

    def per_encoder(key: str, default: object) -> List[object]:
        value = fusion.get(key, [default] * len(names))
        if not isinstance(value, list) or len(value) != len(names):
            raise ValueError(f"fusion {key} must list one value per conditional encoder {names}")
        return value

    for key in ("num_cross_attention_qk_channels", "num_cross_attention_v_channels",
                "num_self_attention_qk_channels", "num_self_attention_v_channels"):
        if any(v is not None for v in per_encoder(key, None)):
            raise NotImplementedError(f"fusion {key} other than null is not in any released ALARM config")
    configs: Dict[str, PerceiverConfig] = {}
    for i, name in enumerate(names):
        configs[name] = PerceiverConfig(
            input_dim=int(per_encoder("conditional_embedding_dim", 1024)[i]),  # type: ignore[arg-type]
            num_latents=int(per_encoder("num_latents", 20)[i]),  # type: ignore[arg-type]
            latent_dim=int(per_encoder("num_latent_channels", 1024)[i]),  # type: ignore[arg-type]
            cross_heads=int(per_encoder("num_cross_attention_heads", 4)[i]),  # type: ignore[arg-type]
            cross_layers=int(per_encoder("num_cross_attention_layers", 1)[i]),  # type: ignore[arg-type]
            self_heads=int(per_encoder("num_self_attention_heads", 4)[i]),  # type: ignore[arg-type]
            self_blocks=int(per_encoder("num_self_attention_blocks", 1)[i]),  # type: ignore[arg-type]
            layers_per_block=int(per_encoder("num_self_attention_layers_per_block", 6)[i]),  # type: ignore[arg-type]
            widening=int(per_encoder("self_attention_widening_factor", 1)[i]),  # type: ignore[arg-type]
            first_cross_shared=bool(per_encoder("first_cross_attention_layer_shared", False)[i]),
            first_block_shared=bool(per_encoder("first_self_attention_block_shared", True)[i]),
        )
        if int(per_encoder("cross_attention_widening_factor", 1)[i]) != configs[name].widening:  # type: ignore[arg-type]
            raise NotImplementedError("cross- and self-attention widening factors differ")
    cfg = MultiPerceiverConfig(int(fusion.get("llm_embedding_dim", 1024)),  # type: ignore[arg-type]
                               str(fusion.get("main_encoder", "whisper")), tuple(configs.items()))
    cfg.validate()
    return cfg
