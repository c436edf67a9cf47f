"""SSLAM (ta012/SSLAM_AS2M_Finetuned) as ALARM-CA uses it: Kaldi fbank features, an EAT /
data2vec-2 ViT over 16x16 fbank patches, block outputs with the CLS token removed.

Facts, and where they come from:

ALARM (github Blinorot/ALARM):
* src/model/audio/feature_extractor_implementations/sslam.py (SSLAMFeatureExtractor): the 16 kHz
  waveform minus its mean, zero-padded by 160 samples on both sides, goes through
  `torchaudio.compliance.kaldi.fbank(htk_compat=True, sample_frequency=16000, use_energy=False,
  window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)` (every other option
  Kaldi's default: 25 ms frames, snip_edges, pre-emphasis 0.97, DC removal, 512-point FFT, mel
  from 20 Hz to Nyquist). The waveform is NOT scaled to 16-bit range (unlike BEATs'). The fbank
  [n_frames, 128] is zero-padded at the end to a multiple of 1024 frames (no padding when
  n_frames is already a multiple), and THEN normalised as (x - (-4.268)) / (2 * 4.569), so the
  padding frames hold 4.268 / 9.138 = 0.467, not 0. Length = n_frames (the real frames).
* src/model/audio/encoder_implementations/sslam.py (SSLAMEncoder): max_time 10.24 s at frame
  rate 100 -> the features are cut into 1024-frame chunks (base.py get_split_lists) and each
  chunk [B, 1024, 128] is encoded on its own with `get_hidden_states(x.unsqueeze(1))`:
      x = model.local_encoder(x); x = x + model.fixed_positional_encoder(x, None)[:, :x.size(1)]
      x = cat(model.extra_tokens, x); x = model.pre_norm(x); x = model.pos_drop(x)
      for blk in model.blocks: x, _ = blk(x); hidden_states.append(x[:, 1:])   # CLS removed
  The list (one entry per block; index i = the output of block i, 0-based; there is NO entry
  for the embedding) is stacked; chunks are concatenated in time. No attention mask is used.
  calc_length: lengths // 2. ALARM-CA (src/configs/model/alarm_ca.yaml) takes layers
  [3, 7, 11] (blocks 4, 8 and 12 of 12) into a downsampler_conformer adapter (norm "layer",
  encoder dim 768 -> adapter dim 1024, so `input_proj` exists).
* `self.encoder = AutoModel.from_pretrained("ta012/SSLAM_AS2M_Finetuned", trust_remote_code=
  True)`; the backbone is its attribute `.model`, so its checkpoint keys start with `model.`.

EAT's Hugging Face remote code (worstchan/EAT-*; SSLAM's README says SSLAM's inference code is
EAT's, with SSLAM weights; the HF snapshot of ta012/SSLAM_AS2M_Finetuned itself is not in the
public text available here, see UNCERTAIN below). Files configuration_eat.py, modeling_eat.py,
eat_model.py, model_core.py (read through vendored public copies):
* modeling_eat.py: `EATModel(PreTrainedModel)` with `self.model = EAT(config)`.
* configuration_eat.py: `EATConfig` (model_type "eat") fields and defaults: embed_dim 768,
  depth 12, num_heads 12, patch_size 16, stride 16, in_chans 1, mel_bins 128, max_length 768,
  num_classes 527, model_variant "pretrain" | "finetune", mlp_ratio 4.0, qkv_bias True,
  drop_rate / attn_drop_rate / activation_dropout / post_mlp_drop / start_drop_path_rate /
  end_drop_path_rate 0.0, layer_norm_first False, norm_eps 1e-6, norm_affine True,
  fixed_positions True, img_size (1024, 128).
* eat_model.py `EAT`: local_encoder = PatchEmbed_new (`proj` = Conv2d(in_chans, D, kernel
  patch, stride)) then `flatten(2).transpose(1, 2)`; extra_tokens nn.Parameter [1, 1, D];
  fixed_positional_encoder = FixedPositionalEncoder(pos_embed) whose `positions` IS an
  nn.Parameter (requires_grad False) [1, max_length * (mel_bins // patch_size), D], hence a
  checkpoint key; norm_layer = LayerNorm(eps=norm_eps, elementwise_affine=norm_affine) for
  pre_norm and every block norm; blocks = AltBlock(..., ffn_targets=True); with model_variant
  "finetune" also fc_norm = LayerNorm(D) (default eps) and head = Linear(D, num_classes), applied
  to the CLS token only (never run in ALARM: listed by `ignored_checkpoint_keys`).
* model_core.py: the position table is get_2d_sincos_pos_embed_flexible(D, (max_length, W)):
  grid = meshgrid(arange(W), arange(max_length)) ("w goes first"), so the FIRST D/2 channels
  encode the frequency-patch index and the LAST D/2 the time-patch index (each half: D/4 sines
  then D/4 cosines of pos * 10000^(-j / (D/4))), rows in time-major order (row = t * W + f).
  AltAttention: qkv Linear(D, 3D, bias=qkv_bias), heads split as [3, H, head_dim], q scaled by
  head_dim^-0.5, softmax in float32, proj Linear(D, D). AltBlock with layer_norm_first False
  (post-LN): x = x + attn(x); r = x = norm1(x); x = norm2(r + mlp(x)); returns (x, t). The Mlp
  is timm's (fc1, GELU (exact erf), fc2). With layer_norm_first True the HF code computes
  `r = x = mlp(norm2(x)); x = r + x` (the residual is lost): not SSLAM's setting, refused here.

SSLAM (github ta012/SSLAM, Pre-Training/SSLAM_Stage2/models/images.py): for audio (in_chans 1)
the image is (target_length 1024, 128), H = 64 time patches, W = 8 frequency patches, 512
patches; `patchify` orders them "nchpwq->nhwpqc", i.e. time-major; max_length 768 by default.

Token order and what ALARM does with it: a 1024 x 128 chunk gives 64 x 8 patches, flattened
time-major: token k covers fbank frames 16 * (k // 8) .. +15 and mel bins 16 * (k % 8) .. +15.
ALARM treats the 512 tokens of a chunk as a time sequence of 512 steps (50 per second). The
count is consistent (8 tokens per 16 frames = 1 token per 2 frames, hence lengths // 2 keeps
the tokens of the real frames, up to the last partial patch), but neighbouring "time steps" are
neighbouring frequency bands of one 160 ms patch column (and every 8th step jumps to the next
column): the adapter's convolutions and its stride-2 downsampling (to 25 per second, 4 tokens
per 160 ms) mix frequency bands, not successive instants. Reproduced as is.

Real size (config above): 89,972,736 values in the encoder keys ALARM runs: patch conv 197,376,
CLS 768, the fixed sin-cos position table 4,718,592 (6144 x 768, a frozen parameter: 85,254,144
without it), pre_norm 1,536, 12 blocks of 7,087,872. With fc_norm (1,536) and the 527-class head
(405,263), never run in ALARM, the checkpoint holds 90,379,535. Output: 50 embeddings per second
(512 per 10.24 s chunk), 25 per second after the adapter (stride-2 downsampler).

UNCERTAIN (the HF repo ta012/SSLAM_AS2M_Finetuned's own config.json and .py files are not in the
public text reachable here):
* the config values are EATConfig's defaults with model_variant "finetune" and 527 classes; a
  third-party measurement of that repo's model.safetensors reports 90,379,535 parameters, which
  is exactly this layout's count with max_length 768 and the 527-class head (any other
  max_length, width or depth would change it), so the shapes are very likely right;
* the key names are EAT's HF remote code's (ALARM's attribute accesses local_encoder,
  fixed_positional_encoder, extra_tokens, pre_norm, pos_drop, blocks and the (x, _) block return
  agree with them; another public loader of SSLAM/EAT safetensors strips `model.` and loads these
  names strictly, ignoring only fc_norm.* and head.*). `from_hf_config` refuses unknown config
  keys, so a differing real config.json fails loudly, naming the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from torch import Tensor, nn

SAMPLE_RATE = 16000
NUM_MEL_BINS = 128
EDGE_PADDING = 160  # samples of zeros on both sides of the waveform
FRAME_SAMPLES = 400  # Kaldi's 25 ms frame (frames every 160 samples, snip_edges)
CHUNK_FRAMES = 1024  # ALARM: max_time 10.24 s x frame_rate 100; also SSLAMFeatureExtractor's max_frames
NORM_MEAN, NORM_STD = -4.268, 4.569

# PretrainedConfig's own keys that a saved config.json may carry; they say nothing about the network.
_HF_BOOKKEEPING = frozenset({
    "architectures", "auto_map", "model_type", "torch_dtype", "transformers_version", "_name_or_path",
    "id2label", "label2id", "return_dict", "output_hidden_states", "output_attentions", "use_return_dict",
    "dtype",
})
# Regularisation only (identity at inference).
_TRAINING_ONLY = frozenset({
    "drop_rate", "attn_drop_rate", "activation_dropout", "post_mlp_drop", "start_drop_path_rate",
    "end_drop_path_rate",
})
MODEL_VARIANTS = ("pretrain", "finetune")


@dataclass(frozen=True)
class SSLAMConfig:
    """EATConfig's architecture fields (names as there)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 16
    stride: int = 16
    in_chans: int = 1
    mel_bins: int = 128
    max_length: int = 768
    num_classes: int = 527
    model_variant: str = "finetune"
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_norm_first: bool = False
    norm_eps: float = 1e-6
    norm_affine: bool = True
    fixed_positions: bool = True
    img_size: Tuple[int, int] = (1024, 128)

    @classmethod
    def from_hf_config(cls, d: Mapping[str, Any]) -> "SSLAMConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(k for k in d if k not in names and k not in _HF_BOOKKEEPING and k not in _TRAINING_ONLY)
        if unknown:
            raise ValueError(f"unknown SSLAM/EAT config field(s) {unknown}")
        kw = {k: v for k, v in d.items() if k in names}
        if "img_size" in kw:
            kw["img_size"] = tuple(int(v) for v in kw["img_size"])
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.model_variant not in MODEL_VARIANTS:
            raise ValueError(f"model_variant {self.model_variant!r} is not one of {MODEL_VARIANTS}")
        if self.layer_norm_first:
            raise ValueError("layer_norm_first=true is not supported (EAT's HF code drops the MLP residual there)")
        if self.in_chans != 1:
            raise ValueError(f"in_chans {self.in_chans}: ALARM feeds one fbank channel")
        if self.mel_bins != NUM_MEL_BINS or self.img_size[1] != NUM_MEL_BINS:
            raise ValueError(f"mel_bins / img_size[1] must be {NUM_MEL_BINS} (ALARM's fbank), got "
                             f"{self.mel_bins} / {self.img_size[1]}")
        if self.stride != self.patch_size:
            raise ValueError(f"stride {self.stride} != patch_size {self.patch_size}: overlapping patches "
                             "do not match the position table's grid")
        if CHUNK_FRAMES % self.patch_size or self.mel_bins % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide {CHUNK_FRAMES} x {self.mel_bins}")
        if self.embed_dim % self.num_heads or self.embed_dim % 4:
            raise ValueError(f"embed_dim {self.embed_dim} must split into {self.num_heads} heads and 4 sin-cos parts")
        if self.fixed_positions and self.max_length < CHUNK_FRAMES // self.patch_size:
            raise ValueError(f"max_length {self.max_length} < {CHUNK_FRAMES // self.patch_size} time patches of a chunk")

    @property
    def freq_patches(self) -> int:
        """W: patches across the 128 mel bins (8)."""
        return self.mel_bins // self.patch_size

    @property
    def chunk_tokens(self) -> int:
        """Patch tokens of one 1024-frame chunk (512), time-major."""
        return (CHUNK_FRAMES // self.patch_size) * self.freq_patches

    @property
    def mlp_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)


