"""ONNX export of the audio side: speech encoder (Whisper), audio encoder (BEATs), connector.

These three are ordinary transformer stacks, so `torch.onnx.export` (opset 17) traces them from
the reference modules directly; the LLM decoder is built by hand in `onnx_decoder.py` because it
needs onnxruntime contrib ops.

int4: every Linear layer becomes a com.microsoft `MatMulNBits` (block 32). To make "the same
dequantized weights" exact on both sides, we first replace each Linear weight of a *copy* of the
module by dequantize(quantize(W)) (`fake_quantize_linears`), export that copy, and then swap each
exported MatMul-with-constant-weight for MatMulNBits. Re-quantizing an already dequantized block
is lossless with our scale rule (the extreme element is exactly -8·scale), which `_to_matmulnbits`
asserts, so the int4 graph and the fake-quantized PyTorch module use bit-identical weights.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from .beats import BeatsEncoder
from .connector import SalmonnConnector
from .int4 import BLOCK_SIZE, dequantize_int4, quantize_int4
from .whisper import WhisperEncoder

OPSET = 17
MS_DOMAIN = "com.microsoft"

# Graph I/O names the runtime relies on (also written to the bundle manifest's code paths).
SPEECH_INPUT, SPEECH_OUTPUT = "input_features", "speech_embeds"
AUDIO_INPUT, AUDIO_OUTPUT = "fbank", "audio_embeds"
CONNECTOR_OUTPUT = "audio_tokens"


def fake_quantize_linears(module: nn.Module) -> nn.Module:
    """A copy of `module` whose Linear weights are dequantize(quantize_int4(W)) (biases kept)."""
    quantized = copy.deepcopy(module)
    for layer in quantized.modules():
        if isinstance(layer, nn.Linear):
            packed, scales = quantize_int4(layer.weight)
            dequant = dequantize_int4(packed, scales, layer.in_features)
            layer.weight.data = torch.from_numpy(dequant.copy())
    return quantized


def _trace_to_onnx(module: nn.Module, args: tuple, input_names: list[str], output_names: list[str],
                   dynamic_axes: dict[str, dict[int, str]]) -> onnx.ModelProto:
    # Export to a file, never to memory: a protobuf cannot exceed 2 GB (Whisper-large in fp32 is
    # 2.5 GB), and torch moves weights to external data on its own when exporting to a path.
    # Tiny models take the same path, so the code real checkpoints use is the code tests run.
    module.eval()
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            module, args, str(path),
            input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes,
            opset_version=OPSET, do_constant_folding=True,
        )
        return onnx.load(str(path), load_external_data=True)


def _to_matmulnbits(model: onnx.ModelProto) -> onnx.ModelProto:
    """Swap MatMul(x, W[K, N] constant) for MatMulNBits(x, packed, scales); lossless on fake-quantized W."""
    inits = {t.name: t for t in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    new_nodes, dropped, added = [], set(), []
    for node in model.graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if weight is None or len(weight.dims) != 2 or uses[weight.name] != 1:
            new_nodes.append(node)
            continue
        w_kn = numpy_helper.to_array(weight).astype(np.float32)
        k, n = w_kn.shape
        packed, scales = quantize_int4(w_kn.T)
        if not np.array_equal(dequantize_int4(packed, scales, k), w_kn.T):
            raise ValueError(f"{weight.name}: weight was not fake-quantized before export; int4 would not be lossless")
        base = weight.name.replace("::", "_")
        added += [numpy_helper.from_array(packed, f"{base}_Q4"), numpy_helper.from_array(scales, f"{base}_scales")]
        dropped.add(weight.name)
        new_nodes.append(helper.make_node(
            "MatMulNBits", [node.input[0], f"{base}_Q4", f"{base}_scales"], list(node.output),
            name=f"{node.name}_Q4", domain=MS_DOMAIN, K=k, N=n, bits=4, block_size=BLOCK_SIZE,
        ))
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    kept = [t for t in model.graph.initializer if t.name not in dropped]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + added)
    if not any(op.domain == MS_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return model


def _export(module: nn.Module, precision: str, trace: Callable[[nn.Module], onnx.ModelProto]) -> onnx.ModelProto:
    if precision == "fp32":
        return trace(module)
    if precision == "int4":
        return _to_matmulnbits(trace(fake_quantize_linears(module)))
    raise ValueError(f"precision must be 'fp32' or 'int4', got {precision!r}")


def export_traced(module: nn.Module, args: tuple, input_names: list[str], output_names: list[str],
                  dynamic_axes: dict[str, dict[int, str]], precision: str = "fp32") -> onnx.ModelProto:
    """Any reference module traced to ONNX in `precision` ("fp32", or "int4": Linear weights as
    MatMulNBits, see the module doc); for other models' audio graphs (ALARM's)."""
    return _export(module, precision, lambda m: _trace_to_onnx(m, args, input_names, output_names, dynamic_axes))


def export_speech_encoder(encoder: WhisperEncoder, precision: str = "fp32") -> onnx.ModelProto:
    """input_features f32 [1, mels, 3000] -> speech_embeds f32 [1, 1500, width]; fixed shapes."""
    mel = torch.zeros(1, encoder.cfg.num_mel_bins, encoder.cfg.input_frames)
    return _export(encoder, precision, lambda m: _trace_to_onnx(m, (mel,), [SPEECH_INPUT], [SPEECH_OUTPUT], {}))


def export_audio_encoder(encoder: BeatsEncoder, precision: str = "fp32") -> onnx.ModelProto:
    """fbank f32 [1, frames, 128] -> audio_embeds f32 [1, tokens, width]; frames is dynamic."""
    fbank = torch.zeros(1, 998, 128)  # 10 s: a length away from every edge case
    axes = {AUDIO_INPUT: {1: "frames"}, AUDIO_OUTPUT: {1: "audio_tokens"}}
    return _export(encoder, precision, lambda m: _trace_to_onnx(m, (fbank,), [AUDIO_INPUT], [AUDIO_OUTPUT], axes))


def export_connector(connector: SalmonnConnector, precision: str = "fp32") -> onnx.ModelProto:
    """speech_embeds [1, 1500, Ws] + audio_embeds [1, tokens, Wa] -> audio_tokens [1, 88, llm_hidden]."""
    cfg = connector.cfg
    speech = torch.zeros(1, 1500, cfg.speech_width)
    audio = torch.zeros(1, 496, cfg.audio_width)
    axes = {AUDIO_OUTPUT: {1: "audio_tokens"}}
    return _export(connector, precision, lambda m: _trace_to_onnx(
        m, (speech, audio), [SPEECH_OUTPUT, AUDIO_OUTPUT], [CONNECTOR_OUTPUT], axes))


# The LLM's int4 linears (onnx_decoder.py quantizes exactly these, plus the embedding table).
INT4_LLM_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def int4_llm_reference(llm: nn.Module) -> nn.Module:
    """A copy of the reference LLM holding exactly the weights the int4 graphs compute with."""
    from .int4 import dequantize_gather_int4, quantize_gather_int4

    quantized = copy.deepcopy(llm)
    state = quantized.state_dict()
    for key, value in state.items():
        if key == "model.embed_tokens.weight":
            state[key] = torch.from_numpy(dequantize_gather_int4(*quantize_gather_int4(value)).copy())
        elif key == "lm_head.weight" or (key.endswith(".weight") and any(f".{n}." in key for n in INT4_LLM_LINEARS)):
            state[key] = torch.from_numpy(dequantize_int4(*quantize_int4(value), value.shape[1]).copy())
    quantized.load_state_dict(state)
    return quantized.eval()
