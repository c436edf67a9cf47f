"""Write tiny random checkpoints in the exact layouts of ALARM's single-encoder downloads.

    /usr/bin/python3 models/make_tiny_alarm.py OUT_DIR [--seed 0]

writes (about 20 MB; Qwen3's real 151,936-row vocabulary dominates even at width 32)

    OUT/qwen3/config.json, generation_config.json,     HF Qwen/Qwen3-4B-Thinking-2507 layout: bf16
        model-00001-of-00002.safetensors, ...-00002,   shards + index, tied embeddings (no lm_head),
        model.safetensors.index.json                   explicit head_dim != hidden / heads, q/k norms
    OUT/alarm/config.json, model.safetensors          Blinorot/AL-Whisper-Instruct-R layout
                                                        (Qwen3AudioWrappedForCausalLM.save_pretrained):
                                                        the LLM copy (same bf16 tensors as qwen3/), the
                                                        Whisper encoder, the adapter (BatchNorm with
                                                        running statistics), the two separators (fp32)
    OUT/whisper/config.json                            the tiny Whisper's HF config (ALARM's config does
                                                        not carry it; real runs use whisper-large-v3's)

`write_tiny_alarm_ca` (CLI `--alarm-ca`) writes the tiny ALARM-CA instead (Blinorot/ALARM-CA
layout, src/configs/model/alarm_ca.yaml's structure; the tiny ALARM-CA bundle's source):

    OUT/qwen3/...                                      the same tiny Qwen3 (same seed, same tensors)
    OUT/alarm/config.json, model.safetensors          four encoders under model.audio_encoder.encoders.
                                                        <enc>.encoder. (whisper, w2vbert, sslam, muq: each
                                                        module's exact keys, never-run ones included:
                                                        w2vbert masked_spec_embed, sslam fc_norm/head, muq
                                                        cls_token/linear/rvq/pos_conv_embed), their adapters
                                                        (whisper: conv downsampler + BatchNorm; sslam,
                                                        w2vbert: conv downsampler + LayerNorm; muq: mlp),
                                                        the cross-attention fusion (main whisper, conditional
                                                        w2vbert, muq, sslam, one layer each), separators
    OUT/{whisper,w2vbert,sslam,muq}/config.json        each tiny encoder's own HF config (the converter's
                                                        --encoder-config inputs)

`write_tiny_alarm_p` (CLI `--alarm-p`) writes the tiny ALARM-P (Blinorot/ALARM-P layout,
src/configs/model/alarm_p.yaml's structure; the tiny ALARM-P bundle's source): the same qwen3/,
encoders and encoder configs as ALARM-CA (same seeds, same tensors), then

    OUT/alarm/...                                      Whisper's conv-downsampler adapter (as ALARM-CA's);
                                                        w2vbert, muq, sslam: `identity` adapters without
                                                        llm_proj (layer_fusion.layer_weights only); the
                                                        multiperceiver fusion (one tiny perceiver per
                                                        conditional encoder, order w2vbert, muq, sslam:
                                                        latent_provider._query, cross_attn_1.*, the shared
                                                        self_attn_1.<i>.*, out_proj.<enc>, cond_start_emb,
                                                        cond_end_emb)

The w2vbert, sslam and muq encoder tensors come from alarm/tiny_<enc>.py (seeds seed + 1, + 2, + 3;
their key lists are the modules' own, each checked against the official layout in
tests/test_alarm_<enc>.py); the never-run keys from each module's `ignored_checkpoint_keys`.

`fused=True` (tests only; the tiny bundle is the single-encoder model) adds ALARM-CA's
cross-attention fusion (model.audio_fusion.fusion_model.*, src/model/audio/fusion_implementations/
crossattention.py) with Whisper as the main AND the conditional encoder, which ALARM's code
allows: the fused path with the one encoder implemented so far.

Keys are written out one by one from the official layouts (not from the reference modules), so
alarm/checkpoints.py is tested against an independent statement of them. Deterministic in the seed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, NamedTuple

import torch
from torch import Tensor

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from alarm.muq import ignored_checkpoint_keys as muq_ignored_keys  # noqa: E402
from alarm.tiny_muq import TINY_MUQ_LAYERS, tiny_muq_config, tiny_muq_hf_config, tiny_muq_state  # noqa: E402
from alarm.tiny_sslam import TINY_HF_CONFIG as TINY_SSLAM_HF, tiny_sslam_state  # noqa: E402
from alarm.tiny_w2vbert import TINY_W2VBERT_HF, TINY_W2VBERT_LAYERS, tiny_w2vbert_config, tiny_w2vbert_state  # noqa: E402
from alarm.w2vbert import ignored_checkpoint_keys as w2vbert_ignored_keys  # noqa: E402
from salmonn import safetensors_io  # noqa: E402

StateDict = Dict[str, Tensor]


@dataclass(frozen=True)
class TinyAlarmSizes:
    # Qwen3 (real 4B: hidden 2560, 36 layers, 32 heads / 8 kv heads, head_dim 128, ffn 9728)
    vocab_size: int = 151936  # the real one: real token ids (151667 <think> ...) stay valid
    hidden_size: int = 32
    intermediate_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16  # != 32 / 4, as Qwen3-4B's 128 != 2560 / 32
    rope_theta: float = 5_000_000.0
    # Small token embeddings, as in a trained model: with the tied head, std 1 embeddings dominate
    # the residual stream and greedy decoding repeats one token forever (a useless golden).
    embed_std: float = 0.1
    # Whisper (real large-v3: d 1280, 32 layers, 20 heads, ffn 5120; 128 mel bins, 1500 positions kept)
    whisper_d_model: int = 64
    whisper_layers: int = 4
    whisper_heads: int = 4
    whisper_ffn: int = 128
    whisper_mel_bins: int = 128
    whisper_positions: int = 1500
    # adapter (real: layers [7, 15, 23, 31], encoder 1280 -> adapter 1024 -> LLM 2560, BatchNorm)
    audio_encoder_layers: tuple = (1, 2, 3)  # like ALARM: not the last (final-LayerNorm) state
    adapter_embedding_dim: int = 48


SIZES = TinyAlarmSizes()


@dataclass(frozen=True)
class TinyFusionSizes:
    # cross-attention fusion (real ALARM-CA: hidden 1024, ffn 4096, 16 heads, 1 layer per encoder)
    hidden_dim: int = 24
    ffn_dims: int = 40
    num_attention_heads: int = 4
    layers: int = 2


FUSION_SIZES = TinyFusionSizes()


@dataclass(frozen=True)
class TinyAlarmCaSizes:
    """The tiny ALARM-CA's adapters and fusion (real: every adapter -> 1024 -> LLM, fusion hidden
    1024, ffn 4096, 16 heads, one layer per conditional encoder). Whisper and Qwen3 are SIZES'."""

    sslam_layers: tuple = (3, 7, 11)  # ALARM-CA's own: the tiny SSLAM keeps 12 blocks
    sslam_adapter_dim: int = 40  # != the tiny SSLAM's 32: input_proj exists, as 768 -> 1024 does
    w2vbert_layers: tuple = TINY_W2VBERT_LAYERS
    w2vbert_adapter_dim: int = 32  # = the tiny w2v-BERT's width: no input_proj, as 1024 = 1024
    muq_layers: tuple = TINY_MUQ_LAYERS
    muq_hidden_dim: int = 40  # the MLP's width (= adapter_embedding_dim, which llm_proj reads)
    fusion_hidden_dim: int = 24
    fusion_ffn_dims: int = 40
    fusion_heads: int = 4
    fusion_order: tuple = ("w2vbert", "muq", "sslam")  # ALARM-CA's conditional_encoders


