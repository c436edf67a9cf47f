"""ONNX graph `connector` of ALARM-P's multiperceiver fusion, run once per recording
(docs/bundle-format-2.md, "ALARM-P in format 2"):

    adapted_whisper  f32 [1, T_w, D]    Whisper's adapter output (adapter.whisper), D = the LLM width
    adapted_<enc>    f32 [1, T_e, C_e]  each conditional encoder's real frames (its identity adapter:
                                        the encoder graph's layer average, cut to realFrames), in
                                        the config's order (w2vbert, muq, sslam); each T on its own axis
    -> audio_tokens  f32 [1, leading + T_w, D]   leading = 2 + sum(num_latents):
                                        cond_start_emb, each encoder's latents through its out_proj,
                                        cond_end_emb, then Whisper's rows

No mask and no length input: ALARM pads every adapter output to the longest and masks each
conditional encoder's keys at and past its own length with -finfo.max, whose softmax weight is
exactly 0 in float32 (alarm/perceiver.py); the runtime feeds exactly the real frames, so nothing is
padded and the unmasked attention over them gives the same numbers. One exception: an encoder with
no real frame (MuQ under 40 ms) has every key masked in ALARM, whose softmax is then uniform over
the padding's identical zero rows, i.e. the attention to ONE zero row: the graph appends that row
to an empty input (and to no other), so it matches ALARM there too. The rows past Whisper's adapter
length (its odd padded frame) are computed and never read: the LLM reads leading + floor(main
realFrames / 2) rows.

int4: every Linear becomes MatMulNBits as for the other graphs (salmonn/export.py fake-quantizes
first, so `int4_perceiver_reference`, the same fake quantization, holds the graph's exact weights).
A perceiver's shared self-attention block runs once per block, so its weights feed several MatMuls
(the tracer writes the later uses through Identity nodes); the generic swap skips such weights,
`_share_matmulnbits` packs each of them once for all its uses.
The latent queries and the two separators are not matmul weights and stay fp32.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import Tensor, nn

from salmonn.export import MS_DOMAIN, export_traced, fake_quantize_linears
from salmonn.int4 import BLOCK_SIZE, dequantize_int4, quantize_int4

from .export_fusion import FUSION_OUTPUT, fusion_input_name, pad_to_frames
from .perceiver import MultiPerceiverFusion

TRACE_FRAMES = 9  # the first input's traced length; the others 8, 7, 6: every T is its own axis


def at_least_one_row(x: Tensor) -> Tensor:
    """[1, T, C] -> itself, or [1, 1, C] zeros when T = 0 (traceable with T dynamic)."""
    frames = torch._shape_as_tensor(x)[1]
    return pad_to_frames(x, torch.clamp(frames, min=1))


class PerceiverRecording(nn.Module):
    """The `connector` graph: Whisper's adapter output + each conditional encoder's real frames."""

    def __init__(self, fusion: MultiPerceiverFusion) -> None:
        super().__init__()
        self.fusion = fusion
        self.encoders = fusion.cfg.encoders  # main first, then the conditional ones in order

    def forward(self, *inputs: Tensor) -> Tensor:
        outputs = dict(zip(self.encoders, inputs))
        main = outputs[self.fusion.main_encoder]
        rows = [self.fusion.cond_start_emb[None]]
        for name in self.fusion.conditional:  # unpadded real frames: no key mask needed
            latents = self.fusion.perceiver[name](at_least_one_row(outputs[name]), None)
            rows.append(self.fusion.out_proj[name](latents))
        rows += [self.fusion.cond_end_emb[None], main]
        return torch.cat(rows, dim=1)


def connector_input_names(fusion: MultiPerceiverFusion) -> List[str]:
    return [fusion_input_name(e) for e in fusion.cfg.encoders]


def connector_input_widths(fusion: MultiPerceiverFusion) -> Dict[str, int]:
    """Each input's channels: the LLM width for the main encoder, conditional_embedding_dim else."""
    cfg = fusion.cfg
    return {e: cfg.llm_embedding_dim if e == cfg.main_encoder else cfg.input_dim(e) for e in cfg.encoders}