SSLAM_AS2M = SSLAMConfig()  # ta012/SSLAM_AS2M_Finetuned (see UNCERTAIN in the module doc)


# ----------------------------------------------------------------------------------------------
# Features


def sslam_features(wave: Tensor) -> Tuple[Tensor, int]:
    """ALARM's SSLAM features of a mono 16 kHz waveform [n]: (normalised fbank [1024 * chunks,
    128], real frame count). See the module doc for the recipe."""
    if wave.dim() != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {tuple(wave.shape)}")
    if wave.numel() + 2 * EDGE_PADDING < FRAME_SAMPLES:
        # torchaudio asserts here (ALARM would fail the same way): not even one 25 ms frame
        raise ValueError(f"{wave.numel()} samples give no {FRAME_SAMPLES}-sample frame")
    wave = wave.to(torch.float32)
    wave = F.pad(wave - wave.mean(), (EDGE_PADDING, EDGE_PADDING))
    fbank = kaldi.fbank(
        wave[None], htk_compat=True, sample_frequency=SAMPLE_RATE, use_energy=False,
        window_type="hanning", num_mel_bins=NUM_MEL_BINS, dither=0.0, frame_shift=10,
    )
    n_frames = fbank.shape[0]
    padded = F.pad(fbank, (0, 0, 0, (-n_frames) % CHUNK_FRAMES))
    return (padded - NORM_MEAN) / (NORM_STD * 2), n_frames