CA_SIZES = TinyAlarmCaSizes()


@dataclass(frozen=True)
class TinyPerceiverSizes:
    """One tiny perceiver (real ALARM-P: 20 latents of 768 channels, 4 cross / 4 self heads, 3 blocks
    of 6 layers, the first block shared, widening 1)."""

    latents: int
    channels: int
    cross_heads: int
    self_heads: int
    blocks: int
    layers_per_block: int
    widening: int = 1


@dataclass(frozen=True)
class TinyAlarmPSizes:
    """The tiny ALARM-P's conditional adapters (identity: layer average only) and perceivers, each a
    different shape so that nothing works by accident of equal sizes; few latents, so the goldens
    stay small. Whisper, its adapter and Qwen3 are SIZES', the encoders ALARM-CA's tiny ones."""

    sslam_layers: tuple = (3, 7, 11)
    w2vbert_layers: tuple = TINY_W2VBERT_LAYERS
    muq_layers: tuple = TINY_MUQ_LAYERS
    fusion_order: tuple = ("w2vbert", "muq", "sslam")  # ALARM-P's conditional_encoders
    perceivers: tuple = (
        TinyPerceiverSizes(latents=3, channels=16, cross_heads=2, self_heads=4, blocks=2, layers_per_block=1),
        TinyPerceiverSizes(latents=2, channels=8, cross_heads=2, self_heads=2, blocks=1, layers_per_block=2,
                           widening=2),
        TinyPerceiverSizes(latents=2, channels=12, cross_heads=1, self_heads=3, blocks=2, layers_per_block=2),
    )  # in fusion_order


P_SIZES = TinyAlarmPSizes()
ENCODER_DIMS = {"w2vbert": 32, "sslam": 32, "muq": 32}  # tiny_<enc> widths (checked when built)


class TinyAlarmPaths(NamedTuple):
    root: Path
    qwen3: Path
    alarm: Path
    whisper_config: Path


class Init:
    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, *shape: int, std: float) -> Tensor:
        return torch.randn(*shape, generator=self.g) * std

    def weight(self, n_out: int, *n_in: int) -> Tensor:
        return self.normal(n_out, *n_in, std=1.0 / math.sqrt(math.prod(n_in)))

    def bias(self, n: int) -> Tensor:
        return self.normal(n, std=0.02)

    def norm_weight(self, n: int) -> Tensor:
        return 1.0 + self.normal(n, std=0.1)


def qwen3_hf_config(s: TinyAlarmSizes) -> dict:
    return {
        "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": s.head_dim, "hidden_act": "silu",
        "hidden_size": s.hidden_size, "initializer_range": 0.02, "intermediate_size": s.intermediate_size,
        "max_position_embeddings": 262144, "max_window_layers": s.num_hidden_layers, "model_type": "qwen3",
        "num_attention_heads": s.num_attention_heads, "num_hidden_layers": s.num_hidden_layers,
        "num_key_value_heads": s.num_key_value_heads, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "rope_theta": s.rope_theta, "sliding_window": None, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False, "vocab_size": s.vocab_size,
    }


