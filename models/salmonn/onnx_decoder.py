"""ONNX graphs for SALMONN's LLaMA/Vicuna decoder, built directly with `onnx.helper`.

Two graphs, named and shaped as transformers.js expects for multimodal decoders:

Precisions (file suffixes in the bundle follow transformers.js: '', '_fp16', '_q4', '_q4f16'):
    fp32     fp32 weights, fp32 compute.
    int4     com.microsoft MatMulNBits (int4 weights, fp32 scales) with fp32 activations.
    fp16     fp16 weights and fp16 compute (MatMul in fp16).
    int4f16  MatMulNBits with fp16 activations and fp16 scales.
    In the fp16 graphs everything inside is fp16 (norm weights, rotary caches, LoRA matrices,
    activations, the KV cache); the EXTERNAL interface stays fp32 except the KV cache:
    `inputs_embeds` f32 (Cast to fp16 inside), `lora_scale` f32 (Cast inside), `logits` f32
    (Cast at the end), `past_key_values.*` / `present.*` float16. RMSNorm in fp16 graphs
    accumulates in fp32: ONNX Runtime's CPU kernels (SimplifiedLayerNormalization with
    stash_type=1, contrib SkipSimplifiedLayerNormalization) convert fp16 rows to fp32, normalize
    and convert back, and the native WebGPU EP's SkipLayerNorm shader sums x and x^2 in f32;
    the residual stream itself is stored in fp16 (like HF fp16 inference).

Big tensors: browsers cap one GPU binding (maxStorageBufferBindingSize, often 128 MiB - 1 GiB),
so no initializer may exceed `max_tensor_bytes` (256 MiB default). A plain MatMul weight over it
is split along N (output features) into equal-ish chunks, one MatMul each, Concat on the last
axis; MatMulNBits likewise (rows of the packed weight and of the scales); an embedding table
is split along the hidden axis into column blocks, one Gather (or GatherBlockQuantized, blocks
a multiple of the quantization block) each, Concat on the last axis. Graphs with nothing to
split are byte-identical to graphs built without the parameter. The builders raise ValueError
if any initializer is still over the limit (e.g. a rotary cache with absurd max_positions).

`embed_tokens` (`build_embed_graph`)
    input_ids int64 [batch, sequence_length] -> inputs_embeds f32 [batch, sequence_length, hidden]
    fp32: plain `Gather`. fp16: fp16 table, `Gather` + Cast to f32. int4 / int4f16:
    com.microsoft `GatherBlockQuantized` (uint8 data, bits 4, block 32, no zero points =
    implicit 8; see int4.quantize_gather_int4) with fp32 / fp16 scales (+ Cast to f32).

`decoder_model_merged` (`build_decoder_model`)
    inputs
      inputs_embeds               f32   [batch, sequence_length, hidden]
      attention_mask              int64 [batch, total_sequence_length]   (1 = real token)
      position_ids                int64 [batch, sequence_length]
      past_key_values.{i}.key     KV    [batch, kv_heads, past_sequence_length, head_dim]
      past_key_values.{i}.value   KV    [batch, kv_heads, past_sequence_length, head_dim]
      lora_scale                  f32   []  (rank-0 scalar; 0 = base model, alpha/r = trained)
      num_logits_to_keep          int64 []  (logits for the last k positions; the engine feeds 1)
    outputs
      logits                      f32   [batch, k, vocab]
      present.{i}.key / .value    KV    [batch, kv_heads, total_sequence_length, head_dim]
      probe_hidden                f32   [batch, sequence_length, hidden]  (only with probe_layer:
                                  the residual entering that layer, for localization's probe)
    KV = float32 for fp32/int4, float16 for fp16/int4f16.
    total_sequence_length = past_sequence_length + sequence_length; keys are stored rotated
    (like the PyTorch reference), so `present` feeds the next step's `past_key_values`.

Graph (one decoder layer; every node of the contrib kinds has a fused WebGPU kernel in ORT):
    SimplifiedLayerNormalization (layer 0) / SkipSimplifiedLayerNormalization (residual add +
    RMSNorm, output 3 = the residual sum) -> one packed q|k|v projection (MatMul on [Wq;Wk;Wv]^T
    in fp32/fp16, com.microsoft MatMulNBits in int4/int4f16) -> one LoRA path for the projections
    that carry it, in the graph's compute type (fp32 for fp32/int4, fp16 for fp16/int4f16):
    qkv += MatMul(Mul(MatMul(x, A^T), lora_scale), B^T) with A stacked and B block-diagonal (the
    scale multiplies the rank-r intermediate, the cheapest place; algebraically the reference's
    scale * (x A^T) B^T per projection) -> com.microsoft GroupQueryAttention on the packed q|k|v
    with do_rotary (non-interleaved = HF rotate_half; cos/sin caches [max_positions, head_dim/2]
    shared by all layers; positions follow from seqlens_k, i.e. past length + index, which is what
    position_ids holds for an unpadded batch; seqlens_k = ReduceSum(attention_mask) - 1 as int32
    [batch]; total_sequence_length = attention_mask.shape[1] as an int32 scalar; past and present
    may share one buffer, see src/engine/llm/fixedKvCache.ts) -> o_proj -> Skip-RMSNorm -> SwiGLU MLP
    (gate/up/down; silu = x * Sigmoid(x)) -> ... -> final Skip-RMSNorm -> Slice to the last
    num_logits_to_keep positions -> lm_head.

`fuse_qkv=False` builds the earlier layout instead (separate q/k/v projections and LoRA paths,
com.microsoft RotaryEmbedding on q and k driven by position_ids): same numbers, more kernels.

Limits (from GroupQueryAttention): the attention mask is only used through seqlens_k, so a
batch must be right-padded (or unpadded); causal masking is implicit. Batch 1 with an all-ones
mask (SALMONN's case) is exact. position_ids must be < max_positions (cos/sin cache rows).

Other LLMs (`flavor=`, an LlmFlavor; `qwen3_flavor()` for ALARM's Qwen3): per-head q/k RMSNorm
between the packed projection and GroupQueryAttention's rotary (Split, Reshape to heads,
SimplifiedLayerNormalization over head_dim, Concat back), a tied LM head (optionally reading the
embedding graph's data file: `shared_head`), and no `lora_scale` input. The LLaMA defaults build
exactly the graphs above.

Weights come from the reference `LlamaDecoder.state_dict()` (HF names; LoRA as
`...{q,v}_proj.lora_A` [r, in] / `lora_B` [out, r]). `save_model` writes deterministic bytes:
fixed tensor order and node names, external data in `{name}.onnx_data`, `{name}.onnx_data_1`, ...
(each file at most `max_file_bytes`; each tensor 4096-byte aligned inside its file).
"""

from __future__ import annotations

import json
import os
from collections import ChainMap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Mapping, Optional, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .int4 import BLOCK_SIZE, quantize_gather_int4, quantize_int4
from .llama import LlamaConfig, rotary_inv_freq

PRECISIONS = ("fp32", "int4", "fp16", "int4f16")
INT4_PRECISIONS = ("int4", "int4f16")
FP16_PRECISIONS = ("fp16", "int4f16")
MAX_TENSOR_BYTES = 256 << 20
OPSET_ONNX = 17
OPSET_MS = 1
MS = "com.microsoft"
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
INT4_LINEARS = PROJECTIONS + MLP_PROJECTIONS  # plus lm_head


