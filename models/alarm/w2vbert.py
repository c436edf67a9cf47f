"""w2v-BERT 2.0 (facebook/w2v-bert-2.0) as ALARM-CA uses it: SeamlessM4T fbank features of the
whole recording, HF `Wav2Vec2BertModel` run per 1500-frame (30 s) chunk, hidden states
[6, 10, 15, 20, 24].

Facts from github huggingface/transformers:
* src/transformers/models/wav2vec2_bert/modeling_wav2vec2_bert.py (`Wav2Vec2BertModel`):
  - feature_projection: LayerNorm(160) then Linear(160 -> hidden) (keys `feature_projection.
    layer_norm.*`, `feature_projection.projection.*`); `masked_spec_embed` [hidden] exists when
    mask_time_prob > 0 or mask_feature_prob > 0 (SpecAugment, training only).
  - encoder: padded frames zeroed (attention_mask), no positional table for "relative_key"
    (`embed_positions` is None), then `num_hidden_layers` conformer layers, no final encoder norm.
  - each layer (`encoder.layers.N.`): x += 0.5 * ffn1(ffn1_layer_norm(x)); x += self_attn(
    self_attn_layer_norm(x)); x += conv_module(x); x += 0.5 * ffn2(ffn2_layer_norm(x));
    x = final_layer_norm(x). FFN = intermediate_dense (hidden -> intermediate), swish,
    output_dense. All LayerNorms use layer_norm_eps.
  - self_attn: linear_q/k/v/out with bias, heads of hidden / num_heads; scores = q k^T / sqrt(d)
    + (q . E[clamp(j - i, -left, right) + left]) / sqrt(d), E = `distance_embedding` with
    left + right + 1 rows of head size ("relative_key", Shaw et al.); padded keys get
    finfo.min added; softmax; linear_out.
  - conv_module: layer_norm, padded frames zeroed, pointwise_conv1 (1x1, hidden -> 2 hidden, no
    bias), GLU over channels, left-only (causal) zero padding of kernel - 1, depthwise_conv
    (groups = hidden, no bias), depthwise_layer_norm, swish, pointwise_conv2 (1x1, no bias).
  - hidden_states: index 0 = the feature projection's output (after the padding mask), index i
    = output of layer i (its final_layer_norm included), i = 1..num_hidden_layers.
* .../wav2vec2_bert/configuration_wav2vec2_bert.py: defaults hidden 1024, 24 layers, 16 heads,
  intermediate 4096, input 160, swish, eps 1e-5, "relative_key", left 64, right 8, depthwise
  kernel 31, add_adapter false, mask_time_prob 0.05. Fields read here: those, plus
  mask_feature_prob, add_adapter, use_intermediate_ffn_before_adapter, num_adapter_layers (only to
  refuse the adapter: ALARM reads the encoder's hidden states, never the HF adapter's output).
* src/transformers/models/seamless_m4t/feature_extraction_seamless_m4t.py (+ audio_utils.py):
  waveform * 2**15; frames of 400 samples, hop 160, no centering; per frame: DC offset removed,
  pre-emphasis 0.97 (first sample * (1 - 0.97)), povey window (symmetric Hann ** 0.85), 512-point
  FFT, power spectrum, 80 Kaldi-mel filters (1127 ln(1 + f / 700), 20 Hz .. 8 kHz, triangles in
  mel space, no norm), natural log with floor float32 eps (1.192092955078125e-07); each mel bin
  normalized over the utterance's frames (mean, variance with ddof=1, / sqrt(var + 1e-7)); padded
  to an even frame count with `padding_value`; pairs of frames stacked -> 160 channels; a stacked
  frame is attended iff its second frame is real (mask taken at odd frame indices).
* facebook/w2v-bert-2.0's preprocessor_config.json: num_mel_bins 80, stride 2, padding_value 1,
  sampling_rate 16000.

ALARM's facts (github Blinorot/ALARM):
* src/model/audio/feature_extractor_implementations/w2vbert.py: the mono 16 kHz waveform is
  zero-padded by 160 samples on BOTH sides, then the WHOLE recording goes through that feature
  extractor once (its `split_time` of 30 s is computed but never used there): one normalization
  over the whole recording. Length = the attention mask's sum.
* src/model/audio/encoder_implementations/w2vbert.py + base.py: `frame_rate` 50, `max_time` 30 ->
  features and mask are split every 1500 stacked frames; each piece runs
  `AutoModel("facebook/w2v-bert-2.0")(input_features, attention_mask, output_hidden_states=True)`
  and the stacked hidden states [25, B, T_piece, 1024] are concatenated in time. calc_length is
  the identity (no subsampling in the encoder).
* src/configs/model/alarm_ca.yaml: audio_encoder_layers [6, 10, 15, 20, 24]; the adapter is
  downsampler_conformer, norm "layer", encoder_embedding_dim 1024 = adapter_embedding_dim 1024
  (so no `input_proj`).

Rates: 16 kHz / 160 hop = 100 fbank frames per second, stacked by 2 -> 50 encoder frames per
second; the adapter's stride-2 conv halves that to 25 embeddings per second.
Real size (W2V_BERT_2_0): 24 layers x 24,180,288 parameters + 165,184 for the feature projection
= 580,492,096 in the keys the encoder runs with (HF's "580M"), + 1,024 for `masked_spec_embed`
(mask_time_prob 0.05 > 0) = 580,493,120 in the checkpoint (`parameter_count` computes these).

Two equivalences the graphs rely on (tested in models/tests/test_alarm_w2vbert.py):
* the relative-position term is computed as q . E^T over the left + right + 1 rows, then
  gathered per (i, j) distance: the same numbers as HF's einsum over a [T, T, d] table, without
  that table (576 MB per layer at 1500 frames and d = 64 in fp32);
* the only masked frame a single recording can have is its very last stacked frame (an odd fbank
  frame count); the depthwise conv is causal and padded keys get -inf-like scores, so running a
  piece cropped to its real frames gives the real frames' exact outputs (`hidden_states` with
  `length`; the engine crops, the graph needs no mask).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SAMPLE_RATE = 16000
EDGE_PADDING = 160  # samples of zeros ALARM adds on each side before the feature extractor
FRAME_LENGTH = 400
HOP_LENGTH = 160
FFT_LENGTH = 512
N_MELS = 80
STRIDE = 2  # fbank frames stacked per encoder frame
PADDING_VALUE = 1.0  # facebook/w2v-bert-2.0 preprocessor_config.json
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07
MIN_FREQUENCY, MAX_FREQUENCY = 20.0, 8000.0
NORM_EPS = 1e-7
CHUNK_FRAMES = 1500  # ALARM: int(max_time 30 s * frame_rate 50)
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH // STRIDE  # 50 out of the encoder; 25 after the adapter
ALARM_CA_LAYERS = (6, 10, 15, 20, 24)

_ACTIVATIONS = ("swish", "silu")


@dataclass(frozen=True)
class W2VBertConfig:
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    feature_projection_input_dim: int = 160
    layer_norm_eps: float = 1e-5
    left_max_position_embeddings: int = 64
    right_max_position_embeddings: int = 8
    conv_depthwise_kernel_size: int = 31
    # only decides whether the checkpoint holds `masked_spec_embed`
    mask_time_prob: float = 0.05
    mask_feature_prob: float = 0.0

    @classmethod
    def from_hf_config(cls, d: Mapping[str, Any]) -> "W2VBertConfig":
        """Read facebook/w2v-bert-2.0's config.json (HF defaults for missing fields)."""
        position = d.get("position_embeddings_type", "relative_key")
        if position != "relative_key":
            raise ValueError(f"position_embeddings_type {position!r} is not supported (only 'relative_key')")
        act = d.get("hidden_act", "swish")
        if act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act {act!r} is not supported (only swish)")
        if d.get("add_adapter", False):
            raise ValueError("add_adapter=true is not supported (ALARM reads the encoder's hidden states)")
        if d.get("use_intermediate_ffn_before_adapter", False):
            raise ValueError("use_intermediate_ffn_before_adapter=true is not supported")
        cfg = cls(
            hidden_size=int(d.get("hidden_size", 1024)),
            num_hidden_layers=int(d.get("num_hidden_layers", 24)),
            num_attention_heads=int(d.get("num_attention_heads", 16)),
            intermediate_size=int(d.get("intermediate_size", 4096)),
            feature_projection_input_dim=int(d.get("feature_projection_input_dim", 160)),
            layer_norm_eps=float(d.get("layer_norm_eps", 1e-5)),
            left_max_position_embeddings=int(d.get("left_max_position_embeddings", 64)),
            right_max_position_embeddings=int(d.get("right_max_position_embeddings", 8)),
            conv_depthwise_kernel_size=int(d.get("conv_depthwise_kernel_size", 31)),
            mask_time_prob=float(d.get("mask_time_prob", 0.05)),
            mask_feature_prob=float(d.get("mask_feature_prob", 0.0)),
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                             f"{self.num_attention_heads}")
        if self.conv_depthwise_kernel_size % 2 == 0:
            raise ValueError(f"conv_depthwise_kernel_size {self.conv_depthwise_kernel_size} must be odd")
        if self.feature_projection_input_dim != N_MELS * STRIDE:
            raise ValueError(f"feature_projection_input_dim {self.feature_projection_input_dim} is not "
                             f"{N_MELS} mel bins x stride {STRIDE}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_distances(self) -> int:
        return self.left_max_position_embeddings + self.right_max_position_embeddings + 1


# facebook/w2v-bert-2.0 config.json (the fields this module reads; HF's class defaults agree)
W2V_BERT_2_0_HF = {
    "model_type": "wav2vec2-bert", "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
    "intermediate_size": 4096, "feature_projection_input_dim": 160, "hidden_act": "swish",
    "layer_norm_eps": 1e-5, "position_embeddings_type": "relative_key", "left_max_position_embeddings": 64,
    "right_max_position_embeddings": 8, "conv_depthwise_kernel_size": 31, "add_adapter": False,
    "use_intermediate_ffn_before_adapter": False, "mask_time_prob": 0.05, "mask_feature_prob": 0.0,
}
W2V_BERT_2_0 = W2VBertConfig.from_hf_config(W2V_BERT_2_0_HF)


def ignored_checkpoint_keys(cfg: W2VBertConfig) -> Dict[str, Tuple[int, ...]]:
    """Keys of HF's Wav2Vec2BertModel that never run in ALARM (SpecAugment's mask vector)."""
    if cfg.mask_time_prob > 0 or cfg.mask_feature_prob > 0:
        return {"masked_spec_embed": (cfg.hidden_size,)}
    return {}


def parameter_count(cfg: W2VBertConfig) -> Dict[str, int]:
    """Parameters from the config alone: per layer, feature projection, loaded total, state dict."""
    h, i, k = cfg.hidden_size, cfg.intermediate_size, cfg.conv_depthwise_kernel_size
    norm = 2 * h
    ffn = h * i + i + i * h + h
    attention = 4 * (h * h + h) + cfg.num_distances * cfg.head_size
    conv = norm + 2 * h * h + h * k + norm + h * h
    layer = norm + ffn + norm + attention + conv + norm + ffn + norm
    projection = 2 * cfg.feature_projection_input_dim + cfg.feature_projection_input_dim * h + h
    loaded = cfg.num_hidden_layers * layer + projection
    ignored = sum(math.prod(s) for s in ignored_checkpoint_keys(cfg).values())
    return {"layer": layer, "feature_projection": projection, "encoder": loaded, "state_dict": loaded + ignored}


# ---------------------------------------------------------------------------------------------
# Features (SeamlessM4TFeatureExtractor as configured for w2v-bert-2.0), float64 throughout


def povey_window(length: int = FRAME_LENGTH) -> Tensor:
    """Kaldi's povey window: the symmetric Hann window to the power 0.85."""
    n = torch.arange(length, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))) ** 0.85