def qwen3_state(s: TinyAlarmSizes, init: Init) -> StateDict:
    sd: StateDict = {"model.embed_tokens.weight": init.normal(s.vocab_size, s.hidden_size, std=s.embed_std)}
    h, d = s.hidden_size, s.head_dim
    for i in range(s.num_hidden_layers):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = init.norm_weight(h)
        sd[p + "self_attn.q_proj.weight"] = init.weight(s.num_attention_heads * d, h)
        sd[p + "self_attn.k_proj.weight"] = init.weight(s.num_key_value_heads * d, h)
        sd[p + "self_attn.v_proj.weight"] = init.weight(s.num_key_value_heads * d, h)
        sd[p + "self_attn.o_proj.weight"] = init.weight(h, s.num_attention_heads * d)
        sd[p + "self_attn.q_norm.weight"] = init.norm_weight(d)
        sd[p + "self_attn.k_norm.weight"] = init.norm_weight(d)
        sd[p + "post_attention_layernorm.weight"] = init.norm_weight(h)
        sd[p + "mlp.gate_proj.weight"] = init.weight(s.intermediate_size, h)
        sd[p + "mlp.up_proj.weight"] = init.weight(s.intermediate_size, h)
        sd[p + "mlp.down_proj.weight"] = init.weight(h, s.intermediate_size)
    sd["model.norm.weight"] = init.norm_weight(h)
    return sd


def whisper_hf_config(s: TinyAlarmSizes) -> dict:
    return {
        "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
        "d_model": s.whisper_d_model, "encoder_layers": s.whisper_layers,
        "encoder_attention_heads": s.whisper_heads, "encoder_ffn_dim": s.whisper_ffn,
        "num_mel_bins": s.whisper_mel_bins, "max_source_positions": s.whisper_positions,
        "decoder_layers": 1, "decoder_attention_heads": s.whisper_heads, "decoder_ffn_dim": s.whisper_ffn,
    }


def whisper_encoder_state(s: TinyAlarmSizes, init: Init, prefix: str) -> StateDict:
    d = s.whisper_d_model
    sd: StateDict = {
        prefix + "conv1.weight": init.weight(d, s.whisper_mel_bins, 3), prefix + "conv1.bias": init.bias(d),
        prefix + "conv2.weight": init.weight(d, d, 3), prefix + "conv2.bias": init.bias(d),
    }
    # the sinusoid table Whisper stores as a (frozen) embedding
    half = d // 2
    inv = torch.exp(-math.log(10000.0) / (half - 1) * torch.arange(half))
    t = torch.arange(s.whisper_positions)[:, None] * inv[None]
    sd[prefix + "embed_positions.weight"] = torch.cat([t.sin(), t.cos()], dim=1)
    for i in range(s.whisper_layers):
        p = f"{prefix}layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd[p + f"self_attn.{proj}.weight"] = init.weight(d, d)
            if proj != "k_proj":
                sd[p + f"self_attn.{proj}.bias"] = init.bias(d)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            sd[p + f"{norm}.weight"] = init.norm_weight(d)
            sd[p + f"{norm}.bias"] = init.bias(d)
        sd[p + "fc1.weight"], sd[p + "fc1.bias"] = init.weight(s.whisper_ffn, d), init.bias(s.whisper_ffn)
        sd[p + "fc2.weight"], sd[p + "fc2.bias"] = init.weight(d, s.whisper_ffn), init.bias(d)
    sd[prefix + "layer_norm.weight"], sd[prefix + "layer_norm.bias"] = init.norm_weight(d), init.bias(d)
    return sd


def batch_norm(sd: StateDict, init: Init, name: str, n: int) -> None:
    sd[name + ".weight"], sd[name + ".bias"] = init.norm_weight(n), init.bias(n)
    sd[name + ".running_mean"] = init.normal(n, std=0.1)
    sd[name + ".running_var"] = 0.5 + torch.rand(n, generator=init.g)
    sd[name + ".num_batches_tracked"] = torch.tensor(1234, dtype=torch.int64)


def whisper_adapter_state(s: TinyAlarmSizes, init: Init, prefix: str) -> StateDict:
    e, a, h = s.whisper_d_model, s.adapter_embedding_dim, s.hidden_size
    sd: StateDict = {prefix + "layer_fusion.layer_weights": init.normal(len(s.audio_encoder_layers), std=0.5)}
    sd[prefix + "adapter.input_proj.weight"], sd[prefix + "adapter.input_proj.bias"] = init.weight(a, e), init.bias(a)
    sd[prefix + "adapter.downsampler.0.0.weight"] = init.weight(2 * a, a, 3)
    sd[prefix + "adapter.downsampler.0.0.bias"] = init.bias(2 * a)
    batch_norm(sd, init, prefix + "adapter.downsampler.0.2", 2 * a)
    sd[prefix + "adapter.downsampler.1.0.weight"] = init.weight(a, 2 * a, 4)
    sd[prefix + "adapter.downsampler.1.0.bias"] = init.bias(a)
    batch_norm(sd, init, prefix + "adapter.downsampler.1.2", a)
    # audio embeddings on the scale of the token embeddings (as training makes them)
    sd[prefix + "llm_proj.weight"] = init.weight(h, a) * s.embed_std
    sd[prefix + "llm_proj.bias"] = init.bias(h) * s.embed_std
    return sd


