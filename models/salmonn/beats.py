"""BEATs audio encoder (microsoft/unilm `beats/`), as SALMONN uses it: features only, no classifier.

    waveform (16 kHz) -> kaldi_fbank [T, 128] -> BeatsEncoder -> [N, 768],  N = (T // 16) * 8

Unlike Whisper, BEATs sees only the real clip (no padding to 30 s): 1 s -> 48 tokens,
10 s -> 496, 30 s -> 1496.

The architecture follows the checkpoint's `cfg` (see `BeatsConfig`); parameter names mirror the
checkpoint's `model` state dict, so it loads with `strict=True` after two edits made by
`beats_state_dict_from_checkpoint`: the weight-normalised positional convolution
(`encoder.pos_conv.0.weight_g` / `weight_v`) is folded into one `weight`, and the AudioSet
classifier (`predictor.*`) is dropped.

Numerics follow the original exactly where the order of operations matters:
  * q is scaled by head_dim**-0.5 and by 1/32, the logits have their row max subtracted and are
    multiplied back by 32 (a trick the original uses against fp16 overflow);
  * the gate of the gated relative position bias is computed from the *unscaled* q;
  * deep_norm multiplies the residual by alpha = (2 * layers) ** 0.25 in post-LN blocks.

Limits: batch 1 is the intended use; there is no padding mask (every frame is real audio), so
batched clips of different lengths are not supported. `activation_fn="glu"` is not supported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from torch import Tensor, nn

FBANK_MEAN = 15.41663
FBANK_STD = 6.55582


# ----------------------------------------------------------------------------------------------
# Config

# Keys of the checkpoint's `cfg` that only matter for training (or for the AudioSet classifier,
# which SALMONN does not use); `BeatsConfig.from_cfg` accepts and drops them.
TRAINING_ONLY_CFG_KEYS = (
    "dropout",
    "attention_dropout",
    "activation_dropout",
    "encoder_layerdrop",
    "dropout_input",
    "layer_wise_gradient_decay_ratio",
    "finetuned_model",
    "predictor_dropout",
    "predictor_class",
)


@dataclass(frozen=True)
class BeatsConfig:
    """The architecture keys of BEATs' `cfg`, with BEATsConfig's class defaults.

    The `cfg` stored in `BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt` (as reported by
    public scripts that rebuild it; check the real file) overrides them with:
        input_patch_size=16, embed_dim=512, conv_bias=False, encoder_layers=12,
        encoder_embed_dim=768, encoder_ffn_embed_dim=3072, encoder_attention_heads=12,
        activation_fn="gelu", layer_norm_first=False, deep_norm=True, conv_pos=128,
        conv_pos_groups=16, relative_position_embedding=True, num_buckets=320,
        max_distance=800, gru_rel_pos=True
        (+ training-only: dropout 0.0, attention_dropout 0.0, activation_dropout 0.0,
         encoder_layerdrop 0.05, dropout_input 0.0, layer_wise_gradient_decay_ratio 0.6,
         finetuned_model True, predictor_dropout 0.0, predictor_class 527).
    Always build from the checkpoint's own cfg (`from_cfg`); never rely on these defaults.
    """

    input_patch_size: int = -1  # the class default is a placeholder; real cfgs set 16
    embed_dim: int = 512  # patch embedding width
    conv_bias: bool = False  # bias in the patch embedding
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_norm_first: bool = False  # pre-LN blocks (True) or post-LN blocks (False)
    deep_norm: bool = False  # scale residuals by alpha in post-LN blocks
    conv_pos: int = 128  # kernel size of the convolutional positional embedding
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False  # gate the relative position bias by the query

    @classmethod
    def from_cfg(cls, d: Dict[str, Any]) -> "BeatsConfig":
        """Build from a checkpoint's `cfg` dict; training-only keys are dropped, unknown keys raise."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(k for k in d if k not in names and k not in TRAINING_ONLY_CFG_KEYS)
        if unknown:
            raise ValueError(f"unknown BEATs cfg keys: {unknown}")
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def deep_norm_alpha(self) -> float:
        """Residual multiplier of the post-LN blocks: (2 * layers) ** (1/4) with deep_norm, else 1."""
        return math.pow(2 * self.encoder_layers, 1 / 4) if self.deep_norm else 1.0


# ----------------------------------------------------------------------------------------------
# Front end


def kaldi_fbank(wave: Tensor) -> Tensor:
    """BEATs input features of a mono 16 kHz waveform in [-1, 1]: normalised fbank [T, 128].

    Kaldi fbank expects 16-bit sample values, hence the 2**15; every option not named here is a
    Kaldi default (25 ms povey window, 10 ms shift, 512-point FFT, pre-emphasis 0.97, DC removal,
    snip_edges, no dither). T = 1 + (n - 400) // 160.
    """
    if wave.dim() != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {tuple(wave.shape)}")
    fbank = kaldi.fbank(
        wave.to(torch.float32).unsqueeze(0) * 2 ** 15,
        num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10,
    )
    return (fbank - FBANK_MEAN) / (2 * FBANK_STD)


