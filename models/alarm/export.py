"""ONNX graphs of ALARM's single-encoder model (AL-Whisper-Instruct-R), named as in
docs/bundle-format-2.md:

    encoder.whisper  input_features f32 [1, n_mels, 3000] -> encoder_out f32 [1, 1500, A]
                     Whisper large-v3 run up to the deepest chosen layer, then the adapter's
                     per-frame steps folded in: the softmax-weighted average of the chosen hidden
                     states and input_proj (E -> A, the adapter width). Both act frame by frame,
                     so running them per chunk before the trim equals ALARM's order.
    adapter.whisper  frames f32 [1, T, A] -> adapted f32 [1, ceil(T / 2), D], T dynamic:
                     even-length padding (a zero frame AFTER input_proj, as ALARM pads), the conv
                     downsampler (+ norms) and llm_proj, run once per recording on the chunks'
                     concatenated outputs trimmed to T frames (its convolutions cross chunks).
    embedTokens      ALARM's own copy of embed_tokens (salmonn/onnx_decoder.build_embed_graph).
    decoder          Qwen3 with KV cache (build_decoder_model with qwen3_flavor: per-head q/k
                     RMSNorm, grouped KV heads, rope theta, tied head, no lora_scale input).

The audio graphs are traced from the reference modules (salmonn/export.py's tracer and int4
swap: every Linear becomes MatMulNBits, convolutions and norms stay fp32).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import onnx
import torch
from torch import Tensor, nn

from salmonn.export import export_traced
from salmonn.onnx_decoder import (MAX_TENSOR_BYTES, ExternalTensor, build_decoder_model, build_embed_graph,
                                  qwen3_flavor)

from .adapter import AlarmAdapter, ConvDownsampler, pad_to_even
from .model import AlarmAudio
from .qwen3 import Qwen3Decoder
from .whisper_v3 import hidden_states

ENCODER_INPUT, ENCODER_OUTPUT = "input_features", "encoder_out"
ADAPTER_INPUT, ADAPTER_OUTPUT = "frames", "adapted"
INPUT_FRAMES = 3000


def _conv_adapter(audio: AlarmAudio, encoder_name: str) -> AlarmAdapter:
    adapter: AlarmAdapter = audio.adapters[encoder_name]
    if not isinstance(adapter.adapter, ConvDownsampler) or adapter.adapter.downsampler is None:
        raise ValueError(f"adapter {encoder_name!r} is not a conv downsampler (only AL-Whisper's is exported yet)")
    return adapter


class EncoderChunk(nn.Module):
    """One 30 s chunk's mel [1, n_mels, 3000] -> fused hidden states through input_proj [1, 1500, A]."""

    def __init__(self, audio: AlarmAudio, encoder_name: str = "whisper") -> None:
        super().__init__()
        adapter = _conv_adapter(audio, encoder_name)
        self.encoder = audio.whisper
        self.layers: Sequence[int] = adapter.cfg.audio_encoder_layers
        self.fusion = adapter.layer_fusion  # None for a single layer
        self.input_proj = adapter.adapter.input_proj  # None when E == A

    def forward(self, mel: Tensor) -> Tensor:
        states = hidden_states(self.encoder, mel, self.layers)  # [L, 1, 1500, E]
        x = states[0] if self.fusion is None else self.fusion(states)
        return x if self.input_proj is None else self.input_proj(x)


class AdapterRecording(nn.Module):
    """The rest of the adapter, over a whole recording: [1, T, A] -> [1, ceil(T / 2), D]."""

    def __init__(self, audio: AlarmAudio, encoder_name: str = "whisper") -> None:
        super().__init__()
        adapter = _conv_adapter(audio, encoder_name)
        self.downsampler = adapter.adapter.downsampler
        self.llm_proj = adapter.llm_proj

    def forward(self, frames: Tensor) -> Tensor:
        x = self.downsampler(pad_to_even(frames).transpose(1, 2)).transpose(1, 2)
        return x if self.llm_proj is None else self.llm_proj(x)


def export_whisper_encoder(audio: AlarmAudio, precision: str = "fp32") -> onnx.ModelProto:
    """`encoder.whisper`; fixed shapes (one 30 s chunk)."""
    mel = torch.zeros(1, audio.whisper_cfg.num_mel_bins, INPUT_FRAMES)
    return export_traced(EncoderChunk(audio), (mel,), [ENCODER_INPUT], [ENCODER_OUTPUT], {}, precision)


def export_whisper_adapter(audio: AlarmAudio, precision: str = "fp32") -> onnx.ModelProto:
    """`adapter.whisper`; T dynamic (traced at an odd T, so the even padding is in the graph)."""
    width = audio.adapters["whisper"].cfg.adapter_embedding_dim
    frames = torch.zeros(1, 875, width)  # 35 s: two chunks, odd
    axes = {ADAPTER_INPUT: {1: "frames"}, ADAPTER_OUTPUT: {1: "adapted_frames"}}
    return export_traced(AdapterRecording(audio), (frames,), [ADAPTER_INPUT], [ADAPTER_OUTPUT], axes, precision)


def export_embed_tokens(embed_tokens: Tensor, precision: str = "fp32",
                        max_tensor_bytes: int = MAX_TENSOR_BYTES) -> onnx.ModelProto:
    return build_embed_graph(embed_tokens, precision, max_tensor_bytes=max_tensor_bytes)


def export_qwen3_decoder(decoder: Qwen3Decoder, precision: str = "fp32", max_positions: Optional[int] = None,
                         max_tensor_bytes: int = MAX_TENSOR_BYTES,
                         shared_head: Optional[Mapping[str, ExternalTensor]] = None) -> onnx.ModelProto:
    """shared_head: the saved embedTokens graph's table (onnx_decoder.embed_table_tensors), read
    by the tied head in place of a second copy; only when that table IS the decoder's embedding."""
    cfg = decoder.config
    return build_decoder_model(cfg, decoder.state_dict(), precision, max_positions=max_positions,
                               max_tensor_bytes=max_tensor_bytes,
                               flavor=qwen3_flavor(cfg.tie_word_embeddings), shared_head=shared_head)