def alarm_hf_config(s: TinyAlarmSizes) -> dict:
    """Qwen3's fields plus what train.py copies from src/configs/model/whisper_batch.yaml."""
    cfg = qwen3_hf_config(s)
    cfg.update({
        "architectures": ["Qwen3AudioWrappedForCausalLM"], "model_type": "qwen3_audio", "torch_dtype": "float32",
        "use_explicit_audio_tokens": False, "audio_sep_d_embed": s.hidden_size,
        "audio_encoder_configs": [{"encoder_name": "whisper"}],
        "audio_adapter_configs": [{
            "encoder_name": "whisper", "adapter_name": "downsampler_conformer",
            "layer_fusion_config": {"layer_fusion_type": "weighted_average"},
            "audio_encoder_layers": list(s.audio_encoder_layers), "norm_type": "batch", "pre_average": True,
            "downsampler_depth": 1, "use_conformer": False, "encoder_embedding_dim": s.whisper_d_model,
            "adapter_embedding_dim": s.adapter_embedding_dim, "llm_embedding_dim": s.hidden_size,
        }],
        "audio_fusion_config": {"fusion_type": "sum"},
        "audio_postprocessing_config": {"postprocessing_type": "identity"},
    })
    return cfg


def fused_alarm_hf_config(s: TinyAlarmSizes, f: TinyFusionSizes) -> dict:
    """alarm_hf_config with ALARM-CA's fusion section over the one (Whisper) encoder."""
    cfg = alarm_hf_config(s)
    cfg["audio_fusion_config"] = {
        "fusion_type": "crossattention", "llm_embedding_dim": s.hidden_size, "hidden_dim": f.hidden_dim,
        "ffn_dims": f.ffn_dims, "dropout": 0.1, "num_attention_heads": f.num_attention_heads,
        "num_hidden_layers": [f.layers], "main_encoder": "whisper", "conditional_encoders": ["whisper"],
        "use_skip_connection": False,
    }
    return cfg


def fusion_state(s: TinyAlarmSizes, f: TinyFusionSizes, init: Init, prefix: str) -> StateDict:
    """CrossAttentionFusion: in_proj per encoder, torch TransformerDecoderLayer keys, out_proj."""
    d, h = f.hidden_dim, s.hidden_size
    sd: StateDict = {}
    for i in range(f.layers):
        p = f"{prefix}condition_modules.whisper.{i}."
        for attn in ("self_attn", "multihead_attn"):
            sd[p + f"{attn}.in_proj_weight"], sd[p + f"{attn}.in_proj_bias"] = init.weight(3 * d, d), init.bias(3 * d)
            sd[p + f"{attn}.out_proj.weight"], sd[p + f"{attn}.out_proj.bias"] = init.weight(d, d), init.bias(d)
        sd[p + "linear1.weight"], sd[p + "linear1.bias"] = init.weight(f.ffn_dims, d), init.bias(f.ffn_dims)
        sd[p + "linear2.weight"], sd[p + "linear2.bias"] = init.weight(d, f.ffn_dims), init.bias(d)
        for norm in ("norm1", "norm2", "norm3"):
            sd[p + f"{norm}.weight"], sd[p + f"{norm}.bias"] = init.norm_weight(d), init.bias(d)
    sd[prefix + "in_proj.whisper.weight"], sd[prefix + "in_proj.whisper.bias"] = init.weight(d, h), init.bias(d)
    # the fused embeddings on the scale of the token embeddings, as for the adapter's llm_proj
    sd[prefix + "out_proj.weight"] = init.weight(h, d) * s.embed_std
    sd[prefix + "out_proj.bias"] = init.bias(h) * s.embed_std
    return sd


def _layer_norm(sd: StateDict, init: Init, name: str, n: int) -> None:
    sd[name + ".norm.weight"], sd[name + ".norm.bias"] = init.norm_weight(n), init.bias(n)


def conv_adapter_state(init: Init, prefix: str, layers: int, encoder_dim: int, adapter_dim: int, llm_dim: int,
                       norm: str, embed_std: float) -> StateDict:
    """downsampler_conformer (depth 1): layer_weights, [input_proj], the two conv blocks with
    BatchNorm (`.2.*` with running statistics) or LayerNorm (`.2.norm.*`), llm_proj."""
    a = adapter_dim
    sd: StateDict = {prefix + "layer_fusion.layer_weights": init.normal(layers, std=0.5)}
    if encoder_dim != a:
        sd[prefix + "adapter.input_proj.weight"] = init.weight(a, encoder_dim)
        sd[prefix + "adapter.input_proj.bias"] = init.bias(a)
    for i, (n_out, n_in, k) in enumerate(((2 * a, a, 3), (a, 2 * a, 4))):
        sd[prefix + f"adapter.downsampler.{i}.0.weight"] = init.weight(n_out, n_in, k)
        sd[prefix + f"adapter.downsampler.{i}.0.bias"] = init.bias(n_out)
        (batch_norm if norm == "batch" else _layer_norm)(sd, init, prefix + f"adapter.downsampler.{i}.2", n_out)
    sd[prefix + "llm_proj.weight"] = init.weight(llm_dim, a) * embed_std
    sd[prefix + "llm_proj.bias"] = init.bias(llm_dim) * embed_std
    return sd


