"""ONNX graph `connector` of ALARM-CA's cross-attention fusion, run once per recording
(docs/bundle-format-2.md, "Fused ALARM (ALARM-CA) in format 2"):

    adapted_<enc>  f32 [1, T_enc, D]  one input per encoder, each encoder's adapter output
                                      (T_enc dynamic, each on its own axis), main encoder first,
                                      then the conditional encoders in the config's order
    main_length    i64 [1]            the main encoder's adapter length (ALARM's lengths[main])
    -> audio_tokens f32 [1, T, D]     T = max_enc T_enc; the LLM reads its first
                                      max(1, max_enc adapter length) rows (fusion.fused_length)

The graph does what AudioFusion does around the fusion model: zero-pads every input at the end
to the longest T (written as a gather from the input with one zero row appended, so that T stays
dynamic in the trace), builds the key-padding mask from main_length (clamped to >= 1, see
alarm/fusion.py), runs the decoder layers and out_proj.

int4 (salmonn/export.py's swap: each MatMul with a constant weight becomes MatMulNBits) covers the
attentions' in_proj_weight too, which is not an nn.Linear: `int4_fusion_reference` fake-quantizes
it row by row as the Linears are, so the graph and that reference compute with identical weights.
"""

from __future__ import annotations

from typing import List, Tuple

import onnx
import torch
from torch import Tensor, nn

from salmonn.export import export_traced, fake_quantize_linears
from salmonn.int4 import dequantize_int4, quantize_int4

from .fusion import CrossAttentionFusion, MultiheadAttention

LENGTH_INPUT, FUSION_OUTPUT = "main_length", "audio_tokens"


def fusion_input_name(encoder: str) -> str:
    """The connector's input for one encoder's adapter output."""
    return f"adapted_{encoder}"


def pad_to_frames(x: Tensor, frames: Tensor) -> Tensor:
    """[B, T, D] -> [B, frames, D], zero rows after T (frames >= T, a 0-d int64 tensor); the same
    as F.pad but traceable with T and frames both dynamic."""
    length = torch._shape_as_tensor(x)[1]
    with_zero_row = torch.cat([x, torch.zeros(x.shape[0], 1, x.shape[2], dtype=x.dtype)], dim=1)
    rows = torch.minimum(torch.arange(frames), length)  # every row past T reads the zero row
    return with_zero_row.index_select(1, rows)


class FusionRecording(nn.Module):
    """The `connector` graph: each encoder's adapter output + the main length -> audio_tokens."""

    def __init__(self, fusion: CrossAttentionFusion) -> None:
        super().__init__()
        self.fusion = fusion
        self.encoders: Tuple[str, ...] = fusion.cfg.encoders

    def forward(self, *inputs: Tensor) -> Tensor:
        *adapted, main_length = inputs
        lengths = [torch._shape_as_tensor(x)[1] for x in adapted]
        frames = torch.stack(lengths).max()
        padded = {name: pad_to_frames(x, frames) for name, x in zip(self.encoders, adapted)}
        return self.fusion(padded, main_length)


def connector_input_names(fusion: CrossAttentionFusion) -> List[str]:
    return [fusion_input_name(e) for e in fusion.cfg.encoders] + [LENGTH_INPUT]


def int4_fusion_reference(fusion: CrossAttentionFusion) -> CrossAttentionFusion:
    """A copy holding exactly the weights the int4 connector computes with: every Linear weight
    and every attention in_proj_weight ([3D, D], rows = outputs) as dequantize(quantize_int4(W))."""
    quantized = fake_quantize_linears(fusion)
    for module in quantized.modules():
        if isinstance(module, MultiheadAttention):
            w = module.in_proj_weight
            packed, scales = quantize_int4(w.detach())
            w.data = torch.from_numpy(dequantize_int4(packed, scales, w.shape[1]).copy())
    return quantized.eval()


def export_fusion(fusion: CrossAttentionFusion, precision: str = "fp32") -> onnx.ModelProto:
    """`connector`; every encoder's T dynamic (traced at unequal lengths: 9, 8, 7, ...)."""
    fusion = int4_fusion_reference(fusion) if precision == "int4" else fusion.eval()
    width = fusion.cfg.llm_embedding_dim
    adapted = [torch.zeros(1, 9 - i, width) for i, _ in enumerate(fusion.cfg.encoders)]
    main_length = torch.tensor([8], dtype=torch.int64)
    names = connector_input_names(fusion)
    axes = {fusion_input_name(e): {1: f"frames_{e}"} for e in fusion.cfg.encoders}
    axes[FUSION_OUTPUT] = {1: "fused_frames"}
    return export_traced(FusionRecording(fusion), (*adapted, main_length), names, [FUSION_OUTPUT], axes, precision)
