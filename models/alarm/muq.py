"""MuQ (OpenMuQ/MuQ-large-msd-iter) as ALARM-CA uses it: 24 kHz waveform in 30 s chunks -> log-mel
-> 2-D conv subsampling -> 12-layer Wav2Vec2-Conformer, hidden states [4, 8, 12].

Facts from github tencent-ailab/MuQ (src/muq/muq/):
* muq.py: `MuQ` (a PyTorchModelHubMixin) holds `self.model = MuQModel(...)`, so every checkpoint key
  starts `model.`. `MuQ.forward(x, attention_mask, output_hidden_states)` calls
  `model.get_predictions(x, attention_mask=..., is_features_only=True)` and returns its hidden
  states. `MuQConfig` (= the fields of the HF config.json of OpenMuQ/MuQ-large-msd-iter):
  label_rate, num_codebooks, codebook_dim, codebook_size, features, hop_length, n_mels, conv_dim,
  encoder_dim, encoder_depth, mask_hop, mask_prob, is_flash, stat, w2v2_config, use_rvq_target,
  use_vq_target, use_encodec_target, rvq_ckpt_path, recon_loss_ratio, resume_checkpoint,
  rvq_n_codebooks, rvq_multi_layer_num (MuQConfig(**config) rejects anything else).
* models/muq_model.py, `get_predictions`: `preprocessing` = MelSTFT(n_fft=2048, hop_length, is_db=True)
  of the float waveform with its LAST frame dropped (`[..., :-1]`); `normalize` =
  (mel - stat["melspec_2048_mean"]) / stat["melspec_2048_std"] (two scalars); `encoder` =
  `self.conv` (Conv2dSubsampling(1, conv_dim, encoder_dim, strides=[2, 2] for n_fold = 100 //
  label_rate = 4, n_bands=n_mels)) then `self.conformer` (transformers' Wav2Vec2ConformerEncoder
  built from `w2v2_config` with num_hidden_layers = encoder_depth and hidden_size = encoder_dim;
  `is_flash` would import `modules.flash_conformer` by an absolute path that the pip package
  cannot resolve, so the released model runs transformers' encoder). With an attention mask, the
  sample mask is taken every `int(mask_len / frames)` = 960th sample and cut to the frame count.
  `self.linear` (encoder_dim -> codebook_size logits) runs on the last state but its logits are
  discarded by MuQ.forward; `cls_token`, the quantizer (`quantizer_melspec_2048`: a
  RandomProjectionQuantizer's buffers `random_projection`, `codebook`) or, with
  use_rvq_target / use_vq_target, `rvq` (modules/rvq.py: ResidualVectorQuantize of VectorQuantize
  with `torch.nn.utils.weight_norm` 1x1 convs in_proj/out_proj, `codebook` Embedding and a
  `stale_counter` buffer), and `recon_proj` (only when recon_loss_ratio > 0) never run.
* modules/features.py: `MelSTFT` is a plain class (not an nn.Module), so its window and filter
  bank are NOT in the state dict. It wraps torchaudio.transforms.MelSpectrogram(sample_rate=24000,
  n_fft=2048, hop_length=240, n_mels=128) (torchaudio defaults: win_length = n_fft, periodic Hann
  window, center=True with reflect padding, power 2, onesided, f_min 0, f_max = sr/2, HTK mel
  scale, norm None) and AmplitudeToDB() (stype "power": 10 * log10(max(x, 1e-10)), reference 1,
  top_db None: no clamping). n_mels is NOT passed to MelSTFT: it is always 128.
* modules/conv.py: Res2dModule(i, o, stride) = relu(bn2(conv2(relu(bn1(conv1(x))))) + bn3(conv3(x)))
  with 3x3 convs (padding 1; conv1 and conv3 strided; conv3/bn3 only when i != o or stride[0] > 1);
  Conv2dSubsampling = conv.0 = Res2d(1, conv_dim, (2, 2)), conv.1 = Res2d(conv_dim, conv_dim,
  (2, 2)) over [B, 1, mel, time], then "b c f t -> b t (c f)" and `linear` (conv_dim * n_mels / 4
  -> encoder_dim). Time and frequency are both divided by 4.

Facts from transformers' models/wav2vec2_conformer/modeling_wav2vec2_conformer.py (the encoder):
* Wav2Vec2ConformerEncoder.forward: with a mask, padded frames of the input are set to 0 and the
  attention scores get (1 - mask) * finfo(float32).min on masked KEYS; rotary tables from
  `embed_positions.inv_freq` (a persistent buffer: in the state dict) = 1 / base^(2i / head_dim);
  hidden_states[i] = input of layer i (i < depth), hidden_states[depth] = `layer_norm` (eps
  layer_norm_eps) of the last layer's output. `pos_conv_embed` (a weight-normed grouped conv) is
  built but NEVER called: its keys are checkpoint-only.
* Wav2Vec2ConformerSelfAttention (rotary): the rotation is applied to the layer's INPUT (viewed as
  heads, halves rotated: x * cos + cat(-x2, x1) * sin) before linear_q and linear_k; values use
  the unrotated input; scores / sqrt(head_dim); softmax; linear_out.
* Wav2Vec2ConformerEncoderLayer: x + 0.5 * ffn1(ffn1_layer_norm(x)); + self_attn(
  self_attn_layer_norm(.)); + conv_module(.); + 0.5 * ffn2(ffn2_layer_norm(.)); final_layer_norm.
  FeedForward = output_dense(act(intermediate_dense)); act = hidden_act "swish" (SiLU). The
  ConvolutionModule = layer_norm, pointwise_conv1 (D -> 2D, no bias), GLU over channels,
  depthwise_conv (kernel 31, padding 15, no bias), batch_norm (BatchNorm1d, running stats), act,
  pointwise_conv2 (no bias); it ignores the attention mask, so padded frames (zero only at the
  input) reach real frames through the depthwise conv in later layers: faithful here too.
  Layer norms inside layers use torch's default eps 1e-5.

Facts from github Blinorot/ALARM (src/model/audio/):
* feature_extractor_implementations/muq.py: audio at another rate goes through
  `torchaudio.transforms.Resample(sr, 24000)` with its defaults; then zero-padded at the end to a
  multiple of 30 s (720000 samples); attention mask 1 on the real samples; length = real samples.
* encoder_implementations/muq.py: MuQEncoder(max_time=30, frame_rate=25, sample_rate=24000): the
  waveform and mask are split into 720000-sample chunks, each run through
  `MuQ.from_pretrained("OpenMuQ/MuQ-large-msd-iter")(chunk, attention_mask=mask,
  output_hidden_states=True)`, hidden states stacked [13, B, 750, 1024] and concatenated in time;
  calc_length = samples // (24000 // 25) = samples // 960.
* configs/model/alarm_ca.yaml: muq adapter "mlp", audio_encoder_layers [4, 8, 12] (indexes of the
  13 hidden states: outputs of layers 4 and 8, and the final layer_norm of layer 12's output, so
  all 12 layers and the final LayerNorm run),
  encoder_embedding_dim 1024, hidden_dim 1024: only the weighted layer average is per-chunk work
  that belongs in the encoder graph (adapter.py has the MLP itself).

The resampler Hark's browser must reproduce (ALARM hands 16 kHz audio to Resample(16000, 24000)):
torchaudio's windowed-sinc resampler with lowpass_filter_width 6, rolloff 0.99, Hann window
("sinc_interp_hann"; torchaudio <= 0.13 calls it "sinc_interpolation"), beta unused. With
gcd 8000: orig 2, new 3, base_freq = 2 * 0.99, width = ceil(6 * 2 / 1.98) = 7 input samples each
side; for output phase j (0..2) and tap k (0..15): t = (k - 7) / 2 - j / 3, scaled by base_freq,
clamped to [-6, 6]; kernel = sinc(pi t) * cos(pi t / 12)^2 * base_freq / 2; the input is zero-
padded by 7 before and 9 after, convolved with stride 2, the 3 phases interleaved, and cut to
ceil(3 n / 2) samples. `resample_16k_to_24k` calls torchaudio itself (ALARM's exact function);
`sinc_resample_reference` is the written-out float64 form of the above (the browser's spec), and
tests/test_alarm_muq.py checks that the two agree (torchaudio 0.13 here; ALARM's 2.x computes the
same kernel: float64 taps, cast to float32).

Mel front end in the chunk graph (choice): the graph takes the RAW 24 kHz waveform. onnxruntime-web
1.30's WebGPU EP has no STFT kernel (node_modules/onnxruntime-web/docs/webgpu-operators.md lists
DFT but not STFT) and torch.onnx cannot export torch.stft's complex output, so the spectrogram is
written as plain ops: reflect padding by index Gather, framing by
reshaping into hop-sized blocks and concatenating ceil(n_fft / hop) shifted block views (Slice,
Concat), one MatMul with a fixed [n_fft, 2 * (n_fft / 2 + 1)] Hann-windowed cos/sin basis, squares,
a MatMul with the [n_fft / 2 + 1, 128] HTK filter bank, Clip + Log (dB), the two scalar stats. All
are ops both the wasm and WebGPU EPs run; it costs ~25 GFLOP per 30 s chunk, small next to the
conv stem (~0.8 TFLOP: its 512-channel 3x3 conv on the 64 x 1500 map alone is 0.45 TFLOP) and
the conformer (~0.45 TFLOP). The basis and filter bank are non-persistent buffers (MuQ's own
MelSTFT is not in the state dict). test_alarm_muq.py checks this path against torchaudio's
MelSpectrogram + AmplitudeToDB (torch.stft) and the exported graph's op types against that WebGPU
list. Measured on a 30 s chunk of music-like audio + silence: max |difference| 4.6e-4 of the
normalised mel (0.009 dB), mean 9e-7; exact (-100 dB) on the zero padding. Taking the waveform (not the mel) keeps ALARM's exact resampled samples as the only thing
the browser computes outside the graph.

Chunk graph inputs: the waveform chunk and the frame mask ALARM's attention mask becomes
(frame t of a chunk holding n real samples is real iff 960 t < n, i.e. the first ceil(n / 960)
frames); for every chunk but the last it is all ones. Without it the last chunk would not equal
ALARM's output (padded keys are masked out of attention).

Real model (MUQ_LARGE_MSD_ITER): 24 kHz, hop 240 (100 mel frames/s), 128 mels, conv_dim 512,
encoder_dim 1024, 12 layers, 16 heads, ffn 4096, depthwise kernel 31, rotary base 10000 ->
25 frames/s out of the encoder (750 per 30 s chunk) and 25 embeddings/s after ALARM's MLP adapter
(which keeps the frame rate). State-dict elements that run (`MuQEncoder`, BatchNorm statistics
included): 316,374,066 = conv stem 26,240,006 + conformer 290,134,060 (~316 M; the third-party
f32 GGUF of this model, 1,266,066,144 bytes, holds these plus the 133,248 front-end floats and
its header); with the checkpoint-only keys below 329,242,034. `parameter_count` computes them.

Not reproducible exactly from public sources (reported): OpenMuQ/MuQ-large-msd-iter's config.json
is not readable here. The conformer fields, the stats (mean 6.768444971712967, std
18.417922652295623) and use_rvq_target / rvq_n_codebooks 8 below come from MuQ's fairseq training
config defaults and a third-party MuQ RVQ tokenizer (which requires use_rvq_target and a `rvq`);
they only change `ignored_checkpoint_keys`, except the stats and the conformer sizes, which
`from_hf_config` reads from the real config.json when the bundle builder has it. The weight-norm
names of the unused `pos_conv_embed` depend on the transformers/torch that saved ALARM's
checkpoint: newer (torch.nn.utils.parametrizations) names are listed, the legacy weight_g/weight_v
pair is in `LEGACY_POS_CONV_KEYS`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

SAMPLE_RATE = 24000
INPUT_SAMPLE_RATE = 16000
CHUNK_SECONDS = 30
CHUNK_SAMPLES = SAMPLE_RATE * CHUNK_SECONDS  # 720000
ALARM_FRAME_RATE = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // ALARM_FRAME_RATE  # 960: ALARM's length factor and MuQ's mask stride
N_FFT = 2048
N_MELS = 128
AMPLITUDE_FLOOR = 1e-10  # AmplitudeToDB's amin
RESAMPLE_PARAMS: Dict[str, Any] = {
    "orig_freq": INPUT_SAMPLE_RATE, "new_freq": SAMPLE_RATE, "lowpass_filter_width": 6,
    "rolloff": 0.99, "window": "hann (sinc_interp_hann)",
}
ALARM_LAYERS = (4, 8, 12)

_TOP_LEVEL = ("label_rate", "num_codebooks", "codebook_dim", "codebook_size", "features", "hop_length",
              "n_mels", "conv_dim", "encoder_dim", "encoder_depth", "mask_hop", "mask_prob", "is_flash",
              "stat", "w2v2_config", "use_rvq_target", "use_vq_target", "use_encodec_target", "rvq_ckpt_path",
              "recon_loss_ratio", "resume_checkpoint", "rvq_n_codebooks", "rvq_multi_layer_num")


@dataclass(frozen=True)
class MuQConfig:
    """The fields of MuQ's config.json that shape the encoder or its checkpoint keys."""

    label_rate: int = 25
    num_codebooks: int = 1
    codebook_dim: int = 16
    codebook_size: int = 4096
    hop_length: int = 240
    n_mels: int = N_MELS
    conv_dim: int = 512
    encoder_dim: int = 1024
    encoder_depth: int = 12
    stat_mean: float = 6.768444971712967
    stat_std: float = 18.417922652295623
    use_rvq_target: bool = False
    use_vq_target: bool = False
    recon_loss_ratio: Optional[float] = None
    rvq_n_codebooks: int = 8
    rvq_multi_layer_num: int = 1
    # w2v2_config (transformers' Wav2Vec2ConformerConfig fields that matter at inference)
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    conv_depthwise_kernel_size: int = 31
    rotary_embedding_base: float = 10000.0
    layer_norm_eps: float = 1e-5
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16

    @property
    def n_fold(self) -> int:
        return 100 // self.label_rate

    @property
    def head_dim(self) -> int:
        return self.encoder_dim // self.num_attention_heads

    @classmethod
    def from_hf_config(cls, d: Mapping[str, Any]) -> "MuQConfig":
        """MuQ's config.json (MuQConfig's fields, `stat` and `w2v2_config` nested) -> MuQConfig."""
        for key in d:
            if key not in _TOP_LEVEL:
                raise ValueError(f"unknown MuQ config field {key!r}")
        w2v2 = dict(d.get("w2v2_config") or {})
        stat = dict(d.get("stat") or {})
        for key in ("melspec_2048_mean", "melspec_2048_std"):
            if key not in stat:
                raise ValueError(f"MuQ config field 'stat' lacks {key!r}")
        checks = {
            "features": (list(d.get("features", ["melspec_2048"])) == ["melspec_2048"], "only ['melspec_2048']"),
            "n_mels": (int(d.get("n_mels", N_MELS)) == N_MELS, "MelSTFT always makes 128 mels"),
            "label_rate": (int(d.get("label_rate", 25)) == ALARM_FRAME_RATE, "ALARM assumes 25 Hz"),
            "is_flash": (not d.get("is_flash", False), "flash_conformer is not importable from the package"),
            "use_encodec_target": (not d.get("use_encodec_target", False), "an Encodec target model"),
            "w2v2_config.position_embeddings_type": (w2v2.get("position_embeddings_type", "rotary") == "rotary",
                                                     "only rotary"),
            "w2v2_config.hidden_act": (w2v2.get("hidden_act", "swish") in ("swish", "silu"), "only swish"),
            "w2v2_config.conv_depthwise_kernel_size": (int(w2v2.get("conv_depthwise_kernel_size", 31)) % 2 == 1,
                                                       "must be odd"),
        }
        for field, (ok, why) in checks.items():
            if not ok:
                raise ValueError(f"unsupported MuQ config field {field!r}: {why}")
        cfg = cls(
            label_rate=int(d.get("label_rate", 25)), num_codebooks=int(d.get("num_codebooks", 1)),
            codebook_dim=int(d.get("codebook_dim", 16)), codebook_size=int(d.get("codebook_size", 4096)),
            hop_length=int(d.get("hop_length", 240)), n_mels=int(d.get("n_mels", N_MELS)),
            conv_dim=int(d.get("conv_dim", 512)), encoder_dim=int(d.get("encoder_dim", 1024)),
            encoder_depth=int(d.get("encoder_depth", 12)),
            stat_mean=float(stat["melspec_2048_mean"]), stat_std=float(stat["melspec_2048_std"]),
            use_rvq_target=bool(d.get("use_rvq_target", False)), use_vq_target=bool(d.get("use_vq_target", False)),
            recon_loss_ratio=None if d.get("recon_loss_ratio") is None else float(d["recon_loss_ratio"]),
            rvq_n_codebooks=int(d.get("rvq_n_codebooks", 8)), rvq_multi_layer_num=int(d.get("rvq_multi_layer_num", 1)),
            num_attention_heads=int(w2v2.get("num_attention_heads", 16)),
            intermediate_size=int(w2v2.get("intermediate_size", 4096)),
            conv_depthwise_kernel_size=int(w2v2.get("conv_depthwise_kernel_size", 31)),
            rotary_embedding_base=float(w2v2.get("rotary_embedding_base", 10000)),
            layer_norm_eps=float(w2v2.get("layer_norm_eps", 1e-5)),
            num_conv_pos_embeddings=int(w2v2.get("num_conv_pos_embeddings", 128)),
            num_conv_pos_embedding_groups=int(w2v2.get("num_conv_pos_embedding_groups", 16)),
        )
        if cfg.encoder_dim % cfg.num_attention_heads or cfg.head_dim % 2:
            raise ValueError("unsupported MuQ config field 'w2v2_config.num_attention_heads': "
                             "encoder_dim / heads must be an even integer")
        if cfg.hop_length * cfg.n_fold != SAMPLES_PER_FRAME:
            raise ValueError(f"unsupported MuQ config field 'hop_length': {cfg.hop_length} * 4 != 960")
        return cfg


