"""ONNX graph `encoder.w2vbert` of ALARM-CA (docs/bundle-format-2.md naming):

    encoder.w2vbert  input_features f32 [1, T, 160] -> encoder_out f32 [1, T, A], T dynamic
                     (one piece of at most 1500 stacked frames, cropped to its real frames):
                     the feature projection, the conformer layers up to the deepest chosen one,
                     then the adapter's per-frame steps folded in: the softmax-weighted average
                     of the chosen hidden states and, when the adapter has one, `input_proj`.

Why T is dynamic and there is no mask input: a recording's only padded stacked frame is its last
(w2vbert.py's module doc), and cropping it gives the real frames' exact outputs; the last piece of
a recording is shorter than 1500, so one graph serves every piece without padding work. Nothing in
w2v-BERT depends on absolute positions (relative keys, causal depthwise conv), so the trace at one
length holds at every length (the tests run several).
The layer average and input_proj act frame by frame, so running them per piece before ALARM's
trim to the real length equals ALARM's order. The rest of the adapter (even padding, convs,
llm_proj) runs per recording as for Whisper (export.py's AdapterRecording).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import onnx
import torch
from torch import Tensor, nn

from salmonn.export import export_traced
from salmonn.onnx_decoder import save_model

from .adapter import AlarmAdapter, ConvDownsampler
from .w2vbert import W2VBertEncoder

ENCODER_INPUT, ENCODER_OUTPUT = "input_features", "encoder_out"
GRAPH_NAME = "encoder.w2vbert"
FILE_NAME = "encoder_w2vbert.onnx"
TRACE_FRAMES = 37  # any length works (relative positions only); odd and past the tiny clips


class W2VBertChunk(nn.Module):
    """One piece's features [1, T, 160] -> fused hidden states (through input_proj) [1, T, A]."""

    def __init__(self, encoder: W2VBertEncoder, adapter: AlarmAdapter) -> None:
        super().__init__()
        # an identity adapter (ALARM-P) never reads encoder_embedding_dim (ALARM's config leaves it out)
        if adapter.cfg.adapter_name != "identity" and adapter.cfg.encoder_embedding_dim != encoder.cfg.hidden_size:
            raise ValueError(f"adapter expects {adapter.cfg.encoder_embedding_dim} channels, "
                             f"the encoder gives {encoder.cfg.hidden_size}")
        self.encoder = encoder
        self.layers: List[int] = list(adapter.cfg.audio_encoder_layers)
        self.fusion = adapter.layer_fusion  # None for a single layer
        inner = adapter.adapter
        self.input_proj: Optional[nn.Module] = inner.input_proj if isinstance(inner, ConvDownsampler) else None

    def forward(self, features: Tensor) -> Tensor:
        states = self.encoder(features, self.layers)  # [L, 1, T, E]
        x = states[0] if self.fusion is None else self.fusion(states)
        return x if self.input_proj is None else self.input_proj(x)


def export_w2vbert_encoder(encoder: W2VBertEncoder, adapter: AlarmAdapter, precision: str = "fp32") -> onnx.ModelProto:
    """`encoder.w2vbert`; T dynamic."""
    features = torch.zeros(1, TRACE_FRAMES, encoder.cfg.feature_projection_input_dim)
    axes = {ENCODER_INPUT: {1: "frames"}, ENCODER_OUTPUT: {1: "frames"}}
    return export_traced(W2VBertChunk(encoder, adapter).eval(), (features,), [ENCODER_INPUT], [ENCODER_OUTPUT],
                         axes, precision)


def write_w2vbert_encoder(encoder: W2VBertEncoder, adapter: AlarmAdapter, out_dir: Path,
                          precision: str = "fp32") -> List[Path]:
    """Write `encoder_w2vbert.onnx` (+ external data) into out_dir; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_model(export_w2vbert_encoder(encoder, adapter, precision), out_dir / FILE_NAME)