def beats_num_tokens(num_samples: int, patch: int = 16, n_mels: int = 128) -> int:
    """Number of BEATs tokens for a clip of `num_samples` samples at 16 kHz."""
    frames = 1 + (num_samples - 400) // 160 if num_samples >= 400 else 0
    return (frames // patch) * (n_mels // patch)


# ----------------------------------------------------------------------------------------------
# Checkpoint helpers


def fold_weight_norm(weight_g: Tensor, weight_v: Tensor, dim: int = 2) -> Tensor:
    """Effective weight of a weight-normalised layer: g * v / ||v||.

    The norm runs over every axis except `dim` (BEATs uses dim=2, the kernel axis of its Conv1d,
    so each of the `conv_pos` kernel taps has its own scale).
    """
    # move `dim` last and take one L2 norm per column: the same reduction as torch's weight_norm
    # for BEATs' dim=2, so the folded weight is bit-identical to the one the original computes
    columns = weight_v.transpose(dim, -1).contiguous()
    norm = columns.reshape(-1, columns.shape[-1]).norm(2, dim=0)
    shape = [1] * weight_v.dim()
    shape[dim] = -1
    return weight_v * (weight_g / norm.reshape(shape))


# checkpoint keys the encoder does not use (the AudioSet classifier head)
BEATS_IGNORED_KEY_PREFIXES = ("predictor.",)


def beats_state_dict_from_checkpoint(model_state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Turn a BEATs checkpoint's `model` dict into one that `BeatsEncoder` loads with strict=True."""
    out = {k: v for k, v in model_state.items() if not k.startswith(BEATS_IGNORED_KEY_PREFIXES)}
    prefix = "encoder.pos_conv.0."
    if prefix + "weight_g" in out:
        g = out.pop(prefix + "weight_g")
        v = out.pop(prefix + "weight_v")
        out[prefix + "weight"] = fold_weight_norm(g, v, dim=2)
    return out


# ----------------------------------------------------------------------------------------------
# Relative position bias


def relative_position_bucket(relative_position: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    """Map signed distances (key - query) to bucket ids, bidirectionally, as T5/BEATs do.

    Half of the buckets are for keys after the query, half for keys before. Within a half, the
    first half of the buckets are exact distances 0 .. max_exact-1; the rest cover
    max_exact .. max_distance logarithmically, and anything farther shares the last bucket.
    """
    half = num_buckets // 2
    buckets = (relative_position > 0).to(torch.long) * half
    distance = torch.abs(relative_position)

    max_exact = half // 2
    is_small = distance < max_exact
    # clamp only keeps log() finite for the small distances that torch.where discards anyway
    far = torch.clamp(distance, min=max_exact).float()
    log_bucket = max_exact + (
        torch.log(far / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    ).to(torch.long)
    log_bucket = torch.clamp(log_bucket, max=half - 1)
    return buckets + torch.where(is_small, distance, log_bucket)


def relative_positions(length_from: Tensor) -> Tensor:
    """Signed distances key - query, [T, T], with T read from the tensor's time axis (dim 1).

    Built from the tensor's shape with torch ops so an ONNX export keeps the time axis dynamic.
    """
    positions = torch.arange(length_from.shape[1], dtype=torch.long, device=length_from.device)
    return positions[None, :] - positions[:, None]


# ----------------------------------------------------------------------------------------------
# Transformer


def _activation(name: str):
    if name == "gelu":
        return F.gelu  # exact (erf) GELU, as fairseq's gelu
    if name == "gelu_accurate":  # fairseq's name for the tanh approximation
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    raise ValueError(f"unsupported BEATs activation_fn: {name!r}")


class BeatsAttention(nn.Module):
    """Multi-head self-attention with BEATs' (optionally gated) relative position bias."""

    # BEATs divides q by 32 and multiplies the max-shifted logits by 32 again. Mathematically a
    # no-op; we keep it so that the numbers come out exactly as in the original.
    LOGIT_ALPHA = 32.0

    def __init__(self, cfg: BeatsConfig) -> None:
        super().__init__()
        dim, heads = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        if dim % heads != 0:
            raise ValueError("encoder_embed_dim must be divisible by encoder_attention_heads")
        self.num_heads = heads
        self.head_dim = dim // heads
        self.scaling = self.head_dim ** -0.5
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        # `relative_attention_bias` (one shared nn.Embedding) is attached by BeatsTransformer
        self.gru_rel_pos = cfg.gru_rel_pos
        if cfg.gru_rel_pos:
            # per-head gate on the position bias, computed from each query vector
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, T, Dh]

    def _gate(self, q_unscaled: Tensor) -> Tensor:
        """Per-query, per-head multiplier of the position bias, [B, H, T, 1], in (1, 1 + grep_a)."""
        b, h, t, _ = q_unscaled.shape
        logits = self.grep_linear(q_unscaled).reshape(b, h, t, 2, 4).sum(-1)  # [B, H, T, 2]
        gate_a, gate_b = torch.sigmoid(logits).chunk(2, dim=-1)
        return gate_a * (gate_b * self.grep_a - 1.0) + 2.0

    def forward(self, x: Tensor, position_bias: Optional[Tensor]) -> Tensor:
        b, t, d = x.shape
        q = self.q_proj(x)
        q = q * self.scaling
        q = q * (1 / self.LOGIT_ALPHA)
        q = self._split_heads(q)
        k = self._split_heads(self.k_proj(x))
        v = self._split_heads(self.v_proj(x))

        logits = q @ k.transpose(-1, -2)  # [B, H, T, T]
        logits = (logits - logits.max(dim=-1, keepdim=True)[0]) * self.LOGIT_ALPHA

        if position_bias is not None:  # [1, H, T, T], shared by all layers
            if self.gru_rel_pos:
                q_unscaled = q * self.LOGIT_ALPHA / self.scaling
                position_bias = self._gate(q_unscaled) * position_bias
            logits = logits + position_bias

        weights = torch.softmax(logits, dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, t, d)
        return self.out_proj(out)


class BeatsLayer(nn.Module):
    """Transformer block; post-LN with deep_norm residual scaling, or pre-LN (layer_norm_first)."""

    def __init__(self, cfg: BeatsConfig) -> None:
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.self_attn = BeatsAttention(cfg)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.activation = _activation(cfg.activation_fn)
        self.layer_norm_first = cfg.layer_norm_first
        self.alpha = cfg.deep_norm_alpha

    def _ffn(self, x: Tensor) -> Tensor:
        return self.fc2(self.activation(self.fc1(x)))

    def forward(self, x: Tensor, position_bias: Optional[Tensor]) -> Tensor:
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x), position_bias)
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, position_bias))
        return self.final_layer_norm(x * self.alpha + self._ffn(x))