# See the module docstring for where each number comes from.
MUQ_LARGE_MSD_ITER = MuQConfig.from_hf_config({
    "label_rate": 25, "num_codebooks": 1, "codebook_dim": 16, "codebook_size": 4096,
    "features": ["melspec_2048"], "hop_length": 240, "n_mels": 128, "conv_dim": 512, "encoder_dim": 1024,
    "encoder_depth": 12, "is_flash": False, "use_rvq_target": True, "rvq_n_codebooks": 8,
    "rvq_multi_layer_num": 1,
    "stat": {"melspec_2048_cnt": 14282760192, "melspec_2048_mean": 6.768444971712967,
             "melspec_2048_std": 18.417922652295623},
    "w2v2_config": {"num_attention_heads": 16, "intermediate_size": 4096, "hidden_act": "swish",
                    "conv_depthwise_kernel_size": 31, "position_embeddings_type": "rotary",
                    "rotary_embedding_base": 10000, "layer_norm_eps": 1e-5, "num_conv_pos_embeddings": 128,
                    "num_conv_pos_embedding_groups": 16},
})


# ---------------------------------------------------------------------------------------------
# Features (ALARM's MuQFeatureExtractor)


def resample_16k_to_24k(wave: Tensor) -> Tensor:
    """ALARM's resampler: torchaudio.transforms.Resample(16000, 24000) with its defaults."""
    return torchaudio.transforms.Resample(INPUT_SAMPLE_RATE, SAMPLE_RATE)(wave)