def mlp_adapter_state(init: Init, prefix: str, layers: int, encoder_dim: int, hidden: int, llm_dim: int,
                      embed_std: float) -> StateDict:
    """mlp: layer_weights, model.0 (E -> H), model.2 (H -> H), llm_proj (H -> LLM)."""
    sd: StateDict = {prefix + "layer_fusion.layer_weights": init.normal(layers, std=0.5)}
    sd[prefix + "adapter.model.0.weight"], sd[prefix + "adapter.model.0.bias"] = init.weight(hidden, encoder_dim), init.bias(hidden)
    sd[prefix + "adapter.model.2.weight"], sd[prefix + "adapter.model.2.bias"] = init.weight(hidden, hidden), init.bias(hidden)
    sd[prefix + "llm_proj.weight"] = init.weight(llm_dim, hidden) * embed_std
    sd[prefix + "llm_proj.bias"] = init.bias(llm_dim) * embed_std
    return sd


def alarm_ca_hf_config(s: TinyAlarmSizes, c: TinyAlarmCaSizes) -> dict:
    """Qwen3's fields plus alarm_ca.yaml's `config` at tiny sizes (same field lists as there)."""
    cfg = qwen3_hf_config(s)
    h = s.hidden_size

    def conv(name: str, layers: tuple, enc: int, adapter: int, norm: str) -> dict:
        return {"encoder_name": name, "adapter_name": "downsampler_conformer",
                "layer_fusion_config": {"layer_fusion_type": "weighted_average"},
                "audio_encoder_layers": list(layers), "norm_type": norm, "pre_average": True,
                "downsampler_depth": 1, "use_conformer": False, "encoder_embedding_dim": enc,
                "adapter_embedding_dim": adapter, "llm_embedding_dim": h}

    cfg.update({
        "architectures": ["Qwen3AudioWrappedForCausalLM"], "model_type": "qwen3_audio", "torch_dtype": "float32",
        "use_explicit_audio_tokens": False, "audio_sep_d_embed": h,
        "audio_encoder_configs": [{"encoder_name": n} for n in ("whisper", "sslam", "muq", "w2vbert")],
        "audio_adapter_configs": [
            conv("whisper", s.audio_encoder_layers, s.whisper_d_model, s.adapter_embedding_dim, "batch"),
            conv("sslam", c.sslam_layers, ENCODER_DIMS["sslam"], c.sslam_adapter_dim, "layer"),
            {"encoder_name": "muq", "adapter_name": "mlp",
             "layer_fusion_config": {"layer_fusion_type": "weighted_average"},
             "audio_encoder_layers": list(c.muq_layers), "pre_average": True,
             "encoder_embedding_dim": ENCODER_DIMS["muq"], "hidden_dim": c.muq_hidden_dim,
             "adapter_embedding_dim": c.muq_hidden_dim, "llm_embedding_dim": h},
            conv("w2vbert", c.w2vbert_layers, ENCODER_DIMS["w2vbert"], c.w2vbert_adapter_dim, "layer"),
        ],
        "audio_fusion_config": {
            "fusion_type": "crossattention", "llm_embedding_dim": h, "hidden_dim": c.fusion_hidden_dim,
            "ffn_dims": c.fusion_ffn_dims, "dropout": 0.1, "num_attention_heads": c.fusion_heads,
            "num_hidden_layers": [1] * len(c.fusion_order), "main_encoder": "whisper",
            "conditional_encoders": list(c.fusion_order), "use_skip_connection": False,
        },
        "audio_postprocessing_config": {"postprocessing_type": "identity"},
    })
    return cfg


def ca_fusion_state(s: TinyAlarmSizes, c: TinyAlarmCaSizes, init: Init, prefix: str) -> StateDict:
    """CrossAttentionFusion over the four encoders: one decoder layer per conditional encoder
    (torch TransformerDecoderLayer keys), in_proj per encoder (main + conditional), out_proj."""
    d, h = c.fusion_hidden_dim, s.hidden_size
    sd: StateDict = {}
    for name in c.fusion_order:
        p = f"{prefix}condition_modules.{name}.0."
        for attn in ("self_attn", "multihead_attn"):
            sd[p + f"{attn}.in_proj_weight"], sd[p + f"{attn}.in_proj_bias"] = init.weight(3 * d, d), init.bias(3 * d)
            sd[p + f"{attn}.out_proj.weight"], sd[p + f"{attn}.out_proj.bias"] = init.weight(d, d), init.bias(d)
        sd[p + "linear1.weight"], sd[p + "linear1.bias"] = init.weight(c.fusion_ffn_dims, d), init.bias(c.fusion_ffn_dims)
        sd[p + "linear2.weight"], sd[p + "linear2.bias"] = init.weight(d, c.fusion_ffn_dims), init.bias(d)
        for norm in ("norm1", "norm2", "norm3"):
            sd[p + f"{norm}.weight"], sd[p + f"{norm}.bias"] = init.norm_weight(d), init.bias(d)
    for name in ("whisper",) + tuple(c.fusion_order):
        sd[prefix + f"in_proj.{name}.weight"], sd[prefix + f"in_proj.{name}.bias"] = init.weight(d, h), init.bias(d)
    sd[prefix + "out_proj.weight"] = init.weight(h, d) * s.embed_std
    sd[prefix + "out_proj.bias"] = init.bias(h) * s.embed_std
    return sd


