"""ONNX graph of ALARM-CA's SSLAM encoder, one 10.24 s chunk at a time:

    encoder.sslam  input_features f32 [1, 1024, 128] -> encoder_out f32 [1, 512, A]
                   the normalised fbank chunk (sslam.sslam_features, time first, as ALARM hands
                   it to the encoder) through EAT up to the deepest chosen block, then the
                   adapter's per-frame steps folded in: the softmax-weighted average of the chosen
                   block outputs (CLS removed) and input_proj (768 -> 1024 in ALARM-CA).

Folding is exact because both act on each of the 512 tokens alone, so running them per chunk
before ALARM's trim to `lengths // 2` tokens gives the same rows (adapter.py: the trim, then
layer fusion, then input_proj, then the even-length padding and the convolutions, which cross
chunks and stay in the per-recording adapter graph, like Whisper's in export.py).
At ALARM-CA's size (768 -> 1024) the fp32 graph's data file is 345,657,344 bytes (measured with
random weights): the 6144-row position table is constant-folded to the 512 rows a chunk uses.
Traced with salmonn/export.py's tracer (opset 17; precision "int4" swaps every Linear for
MatMulNBits, the patch convolution and norms stay fp32).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import onnx
import torch
from torch import Tensor, nn

from salmonn.export import export_traced
from salmonn.onnx_decoder import save_model

from .adapter import AlarmAdapter, ConvDownsampler
from .sslam import CHUNK_FRAMES, SSLAMEncoder, hidden_states

ENCODER_INPUT, ENCODER_OUTPUT = "input_features", "encoder_out"
GRAPH_FILE = "encoder_sslam.onnx"


class SSLAMChunk(nn.Module):
    """One chunk's features [1, 1024, 128] -> fused block outputs through input_proj [1, 512, A]."""

    def __init__(self, encoder: SSLAMEncoder, adapter: AlarmAdapter) -> None:
        super().__init__()
        self.encoder = encoder
        self.layers: Sequence[int] = adapter.cfg.audio_encoder_layers
        self.fusion = adapter.layer_fusion  # None for a single layer
        downsampler = adapter.adapter
        self.input_proj = downsampler.input_proj if isinstance(downsampler, ConvDownsampler) else None

    def forward(self, features: Tensor) -> Tensor:
        states = hidden_states(self.encoder, features, self.layers)  # [L, 1, 512, D]
        x = states[0] if self.fusion is None else self.fusion(states)
        return x if self.input_proj is None else self.input_proj(x)


def export_sslam_encoder(encoder: SSLAMEncoder, adapter: AlarmAdapter, precision: str = "fp32") -> onnx.ModelProto:
    """`encoder.sslam`; fixed shapes (one 1024-frame chunk)."""
    if adapter.cfg.encoder_name != "sslam":
        raise ValueError(f"adapter is {adapter.cfg.encoder_name!r}'s, not sslam's")
    features = torch.zeros(1, CHUNK_FRAMES, encoder.cfg.mel_bins)
    return export_traced(SSLAMChunk(encoder, adapter).eval(), (features,), [ENCODER_INPUT], [ENCODER_OUTPUT], {},
                         precision)


def write_sslam_encoder(out_dir: Path, encoder: SSLAMEncoder, adapter: AlarmAdapter) -> Path:
    """Write `encoder_sslam.onnx` (fp32, weights in its `.onnx_data`) to out_dir; returns its path."""
    path = Path(out_dir) / GRAPH_FILE
    save_model(export_sslam_encoder(encoder, adapter, "fp32"), path)
    return path
