"""Write tiny random checkpoints in the exact layouts of SALMONN's four real downloads.

    /usr/bin/python3 models/make_tiny_checkpoints.py OUT_DIR [--seed 0]

writes (about 5 MB in all; the 32000-row token embedding and LM head dominate)

    OUT/whisper/config.json, model.safetensors          HF openai/whisper-large-v2 layout, fp32,
                                                         encoder AND decoder keys (the loader drops the decoder)
    OUT/beats/BEATs_tiny.pt                              {'cfg': dict like the AS2M cpt2 one, 'model': ...},
                                                         weight-normalised pos_conv, AudioSet `predictor`
    OUT/vicuna/config.json, pytorch_model-0000{1,2}-of-00002.bin, pytorch_model.bin.index.json
                                                         HF LLaMA layout, fp16 shards, layer 1 split across
                                                         the two shards, fp32 rotary_emb.inv_freq buffers
    OUT/salmonn/salmonn_tiny.pth                         {'model': ...} as SALMONN saves it: Q-Former,
                                                         LayerNorms, projection, peft-0.3.0 LoRA (r 8, A and B
                                                         both non-zero), plus the buffers SALMONN keeps
    OUT/prompts/test_prompt.json                         SALMONN's task prompts (prompts/test_prompt.json)
    OUT/tiny_manifest.json                               seed and the sizes, incl. what weights cannot tell
                                                         (Q-Former heads: 4 here, 12 in the real model)

Everything is written out key by key from the official layouts (not derived from our reference
modules), so the loaders in salmonn/checkpoints.py are tested against an independent statement of
those layouts. The output is a deterministic function of the seed.

Weights are normal(0, 1/sqrt(fan_in))-ish, so that signals keep unit scale through these narrow
layers (with 0.02 at width 32 every branch would be ~0 and a wiring bug would barely show);
LayerNorm / RMSNorm weights are 1 + small noise, biases small but non-zero.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import torch
from torch import Tensor

if __package__ in (None, ""):  # run as a script: make `salmonn` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from salmonn import safetensors_io  # noqa: E402

StateDict = Dict[str, Tensor]


@dataclass(frozen=True)
class TinySizes:
    # Whisper (real: d_model 1280, 32 layers, 20 heads, ffn 5120; 80 mel bins and 1500 positions kept)
    whisper_d_model: int = 64
    whisper_layers: int = 2
    whisper_heads: int = 4
    whisper_ffn: int = 128
    whisper_mel_bins: int = 80
    whisper_positions: int = 1500
    whisper_decoder_layers: int = 1
    whisper_decoder_vocab: int = 512  # real 51865; the decoder is only there to be skipped
    whisper_decoder_positions: int = 448
    # BEATs (real: 512 / 768, 12 layers, 12 heads, ffn 3072, conv_pos 128 / 16 groups, 320 buckets)
    beats_patch: int = 16
    beats_embed_dim: int = 32
    beats_width: int = 48
    beats_layers: int = 2
    beats_heads: int = 4
    beats_ffn: int = 96
    beats_conv_pos: int = 16
    beats_conv_pos_groups: int = 4
    beats_num_buckets: int = 32
    beats_max_distance: int = 64
    beats_classes: int = 527
    # Q-Former (real: 768, 2 layers, 12 heads, ffn 3072, 1 query, window 17)
    qformer_hidden: int = 48
    qformer_layers: int = 2
    qformer_heads: int = 4
    qformer_ffn: int = 96
    qformer_max_positions: int = 512  # size of BERT's position_ids buffer
    num_query_tokens: int = 1
    window_frames: int = 17
    # Vicuna (real 7B: 4096, 32 layers, 32 heads, ffn 11008; vocab 32000 kept)
    llama_vocab: int = 32000
    llama_hidden: int = 32
    llama_layers: int = 2
    # head_dim 16: GroupQueryAttention's fused rotary (do_rotary, used by the decoder graph) needs
    # a multiple of 16, so the tiny bundle runs the same attention path as the real models.
    llama_heads: int = 2
    llama_kv_heads: int = 2
    llama_ffn: int = 86
    llama_rms_eps: float = 1e-5
    llama_rope_theta: float = 10000.0
    llama_max_positions: int = 2048
    # LoRA as SALMONN (r 8, alpha 32, q_proj and v_proj)
    lora_rank: int = 8
    lora_alpha: int = 32

    @property
    def llama_head_dim(self) -> int:
        return self.llama_hidden // self.llama_heads


SIZES = TinySizes()

# SALMONN's prompts/test_prompt.json (bytedance/SALMONN), verbatim, typos included.
SALMONN_TEST_PROMPTS: Dict[str, str] = {
    "asr": "<Speech><SpeechHere></Speech> Recognize the speech and give me the transcription.",
    "asr_zh": "<Speech><SpeechHere></Speech> 请将语音中的内容写下来。",
    "asr_de": "<Speech><SpeechHere></Speech> Hören Sie sich die Rede an und schreiben Sie ihren Inhalt auf.",
    "translation_ec": "<Speech><SpeechHere></Speech> Listen to the speech and translate it into Chinese.",
    "audiocaption": "<Speech><SpeechHere></Speech> Please describe the audio.",
    "audiocaption_v2": "<Speech><SpeechHere></Speech> Please write down what your hear in the audio.",
    "QA": "<Speech><SpeechHere></Speech> {}",
    "gender_QA": "<Speech><SpeechHere></Speech> {}",
    "phone_recognition": "<Speech><SpeechHere></Speech> Provide the phonetic transcription for the speech.",
    "speech_query": "<Speech><SpeechHere></Speech> Please answer the question in detail.",
    "emotion_recognition": "<Speech><SpeechHere></Speech> Describe the emotion of the speaker in one word.",
    "lyrics_recognition": "<Speech><SpeechHere></Speech> Listen to the song and write down its content.",
    "audio_speech_description": "<Speech><SpeechHere></Speech> Describe the speech and the background audio",
    "speaker_verification": "<Speech><SpeechHere></Speech> Do you only hear the same person talking? Answer yes or no.",
    "fluent_speech_audio": "<Speech><SpeechHere></Speech> Describe the background audio and the speech in a fluent sentence.",
    "speech_separation": "<Speech><SpeechHere></Speech> Please write down what you hear each person says.",
    "audio_story_telling": "<Speech><SpeechHere></Speech> Based on the audio, write a story in detail. Your story should be highly related to the audio.",
    "speech_audio_query": "<Speech><SpeechHere></Speech> Please answer the speaker's question in detail based on the background sound.",
    "slot_filling": "<Speech><SpeechHere></Speech> According to the speech, what is the {}?",
    "music_description": "<Speech><SpeechHere></Speech> Listen to this music clip and describe the music.",
    "translation_en2ja": "<Speech><SpeechHere></Speech> Listen to the speech and translate it into Japanese.",
    "translation_en2de": "<Speech><SpeechHere></Speech> Listen to the speech and translate it into German.",
    "speech_audio_coreasoning": "<Speech><SpeechHere></Speech> Use your strong reasoning skills to answer the speaker's question in detail based on the background sound.",
    "keywords": "<Speech><SpeechHere></Speech> Give me only three keywords of the text.",
    "speaker_diarization_asr": "<Speech><SpeechHere></Speech> Please recognize each speaker and transcribe their speech content.",
}


# ----------------------------------------------------------------------------------------------
# Random tensors


class Init:
    """Seeded random tensors; the same calls in the same order give the same tensors."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def normal(self, *shape: int, std: float) -> Tensor:
        return torch.randn(*shape, generator=self.generator) * std

    def weight(self, out_features: int, *in_shape: int, gain: float = 1.0) -> Tensor:
        """[out, *in] with std gain / sqrt(fan_in): keeps unit-scale signals at unit scale."""
        fan_in = math.prod(in_shape)
        return self.normal(out_features, *in_shape, std=gain / math.sqrt(fan_in))

    def bias(self, n: int) -> Tensor:
        return self.normal(n, std=0.02)

    def norm_weight(self, n: int) -> Tensor:
        return 1.0 + self.normal(n, std=0.1)