class DropLastFrame(nn.Module):
    """An even-sized 'same' convolution yields one frame too many; drop the last (fairseq SamePad)."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, :-self.remove] if self.remove else x


class BeatsTransformer(nn.Module):
    """Convolutional positions + relative-position-biased transformer layers."""

    def __init__(self, cfg: BeatsConfig) -> None:
        super().__init__()
        dim = cfg.encoder_embed_dim
        # Sequential so the keys read `pos_conv.0.weight/bias` as in the checkpoint (whose weight
        # is weight-normalised; fold it with `fold_weight_norm` before loading).
        self.pos_conv = nn.Sequential(
            nn.Conv1d(dim, dim, kernel_size=cfg.conv_pos, padding=cfg.conv_pos // 2,
                      groups=cfg.conv_pos_groups),
            DropLastFrame(cfg.conv_pos),
            nn.GELU(),
        )
        self.layers = nn.ModuleList(BeatsLayer(cfg) for _ in range(cfg.encoder_layers))
        self.relative_position_embedding = cfg.relative_position_embedding
        self.num_buckets = cfg.num_buckets
        self.max_distance = cfg.max_distance
        if cfg.relative_position_embedding:
            # One table shared by every layer; it is registered in each layer as in the original,
            # so the state dict has `layers.N.self_attn.relative_attention_bias.weight` for all N.
            shared = nn.Embedding(cfg.num_buckets, cfg.encoder_attention_heads)
            for layer in self.layers:
                layer.self_attn.relative_attention_bias = shared
        self.layer_norm_first = cfg.layer_norm_first
        self.layer_norm = nn.LayerNorm(dim)

    def _position_bias(self, x: Tensor) -> Optional[Tensor]:
        """Bias [1, H, T, T] added to every layer's attention logits (None without rel. positions)."""
        if not self.relative_position_embedding:
            return None
        buckets = relative_position_bucket(relative_positions(x), self.num_buckets, self.max_distance)
        table = self.layers[0].self_attn.relative_attention_bias
        return table(buckets).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        position_bias = self._position_bias(x)
        for layer in self.layers:
            x = layer(x, position_bias)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x


class BeatsEncoder(nn.Module):
    """Normalised fbank [B, T, 128] -> features [B, (T // p) * (128 // p), encoder_embed_dim].

    Meant for batch 1 (no padding mask). The time axis may vary (ONNX export keeps it dynamic).
    """

    def __init__(self, cfg: BeatsConfig) -> None:
        super().__init__()
        if cfg.input_patch_size <= 0:
            raise ValueError("input_patch_size must be set (the real BEATs cfg has 16)")
        if cfg.deep_norm and cfg.layer_norm_first:
            raise ValueError("deep_norm and layer_norm_first exclude each other")
        self.cfg = cfg
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p, bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (
            nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
            if cfg.embed_dim != cfg.encoder_embed_dim else None
        )
        self.encoder = BeatsTransformer(cfg)

    def patchify(self, fbank: Tensor) -> Tensor:
        """[B, T, F] -> patch tokens [B, (T // p) * (F // p), embed_dim], time-major: for each
        16-frame slice, its F // p frequency patches from low to high."""
        patches = self.patch_embedding(fbank.unsqueeze(1))  # [B, C, T // p, F // p]
        b, c = patches.shape[0], patches.shape[1]
        return patches.reshape(b, c, -1).transpose(1, 2)

    def forward(self, fbank: Tensor) -> Tensor:
        x = self.layer_norm(self.patchify(fbank))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.encoder(x)