def sinc_resample_kernel(orig: int = 2, new: int = 3, zeros: int = 6, rolloff: float = 0.99) -> Tuple[Tensor, int]:
    """The windowed-sinc filters of Resample(16000, 24000) (rates reduced by their gcd to 2 -> 3),
    float64 [new, 2 * width + orig] and the width: phase j, tap k weighs input 2 m + k - width
    for output 3 m + j. The written-out form the browser ports (ALARM itself calls torchaudio)."""
    base = min(orig, new) * rolloff
    width = math.ceil(zeros * orig / base)
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    phases = -torch.arange(new, dtype=torch.float64)[:, None] / new
    t = ((phases + taps[None, :]) * base).clamp(-zeros, zeros)
    window = torch.cos(t * math.pi / zeros / 2) ** 2
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * t))
    return sinc * window * base / orig, width


def sinc_resample_reference(wave: Tensor) -> Tensor:
    """16 -> 24 kHz in float64 with `sinc_resample_kernel`: zero-pad by width before and
    width + 2 after, each phase's dot product every 2 inputs, phases interleaved, ceil(3 n / 2) kept."""
    kernel, width = sinc_resample_kernel()
    new, orig = kernel.shape[0], 2
    padded = F.pad(wave.to(torch.float64), (width, width + orig))
    windows = padded.unfold(0, kernel.shape[1], orig)  # [m, taps]
    out = (windows @ kernel.T).reshape(-1)  # [m * new], phase-interleaved
    return out[: math.ceil(new * wave.numel() / orig)]