def add_linear(sd: StateDict, init: Init, name: str, n_in: int, n_out: int, bias: bool = True, gain: float = 1.0) -> None:
    sd[f"{name}.weight"] = init.weight(n_out, n_in, gain=gain)
    if bias:
        sd[f"{name}.bias"] = init.bias(n_out)


def add_layer_norm(sd: StateDict, init: Init, name: str, n: int) -> None:
    sd[f"{name}.weight"] = init.norm_weight(n)
    sd[f"{name}.bias"] = init.normal(n, std=0.1)


# ----------------------------------------------------------------------------------------------
# Whisper (HF WhisperForConditionalGeneration)


def whisper_sinusoids(length: int, channels: int) -> Tensor:
    """Whisper's encoder position table, as stored in the HF checkpoints: sin half, then cos half."""
    increment = math.log(10000.0) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([t.sin(), t.cos()], dim=1)


def add_whisper_attention(sd: StateDict, init: Init, name: str, d: int) -> None:
    """HF WhisperAttention: k_proj has no bias; registration order k, v, q, out."""
    add_linear(sd, init, f"{name}.k_proj", d, d, bias=False)
    add_linear(sd, init, f"{name}.v_proj", d, d)
    add_linear(sd, init, f"{name}.q_proj", d, d)
    add_linear(sd, init, f"{name}.out_proj", d, d, gain=0.5)