def identity_adapter_config(name: str, layers: tuple, llm_dim: int) -> dict:
    """alarm_p.yaml's conditional adapter entry: identity, no llm_proj, no encoder_embedding_dim."""
    return {"encoder_name": name, "adapter_name": "identity",
            "layer_fusion_config": {"layer_fusion_type": "weighted_average"}, "audio_encoder_layers": list(layers),
            "pre_average": True, "adapter_embedding_dim": llm_dim, "llm_embedding_dim": llm_dim, "use_llm_proj": False}


def alarm_p_hf_config(s: TinyAlarmSizes, p: TinyAlarmPSizes) -> dict:
    """Qwen3's fields plus alarm_p.yaml's `config` at tiny sizes (same field lists as there)."""
    cfg = alarm_ca_hf_config(s, CA_SIZES)  # Qwen3's fields, the separators, Whisper's adapter
    h = s.hidden_size
    whisper_adapter = cfg["audio_adapter_configs"][0]
    assert whisper_adapter["encoder_name"] == "whisper"
    per = p.perceivers
    cfg["audio_adapter_configs"] = [
        whisper_adapter,
        identity_adapter_config("sslam", p.sslam_layers, h),
        identity_adapter_config("muq", p.muq_layers, h),
        identity_adapter_config("w2vbert", p.w2vbert_layers, h),
    ]
    cfg["audio_fusion_config"] = {
        "fusion_type": "multiperceiver", "llm_embedding_dim": h,
        "num_latents": [q.latents for q in per], "num_latent_channels": [q.channels for q in per],
        "num_cross_attention_heads": [q.cross_heads for q in per],
        "num_cross_attention_layers": [1] * len(per), "first_cross_attention_layer_shared": [True] * len(per),
        "first_self_attention_block_shared": [True] * len(per),
        "num_self_attention_heads": [q.self_heads for q in per],
        "num_self_attention_blocks": [q.blocks for q in per],
        "num_self_attention_layers_per_block": [q.layers_per_block for q in per],
        "cross_attention_widening_factor": [q.widening for q in per],
        "self_attention_widening_factor": [q.widening for q in per],
        "main_encoder": "whisper", "conditional_encoders": list(p.fusion_order),
        "conditional_embedding_dim": [ENCODER_DIMS[e] for e in p.fusion_order],
    }
    return cfg


def _linear(sd: StateDict, init: Init, name: str, n_out: int, n_in: int, scale: float = 1.0) -> None:
    sd[name + ".weight"], sd[name + ".bias"] = init.weight(n_out, n_in) * scale, init.bias(n_out) * scale


def _plain_norm(sd: StateDict, init: Init, name: str, n: int) -> None:
    sd[name + ".weight"], sd[name + ".bias"] = init.norm_weight(n), init.bias(n)


def _perceiver_mlp(sd: StateDict, init: Init, prefix: str, n: int, widening: int) -> None:
    """Residual(MLP): `module.0` LayerNorm, `module.1` Linear n -> w n, (2: GELU), `module.3` back."""
    _plain_norm(sd, init, prefix + "module.0", n)
    _linear(sd, init, prefix + "module.1", widening * n, n)
    _linear(sd, init, prefix + "module.3", n, widening * n)


def _perceiver_attention(sd: StateDict, init: Init, prefix: str, q_dim: int, kv_dim: int) -> None:
    """MultiHeadAttention with default qk/v channels (= the query width): q/k/v/o_proj with biases."""
    _linear(sd, init, prefix + "q_proj", q_dim, q_dim)
    _linear(sd, init, prefix + "k_proj", q_dim, kv_dim)
    _linear(sd, init, prefix + "v_proj", q_dim, kv_dim)
    _linear(sd, init, prefix + "o_proj", q_dim, q_dim)


def perceiver_state(init: Init, prefix: str, q: TinyPerceiverSizes, input_dim: int) -> StateDict:
    """One PerceiverEncoder (helpers/perceiver/modules.py) with the first cross-attention layer and the
    first self-attention block shared: they appear once (cross_attn_1, self_attn_1), no *_n keys."""
    c = q.channels
    sd: StateDict = {prefix + "latent_provider._query": init.normal(q.latents, c, std=0.5)}
    cross = prefix + "cross_attn_1."
    _plain_norm(sd, init, cross + "0.module.q_norm", c)
    _plain_norm(sd, init, cross + "0.module.kv_norm", input_dim)
    _perceiver_attention(sd, init, cross + "0.module.attention.", c, input_dim)
    _perceiver_mlp(sd, init, cross + "1.", c, q.widening)
    for i in range(q.layers_per_block):
        layer = prefix + f"self_attn_1.{i}."
        _plain_norm(sd, init, layer + "0.module.norm", c)
        _perceiver_attention(sd, init, layer + "0.module.attention.", c, c)
        _perceiver_mlp(sd, init, layer + "1.", c, q.widening)
    return sd