def muq_features(wave: Tensor) -> Tuple[Tensor, int]:
    """Mono 16 kHz waveform [n] -> (24 kHz waveform zero-padded to a multiple of 30 s, real
    24 kHz samples), as ALARM's MuQFeatureExtractor hands them to the encoder."""
    if wave.dim() != 1 or wave.numel() == 0:
        raise ValueError("expected a non-empty 1-D waveform")
    audio = resample_16k_to_24k(wave.to(torch.float32)[None])[0]
    length = audio.numel()
    target = -(-length // CHUNK_SAMPLES) * CHUNK_SAMPLES
    return F.pad(audio, (0, target - length)), length


def encoder_frames(cfg: MuQConfig, real_length: int) -> int:
    """ALARM's MuQEncoder.calc_length: 24 kHz samples // 960."""
    return real_length // (SAMPLE_RATE // cfg.label_rate)


def chunk_frames(chunk_samples: int) -> int:
    """Encoder frames of one chunk: 100 mel frames/s (last one dropped), conv stem / 4."""
    return chunk_samples // SAMPLES_PER_FRAME


def frame_mask(real_samples: int, chunk_samples: int = CHUNK_SAMPLES) -> Tensor:
    """MuQ's frame mask of one chunk with `real_samples` real samples: sample mask [::960] cut to
    the frame count -> float [frames] (1 real, 0 padding)."""
    frames = chunk_frames(chunk_samples)
    starts = torch.arange(frames) * SAMPLES_PER_FRAME
    return (starts < real_samples).to(torch.float32)


# ---------------------------------------------------------------------------------------------
# Mel front end (MelSTFT + normalize), written as matmuls


def hz_to_mel_htk(hz: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz_htk(mel: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def htk_mel_filter_bank(n_freqs: int, n_mels: int, sample_rate: int) -> Tensor:
    """Triangular filters (no area normalisation) on the HTK mel scale from 0 Hz to Nyquist,
    evaluated at the FFT bin frequencies -> float64 [n_freqs, n_mels]."""
    bin_hz = torch.linspace(0.0, sample_rate / 2, n_freqs, dtype=torch.float64)
    top = hz_to_mel_htk(torch.tensor(sample_rate / 2, dtype=torch.float64))
    edges = mel_to_hz_htk(torch.linspace(0.0, float(top), n_mels + 2, dtype=torch.float64))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_hz[:, None] - lower) / (centre - lower)
    falling = (upper - bin_hz[:, None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def windowed_dft_basis(n_fft: int) -> Tensor:
    """[n_fft, 2 * (n_fft / 2 + 1)] float64: periodic-Hann-windowed cos columns, then -sin columns,
    so frames @ basis = [Re, Im] of the one-sided DFT."""
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)
    angle = 2 * math.pi * n[:, None] * k[None, :] / n_fft
    return torch.cat([window[:, None] * torch.cos(angle), -window[:, None] * torch.sin(angle)], dim=1)


_MEL_CACHE: Dict[tuple, Tensor] = {}
_MEL_CACHE_SIZE = 16


def _sha256(tensor: Tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


class MelFrontEnd(nn.Module):
    """Waveform [B, S] -> normalised log-mel [B, 128, S / hop] (MelSTFT, last frame dropped,
    AmplitudeToDB, MuQ's stats). No state-dict keys: basis and filter bank are derived."""

    def __init__(self, cfg: MuQConfig) -> None:
        super().__init__()
        self.hop = cfg.hop_length
        self.mean, self.std = cfg.stat_mean, cfg.stat_std
        self.register_buffer("basis", windowed_dft_basis(N_FFT).to(torch.float32), persistent=False)
        fb = htk_mel_filter_bank(N_FFT // 2 + 1, N_MELS, SAMPLE_RATE)
        self.register_buffer("filter_bank", fb.to(torch.float32), persistent=False)

    def frames(self, wave: Tensor) -> Tensor:
        """[B, S] -> [B, 1 + S // hop, n_fft]: centred frames of the reflect-padded waveform."""
        half = N_FFT // 2
        length = wave.shape[-1]
        if length <= half:
            raise ValueError(f"a chunk needs more than {half} samples for reflect padding")
        left = torch.arange(half, 0, -1)
        right = torch.arange(length - 2, length - 2 - half, -1)
        padded = torch.cat([wave[:, left], wave, wave[:, right]], dim=1)
        count = 1 + (padded.shape[1] - N_FFT) // self.hop
        blocks_per_frame = -(-N_FFT // self.hop)
        total_blocks = count + blocks_per_frame - 1
        short = total_blocks * self.hop - padded.shape[1]
        if short > 0:  # zeros past the last frame's end: never inside a frame
            padded = torch.cat([padded, padded.new_zeros(padded.shape[0], short)], dim=1)
        blocks = padded[:, : total_blocks * self.hop].reshape(padded.shape[0], total_blocks, self.hop)
        stacked = torch.cat([blocks[:, k: k + count] for k in range(blocks_per_frame)], dim=2)
        return stacked[:, :, :N_FFT]

    def forward(self, wave: Tensor) -> Tensor:
        if torch.jit.is_tracing():  # the ONNX export traces the computation itself
            return self.log_mel(wave)
        # Why a cache: Debian's torch multiplies with the reference BLAS, where this DFT (a 30 s
        # chunk: 3001 x 2048 @ 2048 x 2050) takes ~8 s, and the goldens and tests ask for the same
        # chunk's mel many times (both precisions, pipeline and written-out stages). Keyed on the
        # exact bytes and the settings, so a hit returns what the computation would.
        key = (self.hop, self.mean, self.std, tuple(wave.shape), _sha256(wave))
        if key not in _MEL_CACHE:
            if len(_MEL_CACHE) >= _MEL_CACHE_SIZE:
                _MEL_CACHE.pop(next(iter(_MEL_CACHE)))
            _MEL_CACHE[key] = self.log_mel(wave)
        return _MEL_CACHE[key].clone()

    def log_mel(self, wave: Tensor) -> Tensor:
        spectrum = self.frames(wave) @ self.basis
        bins = N_FFT // 2 + 1
        power = spectrum[..., :bins] ** 2 + spectrum[..., bins:] ** 2
        mel = (power @ self.filter_bank)[:, :-1]  # MuQ drops the last frame
        db = 10.0 * torch.log10(torch.clamp(mel, min=AMPLITUDE_FLOOR))
        return ((db - self.mean) / self.std).transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# Conv stem (modules/conv.py)


class Res2dModule(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: Tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, stride=stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.diff = in_ch != out_ch or stride[0] > 1
        if self.diff:
            self.conv3 = nn.Conv2d(in_ch, out_ch, 3, padding=1, stride=stride)
            self.bn3 = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = self.bn3(self.conv3(x)) if self.diff else x
        return F.relu(shortcut + out)


class Conv2dSubsampling(nn.Module):
    """[B, mels, T] -> [B, T / 4, encoder_dim]."""

    def __init__(self, cfg: MuQConfig) -> None:
        super().__init__()
        self.conv = nn.Sequential(Res2dModule(1, cfg.conv_dim, (2, 2)), Res2dModule(cfg.conv_dim, cfg.conv_dim, (2, 2)))
        self.linear = nn.Linear(cfg.conv_dim * cfg.n_mels // 4, cfg.encoder_dim)

    def forward(self, mel: Tensor) -> Tensor:
        x = self.conv(mel[:, None])  # [B, C, F', T']
        b, c, f, t = x.shape
        return self.linear(x.permute(0, 3, 1, 2).reshape(b, t, c * f))


# ---------------------------------------------------------------------------------------------
# Conformer (transformers' Wav2Vec2ConformerEncoder, rotary flavour, eval mode)


class FeedForward(nn.Module):
    def __init__(self, cfg: MuQConfig) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(cfg.encoder_dim, cfg.intermediate_size)
        self.output_dense = nn.Linear(cfg.intermediate_size, cfg.encoder_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_dense(F.silu(self.intermediate_dense(x)))


def rotate_heads(x: Tensor, cos: Tensor, sin: Tensor, heads: int) -> Tensor:
    """HF's rotary: [B, T, D] viewed as heads; each head's halves (a, b) -> (a cos - b sin, b cos + a sin)."""
    b, t, d = x.shape
    h = x.reshape(b, t, heads, d // heads)
    half = h.shape[-1] // 2
    rotated = torch.cat([-h[..., half:], h[..., :half]], dim=-1)
    return (h * cos + rotated * sin).reshape(b, t, d)


class SelfAttention(nn.Module):
    def __init__(self, cfg: MuQConfig) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.linear_q = nn.Linear(cfg.encoder_dim, cfg.encoder_dim)
        self.linear_k = nn.Linear(cfg.encoder_dim, cfg.encoder_dim)
        self.linear_v = nn.Linear(cfg.encoder_dim, cfg.encoder_dim)
        self.linear_out = nn.Linear(cfg.encoder_dim, cfg.encoder_dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, score_bias: Optional[Tensor]) -> Tensor:
        """x [B, T, D]; cos/sin [T, 1, head_dim]; score_bias [B, 1, 1, T] added to the scores."""
        b, t, d = x.shape
        rotated = rotate_heads(x, cos, sin, self.heads)

        def heads(y: Tensor) -> Tensor:
            return y.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = heads(self.linear_q(rotated)), heads(self.linear_k(rotated)), heads(self.linear_v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        if score_bias is not None:
            scores = scores + score_bias
        out = torch.softmax(scores, dim=-1) @ v
        return self.linear_out(out.transpose(1, 2).reshape(b, t, d))


class ConvolutionModule(nn.Module):
    def __init__(self, cfg: MuQConfig) -> None:
        super().__init__()
        d, k = cfg.encoder_dim, cfg.conv_depthwise_kernel_size
        self.layer_norm = nn.LayerNorm(d)
        self.pointwise_conv1 = nn.Conv1d(d, 2 * d, 1, bias=False)
        self.depthwise_conv = nn.Conv1d(d, d, k, padding=(k - 1) // 2, groups=d, bias=False)
        self.batch_norm = nn.BatchNorm1d(d)
        self.pointwise_conv2 = nn.Conv1d(d, d, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = F.glu(self.pointwise_conv1(self.layer_norm(x).transpose(1, 2)), dim=1)
        y = F.silu(self.batch_norm(self.depthwise_conv(y)))
        return self.pointwise_conv2(y).transpose(1, 2)


class ConformerLayer(nn.Module):
    def __init__(self, cfg: MuQConfig) -> None:
        super().__init__()
        d = cfg.encoder_dim
        self.ffn1_layer_norm = nn.LayerNorm(d)
        self.ffn1 = FeedForward(cfg)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.self_attn = SelfAttention(cfg)
        self.conv_module = ConvolutionModule(cfg)
        self.ffn2_layer_norm = nn.LayerNorm(d)
        self.ffn2 = FeedForward(cfg)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, score_bias: Optional[Tensor]) -> Tensor:
        x = x + 0.5 * self.ffn1(self.ffn1_layer_norm(x))
        x = x + self.self_attn(self.self_attn_layer_norm(x), cos, sin, score_bias)
        x = x + self.conv_module(x)
        x = x + 0.5 * self.ffn2(self.ffn2_layer_norm(x))
        return self.final_layer_norm(x)


class RotaryPositions(nn.Module):
    """Holds `inv_freq` (persistent, as in transformers); cos/sin tables [T, 1, head_dim]."""

    def __init__(self, cfg: MuQConfig) -> None:
        super().__init__()
        dim = cfg.head_dim
        exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
        self.register_buffer("inv_freq", 1.0 / (cfg.rotary_embedding_base ** exponents))

    def forward(self, frames: int) -> Tuple[Tensor, Tensor]:
        angles = torch.arange(frames, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        angles = torch.cat([angles, angles], dim=-1)[:, None, :]
        return angles.cos(), angles.sin()


class Conformer(nn.Module):
    def __init__(self, cfg: MuQConfig) -> None:
        super().__init__()
        self.embed_positions = RotaryPositions(cfg)
        self.layer_norm = nn.LayerNorm(cfg.encoder_dim, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList([ConformerLayer(cfg) for _ in range(cfg.encoder_depth)])

    def hidden_states(self, x: Tensor, mask: Optional[Tensor], layers: Sequence[int]) -> Tensor:
        """x [B, T, D], mask [B, T] (1 real / 0 pad) -> HF-indexed hidden states [len(layers), B, T, D];
        runs only as deep as the largest index needs."""
        depth = len(self.layers)
        if any(i < 0 or i > depth for i in layers):
            raise ValueError(f"hidden-state indexes must be within 0..{depth}, got {list(layers)}")
        score_bias = None
        if mask is not None:
            x = x * mask[:, :, None]
            score_bias = ((1.0 - mask) * torch.finfo(torch.float32).min)[:, None, None, :]
        cos, sin = self.embed_positions(x.shape[1])
        states: Dict[int, Tensor] = {0: x}
        for i, layer in enumerate(self.layers[: max(layers)], start=1):
            x = layer(x, cos, sin, score_bias)
            states[i] = self.layer_norm(x) if i == depth else x
        return torch.stack([states[i] for i in layers])


class MuQModelCore(nn.Module):
    """The parts of MuQModel that run for features (key prefix `model.`)."""

    def __init__(self, cfg: MuQConfig) -> None:
        super().__init__()
        self.conv = Conv2dSubsampling(cfg)
        self.conformer = Conformer(cfg)


class MuQEncoder(nn.Module):
    """MuQ as ALARM calls it; state_dict keys = ALARM's `...encoders.muq.encoder.` keys minus
    `ignored_checkpoint_keys` (the mel front end has none)."""

    def __init__(self, cfg: MuQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.front_end = MelFrontEnd(cfg)
        self.model = MuQModelCore(cfg)

    def chunk_hidden_states(self, wave: Tensor, mask: Optional[Tensor], layers: Sequence[int]) -> Tensor:
        """One chunk: wave [B, S] (S a multiple of 960), frame mask [B, S / 960] or None
        -> [len(layers), B, S / 960, D]."""
        x = self.model.conv(self.front_end(wave))
        return self.model.conformer.hidden_states(x, mask, layers)


@torch.no_grad()
def hidden_states(enc: MuQEncoder, features: Tensor, layers: Sequence[int], length: Optional[int] = None,
                  chunk_samples: int = CHUNK_SAMPLES) -> Tensor:
    """ALARM's stacked MuQ hidden states `layers` for features [S] (muq_features' output, a multiple
    of chunk_samples) with `length` real samples (None: all) -> [len(layers), 1, frames, D];
    chunk by chunk, each with its own attention mask, concatenated in time."""
    if features.dim() != 1 or features.numel() % chunk_samples:
        raise ValueError(f"expected a 1-D waveform of a multiple of {chunk_samples} samples")
    real = features.numel() if length is None else length
    outputs: List[Tensor] = []
    for index, chunk in enumerate(features.split(chunk_samples)):
        mask = frame_mask(real - index * chunk_samples, chunk_samples)[None]
        outputs.append(enc.chunk_hidden_states(chunk[None], mask, layers))
    return torch.cat(outputs, dim=-2)


# ---------------------------------------------------------------------------------------------
# Checkpoint-only keys and sizes


def _wn_conv_keys(prefix: str, in_ch: int, out_ch: int) -> Dict[str, Tuple[int, ...]]:
    """torch.nn.utils.weight_norm(Conv1d(in, out, 1)) (dim 0): weight_g, weight_v, bias."""
    return {f"{prefix}.bias": (out_ch,), f"{prefix}.weight_g": (out_ch, 1, 1), f"{prefix}.weight_v": (out_ch, in_ch, 1)}


def _vector_quantize_keys(prefix: str, input_dim: int, codebook_size: int, codebook_dim: int,
                          n_layer: int) -> Dict[str, Tuple[int, ...]]:
    """modules/rvq.py VectorQuantize's keys (in_proj / out_proj: one WN conv, or a stack via 128)."""
    keys: Dict[str, Tuple[int, ...]] = {}
    if n_layer == 1:
        keys.update(_wn_conv_keys(f"{prefix}.in_proj", input_dim, codebook_dim))
        keys.update(_wn_conv_keys(f"{prefix}.out_proj", codebook_dim, input_dim))
    else:
        hidden = 128
        keys.update(_wn_conv_keys(f"{prefix}.in_proj.0", input_dim, hidden))
        keys.update(_wn_conv_keys(f"{prefix}.out_proj.0", codebook_dim, hidden))
        for j in range(n_layer - 2):
            keys.update(_wn_conv_keys(f"{prefix}.in_proj.{1 + j}.1", hidden, hidden))
            keys.update(_wn_conv_keys(f"{prefix}.out_proj.{2 + j}.0", hidden, hidden))
        keys.update(_wn_conv_keys(f"{prefix}.in_proj.{n_layer}", hidden, codebook_dim))
        keys.update(_wn_conv_keys(f"{prefix}.out_proj.{n_layer}", hidden, input_dim))
    keys[f"{prefix}.codebook.weight"] = (codebook_size, codebook_dim)
    keys[f"{prefix}.stale_counter"] = (codebook_size,)
    return keys


def pos_conv_keys(cfg: MuQConfig, legacy: bool = False) -> Dict[str, Tuple[int, ...]]:
    """The never-called `conformer.pos_conv_embed` (weight norm over dim 2 of a grouped conv)."""
    d, k, groups = cfg.encoder_dim, cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups
    p = "model.conformer.pos_conv_embed.conv"
    if legacy:  # torch.nn.utils.weight_norm
        g, v = "weight_g", "weight_v"
    else:  # torch.nn.utils.parametrizations.weight_norm (transformers picks it when torch has it)
        g, v = "parametrizations.weight.original0", "parametrizations.weight.original1"
    return {f"{p}.bias": (d,), f"{p}.{g}": (1, 1, k), f"{p}.{v}": (d, d // groups, k)}


def ignored_checkpoint_keys(cfg: MuQConfig) -> Dict[str, Tuple[int, ...]]:
    """Keys of the MuQ object's state dict that never run for ALARM, with their shapes."""
    d = cfg.encoder_dim
    keys: Dict[str, Tuple[int, ...]] = {"model.cls_token": (d,), "model.linear.weight": (cfg.codebook_size, d),
                                        "model.linear.bias": (cfg.codebook_size,)}
    keys.update(pos_conv_keys(cfg))
    folded = N_MELS * cfg.n_fold
    if cfg.use_rvq_target:
        for i in range(cfg.rvq_n_codebooks):
            keys.update(_vector_quantize_keys(f"model.rvq.quantizers.{i}", folded, 1024, 16, cfg.rvq_multi_layer_num))
    elif cfg.use_vq_target:
        keys.update(_vector_quantize_keys("model.rvq", folded, 1024, 8, 1))
    else:
        keys["model.quantizer_melspec_2048.random_projection"] = (cfg.n_mels * cfg.n_fold, cfg.codebook_dim)
        keys["model.quantizer_melspec_2048.codebook"] = (cfg.codebook_size, cfg.codebook_dim)
    if cfg.recon_loss_ratio is not None and cfg.recon_loss_ratio > 0:
        keys["model.recon_proj.weight"] = (cfg.n_mels * cfg.n_fold, d)
        keys["model.recon_proj.bias"] = (cfg.n_mels * cfg.n_fold,)
    return keys


LEGACY_POS_CONV_KEYS = {new: old for new, old in zip(pos_conv_keys(MUQ_LARGE_MSD_ITER),
                                                     pos_conv_keys(MUQ_LARGE_MSD_ITER, legacy=True))}


def load_muq_checkpoint(encoder: MuQEncoder, state: Mapping[str, Tensor]) -> None:
    """Strict load of a MuQ state dict (ALARM's prefix removed): the ignored keys must be there
    with their shapes (legacy weight-norm names accepted for pos_conv_embed), the rest must match
    the encoder's keys exactly. Raises naming the offending key."""
    ignored = ignored_checkpoint_keys(encoder.cfg)
    legacy = pos_conv_keys(encoder.cfg, legacy=True)
    if all(k in state for k in legacy):
        ignored = {k: v for k, v in ignored.items() if k not in pos_conv_keys(encoder.cfg)}
        ignored.update(legacy)
    for key, shape in ignored.items():
        if key not in state:
            raise ValueError(f"MuQ checkpoint lacks {key!r}")
        if tuple(state[key].shape) != shape:
            raise ValueError(f"MuQ checkpoint key {key!r} has shape {tuple(state[key].shape)}, expected {shape}")
    kept = {k: v for k, v in state.items() if k not in ignored}
    encoder.load_state_dict(kept, strict=True)


def _conv_stem_elements(cfg: MuQConfig) -> int:
    c = cfg.conv_dim

    def conv(i: int, o: int) -> int:
        return i * o * 9 + o

    bn = 4 * c + 1  # weight, bias, running mean / var, num_batches_tracked
    first = conv(1, c) + conv(c, c) + conv(1, c) + 3 * bn  # conv3 / bn3: channels change
    second = conv(c, c) * 3 + 3 * bn  # conv3 / bn3: stride 2 in frequency
    return first + second + cfg.conv_dim * cfg.n_mels // 4 * cfg.encoder_dim + cfg.encoder_dim


def _conformer_layer_elements(cfg: MuQConfig) -> int:
    d, f, k = cfg.encoder_dim, cfg.intermediate_size, cfg.conv_depthwise_kernel_size
    norms = 5 * 2 * d  # ffn1 / self_attn / conv_module / ffn2 / final layer norms
    ffn = 2 * (d * f + f + f * d + d)
    attn = 4 * (d * d + d)
    conv = d * 2 * d + d * k + (4 * d + 1) + d * d
    return norms + ffn + attn + conv


def parameter_count(cfg: MuQConfig) -> Dict[str, int]:
    """State-dict elements (buffers included) of the parts that run -- conv stem, conformer, their
    total -- and of the whole checkpoint (plus `ignored_checkpoint_keys`), computed from cfg."""
    stem = _conv_stem_elements(cfg)
    conformer = cfg.encoder_depth * _conformer_layer_elements(cfg) + 2 * cfg.encoder_dim + cfg.head_dim // 2
    ignored = sum(math.prod(s) for s in ignored_checkpoint_keys(cfg).values())
    return {"conv_stem": stem, "conformer": conformer, "running": stem + conformer,
            "checkpoint": stem + conformer + ignored}