def add_whisper_ffn(sd: StateDict, init: Init, name: str, d: int, ffn: int) -> None:
    add_linear(sd, init, f"{name}.fc1", d, ffn)
    add_linear(sd, init, f"{name}.fc2", ffn, d, gain=0.5)
    add_layer_norm(sd, init, f"{name}.final_layer_norm", d)


def whisper_state(init: Init, s: TinySizes = SIZES) -> StateDict:
    d = s.whisper_d_model
    sd: StateDict = OrderedDict()
    enc = "model.encoder"
    sd[f"{enc}.conv1.weight"] = init.weight(d, s.whisper_mel_bins, 3)
    sd[f"{enc}.conv1.bias"] = init.bias(d)
    sd[f"{enc}.conv2.weight"] = init.weight(d, d, 3)
    sd[f"{enc}.conv2.bias"] = init.bias(d)
    sd[f"{enc}.embed_positions.weight"] = whisper_sinusoids(s.whisper_positions, d)
    for i in range(s.whisper_layers):
        layer = f"{enc}.layers.{i}"
        add_whisper_attention(sd, init, f"{layer}.self_attn", d)
        add_layer_norm(sd, init, f"{layer}.self_attn_layer_norm", d)
        add_whisper_ffn(sd, init, layer, d, s.whisper_ffn)
    add_layer_norm(sd, init, f"{enc}.layer_norm", d)

    dec = "model.decoder"
    sd[f"{dec}.embed_tokens.weight"] = init.normal(s.whisper_decoder_vocab, d, std=0.02)
    sd[f"{dec}.embed_positions.weight"] = init.normal(s.whisper_decoder_positions, d, std=0.02)
    for i in range(s.whisper_decoder_layers):
        layer = f"{dec}.layers.{i}"
        add_whisper_attention(sd, init, f"{layer}.self_attn", d)
        add_layer_norm(sd, init, f"{layer}.self_attn_layer_norm", d)
        add_whisper_attention(sd, init, f"{layer}.encoder_attn", d)
        add_layer_norm(sd, init, f"{layer}.encoder_attn_layer_norm", d)
        add_whisper_ffn(sd, init, layer, d, s.whisper_ffn)
    add_layer_norm(sd, init, f"{dec}.layer_norm", d)
    # proj_out.weight is tied to embed_tokens, and HF does not save it
    return sd


