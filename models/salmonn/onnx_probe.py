"""The steering probe: a prompt-only ONNX graph of the decoder layers that localization reads.

Localization (`localize.py`) needs, at the last prompt position of a few later layers, the
residual stream, an additive steering input and the attention weights onto the audio tokens.
Putting those hooks into `decoder_model_merged` would cost every decode step kernels it never
uses; instead this separate graph holds only the layers involved (weights duplicated for those
layers only, loaded when the user localizes) and starts from the residual stream entering its
first layer, which the main decoder already computes for the same prompt.

`decoder_probe` (`build_probe_model`), fp32 activations (weights fp32, or int4 MatMulNBits like the
int4 decoder's, so the probe computes what that decoder computes), batch 1
    inputs
      hidden_in       f32   [1, T, hidden]  residual entering layer `first` (all prompt positions)
      position_ids    int64 [1, T]          0..T-1
      lora_scale      f32   []
      steer           f32   [L, hidden]     alpha * v per probed layer (zeros: no steering)
    outputs
      residual_last   f32   [L, hidden]     residual entering each probed layer, last position,
                                            before its steering
      attention_last  f32   [L, heads, T]   softmax weights of the last position onto every
                                            position, per head (after that layer's steering)
    L = last - first + 1 layers, `first..last` inclusive.

Per layer: the last row of the residual gets `+ steer[l]` and is rescaled to its own norm
(x / |x| * |x| for a zero row: exactly the same row); RMSNorm; q, k, v (+ LoRA); RotaryEmbedding
on q and k; GroupQueryAttention (no past) for the layer's output; and, for the read-out, the last
row's q times every rotated key, scaled by 1/sqrt(head_dim) and softmaxed (the same weights GQA
uses, computed where they can be returned); o_proj; residual; RMSNorm; SwiGLU MLP; residual.
The last probed layer stops after its read-out: nothing after it reaches an output, and leaving
out its GroupQueryAttention also keeps a one-layer probe exact on devices whose GQA is inexact
for 32+ new tokens (see src/engine/llm/decoder.ts).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Mapping, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper

from .llama import LlamaConfig
from .int4 import BLOCK_SIZE
from .onnx_decoder import MS, _GraphBuilder, _lora_delta, _linear, _model, _np, rotary_caches, swiglu_mlp

PROBE_PRECISIONS = ("fp32", "int4")

PROBE_INPUTS = ("hidden_in", "position_ids", "lora_scale", "steer")


def build_probe_model(
    config: LlamaConfig,
    weights: Mapping[str, object],
    first: int,
    last: int,
    *,
    precision: str = "fp32",
    max_positions: Optional[int] = None,
) -> onnx.ModelProto:
    """Probe graph for layers first..last (inclusive) from the reference decoder's state dict
    (HF names; LoRA as `...X_proj.lora_A` / `lora_B`, as `onnx_decoder.build_decoder_model`).
    precision: "fp32" or "int4" (the Linear weights only; LoRA, norms and activations stay fp32)."""
    if precision not in PROBE_PRECISIONS:
        raise ValueError(f"probe precision must be one of {PROBE_PRECISIONS}, got {precision!r}")
    if not 0 <= first <= last < config.num_hidden_layers:
        raise ValueError(f"probe layers {first}..{last} outside 0..{config.num_hidden_layers - 1}")
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
        y = _linear(g, x, w(f"{key}.weight"), prefix, precision, BLOCK_SIZE, 0)
        if f"{key}.lora_A" not in weights:
            return y
        delta = _lora_delta(g, x, w(f"{key}.lora_A"), w(f"{key}.lora_B"), prefix)
        return g.node("Add", [y, delta], [f"{prefix}/Add/output_0"], name=f"{prefix}/Add")[0]

    def i64(name: str, values: list[int]) -> str:
        return g.init(name, np.array(values, dtype=np.int64))

    def rms_norm(x: str, key: str, prefix: str) -> str:
        gamma = g.init(key, w(key).astype(np.float32))
        return g.node("SimplifiedLayerNormalization", [x, gamma], [f"{prefix}/output_0"], name=f"{prefix}/SimplifiedLayerNorm",
                      axis=-1, epsilon=eps, stash_type=1)[0]

    # ---- GQA's lengths (no past: seqlens_k = T - 1, total = T), rotary caches, constants
    (shape,) = g.node("Shape", ["position_ids"], ["/probe/Shape/output_0"], name="/probe/Shape")
    (t_len,) = g.node("Gather", [shape, g.init("const_index_1", np.array(1, dtype=np.int64))], ["/probe/T/output_0"],
                      name="/probe/T/Gather", axis=0)
    (total,) = g.node("Cast", [t_len], ["total_seq_len"], name="/probe/total_seq_len/Cast", to=TensorProto.INT32)
    (t_minus_1,) = g.node("Sub", [t_len, g.init("const_one_i64", np.array(1, dtype=np.int64))], ["/probe/T_minus_1/output_0"],
                          name="/probe/T_minus_1/Sub")
    (seqlens,) = g.node("Reshape", [t_minus_1, i64("const_shape_1", [1])], ["/probe/seqlens/Reshape/output_0"],
                        name="/probe/seqlens/Reshape")
    g.node("Cast", [seqlens], ["seqlens_k"], name="/probe/seqlens_k/Cast", to=TensorProto.INT32)
    cos, sin = rotary_caches(config, max_positions)
    cos_name, sin_name = g.init("cos_cache", cos), g.init("sin_cache", sin)
    last_index = g.init("const_index_last", np.array([-1], dtype=np.int64))  # 1-D: rows keep their axis
    inv_sqrt_d = g.init("const_inv_sqrt_head_dim", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))

    residual = "hidden_in"
    residual_rows: list[str] = []
    attention_rows: list[str] = []
    for j, i in enumerate(range(first, last + 1)):
        p, n = f"model.layers.{i}", f"/probe/layers.{i}"
        # -- record the last row, steer it, rescale it to its own norm, put it back
        (row,) = g.node("Gather", [residual, last_index], [f"{n}/last/output_0"], name=f"{n}/last/Gather", axis=1)  # [1, 1, H]
        residual_rows.append(row)
        (vec,) = g.node("Gather", ["steer", g.init(f"const_layer_{j}", np.array([j], dtype=np.int64))],
                        [f"{n}/steer/Gather/output_0"], name=f"{n}/steer/Gather", axis=0)  # [1, H]
        (moved,) = g.node("Add", [row, vec], [f"{n}/steer/Add/output_0"], name=f"{n}/steer/Add")
        (norm_row,) = g.node("ReduceL2", [row], [f"{n}/steer/norm_row/output_0"], name=f"{n}/steer/norm_row", keepdims=1)
        (norm_moved,) = g.node("ReduceL2", [moved], [f"{n}/steer/norm_moved/output_0"], name=f"{n}/steer/norm_moved", keepdims=1)
        (ratio,) = g.node("Div", [norm_row, norm_moved], [f"{n}/steer/ratio/output_0"], name=f"{n}/steer/ratio")
        (steered,) = g.node("Mul", [moved, ratio], [f"{n}/steer/Mul/output_0"], name=f"{n}/steer/Mul")
        (head_rows,) = g.node("Slice", [residual, i64("const_zero_1", [0]), i64("const_minus_one_1", [-1]), i64("const_axes_1", [1])],
                              [f"{n}/steer/Slice/output_0"], name=f"{n}/steer/Slice")
        (x,) = g.node("Concat", [head_rows, steered], [f"{n}/steer/Concat/output_0"], name=f"{n}/steer/Concat", axis=1)

        # -- attention, with the last row's weights returned
        normed = rms_norm(x, f"{p}.input_layernorm.weight", f"{n}/input_layernorm")
        q = linear(normed, f"{p}.self_attn.q_proj", f"{n}/attn/q_proj")
        k = linear(normed, f"{p}.self_attn.k_proj", f"{n}/attn/k_proj")
        (q_rot,) = g.node("RotaryEmbedding", [q, "position_ids", cos_name, sin_name], [f"{n}/attn/q_rotary/output_0"],
                          name=f"{n}/attn/q_rotary/RotaryEmbedding", domain=MS, interleaved=0, num_heads=heads)
        (k_rot,) = g.node("RotaryEmbedding", [k, "position_ids", cos_name, sin_name], [f"{n}/attn/k_rotary/output_0"],
                          name=f"{n}/attn/k_rotary/RotaryEmbedding", domain=MS, interleaved=0, num_heads=kv_heads)
        attention_rows.append(last_row_attention(g, q_rot, k_rot, n, heads, kv_heads, head_dim, last_index, inv_sqrt_d))
        if i == last:
            break
        v = linear(normed, f"{p}.self_attn.v_proj", f"{n}/attn/v_proj")
        (attn,) = g.node("GroupQueryAttention", [q_rot, k_rot, v, "", "", "seqlens_k", "total_seq_len"],
                         [f"{n}/attn/GroupQueryAttention/output_0"], name=f"{n}/attn/GroupQueryAttention", domain=MS,
                         num_heads=heads, kv_num_heads=kv_heads)
        o = linear(attn, f"{p}.self_attn.o_proj", f"{n}/attn/o_proj")
        (x,) = g.node("Add", [x, o], [f"{n}/attn/residual/output_0"], name=f"{n}/attn/residual/Add")

        # -- MLP
        normed = rms_norm(x, f"{p}.post_attention_layernorm.weight", f"{n}/post_attention_layernorm")
        down = swiglu_mlp(g, normed, lambda inp, name, prefix: linear(inp, f"{p}.mlp.{name}", prefix), n)
        (residual,) = g.node("Add", [x, down], [f"{n}/mlp/residual/output_0"], name=f"{n}/mlp/residual/Add")

    (rows,) = g.node("Concat", residual_rows, ["/probe/residual_last/Concat/output_0"], name="/probe/residual_last/Concat", axis=0)
    g.node("Reshape", [rows, i64("const_shape_rows", [-1, hidden])], ["residual_last"], name="/probe/residual_last/Reshape")
    g.node("Concat", attention_rows, ["attention_last"], name="/probe/attention_last/Concat", axis=0)

    f32, i64t = TensorProto.FLOAT, TensorProto.INT64
    count = last - first + 1
    inputs = [
        helper.make_tensor_value_info("hidden_in", f32, [1, "sequence_length", hidden]),
        helper.make_tensor_value_info("position_ids", i64t, [1, "sequence_length"]),
        helper.make_tensor_value_info("lora_scale", f32, []),
        helper.make_tensor_value_info("steer", f32, [count, hidden]),
    ]
    outputs = [
        helper.make_tensor_value_info("residual_last", f32, [count, hidden]),
        helper.make_tensor_value_info("attention_last", f32, [count, heads, "sequence_length"]),
    ]
    graph = helper.make_graph(g.nodes, "salmonn_steering_probe", inputs, outputs)
    graph.initializer.extend(g.initializers)
    meta = {"precision": precision, "llama_config": json.dumps(asdict(config), sort_keys=True), "probe_first_layer": str(first),
            "probe_last_layer": str(last), "max_positions": str(max_positions)}
    return _model(graph, meta)


def last_row_attention(g: _GraphBuilder, q_rot: str, k_rot: str, n: str, heads: int, kv_heads: int, head_dim: int,
                       last_index: str, inv_sqrt_d: str) -> str:
    """softmax(q_last . K^T / sqrt(d)) per head -> [1, heads, T] (kv heads repeated as repeat_kv does:
    query head h reads kv head h // (heads / kv_heads)). The last row sees every position, so no mask."""
    rep = heads // kv_heads

    def i64(name: str, values: list[int]) -> str:
        return g.init(name, np.array(values, dtype=np.int64))

    (q_last,) = g.node("Gather", [q_rot, last_index], [f"{n}/readout/q_last/output_0"], name=f"{n}/readout/q_last", axis=1)
    (q_heads,) = g.node("Reshape", [q_last, i64(f"const_shape_q_{heads}_{head_dim}", [heads, 1, head_dim])],
                        [f"{n}/readout/q_heads/output_0"], name=f"{n}/readout/q_heads")  # [heads, 1, D]
    (k4,) = g.node("Reshape", [k_rot, i64(f"const_shape_k_{kv_heads}_{head_dim}", [-1, kv_heads, 1, head_dim])],
                   [f"{n}/readout/k4/output_0"], name=f"{n}/readout/k4")  # [T, kvh, 1, D]
    (k_exp,) = g.node("Expand", [k4, i64(f"const_expand_{kv_heads}_{rep}_{head_dim}", [1, kv_heads, rep, head_dim])],
                      [f"{n}/readout/k_expand/output_0"], name=f"{n}/readout/k_expand")  # [T, kvh, rep, D]
    (k_heads,) = g.node("Reshape", [k_exp, i64(f"const_shape_kh_{heads}_{head_dim}", [-1, heads, head_dim])],
                        [f"{n}/readout/k_heads/output_0"], name=f"{n}/readout/k_heads")  # [T, heads, D]
    (k_t,) = g.node("Transpose", [k_heads], [f"{n}/readout/k_t/output_0"], name=f"{n}/readout/k_t", perm=[1, 2, 0])  # [heads, D, T]
    (scores,) = g.node("MatMul", [q_heads, k_t], [f"{n}/readout/scores/output_0"], name=f"{n}/readout/scores")  # [heads, 1, T]
    (scaled,) = g.node("Mul", [scores, inv_sqrt_d], [f"{n}/readout/scaled/output_0"], name=f"{n}/readout/scaled")
    (probs,) = g.node("Softmax", [scaled], [f"{n}/readout/probs/output_0"], name=f"{n}/readout/Softmax", axis=-1)
    return g.node("Reshape", [probs, i64(f"const_shape_p_{heads}", [1, heads, -1])], [f"{n}/readout/row/output_0"],
                  name=f"{n}/readout/row")[0]
