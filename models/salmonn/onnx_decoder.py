"""ONNX graphs for SALMONN's LLaMA/Vicuna decoder, built directly with `onnx.helper`.

Two graphs, named and shaped as transformers.js expects for multimodal decoders:

`embed_tokens` (`build_embed_graph`)
    input_ids int64 [batch, sequence_length] -> inputs_embeds f32 [batch, sequence_length, hidden]
    fp32: plain `Gather`. int4: com.microsoft `GatherBlockQuantized` (uint8 data, bits 4,
    block 32, no zero points = implicit 8; see int4.quantize_gather_int4).

`decoder_model_merged` (`build_decoder_model`)
    inputs
      inputs_embeds               f32   [batch, sequence_length, hidden]
      attention_mask              int64 [batch, total_sequence_length]   (1 = real token)
      position_ids                int64 [batch, sequence_length]
      past_key_values.{i}.key     f32   [batch, kv_heads, past_sequence_length, head_dim]
      past_key_values.{i}.value   f32   [batch, kv_heads, past_sequence_length, head_dim]
      lora_scale                  f32   []  (rank-0 scalar; 0 = base model, alpha/r = trained)
    outputs
      logits                      f32   [batch, sequence_length, vocab]
      present.{i}.key / .value    f32   [batch, kv_heads, total_sequence_length, head_dim]
    total_sequence_length = past_sequence_length + sequence_length; keys are stored rotated
    (like the PyTorch reference), so `present` feeds the next step's `past_key_values`.

Graph (one decoder layer; every node of the contrib kinds has a fused WebGPU kernel in ORT):
    SimplifiedLayerNormalization (layer 0) / SkipSimplifiedLayerNormalization (residual add +
    RMSNorm, output 3 = the residual sum) -> q/k/v projections (MatMul on W^T in fp32,
    com.microsoft MatMulNBits in int4) -> LoRA on the projections that carry it, always fp32:
    q += MatMul(Mul(MatMul(x, A^T), lora_scale), B^T)  (the scale multiplies the rank-r
    intermediate, the cheapest place; algebraically the reference's scale * (x A^T) B^T) ->
    com.microsoft RotaryEmbedding on q and k (non-interleaved = HF rotate_half; cos/sin caches
    [max_positions, head_dim/2] shared by all layers; driven by position_ids) ->
    com.microsoft GroupQueryAttention (no do_rotary; separate past/present buffers;
    seqlens_k = ReduceSum(attention_mask) - 1 as int32 [batch]; total_sequence_length =
    attention_mask.shape[1] as an int32 scalar) -> o_proj -> Skip-RMSNorm -> SwiGLU MLP
    (gate/up/down; silu = x * Sigmoid(x)) -> ... -> final Skip-RMSNorm -> lm_head.

Limits (from GroupQueryAttention): the attention mask is only used through seqlens_k, so a
batch must be right-padded (or unpadded); causal masking is implicit. Batch 1 with an all-ones
mask (SALMONN's case) is exact. position_ids must be < max_positions (cos/sin cache rows).

Weights come from the reference `LlamaDecoder.state_dict()` (HF names; LoRA as
`...{q,v}_proj.lora_A` [r, in] / `lora_B` [out, r]). `save_model` writes deterministic bytes:
fixed tensor order and node names, external data in `{name}.onnx_data`, `{name}.onnx_data_1`, ...
(each file at most `max_file_bytes`; each tensor 4096-byte aligned inside its file).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .int4 import BLOCK_SIZE, quantize_gather_int4, quantize_int4
from .llama import LlamaConfig, rotary_inv_freq

PRECISIONS = ("fp32", "int4")
OPSET_ONNX = 17
OPSET_MS = 1
MS = "com.microsoft"
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def _np(t) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().float().numpy()
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32))


class _GraphBuilder:
    """Collects nodes/initializers in insertion order (stable names, stable bytes)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._init_names: set[str] = set()

    def init(self, name: str, array: np.ndarray) -> str:
        if name in self._init_names:
            return name
        self._init_names.add(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "", **attrs) -> list[str]:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain or None, **attrs))
        return outputs