def multiperceiver_state(s: TinyAlarmSizes, p: TinyAlarmPSizes, init: Init, prefix: str) -> StateDict:
    """MultiPerceiverFusion: perceiver.<enc>.*, out_proj.<enc> (latent channels -> LLM), the two
    separators cond_start_emb / cond_end_emb [1, LLM width]."""
    sd: StateDict = {}
    for name, q in zip(p.fusion_order, p.perceivers):
        sd.update(perceiver_state(init, f"{prefix}perceiver.{name}.", q, ENCODER_DIMS[name]))
        _linear(sd, init, f"{prefix}out_proj.{name}", s.hidden_size, q.channels, scale=s.embed_std)
    sd[prefix + "cond_start_emb"] = init.normal(1, s.hidden_size, std=s.embed_std)
    sd[prefix + "cond_end_emb"] = init.normal(1, s.hidden_size, std=s.embed_std)
    return sd


def _ignored_state(shapes: Dict[str, tuple], init: Init, prefix: str) -> StateDict:
    """Random tensors for checkpoint keys that never run (only their names and shapes matter)."""
    return {prefix + k: init.normal(*shape, std=0.02) for k, shape in shapes.items()}


def other_encoder_states(seed: int, init: Init) -> StateDict:
    """w2vbert, sslam, muq under their checkpoint prefixes, never-run keys included."""
    sd: StateDict = {}
    p = "model.audio_encoder.encoders.{}.encoder."
    sd.update({p.format("w2vbert") + k: v for k, v in tiny_w2vbert_state(seed + 1).items()})
    sd.update(_ignored_state(w2vbert_ignored_keys(tiny_w2vbert_config()), init, p.format("w2vbert")))
    sd.update({p.format("sslam") + k: v for k, v in tiny_sslam_state(seed + 2, with_ignored=True).items()})
    sd.update({p.format("muq") + k: v for k, v in tiny_muq_state(seed + 3).items()})
    sd.update(_ignored_state(muq_ignored_keys(tiny_muq_config()), init, p.format("muq")))
    return sd


class TinyAlarmCaPaths(NamedTuple):
    root: Path
    qwen3: Path
    alarm: Path
    encoder_configs: Dict[str, Path]  # encoder -> its tiny HF config.json


def write_tiny_alarm_ca(out: Path, seed: int = 0, s: TinyAlarmSizes = SIZES,
                        c: TinyAlarmCaSizes = CA_SIZES) -> TinyAlarmCaPaths:
    """The tiny ALARM-CA checkpoint (see the module doc). Deterministic in the seed."""
    out = Path(out)
    init = Init(seed)
    qwen = qwen3_state(s, init)
    qdir = _write_qwen3(out, s, qwen)
    adir = out / "alarm"
    adir.mkdir(parents=True, exist_ok=True)
    _write_json(adir / "config.json", alarm_ca_hf_config(s, c))
    sd: StateDict = {k: v.to(torch.bfloat16) for k, v in qwen.items()}
    sd.update(whisper_encoder_state(s, init, "model.audio_encoder.encoders.whisper.encoder."))
    sd.update(whisper_adapter_state(s, init, "model.audio_adapter.adapters.whisper."))
    sd["model.audio_start_emb"] = init.normal(1, s.hidden_size, std=s.embed_std)
    sd["model.audio_end_emb"] = init.normal(1, s.hidden_size, std=s.embed_std)
    sd.update(other_encoder_states(seed, init))
    a = "model.audio_adapter.adapters."
    sd.update(conv_adapter_state(init, a + "sslam.", len(c.sslam_layers), ENCODER_DIMS["sslam"],
                                 c.sslam_adapter_dim, s.hidden_size, "layer", s.embed_std))
    sd.update(conv_adapter_state(init, a + "w2vbert.", len(c.w2vbert_layers), ENCODER_DIMS["w2vbert"],
                                 c.w2vbert_adapter_dim, s.hidden_size, "layer", s.embed_std))
    sd.update(mlp_adapter_state(init, a + "muq.", len(c.muq_layers), ENCODER_DIMS["muq"], c.muq_hidden_dim,
                                s.hidden_size, s.embed_std))
    sd.update(ca_fusion_state(s, c, init, "model.audio_fusion.fusion_model."))
    safetensors_io.save_file(sd, adir / "model.safetensors", metadata={"format": "pt"})
    configs = {"whisper": whisper_hf_config(s), "w2vbert": TINY_W2VBERT_HF, "sslam": TINY_SSLAM_HF,
               "muq": tiny_muq_hf_config()}
    paths: Dict[str, Path] = {}
    for name, cfg in configs.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        _write_json(out / name / "config.json", cfg)
        paths[name] = out / name / "config.json"
    _write_json(out / "tiny_manifest.json", {"seed": seed, "sizes": asdict(s), "alarm_ca": asdict(c)})
    return TinyAlarmCaPaths(out, qdir, adir, paths)