@dataclass(frozen=True)
class LlmFlavor:
    """What sets an LLM apart from SALMONN's LLaMA in the decoder graph (the defaults are LLaMA's,
    whose graphs stay byte-identical). Qwen3 (ALARM) sets all of them:

    qk_norm              per-head RMSNorm of q and k (`self_attn.q_norm` / `k_norm`, weight
                         [head_dim]) between the projection and the rotary embedding
    tie_word_embeddings  no `lm_head.weight`: the head is `model.embed_tokens.weight`
    lora_input           the `lora_scale` input exists (False: no LoRA, and LoRA weights are refused)
    graph_name, config_key  the graph's name and the metadata key holding the config
    """

    qk_norm: bool = False
    tie_word_embeddings: bool = False
    lora_input: bool = True
    graph_name: str = "salmonn_llama_decoder"
    config_key: str = "llama_config"


LLAMA = LlmFlavor()


def qwen3_flavor(tie_word_embeddings: bool = True) -> LlmFlavor:
    return LlmFlavor(qk_norm=True, tie_word_embeddings=tie_word_embeddings, lora_input=False,
                     graph_name="qwen3_decoder", config_key="qwen3_config")


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def compute_dtype(precision: str) -> type:
    """numpy dtype the graph computes in (and of its KV cache): float16 for fp16/int4f16."""
    _check_precision(precision)
    return np.float16 if precision in FP16_PRECISIONS else np.float32


def _onnx_type(dtype) -> int:
    return TensorProto.FLOAT16 if np.dtype(dtype) == np.float16 else TensorProto.FLOAT


def _np(t) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().float().numpy()
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32))


def _as_dtype(array: np.ndarray, dtype, what: str) -> np.ndarray:
    """array cast to dtype; refuses values that do not fit fp16 (inf after the cast)."""
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(array.astype(dtype))
    if out.dtype == np.float16 and not np.isfinite(out).all():
        raise ValueError(f"{what}: values outside the float16 range ({float(np.abs(array).max()):.3g})")
    return out


def _split_sizes(total: int, unit_bytes: int, max_bytes: int, what: str) -> list[int]:
    """Equal-ish sizes (differing by at most 1) summing to `total`, each `size * unit_bytes <= max_bytes`."""
    if total * unit_bytes <= max_bytes:
        return [total]
    if unit_bytes > max_bytes:
        raise ValueError(f"{what}: one slice is {unit_bytes} bytes, over max_tensor_bytes={max_bytes}")
    per_chunk = max_bytes // unit_bytes
    chunks = -(-total // per_chunk)
    base, extra = divmod(total, chunks)
    return [base + (1 if j < extra else 0) for j in range(chunks)]


@dataclass(frozen=True)
class QuantizedLinear:
    """A Linear weight W [N, K] already in MatMulNBits' int4 layout (see int4.quantize_int4):
    packed uint8 [N, ceil(K/block), block/2], scales float32 [N * ceil(K/block)].

    Pass it in place of the fp32 weight to `build_decoder_model` (int4 precisions only) to skip
    holding and quantizing fp32 weights, e.g. for benchmark graphs at 7B/13B geometry."""

    packed: np.ndarray
    scales: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        n, n_blocks, half = self.packed.shape
        return n, n_blocks * half * 2


class ExternalDataWriter:
    """Writes initializers to `{stem}.onnx_data`, `{stem}.onnx_data_1`, ... as they are made.

    The layout is `save_model`'s (tensors in order, each `align`-byte aligned, a new file when one
    would exceed `max_file_bytes`). Given to a graph builder (`external_data=`), it lets a graph
    whose weights do not fit in memory be built tensor by tensor; `finish` writes the `.onnx`.
    """

    def __init__(self, path: str | os.PathLike, size_threshold: int = 1024, max_file_bytes: int = 1 << 30,
                 align: int = 4096) -> None:
        self.path = Path(path)
        self.stem = self.path.name[: -len(".onnx")] if self.path.name.endswith(".onnx") else self.path.name
        self.size_threshold, self.max_file_bytes, self.align = size_threshold, max_file_bytes, align
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.path.parent.glob(f"{self.stem}.onnx_data*"):
            stale.unlink()
        self.written: list[Path] = [self.path]
        self._handle: Optional[BinaryIO] = None
        self._file_index, self._file_size = 0, 0

    def wants(self, raw: bytes) -> bool:
        return bool(raw) and len(raw) >= self.size_threshold

    def write(self, tensor: onnx.TensorProto) -> None:
        """Moves tensor.raw_data to the data files and points the tensor at it."""
        raw = tensor.raw_data
        start = -(-self._file_size // self.align) * self.align
        if self._handle is not None and start + len(raw) > self.max_file_bytes and self._file_size > 0:
            self._handle.close()
            self._handle, self._file_index, self._file_size, start = None, self._file_index + 1, 0, 0
        location = f"{self.stem}.onnx_data" + (f"_{self._file_index}" if self._file_index else "")
        if self._handle is None:
            self._handle = open(self.path.parent / location, "wb")
            self.written.append(self.path.parent / location)
        self._handle.write(b"\0" * (start - self._file_size))
        self._handle.write(raw)
        self._file_size = start + len(raw)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        for k, v in (("location", location), ("offset", str(start)), ("length", str(len(raw)))):
            tensor.external_data.append(onnx.StringStringEntryProto(key=k, value=v))

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def finish(self, model: onnx.ModelProto) -> list[Path]:
        """Closes the data files and writes the model; returns every file written."""
        self.close()
        self.path.write_bytes(model.SerializeToString())
        return self.written


@dataclass(frozen=True)
class ExternalTensor:
    """An initializer whose bytes already lie in another graph's external data file: a tied LM
    head reads the embedding graph's table (same file, same offset) instead of a second copy."""

    location: str
    offset: int
    length: int
    dims: tuple[int, ...]
    data_type: int

    @classmethod
    def of(cls, tensor: onnx.TensorProto) -> "ExternalTensor":
        if tensor.data_location != TensorProto.EXTERNAL:
            raise ValueError(f"{tensor.name}: not stored as external data")
        entries = {e.key: e.value for e in tensor.external_data}
        return cls(entries["location"], int(entries.get("offset", 0)), int(entries["length"]), tuple(tensor.dims),
                   tensor.data_type)

    def proto(self, name: str, dims: Optional[tuple[int, ...]] = None) -> onnx.TensorProto:
        """The initializer `name` over these bytes, viewed with `dims` (same element count)."""
        tensor = onnx.TensorProto(name=name, data_type=self.data_type, dims=list(dims or self.dims))
        if int(np.prod(tensor.dims)) != int(np.prod(self.dims)):
            raise ValueError(f"{name}: dims {tensor.dims} do not cover {self.dims}")
        tensor.data_location = TensorProto.EXTERNAL
        for k, v in (("location", self.location), ("offset", str(self.offset)), ("length", str(self.length))):
            tensor.external_data.append(onnx.StringStringEntryProto(key=k, value=v))
        return tensor


class _GraphBuilder:
    """Collects nodes/initializers in insertion order (stable names, stable bytes).

    With `sink`, large initializers go straight to external data files as they are added."""

    def __init__(self, sink: Optional[ExternalDataWriter] = None) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._init_names: set[str] = set()
        self._sizes: dict[str, int] = {}
        self._sink = sink

    def init(self, name: str, array: np.ndarray) -> str:
        if name in self._init_names:
            return name
        self._init_names.add(name)
        tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
        self._sizes[name] = len(tensor.raw_data)
        if self._sink is not None and self._sink.wants(tensor.raw_data):
            self._sink.write(tensor)
        self.initializers.append(tensor)
        return name

    def external(self, name: str, tensor: ExternalTensor, dims: Optional[tuple[int, ...]] = None) -> str:
        """An initializer over bytes in another graph's data file (nothing is written here)."""
        if name not in self._init_names:
            self._init_names.add(name)
            self.initializers.append(tensor.proto(name, dims))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "", **attrs) -> list[str]:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain or None, **attrs))
        return outputs

    def check_sizes(self, max_tensor_bytes: int) -> None:
        over = [f"{name} ({size} bytes)" for name, size in self._sizes.items() if size > max_tensor_bytes]
        if over:
            raise ValueError(f"initializers over max_tensor_bytes={max_tensor_bytes}: {', '.join(over)}")