def rotary_caches(config: LlamaConfig, max_positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [max_positions, head_dim/2] f32, computed exactly as llama.rotary_cos_sin does."""
    import torch

    inv_freq = rotary_inv_freq(config.head_dim, config.rope_theta)
    angles = torch.arange(max_positions).float()[:, None] * inv_freq
    return angles.cos().numpy().astype(np.float32), angles.sin().numpy().astype(np.float32)


def _linear(g: _GraphBuilder, x: str, weight: np.ndarray, prefix: str, precision: str,
            block_size: int, accuracy_level: int) -> str:
    """y = x W^T for a torch Linear weight W [N, K]."""
    n, k = weight.shape
    out = f"{prefix}/output_0"
    if precision == "fp32":
        w = g.init(f"{prefix}.weight_T", np.ascontiguousarray(weight.T))
        g.node("MatMul", [x, w], [out], name=f"{prefix}/MatMul")
    else:
        packed, scales = quantize_int4(weight, block_size)
        b = g.init(f"{prefix}.weight_Q4", packed)
        s = g.init(f"{prefix}.weight_scales", scales)
        attrs = dict(K=k, N=n, bits=4, block_size=block_size)
        if accuracy_level:
            attrs["accuracy_level"] = accuracy_level
        g.node("MatMulNBits", [x, b, s], [out], name=f"{prefix}/MatMulNBits", domain=MS, **attrs)
    return out


def _lora_delta(g: _GraphBuilder, x: str, a: np.ndarray, b: np.ndarray, prefix: str) -> str:
    """lora_scale * (x A^T) B^T, fp32 (A [r, in], B [out, r])."""
    a_t = g.init(f"{prefix}.lora_A_T", np.ascontiguousarray(a.T))
    b_t = g.init(f"{prefix}.lora_B_T", np.ascontiguousarray(b.T))
    (down,) = g.node("MatMul", [x, a_t], [f"{prefix}/lora_A/output_0"], name=f"{prefix}/lora_A/MatMul")
    (scaled,) = g.node("Mul", [down, "lora_scale"], [f"{prefix}/lora_scale/output_0"], name=f"{prefix}/lora_scale/Mul")
    (up,) = g.node("MatMul", [scaled, b_t], [f"{prefix}/lora_B/output_0"], name=f"{prefix}/lora_B/MatMul")
    return up


def build_decoder_model(
    config: LlamaConfig,
    weights: Mapping[str, object],
    precision: str = "fp32",
    lora: Optional[Mapping[str, object]] = None,
    *,
    lora_default_scale: Optional[float] = None,
    max_positions: Optional[int] = None,
    block_size: int = BLOCK_SIZE,
    accuracy_level: int = 0,
) -> onnx.ModelProto:
    """Decoder graph (see module doc) from the reference decoder's state dict.

    weights: `LlamaDecoder.state_dict()` (HF names; torch tensors or numpy arrays). LoRA
      tensors are taken from `weights` and/or `lora` (same key names,
      `model.layers.N.self_attn.X_proj.lora_A` / `lora_B`); `lora` wins on a clash. Any of
      q/k/v/o_proj may carry LoRA; without any, `lora_scale` is still an input (unused).
    precision: "fp32" (MatMul) or "int4" (MatMulNBits for q,k,v,o,gate,up,down,lm_head;
      norms, rotary caches and LoRA stay fp32).
    lora_default_scale: stored in metadata (`lora_default_scale`) for the engine; not used.
    max_positions: rotary cache rows (default config.max_position_embeddings).
    accuracy_level: MatMulNBits attribute; 0 (default, left unset) = fp32 compute on CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    weights = dict(weights)
    if lora:
        weights.update(lora)
    max_positions = max_positions or config.max_position_embeddings
    hidden, heads, kv_heads, head_dim = (config.hidden_size, config.num_attention_heads,
                                         config.num_key_value_heads, config.head_dim)
    eps = float(config.rms_norm_eps)
    g = _GraphBuilder()

    def w(key: str) -> np.ndarray:
        if key not in weights:
            raise KeyError(f"missing weight {key!r}")
        return _np(weights[key])

    def linear(x: str, key: str, prefix: str) -> str:
        return _linear(g, x, w(key), prefix, precision, block_size, accuracy_level)

    # ---- shared preamble: GQA's sequence-length inputs, rotary caches
    axes1 = g.init("const_axes_1", np.array([1], dtype=np.int64))
    one = g.init("const_one_i64", np.array(1, dtype=np.int64))
    idx1 = g.init("const_index_1", np.array(1, dtype=np.int64))
    g.node("ReduceSum", ["attention_mask", axes1], ["/model/attn_mask/ReduceSum/output_0"],
           name="/model/attn_mask/ReduceSum", keepdims=0)
    g.node("Sub", ["/model/attn_mask/ReduceSum/output_0", one], ["/model/attn_mask/Sub/output_0"],
           name="/model/attn_mask/Sub")
    g.node("Cast", ["/model/attn_mask/Sub/output_0"], ["seqlens_k"], name="/model/attn_mask/seqlens_k/Cast",
           to=TensorProto.INT32)
    g.node("Shape", ["attention_mask"], ["/model/attn_mask/Shape/output_0"], name="/model/attn_mask/Shape")
    g.node("Gather", ["/model/attn_mask/Shape/output_0", idx1], ["/model/attn_mask/Gather/output_0"],
           name="/model/attn_mask/Gather", axis=0)
    g.node("Cast", ["/model/attn_mask/Gather/output_0"], ["total_seq_len"],
           name="/model/attn_mask/total_seq_len/Cast", to=TensorProto.INT32)
    cos, sin = rotary_caches(config, max_positions)
    cos_name = g.init("cos_cache", cos)
    sin_name = g.init("sin_cache", sin)

    residual = "inputs_embeds"
    pending: Optional[str] = None  # delta to add to the residual before the next norm
    lora_projs: list[str] = []

    def norm(weight_key: str, prefix: str) -> str:
        nonlocal residual, pending
        gamma = g.init(weight_key, w(weight_key))
        out = f"{prefix}/output_0"
        if pending is None:
            g.node("SimplifiedLayerNormalization", [residual, gamma], [out], name=f"{prefix}/SimplifiedLayerNorm",
                   axis=-1, epsilon=eps, stash_type=1)
        else:
            new_residual = f"{prefix}/output_3"
            g.node("SkipSimplifiedLayerNormalization", [residual, pending, gamma], [out, "", "", new_residual],
                   name=f"{prefix}/SkipLayerNorm", domain=MS, epsilon=eps)
            residual, pending = new_residual, None
        return out

    outputs_present: list[str] = []
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}"
        n = f"/model/layers.{i}"
        x = norm(f"{p}.input_layernorm.weight", f"{n}/input_layernorm")

        proj = {}
        for name in ("q_proj", "k_proj", "v_proj"):
            key = f"{p}.self_attn.{name}"
            y = linear(x, f"{key}.weight", f"{n}/attn/{name}")
            if f"{key}.lora_A" in weights:
                lora_projs.append(key)
                delta = _lora_delta(g, x, w(f"{key}.lora_A"), w(f"{key}.lora_B"), f"{n}/attn/{name}")
                (y,) = g.node("Add", [y, delta], [f"{n}/attn/{name}/Add/output_0"], name=f"{n}/attn/{name}/Add")
            proj[name] = y

        (q_rot,) = g.node("RotaryEmbedding", [proj["q_proj"], "position_ids", cos_name, sin_name],
                          [f"{n}/attn/q_rotary/output_0"], name=f"{n}/attn/q_rotary/RotaryEmbedding",
                          domain=MS, interleaved=0, num_heads=heads)
        (k_rot,) = g.node("RotaryEmbedding", [proj["k_proj"], "position_ids", cos_name, sin_name],
                          [f"{n}/attn/k_rotary/output_0"], name=f"{n}/attn/k_rotary/RotaryEmbedding",
                          domain=MS, interleaved=0, num_heads=kv_heads)
        present_k, present_v = f"present.{i}.key", f"present.{i}.value"
        (attn,) = g.node("GroupQueryAttention",
                         [q_rot, k_rot, proj["v_proj"], f"past_key_values.{i}.key", f"past_key_values.{i}.value",
                          "seqlens_k", "total_seq_len"],
                         [f"{n}/attn/GroupQueryAttention/output_0", present_k, present_v],
                         name=f"{n}/attn/GroupQueryAttention", domain=MS,
                         num_heads=heads, kv_num_heads=kv_heads)[:1]
        outputs_present += [present_k, present_v]

        o_key = f"{p}.self_attn.o_proj"
        o = linear(attn, f"{o_key}.weight", f"{n}/attn/o_proj")
        if f"{o_key}.lora_A" in weights:
            lora_projs.append(o_key)
            delta = _lora_delta(g, attn, w(f"{o_key}.lora_A"), w(f"{o_key}.lora_B"), f"{n}/attn/o_proj")
            (o,) = g.node("Add", [o, delta], [f"{n}/attn/o_proj/Add/output_0"], name=f"{n}/attn/o_proj/Add")
        pending = o

        x = norm(f"{p}.post_attention_layernorm.weight", f"{n}/post_attention_layernorm")
        gate = linear(x, f"{p}.mlp.gate_proj.weight", f"{n}/mlp/gate_proj")
        up = linear(x, f"{p}.mlp.up_proj.weight", f"{n}/mlp/up_proj")
        (sig,) = g.node("Sigmoid", [gate], [f"{n}/mlp/act/Sigmoid/output_0"], name=f"{n}/mlp/act/Sigmoid")
        (silu,) = g.node("Mul", [gate, sig], [f"{n}/mlp/act/Mul/output_0"], name=f"{n}/mlp/act/Mul")
        (prod,) = g.node("Mul", [silu, up], [f"{n}/mlp/Mul/output_0"], name=f"{n}/mlp/Mul")
        pending = linear(prod, f"{p}.mlp.down_proj.weight", f"{n}/mlp/down_proj")

    x = norm("model.norm.weight", "/model/norm")
    logits_raw = linear(x, "lm_head.weight", "/lm_head")
    g.node("Identity", [logits_raw], ["logits"], name="/lm_head/Identity")

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    kv_shape_past = ["batch_size", kv_heads, "past_sequence_length", head_dim]
    kv_shape_present = ["batch_size", kv_heads, "total_sequence_length", head_dim]
    inputs = [
        helper.make_tensor_value_info("inputs_embeds", f32, ["batch_size", "sequence_length", hidden]),
        helper.make_tensor_value_info("attention_mask", i64, ["batch_size", "total_sequence_length"]),
        helper.make_tensor_value_info("position_ids", i64, ["batch_size", "sequence_length"]),
    ]
    for i in range(config.num_hidden_layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", f32, kv_shape_past))
    inputs.append(helper.make_tensor_value_info("lora_scale", f32, []))
    outputs = [helper.make_tensor_value_info("logits", f32, ["batch_size", "sequence_length", config.vocab_size])]
    outputs += [helper.make_tensor_value_info(name, f32, kv_shape_present) for name in outputs_present]

    graph = helper.make_graph(g.nodes, "salmonn_llama_decoder", inputs, outputs)
    graph.initializer.extend(g.initializers)
    meta = {
        "precision": precision,
        "llama_config": json.dumps(asdict(config), sort_keys=True),
        "max_positions": str(max_positions),
        "lora_projections": json.dumps(lora_projs),
        "lora_default_scale": "" if lora_default_scale is None else repr(float(lora_default_scale)),
        "int4_block_size": str(block_size) if precision == "int4" else "",
    }
    return _model(graph, meta)


def build_embed_graph(weight, precision: str = "fp32", block_size: int = BLOCK_SIZE) -> onnx.ModelProto:
    """`embed_tokens`: input_ids int64 [batch, seq] -> inputs_embeds f32 [batch, seq, hidden].

    weight: the embedding table [vocab, hidden] (`model.embed_tokens.weight`).
    int4 uses com.microsoft GatherBlockQuantized (data uint8 [vocab, hidden/2], scales
    [vocab, hidden/block_size], bits 4, gather_axis 0, quantize_axis 1, no zero points).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    table = _np(weight)
    vocab, hidden = table.shape
    g = _GraphBuilder()
    if precision == "fp32":
        g.init("model.embed_tokens.weight", table)
        g.node("Gather", ["model.embed_tokens.weight", "input_ids"], ["inputs_embeds"],
               name="/model/embed_tokens/Gather", axis=0)
    else:
        packed, scales = quantize_gather_int4(table, block_size)
        g.init("model.embed_tokens.weight_Q4", packed)
        g.init("model.embed_tokens.weight_scales", scales)
        g.node("GatherBlockQuantized",
               ["model.embed_tokens.weight_Q4", "input_ids", "model.embed_tokens.weight_scales"],
               ["inputs_embeds"], name="/model/embed_tokens/GatherBlockQuantized", domain=MS,
               bits=4, block_size=block_size, gather_axis=0, quantize_axis=1)
    graph = helper.make_graph(
        g.nodes, "salmonn_embed_tokens",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])],
        [helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch_size", "sequence_length", hidden])],
    )
    graph.initializer.extend(g.initializers)
    meta = {"precision": precision, "int4_block_size": str(block_size) if precision == "int4" else ""}
    return _model(graph, meta)


def _model(graph: onnx.GraphProto, meta: Mapping[str, str]) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET_ONNX), helper.make_opsetid(MS, OPSET_MS)],
        producer_name="salmonn-web",
        producer_version="1",
    )
    model.ir_version = 8
    for key, value in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    return model


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    external_data: bool = True,
    size_threshold: int = 1024,
    max_file_bytes: int = 1 << 30,
    align: int = 4096,
) -> list[Path]:
    """Write `path` (+ external data files); returns every file written. Deterministic.

    Initializers of at least `size_threshold` bytes go, in graph order, to
    `{stem}.onnx_data`, then `{stem}.onnx_data_1`, `_2`, ... when a file would exceed
    `max_file_bytes` (1 GiB default: under Chrome's ~2 GB ArrayBuffer limit); offsets are
    `align`-byte aligned. Stale data files of the same name are replaced, never appended to
    (onnx.save_model's own external-data writer appends to an existing file). The in-memory
    model is left unchanged.
    """
    path = Path(path)
    stem = path.name[: -len(".onnx")] if path.name.endswith(".onnx") else path.name
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f"{stem}.onnx_data*"):
        stale.unlink()
    written = [path]
    moved: list[tuple[onnx.TensorProto, bytes]] = []
    try:
        if external_data:
            handle, file_index, file_size = None, 0, 0
            for tensor in model.graph.initializer:
                raw = tensor.raw_data
                if not raw or len(raw) < size_threshold:
                    continue
                start = -(-file_size // align) * align
                if handle is not None and start + len(raw) > max_file_bytes and file_size > 0:
                    handle.close()
                    handle, file_index, file_size, start = None, file_index + 1, 0, 0
                location = f"{stem}.onnx_data" + (f"_{file_index}" if file_index else "")
                if handle is None:
                    handle = open(path.parent / location, "wb")
                    written.append(path.parent / location)
                handle.write(b"\0" * (start - file_size))
                handle.write(raw)
                file_size = start + len(raw)
                moved.append((tensor, raw))
                tensor.ClearField("raw_data")
                tensor.data_location = TensorProto.EXTERNAL
                del tensor.external_data[:]
                for k, v in (("location", location), ("offset", str(start)), ("length", str(len(raw)))):
                    tensor.external_data.append(onnx.StringStringEntryProto(key=k, value=v))
            if handle is not None:
                handle.close()
        path.write_bytes(model.SerializeToString())
    finally:
        for tensor, raw in moved:
            del tensor.external_data[:]
            tensor.data_location = TensorProto.DEFAULT
            tensor.raw_data = raw
    return written
