"""ONNX graph of ALARM-CA's MuQ encoder, one 30 s chunk at a time:

    encoder.muq  input_values f32 [1, 720000]  (24 kHz, muq_features' output cut in chunks)
                 frame_mask   f32 [1, 750]     (muq.frame_mask: 1 for frames ALARM attends)
                 -> encoder_out f32 [1, 750, 1024]

The graph is MuQ from the raw waveform (mel front end as matmuls, see alarm/muq.py's docstring)
through the conformer up to the deepest chosen layer, then the adapter's softmax-weighted average
of the chosen hidden states. ALARM-CA's muq adapter is "mlp" (Linear, GELU, Linear, GELU, then
llm_proj): frame-wise, but it stays with the adapter graph, so nothing else is folded in here.
Traced with salmonn/export.py's export_traced (opset 17); fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import onnx
import torch
from torch import Tensor, nn

from salmonn.export import export_traced
from salmonn.onnx_decoder import save_model

from .adapter import WeightedAverage
from .muq import CHUNK_SAMPLES, MuQEncoder, chunk_frames

INPUT_VALUES, FRAME_MASK, ENCODER_OUTPUT = "input_values", "frame_mask", "encoder_out"
GRAPH_FILE = "encoder_muq.onnx"


class MuQChunk(nn.Module):
    """One chunk's waveform [1, S] + frame mask [1, S / 960] -> fused hidden states [1, S / 960, D]."""

    def __init__(self, encoder: MuQEncoder, layers: Sequence[int], fusion: Optional[WeightedAverage]) -> None:
        super().__init__()
        if len(layers) > 1 and fusion is None:
            raise ValueError("several layers need the adapter's weighted average")
        self.encoder = encoder
        self.layers = tuple(layers)
        self.fusion = fusion

    def forward(self, wave: Tensor, mask: Tensor) -> Tensor:
        states = self.encoder.chunk_hidden_states(wave, mask, self.layers)  # [L, 1, T, D]
        return states[0] if self.fusion is None else self.fusion(states)


def export_muq_encoder(encoder: MuQEncoder, layers: Sequence[int], fusion: Optional[WeightedAverage],
                       chunk_samples: int = CHUNK_SAMPLES, precision: str = "fp32") -> onnx.ModelProto:
    """`encoder.muq`; fixed shapes (one chunk; ALARM's is 30 s, tests use shorter ones).

    fp32 only: salmonn/export.py's int4 pass turns every MatMul with a constant weight into
    MatMulNBits and refuses weights that were not fake-quantized Linears, which the front end's
    DFT basis and filter bank are not (they must stay fp32 anyway)."""
    if precision != "fp32":
        raise ValueError(f"encoder.muq is exported in fp32 only, got {precision!r}")
    wave = torch.zeros(1, chunk_samples)
    mask = torch.ones(1, chunk_frames(chunk_samples))
    chunk = MuQChunk(encoder, layers, fusion).eval()
    return export_traced(chunk, (wave, mask), [INPUT_VALUES, FRAME_MASK], [ENCODER_OUTPUT], {}, precision)


def write_muq_encoder(directory: Path, encoder: MuQEncoder, layers: Sequence[int],
                      fusion: Optional[WeightedAverage], chunk_samples: int = CHUNK_SAMPLES) -> List[Path]:
    """Write `encoder_muq.onnx` (fp32; external data when large) into directory; returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    model = export_muq_encoder(encoder, layers, fusion, chunk_samples)
    return save_model(model, directory / GRAPH_FILE)