def rotary_caches(config: LlamaConfig, max_positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [max_positions, head_dim/2] f32, computed exactly as llama.rotary_cos_sin does."""
    import torch

    inv_freq = rotary_inv_freq(config.head_dim, config.rope_theta)
    angles = torch.arange(max_positions).float()[:, None] * inv_freq
    return angles.cos().numpy().astype(np.float32), angles.sin().numpy().astype(np.float32)


def quantize_linear(weight, precision: str, block_size: int = BLOCK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """int4 packing of a Linear weight [N, K] as the `precision` graph stores it (scales fp16 for int4f16)."""
    packed, scales = quantize_int4(_np(weight), block_size)
    return packed, _as_dtype(scales, compute_dtype(precision), "int4 scales")


def quantize_embedding(table, precision: str, block_size: int = BLOCK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """GatherBlockQuantized packing of an embedding table as the `precision` graph stores it."""
    packed, scales = quantize_gather_int4(_np(table), block_size)
    return packed, _as_dtype(scales, compute_dtype(precision), "int4 scales")


def reference_weights(weights: Mapping[str, object], precision: str, block_size: int = BLOCK_SIZE) -> dict:
    """The decoder state dict with every weight replaced by exactly what the `precision` graphs hold
    (as float32 torch tensors): fp16-rounded for fp16; int4-dequantized (with the graph's scale
    dtype) for the int4 linears, lm_head and the embedding table of int4/int4f16, and the rest
    fp16-rounded for int4f16. Load it into `LlamaDecoder` to get the weight-exact reference."""
    import torch

    from .int4 import dequantize_gather_int4, dequantize_int4

    _check_precision(precision)
    dtype = compute_dtype(precision)
    out = {}
    for key, value in weights.items():
        arr = _np(value)
        if precision in INT4_PRECISIONS and key == "model.embed_tokens.weight":
            packed, scales = quantize_embedding(arr, precision, block_size)
            arr = dequantize_gather_int4(packed, scales.astype(np.float32))
        elif precision in INT4_PRECISIONS and (key == "lm_head.weight" or (
                key.endswith(".weight") and any(f".{n}." in key for n in INT4_LINEARS))):
            packed, scales = quantize_linear(arr, precision, block_size)
            arr = dequantize_int4(packed, scales.astype(np.float32), arr.shape[1])
        if dtype == np.float16:
            arr = _as_dtype(arr, np.float16, key).astype(np.float32)
        out[key] = torch.from_numpy(np.ascontiguousarray(arr))
    return out


def _linear(g: _GraphBuilder, x: str, weight: Union[np.ndarray, QuantizedLinear], prefix: str, precision: str,
            block_size: int, accuracy_level: int, max_tensor_bytes: int = MAX_TENSOR_BYTES,
            cast_to: Optional[int] = None, cast_output: str = "") -> str:
    """y = x W^T for a torch Linear weight W [N, K]; split along N when a tensor would exceed max_tensor_bytes.

    weight may be a QuantizedLinear (int4 precisions only): its packing is used as it is.
    cast_to/cast_output: Cast the result to that type, named cast_output (the fp16 graphs' lm_head
    -> f32 logits). When split, each chunk is cast before the Concat, so the Concat runs in the
    target type and the chunks never round-trip through fp16 (on ORT's CPU EP the fp16 MatMul
    runs in fp32 and the Cast pair is removed; a fp16 Concat would round the logits to fp16).
    """
    n, k = weight.shape
    out = f"{prefix}/output_0"
    dtype = compute_dtype(precision)

    def finish(parts: list[str]) -> str:
        if cast_to is None:
            if len(parts) == 1:
                return out
            g.node("Concat", parts, [out], name=f"{prefix}/Concat", axis=-1)
            return out
        if len(parts) == 1:
            g.node("Cast", parts, [cast_output], name=f"{prefix}/Cast", to=cast_to)
            return cast_output
        cast = [g.node("Cast", [part], [f"{prefix}/Cast_{j}/output_0"], name=f"{prefix}/Cast_{j}", to=cast_to)[0]
                for j, part in enumerate(parts)]
        g.node("Concat", cast, [cast_output], name=f"{prefix}/Concat", axis=-1)
        return cast_output
    if isinstance(weight, QuantizedLinear) and precision not in INT4_PRECISIONS:
        raise ValueError(f"{prefix}: a pre-quantized weight needs an int4 precision, not {precision!r}")
    if precision not in INT4_PRECISIONS:
        w_t = _as_dtype(weight.T, dtype, f"{prefix}.weight")  # [K, N]
        sizes = _split_sizes(n, k * w_t.itemsize, max_tensor_bytes, f"{prefix}.weight")
        if len(sizes) == 1:
            w = g.init(f"{prefix}.weight_T", w_t)
            return finish(g.node("MatMul", [x, w], [out], name=f"{prefix}/MatMul"))
        parts, start = [], 0
        for j, size in enumerate(sizes):
            w = g.init(f"{prefix}.weight_T.part{j}", w_t[:, start:start + size])
            parts += g.node("MatMul", [x, w], [f"{prefix}/MatMul_{j}/output_0"], name=f"{prefix}/MatMul_{j}")
            start += size
        return finish(parts)

    if isinstance(weight, QuantizedLinear):
        if weight.packed.shape[2] * 2 != block_size:
            raise ValueError(f"{prefix}: pre-quantized block size {weight.packed.shape[2] * 2} != {block_size}")
        packed, scales = weight.packed, _as_dtype(weight.scales, dtype, "int4 scales")
    else:
        packed, scales = quantize_linear(weight, precision, block_size)
    n_blocks = packed.shape[1]
    row_bytes = max(packed[0].nbytes, n_blocks * scales.itemsize)
    sizes = _split_sizes(n, row_bytes, max_tensor_bytes, f"{prefix}.weight")

    def nbits(b: np.ndarray, s: np.ndarray, n_rows: int, suffix: str, output: str) -> list[str]:
        b_name = g.init(f"{prefix}.weight_Q4{suffix}", b)
        s_name = g.init(f"{prefix}.weight_scales{suffix}", s)
        attrs = dict(K=k, N=n_rows, bits=4, block_size=block_size)
        if accuracy_level:
            attrs["accuracy_level"] = accuracy_level
        node_suffix = suffix.replace(".part", "_")
        return g.node("MatMulNBits", [x, b_name, s_name], [output], name=f"{prefix}/MatMulNBits{node_suffix}",
                      domain=MS, **attrs)

    if len(sizes) == 1:
        return finish(nbits(packed, scales, n, "", out))
    parts, start = [], 0
    for j, size in enumerate(sizes):
        parts += nbits(packed[start:start + size], scales[start * n_blocks:(start + size) * n_blocks], size,
                       f".part{j}", f"{prefix}/MatMulNBits_{j}/output_0")
        start += size
    return finish(parts)


def _stack_rows(weights: list) -> Union[np.ndarray, "QuantizedLinear"]:
    """Linear weights [N_j, K] stacked into one [sum N_j, K] (the outputs side by side).

    Pre-quantized weights stack as they are: int4 blocks run along K, so rows are independent."""
    if all(isinstance(w, QuantizedLinear) for w in weights):
        return QuantizedLinear(np.ascontiguousarray(np.concatenate([w.packed for w in weights], axis=0)),
                               np.ascontiguousarray(np.concatenate([w.scales for w in weights], axis=0)))
    return np.ascontiguousarray(np.concatenate(weights, axis=0))


def _lora_delta(g: _GraphBuilder, x: str, a: np.ndarray, b: np.ndarray, prefix: str,
                scale: str = "lora_scale", dtype=np.float32) -> str:
    """scale * (x A^T) B^T in the graph's compute dtype (A [r, in], B [out, r])."""
    a_t = g.init(f"{prefix}.lora_A_T", _as_dtype(a.T, dtype, f"{prefix}.lora_A"))
    b_t = g.init(f"{prefix}.lora_B_T", _as_dtype(b.T, dtype, f"{prefix}.lora_B"))
    (down,) = g.node("MatMul", [x, a_t], [f"{prefix}/lora_A/output_0"], name=f"{prefix}/lora_A/MatMul")
    (scaled,) = g.node("Mul", [down, scale], [f"{prefix}/lora_scale/output_0"], name=f"{prefix}/lora_scale/Mul")
    (up,) = g.node("MatMul", [scaled, b_t], [f"{prefix}/lora_B/output_0"], name=f"{prefix}/lora_B/MatMul")
    return up


def swiglu_mlp(g: _GraphBuilder, x: str, project: Callable[[str, str, str], str], n: str) -> str:
    """down(silu(gate(x)) * up(x)), silu = x * Sigmoid(x); `project(input, "gate_proj", prefix)` builds
    one projection (plain or int4, with or without LoRA: the caller's choice). Node names under `n`."""
    gate = project(x, "gate_proj", f"{n}/mlp/gate_proj")
    up = project(x, "up_proj", f"{n}/mlp/up_proj")
    (sig,) = g.node("Sigmoid", [gate], [f"{n}/mlp/act/Sigmoid/output_0"], name=f"{n}/mlp/act/Sigmoid")
    (silu,) = g.node("Mul", [gate, sig], [f"{n}/mlp/act/Mul/output_0"], name=f"{n}/mlp/act/Mul")
    (prod,) = g.node("Mul", [silu, up], [f"{n}/mlp/Mul/output_0"], name=f"{n}/mlp/Mul")
    return project(prod, "down_proj", f"{n}/mlp/down_proj")


def embed_table_tensors(embed: onnx.ModelProto) -> Optional[dict[str, ExternalTensor]]:
    """The table initializers of a saved `build_embed_graph` model (loaded without its data), for
    `shared_head`; None when the table was split into parts (then the head keeps its own copy)."""
    tensors = {t.name: t for t in embed.graph.initializer}
    for names in (["model.embed_tokens.weight"], ["model.embed_tokens.weight_Q4", "model.embed_tokens.weight_scales"]):
        if all(n in tensors for n in names):
            return {n: ExternalTensor.of(tensors[n]) for n in names}
    return None


def _shared_head(g: _GraphBuilder, x: str, table: Mapping[str, ExternalTensor], precision: str, vocab: int,
                 hidden: int, block_size: int) -> None:
    """logits = x E^T from the embedding graph's own bytes (see build_decoder_model's shared_head)."""
    if precision in INT4_PRECISIONS:
        n_blocks = -(-hidden // block_size)
        packed = g.external("lm_head.shared_Q4", table["model.embed_tokens.weight_Q4"], (vocab, n_blocks, block_size // 2))
        scales = g.external("lm_head.shared_scales", table["model.embed_tokens.weight_scales"], (vocab * n_blocks,))
        out = "logits" if precision == "int4" else "/lm_head/MatMulNBits/output_0"
        g.node("MatMulNBits", [x, packed, scales], [out], name="/lm_head/MatMulNBits", domain=MS,
               K=hidden, N=vocab, bits=4, block_size=block_size)
    else:
        weight = g.external("lm_head.shared_weight", table["model.embed_tokens.weight"])  # [vocab, hidden]
        rows = g.init("/lm_head/rows_shape", np.array([-1, hidden], dtype=np.int64))
        (flat,) = g.node("Reshape", [x, rows], ["/lm_head/Reshape/output_0"], name="/lm_head/Reshape")
        (gemm,) = g.node("Gemm", [flat, weight], ["/lm_head/Gemm/output_0"], name="/lm_head/Gemm", transB=1)
        (shape,) = g.node("Shape", [x], ["/lm_head/Shape/output_0"], name="/lm_head/Shape", end=2)
        v = g.init("/lm_head/vocab", np.array([vocab], dtype=np.int64))
        (target,) = g.node("Concat", [shape, v], ["/lm_head/Concat/output_0"], name="/lm_head/Concat", axis=0)
        out = "logits" if precision == "fp32" else "/lm_head/Reshape_back/output_0"
        g.node("Reshape", [gemm, target], [out], name="/lm_head/Reshape_back")
    if out != "logits":
        g.node("Cast", [out], ["logits"], name="/lm_head/Cast", to=TensorProto.FLOAT)


def _keep_last_positions(g: _GraphBuilder, x: str) -> str:
    """x[:, -num_logits_to_keep:, :]: the final norm's rows that reach lm_head.

    The engine asks for 1 (only the last prompt position's logits are ever sampled), which saves
    lm_head's (vocab x hidden) work for every other prompt row and a [n, vocab] read-back per
    prefill; tests ask for all rows to compare every position with the reference.
    """
    axes = g.init("const_axes_1", np.array([1], dtype=np.int64))
    end = g.init("const_int64_max", np.array([np.iinfo(np.int64).max], dtype=np.int64))
    (keep,) = g.node("Unsqueeze", ["num_logits_to_keep", g.init("const_axes_0", np.array([0], dtype=np.int64))],
                     ["/model/keep_logits/Unsqueeze/output_0"], name="/model/keep_logits/Unsqueeze")
    (start,) = g.node("Neg", [keep], ["/model/keep_logits/Neg/output_0"], name="/model/keep_logits/Neg")
    (kept,) = g.node("Slice", [x, start, end, axes], ["/model/keep_logits/Slice/output_0"],
                     name="/model/keep_logits/Slice")
    return kept


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
    max_tensor_bytes: int = MAX_TENSOR_BYTES,
    fuse_qkv: bool = True,
    external_data: Optional[ExternalDataWriter] = None,
    probe_layer: Optional[int] = None,
    flavor: LlmFlavor = LLAMA,
    shared_head: Optional[Mapping[str, ExternalTensor]] = None,
) -> onnx.ModelProto:
    """Decoder graph (see module doc) from the reference decoder's state dict.

    weights: `LlamaDecoder.state_dict()` (HF names; torch tensors or numpy arrays). LoRA
      tensors are taken from `weights` and/or `lora` (same key names,
      `model.layers.N.self_attn.X_proj.lora_A` / `lora_B`); `lora` wins on a clash. Any of
      q/k/v/o_proj may carry LoRA; without any, `lora_scale` is still an input (unused).
    precision: "fp32" (MatMul), "int4" (MatMulNBits for q,k,v,o,gate,up,down,lm_head; norms,
      rotary caches and LoRA stay fp32), "fp16" (MatMul in fp16; everything inside fp16) or
      "int4f16" (MatMulNBits with fp16 activations and fp16 scales; the rest fp16). The fp16
      variants keep fp32 `inputs_embeds` / `lora_scale` / `logits`; their KV cache is float16.
    lora_default_scale: stored in metadata (`lora_default_scale`) for the engine; not used.
    max_positions: rotary cache rows (default config.max_position_embeddings).
    accuracy_level: MatMulNBits attribute; 0 (default, left unset) = fp32 compute on CPU.
    max_tensor_bytes: no initializer above this size (weights are split along N, see module doc).
    fuse_qkv: one q/k/v matmul, one LoRA path and the rotary inside GroupQueryAttention (default;
      fewer kernels per decode step; only where head_dim is a multiple of 16, which ORT's fused
      rotary requires, else the separate layout); False keeps the separate projections and
      RotaryEmbedding nodes (the graph before that change, for benchmarks and as a cross-check).
    external_data: stream initializers to these data files while building (for graphs whose
      weights do not fit in memory; save with `external_data.finish(model)`, not `save_model`).
      `weights` may then be a lazy Mapping (values made on access; `in` must not make them) and,
      for int4 precisions, the linear weights may be `QuantizedLinear`s.
    flavor: the LLM's departures from LLaMA (LlmFlavor; `qwen3_flavor()` for Qwen3). `config`
      may then be any dataclass with LlamaConfig's field names and a `head_dim` (Qwen3Config).
    shared_head: with tied embeddings, the embedding graph's table as saved (initializer name ->
      ExternalTensor, see `embed_table_tensors`): the head reads those bytes from the embed graph's
      data file instead of holding a copy (fp32/fp16: Gemm with transB on the [vocab, hidden]
      table; int4: MatMulNBits on the same packed bytes, whose layout GatherBlockQuantized shares).
      The caller lists that data file among the decoder's external data.
    """
    _check_precision(precision)
    dtype = compute_dtype(precision)
    half = dtype == np.float16
    ftype = _onnx_type(dtype)
    weights = ChainMap(dict(lora or {}), weights)  # lookups only: a lazy Mapping stays lazy
    max_positions = max_positions or config.max_position_embeddings
    hidden, heads, kv_heads, head_dim = (config.hidden_size, config.num_attention_heads,
                                         config.num_key_value_heads, config.head_dim)
    eps = float(config.rms_norm_eps)
    if not flavor.lora_input and (lora or any(k.endswith(".lora_A") for k in weights)):
        raise ValueError("LoRA weights given to a decoder without a lora_scale input (flavor.lora_input is False)")
    g = _GraphBuilder(external_data)

    def w(key: str) -> Union[np.ndarray, QuantizedLinear]:
        if key not in weights:
            raise KeyError(f"missing weight {key!r}")
        value = weights[key]
        return value if isinstance(value, QuantizedLinear) else _np(value)

    def linear(x: str, key: str, prefix: str) -> str:
        return _linear(g, x, w(key), prefix, precision, block_size, accuracy_level, max_tensor_bytes)

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
    cos_name = g.init("cos_cache", cos.astype(dtype))
    sin_name = g.init("sin_cache", sin.astype(dtype))

    residual = "inputs_embeds"
    if half:
        (residual,) = g.node("Cast", ["inputs_embeds"], ["/model/inputs_embeds/Cast/output_0"],
                             name="/model/inputs_embeds/Cast", to=ftype)
    pending: Optional[str] = None  # delta to add to the residual before the next norm
    lora_projs: list[str] = []
    lora_scale_name: Optional[str] = None

    def lora_scale() -> str:
        nonlocal lora_scale_name
        if lora_scale_name is None:
            lora_scale_name = "lora_scale"
            if half:
                (lora_scale_name,) = g.node("Cast", ["lora_scale"], ["/model/lora_scale/Cast/output_0"],
                                            name="/model/lora_scale/Cast", to=ftype)
        return lora_scale_name

    def lora_delta(x: str, key: str, prefix: str) -> str:
        return _lora_delta(g, x, w(f"{key}.lora_A"), w(f"{key}.lora_B"), prefix, lora_scale(), dtype)

    def fused_qkv(x: str, p: str, prefix: str) -> str:
        """[q | k | v] = x [Wq; Wk; Wv]^T (+ the LoRA deltas of those that carry one) in one matmul.

        One weight whose rows are Wq, Wk, Wv (int4 blocks run along K, so each row quantizes as
        it would alone) and one low-rank path for every adapted projection: A stacked [sum r, in],
        B block-diagonal [out_q + out_k + out_v, sum r]; the zero blocks add exact zeros, so each
        projection gets exactly its own delta. The packed result feeds GroupQueryAttention, which
        also applies the rotary embedding (do_rotary): per layer 1 matmul and 1 LoRA path instead
        of 3 matmuls, 2 LoRA paths and 2 RotaryEmbedding kernels.
        """
        keys = [f"{p}.self_attn.{name}" for name in ("q_proj", "k_proj", "v_proj")]
        parts = [w(f"{key}.weight") for key in keys]
        y = _linear(g, x, _stack_rows(parts), prefix, precision, block_size, accuracy_level, max_tensor_bytes)
        adapted = [j for j, key in enumerate(keys) if f"{key}.lora_A" in weights]
        if not adapted:
            return y
        lora_projs.extend(keys[j] for j in adapted)
        a = np.concatenate([w(f"{keys[j]}.lora_A") for j in adapted], axis=0)  # [sum r, in]
        rows = [part.shape[0] for part in parts]
        b = np.zeros((sum(rows), a.shape[0]), np.float32)
        col = 0
        for j in adapted:
            b_j = w(f"{keys[j]}.lora_B")  # [out_j, r_j]
            b[sum(rows[:j]):sum(rows[:j + 1]), col:col + b_j.shape[1]] = b_j
            col += b_j.shape[1]
        delta = _lora_delta(g, x, a, b, prefix, lora_scale(), dtype)
        (y,) = g.node("Add", [y, delta], [f"{prefix}/Add/output_0"], name=f"{prefix}/Add")
        return y

    def norm(weight_key: str, prefix: str, residual_name: Optional[str] = None) -> str:
        nonlocal residual, pending
        gamma = g.init(weight_key, _as_dtype(w(weight_key), dtype, weight_key))
        out = f"{prefix}/output_0"
        if pending is None:
            g.node("SimplifiedLayerNormalization", [residual, gamma], [out], name=f"{prefix}/SimplifiedLayerNorm",
                   axis=-1, epsilon=eps, stash_type=1)
        else:
            new_residual = residual_name or f"{prefix}/output_3"
            g.node("SkipSimplifiedLayerNormalization", [residual, pending, gamma], [out, "", "", new_residual],
                   name=f"{prefix}/SkipLayerNorm", domain=MS, epsilon=eps)
            residual, pending = new_residual, None
        return out

    def head_norm(y: str, weight_key: str, n_heads: int, prefix: str) -> str:
        """Qwen3's per-head RMSNorm: y [B, T, n_heads * head_dim] viewed as [B, T, n_heads, head_dim],
        normalized over head_dim with weight [head_dim], then flattened back."""
        gamma = g.init(weight_key, _as_dtype(w(weight_key), dtype, weight_key))
        by_head = g.init(f"const_shape_heads_{n_heads}", np.array([0, 0, n_heads, head_dim], dtype=np.int64))
        flat = g.init(f"const_shape_flat_{n_heads}", np.array([0, 0, n_heads * head_dim], dtype=np.int64))
        (heads_view,) = g.node("Reshape", [y, by_head], [f"{prefix}/Reshape/output_0"], name=f"{prefix}/Reshape")
        (normed,) = g.node("SimplifiedLayerNormalization", [heads_view, gamma], [f"{prefix}/norm/output_0"],
                           name=f"{prefix}/SimplifiedLayerNorm", axis=-1, epsilon=eps, stash_type=1)
        return g.node("Reshape", [normed, flat], [f"{prefix}/output_0"], name=f"{prefix}/Reshape_flat")[0]

    def qk_normed_qkv(qkv: str, p: str, n: str) -> str:
        """The packed q|k|v with q and k head-normed (v untouched), still packed for GroupQueryAttention."""
        sizes = g.init("const_qkv_split", np.array([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim],
                                                   dtype=np.int64))
        q, k, v = g.node("Split", [qkv, sizes], [f"{n}/attn/qkv_split/output_{j}" for j in range(3)],
                         name=f"{n}/attn/qkv_split", axis=-1)
        q = head_norm(q, f"{p}.self_attn.q_norm.weight", heads, f"{n}/attn/q_norm")
        k = head_norm(k, f"{p}.self_attn.k_norm.weight", kv_heads, f"{n}/attn/k_norm")
        return g.node("Concat", [q, k, v], [f"{n}/attn/qkv_normed/output_0"], name=f"{n}/attn/qkv_normed", axis=-1)[0]

    outputs_present: list[str] = []
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}"
        n = f"/model/layers.{i}"
        probed = i == probe_layer
        x = norm(f"{p}.input_layernorm.weight", f"{n}/input_layernorm",
                 residual_name="probe_hidden" if probed and i > 0 and not half else None)
        if probed and residual != "probe_hidden":
            if half:
                g.node("Cast", [residual], ["probe_hidden"], name="/probe_hidden/Cast", to=TensorProto.FLOAT)
            else:
                g.node("Identity", [residual], ["probe_hidden"], name="/probe_hidden/Identity")

        present_k, present_v = f"present.{i}.key", f"present.{i}.value"
        past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        gqa = f"{n}/attn/GroupQueryAttention"
        if fuse_qkv and head_dim % 16 == 0:  # GQA's fused rotary needs head_size % 16 == 0
            qkv = fused_qkv(x, p, f"{n}/attn/qkv_proj")
            if flavor.qk_norm:
                qkv = qk_normed_qkv(qkv, p, n)
            (attn,) = g.node("GroupQueryAttention",
                             [qkv, "", "", past_k, past_v, "seqlens_k", "total_seq_len", cos_name, sin_name],
                             [f"{gqa}/output_0", present_k, present_v], name=gqa, domain=MS,
                             num_heads=heads, kv_num_heads=kv_heads, do_rotary=1, rotary_interleaved=0)[:1]
        else:
            proj = {}
            for name in ("q_proj", "k_proj", "v_proj"):
                key = f"{p}.self_attn.{name}"
                y = linear(x, f"{key}.weight", f"{n}/attn/{name}")
                if f"{key}.lora_A" in weights:
                    lora_projs.append(key)
                    delta = lora_delta(x, key, f"{n}/attn/{name}")
                    (y,) = g.node("Add", [y, delta], [f"{n}/attn/{name}/Add/output_0"], name=f"{n}/attn/{name}/Add")
                proj[name] = y
            if flavor.qk_norm:
                proj["q_proj"] = head_norm(proj["q_proj"], f"{p}.self_attn.q_norm.weight", heads, f"{n}/attn/q_norm")
                proj["k_proj"] = head_norm(proj["k_proj"], f"{p}.self_attn.k_norm.weight", kv_heads, f"{n}/attn/k_norm")
            (q_rot,) = g.node("RotaryEmbedding", [proj["q_proj"], "position_ids", cos_name, sin_name],
                              [f"{n}/attn/q_rotary/output_0"], name=f"{n}/attn/q_rotary/RotaryEmbedding",
                              domain=MS, interleaved=0, num_heads=heads)
            (k_rot,) = g.node("RotaryEmbedding", [proj["k_proj"], "position_ids", cos_name, sin_name],
                              [f"{n}/attn/k_rotary/output_0"], name=f"{n}/attn/k_rotary/RotaryEmbedding",
                              domain=MS, interleaved=0, num_heads=kv_heads)
            (attn,) = g.node("GroupQueryAttention",
                             [q_rot, k_rot, proj["v_proj"], past_k, past_v, "seqlens_k", "total_seq_len"],
                             [f"{gqa}/output_0", present_k, present_v], name=gqa, domain=MS,
                             num_heads=heads, kv_num_heads=kv_heads)[:1]
        outputs_present += [present_k, present_v]

        o_key = f"{p}.self_attn.o_proj"
        o = linear(attn, f"{o_key}.weight", f"{n}/attn/o_proj")
        if f"{o_key}.lora_A" in weights:
            lora_projs.append(o_key)
            delta = lora_delta(attn, o_key, f"{n}/attn/o_proj")
            (o,) = g.node("Add", [o, delta], [f"{n}/attn/o_proj/Add/output_0"], name=f"{n}/attn/o_proj/Add")
        pending = o

        x = norm(f"{p}.post_attention_layernorm.weight", f"{n}/post_attention_layernorm")
        pending = swiglu_mlp(g, x, lambda inp, name, prefix: linear(inp, f"{p}.mlp.{name}.weight", prefix), n)

    x = norm("model.norm.weight", "/model/norm")
    x = _keep_last_positions(g, x)
    head_key = "model.embed_tokens.weight" if flavor.tie_word_embeddings else "lm_head.weight"
    if shared_head is not None:
        if not flavor.tie_word_embeddings:
            raise ValueError("shared_head needs tied word embeddings")
        _shared_head(g, x, shared_head, precision, config.vocab_size, hidden, block_size)
    elif half:
        _linear(g, x, w(head_key), "/lm_head", precision, block_size, accuracy_level, max_tensor_bytes,
                cast_to=TensorProto.FLOAT, cast_output="logits")
    else:
        logits_raw = linear(x, head_key, "/lm_head")
        g.node("Identity", [logits_raw], ["logits"], name="/lm_head/Identity")
    g.check_sizes(max_tensor_bytes)

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
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", ftype, kv_shape_past))
    if flavor.lora_input:
        inputs.append(helper.make_tensor_value_info("lora_scale", f32, []))
    inputs.append(helper.make_tensor_value_info("num_logits_to_keep", i64, []))
    outputs = [helper.make_tensor_value_info("logits", f32, ["batch_size", "num_logits", config.vocab_size])]
    outputs += [helper.make_tensor_value_info(name, ftype, kv_shape_present) for name in outputs_present]
    if probe_layer is not None:
        outputs.append(helper.make_tensor_value_info("probe_hidden", f32, ["batch_size", "sequence_length", hidden]))

    graph = helper.make_graph(g.nodes, flavor.graph_name, inputs, outputs)
    graph.initializer.extend(g.initializers)
    meta = {
        "precision": precision,
        flavor.config_key: json.dumps(asdict(config), sort_keys=True),
        "max_positions": str(max_positions),
        "lora_projections": json.dumps(lora_projs),
        "lora_default_scale": "" if lora_default_scale is None else repr(float(lora_default_scale)),
        "int4_block_size": str(block_size) if precision in INT4_PRECISIONS else "",
    }
    if probe_layer is not None:
        meta["probe_layer"] = str(probe_layer)
    return _model(graph, meta)


def build_embed_graph(weight, precision: str = "fp32", block_size: int = BLOCK_SIZE, *,
                      max_tensor_bytes: int = MAX_TENSOR_BYTES) -> onnx.ModelProto:
    """`embed_tokens`: input_ids int64 [batch, seq] -> inputs_embeds f32 [batch, seq, hidden].

    weight: the embedding table [vocab, hidden] (`model.embed_tokens.weight`).
    fp32/fp16: Gather on the fp32/fp16 table (fp16: + Cast to f32).
    int4f16 uses com.microsoft GatherBlockQuantized (data uint8 [vocab, hidden/2], scales
    [vocab, hidden/block_size] f16, bits 4, gather_axis 0, quantize_axis 1, no zero points, + Cast
    to f32); int4 dequantizes the same packed table with standard ops (see standard_ops).
    A table over max_tensor_bytes is split along hidden into column blocks (multiples of
    block_size for int4), one Gather each, Concat on the last axis.
    """
    _check_precision(precision)
    dtype = compute_dtype(precision)
    table = _np(weight)
    vocab, hidden = table.shape
    g = _GraphBuilder()
    gathered = "inputs_embeds" if dtype == np.float32 else "/model/embed_tokens/output_0"
    if precision not in INT4_PRECISIONS:
        data = _as_dtype(table, dtype, "model.embed_tokens.weight")
        sizes = _split_sizes(hidden, vocab * data.itemsize, max_tensor_bytes, "model.embed_tokens.weight")
        if len(sizes) == 1:
            g.init("model.embed_tokens.weight", data)
            g.node("Gather", ["model.embed_tokens.weight", "input_ids"], [gathered],
                   name="/model/embed_tokens/Gather", axis=0)
        else:
            parts, start = [], 0
            for j, size in enumerate(sizes):
                name = g.init(f"model.embed_tokens.weight.part{j}", data[:, start:start + size])
                parts += g.node("Gather", [name, "input_ids"], [f"/model/embed_tokens/Gather_{j}/output_0"],
                                name=f"/model/embed_tokens/Gather_{j}", axis=0)
                start += size
            g.node("Concat", parts, [gathered], name="/model/embed_tokens/Concat", axis=-1)
    else:
        packed, scales = quantize_embedding(table, precision, block_size)
        n_blocks = scales.shape[1]
        block_bytes = max(vocab * block_size // 2, vocab * scales.itemsize)
        sizes = _split_sizes(n_blocks, block_bytes, max_tensor_bytes, "model.embed_tokens.weight")

        def gbq(b: np.ndarray, s: np.ndarray, suffix: str, output: str) -> list[str]:
            b_name = g.init(f"model.embed_tokens.weight_Q4{suffix}", b)
            s_name = g.init(f"model.embed_tokens.weight_scales{suffix}", s)
            return g.node("GatherBlockQuantized", [b_name, "input_ids", s_name], [output],
                          name=f"/model/embed_tokens/GatherBlockQuantized{suffix.replace('.part', '_')}", domain=MS,
                          bits=4, block_size=block_size, gather_axis=0, quantize_axis=1)

        def standard_ops(b: np.ndarray, s: np.ndarray, suffix: str, output: str) -> list[str]:
            # Plain-ONNX dequantizing gather for int4: ORT's GatherBlockQuantized has kernels in
            # the Node wasm build and on WebGPU, but not in the browser's wasm (CPU) build, so the
            # int4 variant would not load without a GPU. One row per token is cheap either way.
            # Exact: (q - 8) * scale in float32, the same numbers GatherBlockQuantized yields.
            p = f"/model/embed_tokens/dequant{suffix.replace('.part', '_')}"
            b_name = g.init(f"model.embed_tokens.weight_Q4{suffix}", b)
            s_name = g.init(f"model.embed_tokens.weight_scales{suffix}", s)
            blocks = s.shape[1]
            c16 = g.init(f"{p}/sixteen", np.array(16, dtype=np.int32))
            c8 = g.init(f"{p}/eight", np.array(8.0, dtype=np.float32))
            last = g.init(f"{p}/last_axis", np.array([-1], dtype=np.int64))
            block_shape = g.init(f"{p}/block_shape", np.array([0, 0, blocks, block_size], dtype=np.int64))
            row_shape = g.init(f"{p}/row_shape", np.array([0, 0, blocks * block_size], dtype=np.int64))
            (rows,) = g.node("Gather", [b_name, "input_ids"], [f"{p}/rows"], name=f"{p}/Gather", axis=0)
            (rows_i,) = g.node("Cast", [rows], [f"{p}/rows_i32"], name=f"{p}/Cast_i32", to=TensorProto.INT32)
            # x - 16 * (x / 16), not Mod: ORT's WebGPU EP has no Mod kernel, and one CPU node here
            # cost a GPU->CPU read-back on every token (BENCHMARKS.md). Exact for bytes 0..255.
            (high,) = g.node("Div", [rows_i, c16], [f"{p}/high"], name=f"{p}/Div")  # odd k: high nibble
            (high16,) = g.node("Mul", [high, c16], [f"{p}/high16"], name=f"{p}/Mul_high")
            (low,) = g.node("Sub", [rows_i, high16], [f"{p}/low"], name=f"{p}/Sub_low")  # even k: low nibble
            (low_u,) = g.node("Unsqueeze", [low, last], [f"{p}/low_u"], name=f"{p}/Unsqueeze_low")
            (high_u,) = g.node("Unsqueeze", [high, last], [f"{p}/high_u"], name=f"{p}/Unsqueeze_high")
            (pairs,) = g.node("Concat", [low_u, high_u], [f"{p}/pairs"], name=f"{p}/Concat", axis=-1)
            (q,) = g.node("Cast", [pairs], [f"{p}/q"], name=f"{p}/Cast_f32", to=TensorProto.FLOAT)
            (centred,) = g.node("Sub", [q, c8], [f"{p}/centred"], name=f"{p}/Sub")
            (by_block,) = g.node("Reshape", [centred, block_shape], [f"{p}/by_block"], name=f"{p}/Reshape_blocks")
            (row_scales,) = g.node("Gather", [s_name, "input_ids"], [f"{p}/scales"], name=f"{p}/Gather_scales", axis=0)
            (scales_u,) = g.node("Unsqueeze", [row_scales, last], [f"{p}/scales_u"], name=f"{p}/Unsqueeze_scales")
            (scaled,) = g.node("Mul", [by_block, scales_u], [f"{p}/scaled"], name=f"{p}/Mul")
            return g.node("Reshape", [scaled, row_shape], [output], name=f"{p}/Reshape_rows")

        dequant_gather = standard_ops if precision == "int4" else gbq
        if len(sizes) == 1:
            dequant_gather(packed, scales, "", gathered)
        else:
            parts, start = [], 0
            half_block = block_size // 2
            for j, size in enumerate(sizes):
                parts += dequant_gather(np.ascontiguousarray(packed[:, start * half_block:(start + size) * half_block]),
                             np.ascontiguousarray(scales[:, start:start + size]), f".part{j}",
                             f"/model/embed_tokens/GatherBlockQuantized_{j}/output_0")
                start += size
            g.node("Concat", parts, [gathered], name="/model/embed_tokens/Concat", axis=-1)
    if gathered != "inputs_embeds":
        g.node("Cast", [gathered], ["inputs_embeds"], name="/model/embed_tokens/Cast", to=TensorProto.FLOAT)
    g.check_sizes(max_tensor_bytes)
    graph = helper.make_graph(
        g.nodes, "salmonn_embed_tokens",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])],
        [helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch_size", "sequence_length", hidden])],
    )
    graph.initializer.extend(g.initializers)
    meta = {"precision": precision, "int4_block_size": str(block_size) if precision in INT4_PRECISIONS else ""}
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
    share_identical: bool = False,
) -> list[Path]:
    """Write `path` (+ external data files); returns every file written. Deterministic.

    Initializers of at least `size_threshold` bytes go, in graph order, to
    `{stem}.onnx_data`, then `{stem}.onnx_data_1`, `_2`, ... when a file would exceed
    `max_file_bytes` (1 GiB default: under Chrome's ~2 GB ArrayBuffer limit); offsets are
    `align`-byte aligned. Stale data files of the same name are replaced, never appended to
    (onnx.save_model's own external-data writer appends to an existing file). The in-memory
    model is left unchanged.

    share_identical: an initializer whose bytes equal an earlier one's (same type, same bytes)
    points at the earlier one's bytes instead of a second copy: a tied head that reads the
    embedding table under another name and shape (text_only_decoder of a Qwen3 graph).
    """
    writer = ExternalDataWriter(path, size_threshold, max_file_bytes, align)
    moved: list[tuple[onnx.TensorProto, bytes]] = []
    by_length: dict[int, list[tuple[onnx.TensorProto, bytes]]] = {}  # written tensors, for share_identical
    try:
        if external_data:
            for tensor in model.graph.initializer:
                raw = tensor.raw_data
                if not writer.wants(raw):
                    continue
                moved.append((tensor, raw))
                twin = _identical_written(tensor, raw, by_length.get(len(raw), [])) if share_identical else None
                if twin is not None:
                    del tensor.external_data[:]
                    tensor.external_data.extend(twin.external_data)
                    tensor.data_location = TensorProto.EXTERNAL
                    tensor.ClearField("raw_data")
                    continue
                writer.write(tensor)
                by_length.setdefault(len(raw), []).append((tensor, raw))
        written = writer.finish(model)
    finally:
        writer.close()
        for tensor, raw in moved:
            del tensor.external_data[:]
            tensor.data_location = TensorProto.DEFAULT
            tensor.raw_data = raw
    return written