def write_tiny_alarm_p(out: Path, seed: int = 0, s: TinyAlarmSizes = SIZES,
                       p: TinyAlarmPSizes = P_SIZES) -> TinyAlarmCaPaths:
    """The tiny ALARM-P checkpoint (see the module doc). Deterministic in the seed; Qwen3, Whisper,
    its adapter, the separators and the three other encoders are the tiny ALARM-CA's tensors."""
    out = Path(out)
    init = Init(seed)
    qwen = qwen3_state(s, init)
    qdir = _write_qwen3(out, s, qwen)
    adir = out / "alarm"
    adir.mkdir(parents=True, exist_ok=True)
    _write_json(adir / "config.json", alarm_p_hf_config(s, p))
    sd: StateDict = {k: v.to(torch.bfloat16) for k, v in qwen.items()}
    sd.update(whisper_encoder_state(s, init, "model.audio_encoder.encoders.whisper.encoder."))
    sd.update(whisper_adapter_state(s, init, "model.audio_adapter.adapters.whisper."))
    sd["model.audio_start_emb"] = init.normal(1, s.hidden_size, std=s.embed_std)
    sd["model.audio_end_emb"] = init.normal(1, s.hidden_size, std=s.embed_std)
    sd.update(other_encoder_states(seed, init))
    layers = {"sslam": p.sslam_layers, "muq": p.muq_layers, "w2vbert": p.w2vbert_layers}
    for name in ("sslam", "muq", "w2vbert"):  # identity adapters: the layer weights only
        sd[f"model.audio_adapter.adapters.{name}.layer_fusion.layer_weights"] = init.normal(len(layers[name]), std=0.5)
    sd.update(multiperceiver_state(s, p, init, "model.audio_fusion.fusion_model."))
    safetensors_io.save_file(sd, adir / "model.safetensors", metadata={"format": "pt"})
    configs = {"whisper": whisper_hf_config(s), "w2vbert": TINY_W2VBERT_HF, "sslam": TINY_SSLAM_HF,
               "muq": tiny_muq_hf_config()}
    paths: Dict[str, Path] = {}
    for name, cfg in configs.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        _write_json(out / name / "config.json", cfg)
        paths[name] = out / name / "config.json"
    _write_json(out / "tiny_manifest.json", {"seed": seed, "sizes": asdict(s), "alarm_p": asdict(p)})
    return TinyAlarmCaPaths(out, qdir, adir, paths)


def _write_qwen3(out: Path, s: TinyAlarmSizes, qwen: StateDict) -> Path:
    qdir = out / "qwen3"
    qdir.mkdir(parents=True, exist_ok=True)
    _write_json(qdir / "config.json", qwen3_hf_config(s))
    _write_json(qdir / "generation_config.json", {
        "bos_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
        "temperature": 0.6, "top_k": 20, "top_p": 0.95})
    write_sharded(qdir, {k: v.to(torch.bfloat16) for k, v in qwen.items()}, n_shards=2)
    return qdir


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_sharded(directory: Path, sd: StateDict, n_shards: int) -> None:
    keys = list(sd)
    per = math.ceil(len(keys) / n_shards)
    weight_map = {}
    for i in range(n_shards):
        name = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {k: sd[k] for k in keys[i * per:(i + 1) * per]}
        safetensors_io.save_file(part, directory / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    total = sum(t.numel() * t.element_size() for t in sd.values())
    _write_json(directory / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def write_tiny_alarm(out: Path, seed: int = 0, s: TinyAlarmSizes = SIZES, fused: bool = False,
                     f: TinyFusionSizes = FUSION_SIZES) -> TinyAlarmPaths:
    out = Path(out)
    init = Init(seed)
    qwen = qwen3_state(s, init)
    qdir = _write_qwen3(out, s, qwen)

    adir = out / "alarm"
    adir.mkdir(parents=True, exist_ok=True)
    _write_json(adir / "config.json", fused_alarm_hf_config(s, f) if fused else alarm_hf_config(s))
    # train.py loads Qwen3 with torch_dtype="auto" (bf16) and assigns its tensors into the model,
    # while the audio side is built in fp32: the saved file mixes bf16 and fp32 tensors
    sd: StateDict = {k: v.to(torch.bfloat16) for k, v in qwen.items()}
    sd.update(whisper_encoder_state(s, init, "model.audio_encoder.encoders.whisper.encoder."))
    sd.update(whisper_adapter_state(s, init, "model.audio_adapter.adapters.whisper."))
    sd["model.audio_start_emb"] = init.normal(1, s.hidden_size, std=s.embed_std)
    sd["model.audio_end_emb"] = init.normal(1, s.hidden_size, std=s.embed_std)
    if fused:  # drawn last: the single-encoder checkpoint's tensors stay those of the same seed
        sd.update(fusion_state(s, f, init, "model.audio_fusion.fusion_model."))
    safetensors_io.save_file(sd, adir / "model.safetensors", metadata={"format": "pt"})

    wdir = out / "whisper"
    wdir.mkdir(parents=True, exist_ok=True)
    _write_json(wdir / "config.json", whisper_hf_config(s))
    _write_json(out / "tiny_manifest.json", {"seed": seed, "sizes": asdict(s), **({"fusion": asdict(f)} if fused else {})})
    return TinyAlarmPaths(out, qdir, adir, wdir / "config.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    kind = ap.add_mutually_exclusive_group()
    kind.add_argument("--alarm-ca", action="store_true", help="the tiny fused ALARM-CA instead")
    kind.add_argument("--alarm-p", action="store_true", help="the tiny ALARM-P (multiperceiver) instead")
    args = ap.parse_args()
    if args.alarm_ca:
        paths = write_tiny_alarm_ca(args.out, args.seed)
    elif args.alarm_p:
        paths = write_tiny_alarm_p(args.out, args.seed)
    else:
        paths = write_tiny_alarm(args.out, args.seed)
    print(f"wrote {paths.root}")


if __name__ == "__main__":
    main()