def kaldi_mel(freq: Tensor) -> Tensor:
    return 1127.0 * torch.log1p(freq / 700.0)


def kaldi_mel_filters(n_mels: int = N_MELS, n_fft: int = FFT_LENGTH, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """[n_mels, n_fft // 2 + 1] triangles in Kaldi-mel space, edges evenly spaced from 20 Hz to
    the Nyquist frequency, no normalization."""
    edges = torch.linspace(float(kaldi_mel(torch.tensor(MIN_FREQUENCY, dtype=torch.float64))),
                           float(kaldi_mel(torch.tensor(sample_rate / 2, dtype=torch.float64))),
                           n_mels + 2, dtype=torch.float64)
    bins = kaldi_mel(torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - left) / (centre - left)
    falling = (right - bins) / (right - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def log_mel_fbank(wave: Tensor) -> Tensor:
    """Kaldi-style log-mel fbank of a 16 kHz waveform in [-1, 1] -> float64 [frames, 80]."""
    if wave.dim() != 1 or wave.numel() < FRAME_LENGTH:
        raise ValueError(f"expected a 1-D waveform of at least {FRAME_LENGTH} samples, got {tuple(wave.shape)}")
    frames = (wave.to(torch.float64) * 32768.0).unfold(0, FRAME_LENGTH, HOP_LENGTH)  # [N, 400]
    frames = frames - frames.mean(dim=1, keepdim=True)
    emphasized = torch.cat([frames[:, :1] * (1 - PREEMPHASIS), frames[:, 1:] - PREEMPHASIS * frames[:, :-1]], dim=1)
    spectrum = torch.fft.rfft(emphasized * povey_window(), n=FFT_LENGTH)
    power = spectrum.real ** 2 + spectrum.imag ** 2  # [N, 257]
    mel = power @ kaldi_mel_filters().T
    return torch.log(torch.clamp(mel, min=MEL_FLOOR))


def normalize_per_bin(fbank: Tensor) -> Tensor:
    """Zero mean, unit variance (ddof=1, +1e-7 under the root) per mel bin over all frames."""
    if fbank.shape[0] < 2:
        raise ValueError("at least two fbank frames are needed (ddof=1 variance)")
    mean = fbank.mean(dim=0, keepdim=True)
    var = fbank.var(dim=0, unbiased=True, keepdim=True)
    return (fbank - mean) / torch.sqrt(var + NORM_EPS)


def stack_frames(fbank: Tensor) -> Tuple[Tensor, Tensor]:
    """[N, 80] -> ([ceil(N / 2), 160] with an odd N padded by a frame of PADDING_VALUE,
    attention mask [ceil(N / 2)] taken at the odd frame indices)."""
    n = fbank.shape[0]
    pad = n % STRIDE
    mask = torch.ones(n + pad, dtype=torch.int64)
    if pad:
        fbank = torch.cat([fbank, torch.full((pad, fbank.shape[1]), PADDING_VALUE, dtype=fbank.dtype)])
        mask[n:] = 0
    return fbank.reshape(-1, fbank.shape[1] * STRIDE), mask[1::STRIDE]


def w2vbert_features(wave: Tensor) -> Tuple[Tensor, int]:
    """ALARM's w2v-BERT features of a mono 16 kHz waveform: (float32 [T, 160], attended frames).
    T = ceil(N / 2) for N fbank frames of the 160-sample-padded waveform; length = N // 2."""
    if wave.dim() != 1 or wave.numel() == 0:
        raise ValueError("expected a non-empty 1-D waveform")
    padded = F.pad(wave.to(torch.float32), (EDGE_PADDING, EDGE_PADDING))
    features, mask = stack_frames(normalize_per_bin(log_mel_fbank(padded)))
    return features.to(torch.float32), int(mask.sum())


def feature_frames(n_samples: int) -> Tuple[int, int]:
    """(stacked frames T, attended frames) for a waveform of n samples (>= 240)."""
    n = 1 + (n_samples + 2 * EDGE_PADDING - FRAME_LENGTH) // HOP_LENGTH
    return -(-n // STRIDE), n // STRIDE


def encoder_frames(cfg: W2VBertConfig, real_length: int) -> int:
    """ALARM's calc_length for w2v-BERT: the encoder keeps the frame count (50 per second)."""
    del cfg  # no subsampling for any configuration
    return real_length


# ---------------------------------------------------------------------------------------------
# The encoder (HF key names)


class FeatureProjection(nn.Module):
    def __init__(self, cfg: W2VBertConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(cfg.feature_projection_input_dim, eps=cfg.layer_norm_eps)
        self.projection = nn.Linear(cfg.feature_projection_input_dim, cfg.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(self.layer_norm(x))


class FeedForward(nn.Module):
    def __init__(self, cfg: W2VBertConfig) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.output_dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_dense(F.silu(self.intermediate_dense(x)))


class ConvolutionModule(nn.Module):
    """LayerNorm, 1x1 conv + GLU, causal depthwise conv, LayerNorm, swish, 1x1 conv."""

    def __init__(self, cfg: W2VBertConfig) -> None:
        super().__init__()
        h, k = cfg.hidden_size, cfg.conv_depthwise_kernel_size
        self.layer_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.pointwise_conv1 = nn.Conv1d(h, 2 * h, kernel_size=1, bias=False)
        self.depthwise_conv = nn.Conv1d(h, h, kernel_size=k, groups=h, bias=False)
        self.depthwise_layer_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.pointwise_conv2 = nn.Conv1d(h, h, kernel_size=1, bias=False)

    def forward(self, x: Tensor, frame_mask: Optional[Tensor] = None) -> Tensor:
        """x [B, T, H]; frame_mask [B, T] (1 = real) zeroes padded frames before the convs."""
        x = self.layer_norm(x)
        if frame_mask is not None:
            x = x.masked_fill(~frame_mask.bool().unsqueeze(-1), 0.0)
        x = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)
        x = self.depthwise_conv(F.pad(x, (self.depthwise_conv.kernel_size[0] - 1, 0)))
        x = F.silu(self.depthwise_layer_norm(x.transpose(1, 2)).transpose(1, 2))
        return self.pointwise_conv2(x).transpose(1, 2)


def relative_distance_index(length: int, left: int, right: int, device: Optional[torch.device] = None) -> Tensor:
    """[T, T] row of distance_embedding for query i, key j: clamp(j - i, -left, right) + left."""
    positions = torch.arange(length, device=device)
    return torch.clamp(positions[None, :] - positions[:, None], -left, right) + left


def pick_distances(per_distance: Tensor, index: Tensor) -> Tensor:
    """[B, h, T, D] scores per distance row + [T, T] rows -> [B, h, T, T], out[..., i, j] =
    per_distance[..., i, index[i, j]]. One flat 1-D gather (row i's entries start at i * D), so
    the graph holds a [T * T] index, not one expanded to every batch and head."""
    b, h, t, d = per_distance.shape
    flat = (torch.arange(t, device=index.device)[:, None] * d + index).reshape(-1)
    return per_distance.reshape(b, h, t * d).index_select(2, flat).view(b, h, t, t)


class SelfAttention(nn.Module):
    """Multi-head attention with Shaw-style relative keys ("relative_key")."""

    def __init__(self, cfg: W2VBertConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.num_heads, self.head_size = cfg.num_attention_heads, cfg.head_size
        self.left, self.right = cfg.left_max_position_embeddings, cfg.right_max_position_embeddings
        self.linear_q = nn.Linear(h, h)
        self.linear_k = nn.Linear(h, h)
        self.linear_v = nn.Linear(h, h)
        self.linear_out = nn.Linear(h, h)
        self.distance_embedding = nn.Embedding(cfg.num_distances, self.head_size)

    def _heads(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_size).transpose(1, 2)

    def forward(self, x: Tensor, key_bias: Optional[Tensor] = None, distance_index: Optional[Tensor] = None) -> Tensor:
        """x [B, T, H]; key_bias [B, 1, 1, T] (0 or a large negative number per key);
        distance_index [T, T] (`relative_distance_index`, computed here when not given)."""
        q, k, v = self._heads(self.linear_q(x)), self._heads(self.linear_k(x)), self._heads(self.linear_v(x))
        scale = 1.0 / math.sqrt(self.head_size)
        scores = torch.matmul(q, k.transpose(-2, -1)) * scale
        # q . E for each of the left + right + 1 distances, then picked per (query, key) pair.
        # Written E @ q^T (table first): in the graph the constant is MatMul's first input, so
        # the int4 export (which swaps MatMul(x, constant W) of Linear layers) leaves it fp32.
        table = self.distance_embedding.weight.to(q.dtype)
        per_distance = torch.matmul(table, q.transpose(-2, -1)).transpose(-2, -1)  # [B, h, T, D]
        if distance_index is None:
            distance_index = relative_distance_index(x.shape[1], self.left, self.right, x.device)
        relative = pick_distances(per_distance, distance_index)
        scores = scores + relative * scale
        if key_bias is not None:
            scores = scores + key_bias
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.linear_out(context.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class ConformerLayer(nn.Module):
    def __init__(self, cfg: W2VBertConfig) -> None:
        super().__init__()
        h, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.ffn1_layer_norm = nn.LayerNorm(h, eps=eps)
        self.ffn1 = FeedForward(cfg)
        self.self_attn_layer_norm = nn.LayerNorm(h, eps=eps)
        self.self_attn = SelfAttention(cfg)
        self.conv_module = ConvolutionModule(cfg)
        self.ffn2_layer_norm = nn.LayerNorm(h, eps=eps)
        self.ffn2 = FeedForward(cfg)
        self.final_layer_norm = nn.LayerNorm(h, eps=eps)

    def forward(self, x: Tensor, frame_mask: Optional[Tensor] = None, key_bias: Optional[Tensor] = None,
                distance_index: Optional[Tensor] = None) -> Tensor:
        x = x + 0.5 * self.ffn1(self.ffn1_layer_norm(x))
        x = x + self.self_attn(self.self_attn_layer_norm(x), key_bias, distance_index)
        x = x + self.conv_module(x, frame_mask)
        x = x + 0.5 * self.ffn2(self.ffn2_layer_norm(x))
        return self.final_layer_norm(x)


class ConformerStack(nn.Module):
    """HF's `Wav2Vec2BertEncoder`: only `layers` holds weights ("relative_key" has no table)."""

    def __init__(self, cfg: W2VBertConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.num_hidden_layers))


class W2VBertEncoder(nn.Module):
    """HF `Wav2Vec2BertModel` without SpecAugment's `masked_spec_embed` (see
    `ignored_checkpoint_keys`): keys `feature_projection.*`, `encoder.layers.N.*`."""

    def __init__(self, cfg: W2VBertConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.feature_projection = FeatureProjection(cfg)
        self.encoder = ConformerStack(cfg)

    def forward(self, features: Tensor, layers: Sequence[int], frame_mask: Optional[Tensor] = None) -> Tensor:
        """One piece [B, T, 160] (+ mask [B, T], 1 = real) -> HF-indexed hidden states
        [len(layers), B, T, H]; runs only the layers the deepest index needs."""
        n_layers = self.cfg.num_hidden_layers
        if not layers or any(i < 0 or i > n_layers for i in layers):
            raise ValueError(f"hidden-state indexes must be within 0..{n_layers}, got {list(layers)}")
        x = self.feature_projection(features)
        key_bias = None
        if frame_mask is not None:
            x = x.masked_fill(~frame_mask.bool().unsqueeze(-1), 0.0)
            key_bias = (1.0 - frame_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        # one [T, T] distance index for every layer (the graph computes it once, not per layer)
        distance_index = relative_distance_index(x.shape[1], self.cfg.left_max_position_embeddings,
                                                 self.cfg.right_max_position_embeddings, x.device)
        wanted = set(layers)
        states = {0: x} if 0 in wanted else {}
        for i, layer in enumerate(self.encoder.layers[: max(layers)], start=1):
            x = layer(x, frame_mask, key_bias, distance_index)
            if i in wanted:
                states[i] = x
        return torch.stack([states[i] for i in layers])



def load_w2vbert_state(enc: W2VBertEncoder, state: Mapping[str, Tensor]) -> None:
    """Strict load of the keys below ALARM's `model.audio_encoder.encoders.w2vbert.encoder.`:
    every encoder key with its shape; `ignored_checkpoint_keys` accepted (shape checked) and
    dropped; anything else, a missing key or a wrong shape raises ValueError naming the key."""
    expected = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    ignored = ignored_checkpoint_keys(enc.cfg)
    for name, value in state.items():
        want = expected.get(name, ignored.get(name))
        if want is None:
            raise ValueError(f"unexpected w2v-BERT key {name!r}")
        if tuple(value.shape) != want:
            raise ValueError(f"w2v-BERT key {name!r} has shape {tuple(value.shape)}, expected {want}")
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"missing w2v-BERT keys: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    enc.load_state_dict({k: state[k] for k in expected}, strict=True)


@torch.no_grad()
def hidden_states(enc: W2VBertEncoder, features: Tensor, layers: Sequence[int] = ALARM_CA_LAYERS,
                  length: Optional[int] = None) -> Tensor:
    """ALARM's per-chunk run: features [1, T, 160] (or [T, 160]) cut every 1500 frames, each
    piece encoded with its attention mask (frames >= `length` masked; None: all real), hidden
    states concatenated in time -> [len(layers), 1, T, H]."""
    if features.dim() == 2:
        features = features.unsqueeze(0)
    if features.dim() != 3 or features.shape[0] != 1:
        raise ValueError(f"expected features [1, T, 160], got {tuple(features.shape)}")
    total = features.shape[1]
    mask = torch.ones(1, total, dtype=torch.int64)
    if length is not None:
        mask[:, length:] = 0
    pieces: List[Tensor] = []
    for piece, piece_mask in zip(features.split(CHUNK_FRAMES, dim=1), mask.split(CHUNK_FRAMES, dim=1)):
        pieces.append(enc(piece, layers, None if bool(piece_mask.all()) else piece_mask))
    return torch.cat(pieces, dim=-2)
