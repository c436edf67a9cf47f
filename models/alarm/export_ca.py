"""The audio graphs of ALARM-CA's bundle (docs/bundle-format-2.md, "Fused ALARM (ALARM-CA) in
format 2"), each from the export helper of its part:

    encoder.whisper  export.export_whisper_encoder          input_features [1, n_mels, 3000] -> encoder_out [1, 1500, A]
    encoder.w2vbert  export_w2vbert.export_w2vbert_encoder  input_features [1, T <= 1500, 160] -> encoder_out [1, T, A]
    encoder.sslam    export_sslam.export_sslam_encoder      input_features [1, 1024, 128] -> encoder_out [1, 512, A]
    encoder.muq      export_muq.export_muq_encoder          input_values [1, 720000], frame_mask [1, 750]
                                                            -> encoder_out [1, 750, E]   (fp32 only)
    adapter.<conv>   AdapterRecording (export.py)           frames [1, T, A] -> adapted [1, ceil(T / 2), D]
    adapter.muq      MlpAdapterRecording                    frames [1, T, E] -> adapted [1, T, D]
    connector        export_fusion.export_fusion            adapted_<enc> [1, T_enc, D] ..., main_length i64 [1]
                                                            -> audio_tokens [1, max T_enc, D]

The muq adapter (ALARM's "mlp": Linear, GELU, Linear, GELU, then llm_proj) acts frame by frame and
could be folded into encoder.muq; it stays a graph of its own so every encoder has the same two
stages (encoder per chunk, adapter per recording) and encoder.muq stays the MuQ helper's graph.
"""

from __future__ import annotations

from typing import Callable, Dict

import onnx
import torch
from torch import Tensor, nn

from salmonn.export import export_traced

from .adapter import TwoLayerMLP
from .export import ADAPTER_INPUT, ADAPTER_OUTPUT, AdapterRecording, export_whisper_encoder
from .export_fusion import export_fusion
from .export_muq import export_muq_encoder
from .export_perceiver import export_perceiver
from .export_sslam import export_sslam_encoder
from .export_w2vbert import export_w2vbert_encoder
from .model import ENCODER_WIDTHS, AlarmAudio
from .muq import CHUNK_SAMPLES
from .perceiver import MultiPerceiverFusion

# encoders whose chunk graph exists in fp32 only (the int4 variant reuses the fp32 file)
FP32_ONLY_ENCODERS = ("muq",)
ADAPTER_TRACE_FRAMES = 875  # odd (the even padding is traced) and past any tiny size


class MlpAdapterRecording(nn.Module):
    """ALARM's "mlp" adapter after the layer average: [1, T, E] -> [1, T, D]."""

    def __init__(self, audio: AlarmAudio, encoder_name: str) -> None:
        super().__init__()
        adapter = audio.adapters[encoder_name]
        if not isinstance(adapter.adapter, TwoLayerMLP):
            raise ValueError(f"adapter {encoder_name!r} is not an mlp adapter")
        self.mlp = adapter.adapter
        self.llm_proj = adapter.llm_proj

    def forward(self, frames: Tensor) -> Tensor:
        x = self.mlp(frames)
        return x if self.llm_proj is None else self.llm_proj(x)


def encoder_precision(name: str, precision: str) -> str:
    return "fp32" if name in FP32_ONLY_ENCODERS else precision


def export_encoder(audio: AlarmAudio, name: str, precision: str = "fp32") -> onnx.ModelProto:
    """`encoder.<name>` of the fused model (muq: always fp32, see FP32_ONLY_ENCODERS)."""
    adapter = audio.adapters[name]
    exporters: Dict[str, Callable[[], onnx.ModelProto]] = {
        "whisper": lambda: export_whisper_encoder(audio, precision),
        "w2vbert": lambda: export_w2vbert_encoder(audio.encoders["w2vbert"], adapter, precision),
        "sslam": lambda: export_sslam_encoder(audio.encoders["sslam"], adapter, precision),
        "muq": lambda: export_muq_encoder(audio.encoders["muq"], adapter.cfg.audio_encoder_layers,
                                          adapter.layer_fusion, CHUNK_SAMPLES, "fp32"),
    }
    return exporters[name]()


def adapter_input_width(audio: AlarmAudio, name: str) -> int:
    """Channels of the encoder graph's output = the adapter graph's input: the adapter width where
    input_proj is folded in (conv adapters), else the encoder's own width (mlp: = its
    encoder_embedding_dim; identity, ALARM-P: ALARM's config does not state it)."""
    cfg = audio.adapters[name].cfg
    if cfg.adapter_name == "downsampler_conformer":
        return cfg.adapter_embedding_dim
    return ENCODER_WIDTHS[name](audio.encoder_configs[name])


def export_adapter(audio: AlarmAudio, name: str, precision: str = "fp32") -> onnx.ModelProto:
    """`adapter.<name>`; T dynamic."""
    cfg = audio.adapters[name].cfg
    if cfg.adapter_name == "downsampler_conformer":
        module: nn.Module = AdapterRecording(audio, name)
    elif cfg.adapter_name == "mlp":
        module = MlpAdapterRecording(audio, name)
    else:
        raise ValueError(f"adapter {name!r} ({cfg.adapter_name}) has no graph")
    frames = torch.zeros(1, ADAPTER_TRACE_FRAMES, adapter_input_width(audio, name))
    axes = {ADAPTER_INPUT: {1: "frames"}, ADAPTER_OUTPUT: {1: "adapted_frames"}}
    return export_traced(module.eval(), (frames,), [ADAPTER_INPUT], [ADAPTER_OUTPUT], axes, precision)


def export_connector(audio: AlarmAudio, precision: str = "fp32") -> onnx.ModelProto:
    """ALARM-CA's cross-attention `connector`, or ALARM-P's perceiver one (export_perceiver.py)."""
    if audio.fusion is None:
        raise ValueError("the model has no fusion graph")
    if isinstance(audio.fusion, MultiPerceiverFusion):
        return export_perceiver(audio.fusion, precision)
    return export_fusion(audio.fusion, precision)