def encoder_frames(cfg: SSLAMConfig, real_length: int) -> int:
    """ALARM's SSLAMEncoder.calc_length: real fbank frames // 2 (8 tokens per 16 frames for the
    released patch 16 over 128 bins; ALARM writes the 2 literally)."""
    return real_length // 2


# ----------------------------------------------------------------------------------------------
# Encoder


def sincos_positions(cfg: SSLAMConfig) -> Tensor:
    """EAT's fixed table [1, max_length * W, D] (row t * W + f: frequency code, then time code).

    Computed in float64 here; EAT computes it in float32 numpy, and the real table is read from
    the checkpoint anyway (this one fills tiny states)."""
    d, w = cfg.embed_dim, cfg.freq_patches
    omega = 1.0 / 10000 ** (torch.arange(d // 4, dtype=torch.float64) / (d // 4))
    time = torch.arange(cfg.max_length, dtype=torch.float64).repeat_interleave(w)
    freq = torch.arange(w, dtype=torch.float64).repeat(cfg.max_length)

    def code(pos: Tensor) -> Tensor:
        angle = pos[:, None] * omega[None]
        return torch.cat([angle.sin(), angle.cos()], dim=1)

    return torch.cat([code(freq), code(time)], dim=1).to(torch.float32)[None]


class PatchEmbedding(nn.Module):
    """EAT's PatchEmbed_new: key `proj`; [B, 1, T, 128] -> [B, (T / p) * (128 / p), D], time-major."""

    def __init__(self, cfg: SSLAMConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class FixedPositions(nn.Module):
    """EAT's FixedPositionalEncoder: the table is a (frozen) parameter, key `positions`."""

    def __init__(self, cfg: SSLAMConfig) -> None:
        super().__init__()
        self.positions = nn.Parameter(sincos_positions(cfg), requires_grad=False)


class Attention(nn.Module):
    """EAT's AltAttention: fused qkv, scaled dot product over all tokens (no mask), proj."""

    def __init__(self, cfg: SSLAMConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.scale = (cfg.embed_dim // cfg.num_heads) ** -0.5
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        weights = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """timm's Mlp: fc1, exact GELU, fc2."""

    def __init__(self, cfg: SSLAMConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _layer_norm(cfg: SSLAMConfig) -> nn.LayerNorm:
    return nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps, elementwise_affine=cfg.norm_affine)


class Block(nn.Module):
    """EAT's AltBlock with layer_norm_first False (post-LN). Returns (x, ffn output) like the
    original, whose second value ALARM discards."""

    def __init__(self, cfg: SSLAMConfig) -> None:
        super().__init__()
        self.norm1 = _layer_norm(cfg)
        self.attn = Attention(cfg)
        self.norm2 = _layer_norm(cfg)
        self.mlp = Mlp(cfg)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        x = self.norm1(x + self.attn(x))
        ffn = self.mlp(x)
        return self.norm2(x + ffn), ffn


class EATBackbone(nn.Module):
    """The remote-code model's `.model` (EAT) without its CLS head."""

    def __init__(self, cfg: SSLAMConfig) -> None:
        super().__init__()
        self.local_encoder = PatchEmbedding(cfg)
        self.extra_tokens = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.fixed_positional_encoder: Optional[FixedPositions] = FixedPositions(cfg) if cfg.fixed_positions else None
        self.pre_norm = _layer_norm(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))

    def embed(self, chunk: Tensor) -> Tensor:
        """Features [B, 1024, 128] -> [B, 1 + 512, D]: patches (+ positions), CLS first, pre_norm."""
        x = self.local_encoder(chunk.unsqueeze(1))
        if self.fixed_positional_encoder is not None:
            x = x + self.fixed_positional_encoder.positions[:, : x.shape[1]]
        x = torch.cat([self.extra_tokens.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pre_norm(x)


class SSLAMEncoder(nn.Module):
    """State-dict keys = the HF remote-code model's (`model.` + EAT's), less fc_norm / head."""

    def __init__(self, cfg: SSLAMConfig = SSLAM_AS2M) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.model = EATBackbone(cfg)


def ignored_checkpoint_keys(cfg: SSLAMConfig) -> Dict[str, Tuple[int, ...]]:
    """Checkpoint keys that never run in ALARM (the fine-tuned CLS classifier), with shapes."""
    if cfg.model_variant != "finetune":
        return {}
    d = cfg.embed_dim
    return {"model.fc_norm.weight": (d,), "model.fc_norm.bias": (d,),
            "model.head.weight": (cfg.num_classes, d), "model.head.bias": (cfg.num_classes,)}


def checkpoint_shapes(cfg: SSLAMConfig) -> Dict[str, Tuple[int, ...]]:
    """Every key of SSLAMEncoder's state dict with its shape, written out from the config."""
    d, m, p = cfg.embed_dim, cfg.mlp_dim, cfg.patch_size
    shapes: Dict[str, Tuple[int, ...]] = {
        "model.local_encoder.proj.weight": (d, cfg.in_chans, p, p), "model.local_encoder.proj.bias": (d,),
        "model.extra_tokens": (1, 1, d),
    }
    if cfg.fixed_positions:
        shapes["model.fixed_positional_encoder.positions"] = (1, cfg.max_length * cfg.freq_patches, d)
    norm = {"weight": (d,), "bias": (d,)} if cfg.norm_affine else {}
    shapes.update({f"model.pre_norm.{k}": s for k, s in norm.items()})
    for i in range(cfg.depth):
        block = f"model.blocks.{i}."
        shapes.update({f"{block}norm1.{k}": s for k, s in norm.items()})
        shapes[block + "attn.qkv.weight"] = (3 * d, d)
        if cfg.qkv_bias:
            shapes[block + "attn.qkv.bias"] = (3 * d,)
        shapes.update({block + "attn.proj.weight": (d, d), block + "attn.proj.bias": (d,)})
        shapes.update({f"{block}norm2.{k}": s for k, s in norm.items()})
        shapes.update({block + "mlp.fc1.weight": (m, d), block + "mlp.fc1.bias": (m,),
                       block + "mlp.fc2.weight": (d, m), block + "mlp.fc2.bias": (d,)})
    return shapes


def parameter_count(cfg: SSLAMConfig, with_ignored: bool = False) -> int:
    shapes = dict(checkpoint_shapes(cfg))
    if with_ignored:
        shapes.update(ignored_checkpoint_keys(cfg))
    return sum(math.prod(s) for s in shapes.values())


def encoder_state_from_checkpoint(cfg: SSLAMConfig, state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """The remote-code model's state dict -> SSLAMEncoder's: the ignored keys must be present
    with their shapes and are dropped; everything else goes on to a strict load."""
    kept = dict(state)
    for key, shape in ignored_checkpoint_keys(cfg).items():
        if key not in kept:
            raise KeyError(f"checkpoint lacks {key}")
        if tuple(kept[key].shape) != shape:
            raise ValueError(f"{key}: shape {tuple(kept[key].shape)}, expected {shape}")
        del kept[key]
    return kept


@torch.no_grad()
def hidden_states(enc: SSLAMEncoder, features: Tensor, layers: Sequence[int]) -> Tensor:
    """ALARM's stacked SSLAM hidden states: features [B, 1024 * chunks, 128] (or [T, 128]) ->
    [len(layers), B, 512 * chunks, D]; entry i = block i's output (0-based) without CLS, each
    1024-frame chunk encoded on its own. Runs only as many blocks as the deepest index needs."""
    depth = len(enc.model.blocks)
    if not layers or any(i < 0 or i >= depth for i in layers):
        raise ValueError(f"SSLAM layer indexes must be within 0..{depth - 1}, got {list(layers)}")
    if features.dim() == 2:
        features = features[None]
    if features.shape[-1] != enc.cfg.mel_bins or features.shape[1] % CHUNK_FRAMES:
        raise ValueError(f"features {tuple(features.shape)} are not [B, 1024 * chunks, {enc.cfg.mel_bins}]")
    wanted = set(layers)
    outputs: List[Tensor] = []
    for chunk in features.split(CHUNK_FRAMES, dim=1):
        x = enc.model.embed(chunk)
        states: Dict[int, Tensor] = {}
        for i, block in enumerate(enc.model.blocks[: max(layers) + 1]):
            x, _ = block(x)
            if i in wanted:
                states[i] = x[:, 1:]
        outputs.append(torch.stack([states[i] for i in layers]))
    return torch.cat(outputs, dim=-2)