def int4_perceiver_reference(fusion: MultiPerceiverFusion) -> MultiPerceiverFusion:
    """A copy holding exactly the weights the int4 connector computes with (every Linear weight as
    dequantize(quantize_int4(W)); the latent queries and separators unchanged)."""
    return fake_quantize_linears(fusion).eval()


def _share_matmulnbits(model: onnx.ModelProto) -> onnx.ModelProto:
    """MatMul(x, W[K, N] constant) -> MatMulNBits for the weights used by SEVERAL MatMuls (and
    nothing else), one packed copy for all; lossless on fake-quantized W, as salmonn/export.py's
    swap (which handles the single-use weights)."""
    inits = {t.name: t for t in model.graph.initializer}
    # Identity(initializer) -> the initializer itself (how the tracer writes a weight's later uses)
    alias = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity" and n.input[0] in inits}
    graph_outputs = {o.name for o in model.graph.output}
    if alias.keys() & graph_outputs:
        raise ValueError("a graph output is an Identity of a weight")
    nodes = [n for n in model.graph.node if n.output[0] not in alias]
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    uses: Dict[str, List[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            uses.setdefault(name, []).append(node)
    shared = {name for name, nodes in uses.items()
              if name in inits and len(nodes) > 1 and len(inits[name].dims) == 2
              and all(n.op_type == "MatMul" and list(n.input).index(name) == 1 for n in nodes)}
    packed: Dict[str, tuple] = {}
    new_nodes = []
    for node in model.graph.node:
        weight = node.input[1] if node.op_type == "MatMul" and len(node.input) == 2 else None
        if weight not in shared:
            new_nodes.append(node)
            continue
        if weight not in packed:
            w_kn = numpy_helper.to_array(inits[weight]).astype(np.float32)
            q, scales = quantize_int4(w_kn.T)
            if not np.array_equal(dequantize_int4(q, scales, w_kn.shape[0]), w_kn.T):
                raise ValueError(f"{weight}: weight was not fake-quantized before export; int4 would not be lossless")
            base = weight.replace("::", "_")
            packed[weight] = (f"{base}_Q4", f"{base}_scales", w_kn.shape,
                              [numpy_helper.from_array(q, f"{base}_Q4"), numpy_helper.from_array(scales, f"{base}_scales")])
        q_name, s_name, (k, n), _ = packed[weight]
        new_nodes.append(helper.make_node("MatMulNBits", [node.input[0], q_name, s_name], list(node.output),
                                          name=f"{node.name}_Q4", domain=MS_DOMAIN, K=k, N=n, bits=4,
                                          block_size=BLOCK_SIZE))
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    kept = [t for t in model.graph.initializer if t.name not in shared]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + [t for *_, tensors in packed.values() for t in tensors])
    return model


def export_perceiver(fusion: MultiPerceiverFusion, precision: str = "fp32") -> onnx.ModelProto:
    """`connector`; every input's T dynamic (traced at unequal lengths)."""
    fusion = int4_perceiver_reference(fusion) if precision == "int4" else fusion.eval()
    widths = connector_input_widths(fusion)
    names = connector_input_names(fusion)
    inputs = tuple(torch.zeros(1, TRACE_FRAMES - i, widths[e]) for i, e in enumerate(fusion.cfg.encoders))
    axes = {fusion_input_name(e): {1: f"frames_{e}"} for e in fusion.cfg.encoders}
    axes[FUSION_OUTPUT] = {1: "fused_frames"}
    model = export_traced(PerceiverRecording(fusion), inputs, names, [FUSION_OUTPUT], axes, precision)
    return _share_matmulnbits(model) if precision == "int4" else model