def whisper_config(s: TinySizes = SIZES) -> Dict[str, object]:
    """HF config.json of whisper-large-v2, with the tiny sizes."""
    return {
        "_name_or_path": "openai/whisper-large-v2",
        "activation_dropout": 0.0,
        "activation_function": "gelu",
        "architectures": ["WhisperForConditionalGeneration"],
        "attention_dropout": 0.0,
        "d_model": s.whisper_d_model,
        "decoder_attention_heads": s.whisper_heads,
        "decoder_ffn_dim": s.whisper_ffn,
        "decoder_layerdrop": 0.0,
        "decoder_layers": s.whisper_decoder_layers,
        "dropout": 0.0,
        "encoder_attention_heads": s.whisper_heads,
        "encoder_ffn_dim": s.whisper_ffn,
        "encoder_layerdrop": 0.0,
        "encoder_layers": s.whisper_layers,
        "init_std": 0.02,
        "is_encoder_decoder": True,
        "max_source_positions": s.whisper_positions,
        "max_target_positions": s.whisper_decoder_positions,
        "model_type": "whisper",
        "num_hidden_layers": s.whisper_layers,
        "num_mel_bins": s.whisper_mel_bins,
        "scale_embedding": False,
        "torch_dtype": "float32",
        "transformers_version": "4.27.0.dev0",
        "use_cache": True,
        "vocab_size": s.whisper_decoder_vocab,
    }


# ----------------------------------------------------------------------------------------------
# BEATs (microsoft/unilm beats/BEATs.py, fine-tuned model)


def beats_cfg(s: TinySizes = SIZES) -> Dict[str, object]:
    """A cfg with the same keys and switches as BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt."""
    return {
        "input_patch_size": s.beats_patch,
        "embed_dim": s.beats_embed_dim,
        "conv_bias": False,
        "encoder_layers": s.beats_layers,
        "encoder_embed_dim": s.beats_width,
        "encoder_ffn_embed_dim": s.beats_ffn,
        "encoder_attention_heads": s.beats_heads,
        "activation_fn": "gelu",
        "layer_wise_gradient_decay_ratio": 0.6,
        "layer_norm_first": False,
        "deep_norm": True,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "encoder_layerdrop": 0.05,
        "dropout_input": 0.0,
        "conv_pos": s.beats_conv_pos,
        "conv_pos_groups": s.beats_conv_pos_groups,
        "relative_position_embedding": True,
        "num_buckets": s.beats_num_buckets,
        "max_distance": s.beats_max_distance,
        "gru_rel_pos": True,
        "finetuned_model": True,
        "predictor_dropout": 0.0,
        "predictor_class": s.beats_classes,
    }