def _identical_written(tensor: onnx.TensorProto, raw: bytes,
                       written: list[tuple[onnx.TensorProto, bytes]]) -> Optional[onnx.TensorProto]:
    """The first written tensor of the same type and bytes (candidates: same byte length; random
    weights differ within their first bytes, so the comparisons are cheap)."""
    for other, other_raw in written:
        if other.data_type == tensor.data_type and other_raw == raw:
            return other
    return None


def text_only_decoder(decoder: onnx.ModelProto, embed: onnx.ModelProto, lora_scale: Optional[float]) -> onnx.ModelProto:
    """The decoder in the layout transformers.js loads for a text-only LLaMA or Qwen3
    (`decoder_model_merged`: input_ids, attention_mask, position_ids, past_key_values.* ->
    logits, present.*), made from graphs built by `build_decoder_model` and `build_embed_graph`:
    the embed_tokens nodes run first inside the graph (their output is `inputs_embeds`), and
    `lora_scale` (when the decoder has that input: SALMONN; Qwen3 has none, then `lora_scale` must
    be None) and `num_logits_to_keep` (1: the last position, all generate() reads) become
    constant initializers. Every other node and weight is unchanged, so
    the result computes exactly what the two graphs compute (the benchmark's peer runs it).
    Both models must hold their weights (onnx.load with external data).

    An initializer in both graphs under one name is kept once when it is the same tensor (same
    type, dims and bytes); names that hold different tensors are refused. A tied head that reads
    the embedding table under its own name (`shared_head`) stays a second initializer here; saving
    with save_model(share_identical=True) stores those bytes once."""
    inputs = {i.name for i in decoder.graph.input}
    if "inputs_embeds" not in inputs:
        raise ValueError("expected a decoder built by build_decoder_model (an inputs_embeds input)")
    if ("lora_scale" in inputs) != (lora_scale is not None):
        raise ValueError("lora_scale must be given exactly when the decoder has a lora_scale input")
    if [o.name for o in embed.graph.output] != ["inputs_embeds"]:
        raise ValueError("expected an embed graph built by build_embed_graph (output inputs_embeds)")
    shared = _same_tensors(embed, decoder)
    model = onnx.ModelProto()
    model.CopyFrom(decoder)
    graph = model.graph
    constants: dict[str, np.ndarray] = {}
    if lora_scale is not None:
        constants["lora_scale"] = np.array(lora_scale, dtype=np.float32)
    if "num_logits_to_keep" in inputs:  # transformers.js samples the last position only
        constants["num_logits_to_keep"] = np.array(1, dtype=np.int64)
    kept = [i for i in graph.input if i.name != "inputs_embeds" and i.name not in constants]
    del graph.input[:]
    graph.input.extend(list(embed.graph.input) + kept)
    nodes = list(embed.graph.node) + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    initializers = list(embed.graph.initializer) + [t for t in graph.initializer if t.name not in shared]
    initializers += [numpy_helper.from_array(value, name) for name, value in constants.items()]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    outputs = [o for o in graph.output if o.name != "probe_hidden"]  # transformers.js would fetch it every step
    del graph.output[:]
    graph.output.extend(outputs)
    graph.name = f"{decoder.graph.name}_text_only" if lora_scale is None else "salmonn_llama_decoder_text_only"
    if lora_scale is not None:
        model.metadata_props.append(onnx.StringStringEntryProto(key="lora_scale_constant", value=repr(float(lora_scale))))
    return model


def _same_tensors(embed: onnx.ModelProto, decoder: onnx.ModelProto) -> set[str]:
    """Names both graphs hold as the same tensor; raises on a name that holds two different ones."""
    ours = {t.name: t for t in embed.graph.initializer}
    same, clash = set(), []
    for tensor in decoder.graph.initializer:
        other = ours.get(tensor.name)
        if other is None:
            continue
        if (other.data_type, list(other.dims)) == (tensor.data_type, list(tensor.dims)) and \
                numpy_helper.to_array(other).tobytes() == numpy_helper.to_array(tensor).tobytes():
            same.add(tensor.name)
        else:
            clash.append(tensor.name)
    if clash:
        raise ValueError(f"initializer names in both graphs holding different tensors: {sorted(clash)}")
    return same