def add_beats_pos_conv(sd: StateDict, init: Init, s: TinySizes) -> None:
    """Conv1d(C, C, K, groups) under torch weight_norm(dim=2): weight = g * v / ||v||, where the
    norm runs over the output and input-channel axes, one g per kernel tap ([1, 1, K])."""
    c, k, groups = s.beats_width, s.beats_conv_pos, s.beats_conv_pos_groups
    v = init.normal(c, c // groups, k, std=1.0)
    target_std = 1.0 / math.sqrt((c // groups) * k)  # std of the folded weight
    g = (1.0 + init.normal(1, 1, k, std=0.1)) * target_std * math.sqrt(c * (c // groups))
    sd["encoder.pos_conv.0.bias"] = init.bias(c)
    sd["encoder.pos_conv.0.weight_g"] = g
    sd["encoder.pos_conv.0.weight_v"] = v


def add_beats_layer(sd: StateDict, init: Init, name: str, s: TinySizes, shared_bias: Tensor) -> None:
    d, head_dim = s.beats_width, s.beats_width // s.beats_heads
    attn = f"{name}.self_attn"
    # every layer's state dict holds the one table layer 0 owns (BEATs re-assigns the module)
    sd[f"{attn}.relative_attention_bias.weight"] = shared_bias
    add_linear(sd, init, f"{attn}.k_proj", d, d)
    add_linear(sd, init, f"{attn}.v_proj", d, d)
    add_linear(sd, init, f"{attn}.q_proj", d, d)
    add_linear(sd, init, f"{attn}.out_proj", d, d)
    sd[f"{attn}.grep_linear.weight"] = init.weight(8, head_dim)
    sd[f"{attn}.grep_linear.bias"] = init.bias(8)
    sd[f"{attn}.grep_a"] = 1.0 + init.normal(1, s.beats_heads, 1, 1, std=0.1)
    add_layer_norm(sd, init, f"{name}.self_attn_layer_norm", d)
    add_linear(sd, init, f"{name}.fc1", d, s.beats_ffn)
    add_linear(sd, init, f"{name}.fc2", s.beats_ffn, d)
    add_layer_norm(sd, init, f"{name}.final_layer_norm", d)


def beats_state(init: Init, s: TinySizes = SIZES) -> StateDict:
    sd: StateDict = OrderedDict()
    add_linear(sd, init, "post_extract_proj", s.beats_embed_dim, s.beats_width)
    sd["patch_embedding.weight"] = init.weight(s.beats_embed_dim, 1, s.beats_patch, s.beats_patch)
    add_beats_pos_conv(sd, init, s)
    shared_bias = init.normal(s.beats_num_buckets, s.beats_heads, std=0.5)
    for i in range(s.beats_layers):
        add_beats_layer(sd, init, f"encoder.layers.{i}", s, shared_bias)
    add_layer_norm(sd, init, "encoder.layer_norm", s.beats_width)
    add_layer_norm(sd, init, "layer_norm", s.beats_embed_dim)
    add_linear(sd, init, "predictor", s.beats_width, s.beats_classes)
    return sd


# ----------------------------------------------------------------------------------------------
# Vicuna (HF LlamaForCausalLM)


def llama_inv_freq(s: TinySizes = SIZES) -> Tensor:
    """The fp32 `rotary_emb.inv_freq` buffer HF LLaMA (transformers 4.28) saves in every layer."""
    exponents = torch.arange(0, s.llama_head_dim, 2, dtype=torch.float32) / s.llama_head_dim
    return 1.0 / (s.llama_rope_theta ** exponents)


def vicuna_layer_keys(i: int) -> List[str]:
    """One decoder layer's keys in HF order: attention (with the buffer), MLP, the two norms."""
    p = f"model.layers.{i}"
    return [
        f"{p}.self_attn.q_proj.weight", f"{p}.self_attn.k_proj.weight", f"{p}.self_attn.v_proj.weight",
        f"{p}.self_attn.o_proj.weight", f"{p}.self_attn.rotary_emb.inv_freq",
        f"{p}.mlp.gate_proj.weight", f"{p}.mlp.up_proj.weight", f"{p}.mlp.down_proj.weight",
        f"{p}.input_layernorm.weight", f"{p}.post_attention_layernorm.weight",
    ]


def vicuna_state(init: Init, s: TinySizes = SIZES) -> StateDict:
    """fp16 weights (as the Vicuna shards), fp32 inv_freq buffers."""
    h, kv = s.llama_hidden, s.llama_kv_heads * s.llama_head_dim
    sd: StateDict = OrderedDict()
    sd["model.embed_tokens.weight"] = init.normal(s.llama_vocab, h, std=0.5)
    for i in range(s.llama_layers):
        p = f"model.layers.{i}"
        sd[f"{p}.self_attn.q_proj.weight"] = init.weight(h, h)
        sd[f"{p}.self_attn.k_proj.weight"] = init.weight(kv, h)
        sd[f"{p}.self_attn.v_proj.weight"] = init.weight(kv, h)
        sd[f"{p}.self_attn.o_proj.weight"] = init.weight(h, h, gain=0.5)
        sd[f"{p}.self_attn.rotary_emb.inv_freq"] = llama_inv_freq(s)
        sd[f"{p}.mlp.gate_proj.weight"] = init.weight(s.llama_ffn, h)
        sd[f"{p}.mlp.up_proj.weight"] = init.weight(s.llama_ffn, h)
        sd[f"{p}.mlp.down_proj.weight"] = init.weight(h, s.llama_ffn, gain=0.5)
        sd[f"{p}.input_layernorm.weight"] = init.norm_weight(h)
        sd[f"{p}.post_attention_layernorm.weight"] = init.norm_weight(h)
    sd["model.norm.weight"] = init.norm_weight(h)
    sd["lm_head.weight"] = init.weight(s.llama_vocab, h, gain=2.0)  # peaked logits: clear argmax
    assert list(sd) == ["model.embed_tokens.weight"] + [
        k for i in range(s.llama_layers) for k in vicuna_layer_keys(i)
    ] + ["model.norm.weight", "lm_head.weight"]
    return OrderedDict((k, t if k.endswith("inv_freq") else t.half()) for k, t in sd.items())


def vicuna_shard_keys(keys: Sequence[str], s: TinySizes = SIZES) -> List[List[str]]:
    """Two shards, cut in the middle of the last layer: its attention in shard 1, its MLP and
    norms in shard 2 (HF cuts by size, so real Vicuna shards split layers like this)."""
    last = s.llama_layers - 1
    cut = keys.index(f"model.layers.{last}.mlp.gate_proj.weight")
    return [list(keys[:cut]), list(keys[cut:])]


def vicuna_config(s: TinySizes = SIZES) -> Dict[str, object]:
    """HF config.json as Vicuna ships it, with the tiny sizes."""
    return {
        "_name_or_path": "vicuna-tiny",
        "architectures": ["LlamaForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": s.llama_hidden,
        "initializer_range": 0.02,
        "intermediate_size": s.llama_ffn,
        "max_position_embeddings": s.llama_max_positions,
        "model_type": "llama",
        "num_attention_heads": s.llama_heads,
        "num_hidden_layers": s.llama_layers,
        "num_key_value_heads": s.llama_kv_heads,
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rms_norm_eps": s.llama_rms_eps,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.28.0.dev0",
        "use_cache": True,
        "vocab_size": s.llama_vocab,
    }


def write_sharded_bin(directory: Path, state: StateDict, shards: List[List[str]]) -> None:
    """pytorch_model-0000i-of-0000n.bin files + pytorch_model.bin.index.json, as save_pretrained."""
    n = len(shards)
    weight_map: Dict[str, str] = {}
    for i, keys in enumerate(shards, start=1):
        name = f"pytorch_model-{i:05d}-of-{n:05d}.bin"
        torch.save(OrderedDict((k, state[k]) for k in keys), directory / name)
        weight_map.update({k: name for k in keys})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# SALMONN .pth (trainable parts + kept buffers)


def add_bert_attention(sd: StateDict, init: Init, name: str, hidden: int, context: int) -> None:
    add_linear(sd, init, f"{name}.self.query", hidden, hidden)
    add_linear(sd, init, f"{name}.self.key", context, hidden)
    add_linear(sd, init, f"{name}.self.value", context, hidden)
    add_linear(sd, init, f"{name}.output.dense", hidden, hidden)
    add_layer_norm(sd, init, f"{name}.output.LayerNorm", hidden)


def add_lora(sd: StateDict, init: Init, layer: int, s: TinySizes) -> None:
    """peft 0.3.0 LoRA on q_proj and v_proj; both matrices non-zero so that a wrong LoRA path shows."""
    h, kv = s.llama_hidden, s.llama_kv_heads * s.llama_head_dim
    prefix = f"llama_model.base_model.model.model.layers.{layer}.self_attn"
    for projection, n_out in (("q_proj", h), ("v_proj", kv)):
        sd[f"{prefix}.{projection}.lora_A.default.weight"] = init.weight(s.lora_rank, h)  # [r, in]
        sd[f"{prefix}.{projection}.lora_B.default.weight"] = init.normal(n_out, s.lora_rank, std=0.05)  # [out, r]
    sd[f"{prefix}.rotary_emb.inv_freq"] = llama_inv_freq(s)


def salmonn_state(init: Init, s: TinySizes = SIZES) -> StateDict:
    """Key order of SALMONN's state_dict(): its own parameter first, then modules as registered
    (llama_model, ln_speech, ln_audio, speech_Qformer, speech_llama_proj); frozen Whisper /
    BEATs / LLaMA weights are dropped by SALMONN's save, buffers are kept."""
    h, context = s.qformer_hidden, s.whisper_d_model + s.beats_width
    sd: StateDict = OrderedDict()
    sd["speech_query_tokens"] = init.normal(1, s.num_query_tokens, h, std=0.02)
    for i in range(s.llama_layers):
        add_lora(sd, init, i, s)
    add_layer_norm(sd, init, "ln_speech", s.whisper_d_model)
    add_layer_norm(sd, init, "ln_audio", s.beats_width)
    bert = "speech_Qformer.bert"
    sd[f"{bert}.embeddings.position_ids"] = torch.arange(s.qformer_max_positions).expand(1, -1).clone()
    add_layer_norm(sd, init, f"{bert}.embeddings.LayerNorm", h)
    for i in range(s.qformer_layers):
        layer = f"{bert}.encoder.layer.{i}"
        add_bert_attention(sd, init, f"{layer}.attention", h, h)
        add_bert_attention(sd, init, f"{layer}.crossattention", h, context)
        add_linear(sd, init, f"{layer}.intermediate_query.dense", h, s.qformer_ffn)
        add_linear(sd, init, f"{layer}.output_query.dense", s.qformer_ffn, h)
        add_layer_norm(sd, init, f"{layer}.output_query.LayerNorm", h)
    # audio tokens at about the scale of the token embeddings (std 0.5)
    add_linear(sd, init, "speech_llama_proj", h, s.llama_hidden, gain=0.5)
    return sd


# ----------------------------------------------------------------------------------------------
# Writing everything


@dataclass(frozen=True)
class TinyPaths:
    whisper_dir: Path
    beats_pt: Path
    vicuna_dir: Path
    salmonn_pth: Path
    prompts_json: Path
    manifest_json: Path


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tiny_checkpoints(out_dir: Path, seed: int = 0, s: TinySizes = SIZES) -> TinyPaths:
    out_dir = Path(out_dir)
    paths = TinyPaths(
        whisper_dir=out_dir / "whisper",
        beats_pt=out_dir / "beats" / "BEATs_tiny.pt",
        vicuna_dir=out_dir / "vicuna",
        salmonn_pth=out_dir / "salmonn" / "salmonn_tiny.pth",
        prompts_json=out_dir / "prompts" / "test_prompt.json",
        manifest_json=out_dir / "tiny_manifest.json",
    )
    for directory in (paths.whisper_dir, paths.beats_pt.parent, paths.vicuna_dir,
                      paths.salmonn_pth.parent, paths.prompts_json.parent):
        directory.mkdir(parents=True, exist_ok=True)

    # one generator per part, so that a change to one part leaves the others' tensors alone
    _write_json(paths.whisper_dir / "config.json", whisper_config(s))
    safetensors_io.save_file(whisper_state(Init(seed), s), paths.whisper_dir / "model.safetensors",
                             metadata={"format": "pt"})

    torch.save({"cfg": beats_cfg(s), "model": beats_state(Init(seed + 1), s)}, paths.beats_pt)

    vicuna = vicuna_state(Init(seed + 2), s)
    _write_json(paths.vicuna_dir / "config.json", vicuna_config(s))
    write_sharded_bin(paths.vicuna_dir, vicuna, vicuna_shard_keys(list(vicuna), s))

    torch.save({"model": salmonn_state(Init(seed + 3), s)}, paths.salmonn_pth)

    _write_json(paths.prompts_json, SALMONN_TEST_PROMPTS)
    _write_json(paths.manifest_json, {
        "seed": seed,
        "sizes": asdict(s),
        "not_in_the_weights": {"qformer_heads": s.qformer_heads, "window_frames": s.window_frames,
                               "lora_alpha": s.lora_alpha},
        "files": {k: str(v.relative_to(out_dir)) for k, v in asdict(paths).items()},
    })
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = write_tiny_checkpoints(args.out_dir, args.seed)
    total = sum(f.stat().st_size for f in Path(args.out_dir).rglob("*") if f.is_file())
    print(f"wrote tiny SALMONN checkpoints (seed {args.seed}, {total / 1e6:.1f} MB) to {args.out_dir}")
    for name, path in asdict(paths).items():
        print(f"  {name:14s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
