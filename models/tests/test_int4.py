"""int4 packing for MatMulNBits / GatherBlockQuantized: layout, scale rule, and ORT agreement."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from salmonn.int4 import (
    dequantize_gather_int4,
    dequantize_int4,
    quantize_gather_int4,
    quantize_int4,
)
from salmonn.ort_bridge import node_available, run_onnx


def test_nibble_order_and_scale_by_hand():
    # One row, one block of 32. Largest magnitude is -16 -> scale = -16 / -8 = 2.
    w = np.zeros((1, 32), np.float32)
    w[0, 0] = 2.0    # q = round(2 / 2) = 1   -> stored 9
    w[0, 1] = -16.0  # q = -8                 -> stored 0
    w[0, 2] = 6.0    # q = 3                  -> stored 11
    w[0, 3] = -4.0   # q = -2                 -> stored 6
    w[0, 31] = 14.0  # q = 7                  -> stored 15
    packed, scales = quantize_int4(w)
    assert packed.dtype == np.uint8 and packed.shape == (1, 1, 16)
    assert scales.dtype == np.float32 and scales.shape == (1,)
    assert scales[0] == 2.0
    assert packed[0, 0, 0] == (9 | (0 << 4))    # k=0 low nibble, k=1 high nibble
    assert packed[0, 0, 1] == (11 | (6 << 4))   # k=2 low, k=3 high
    assert packed[0, 0, 15] == (8 | (15 << 4))  # k=30 is zero -> 8, k=31 -> 15
    assert all(packed[0, 0, j] == 0x88 for j in range(2, 15))  # zeros are 8 in both nibbles
    np.testing.assert_array_equal(dequantize_int4(packed, scales, 32), w)


def test_positive_extreme_uses_negative_scale():
    w = np.zeros((1, 32), np.float32)
    w[0, 5] = 8.0  # scale = 8 / -8 = -1; q = -8 -> stored 0; dequant (0 - 8) * -1 = 8
    w[0, 6] = -3.0  # q = 3 -> stored 11 (0xb)
    packed, scales = quantize_int4(w)
    assert scales[0] == -1.0
    assert packed[0, 0, 2] == 0x08  # k=4 (zero) low = 8, k=5 high = 0
    assert packed[0, 0, 3] == 0x8B  # k=6 low = 11, k=7 high = 8
    np.testing.assert_array_equal(dequantize_int4(packed, scales, 32), w)


def test_shapes_multi_block_and_scale_order():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 96)).astype(np.float32)
    w[1, 40] = 100.0  # row 1, block 1
    packed, scales = quantize_int4(w)
    assert packed.shape == (3, 3, 16)
    assert scales.shape == (9,)
    assert scales[1 * 3 + 1] == np.float32(100.0 / -8)  # scales are [N, K/32] row-major, flattened


def test_error_bound_extremes_exact_and_idempotent():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 128)).astype(np.float32)
    w[3, :32] = 0.0  # an all-zero block
    packed, scales = quantize_int4(w)
    deq = dequantize_int4(packed, scales, 128)
    blockwise_scale = np.repeat(np.abs(scales).reshape(16, 4), 32, axis=1)
    # round-to-nearest: |err| <= scale/2, except values clamped from +8 to +7 (err <= scale)
    assert np.all(np.abs(deq - w) <= blockwise_scale * 1.0 + 1e-7)
    assert np.mean(np.abs(deq - w) <= blockwise_scale * 0.5 + 1e-7) > 0.99
    np.testing.assert_array_equal(deq[3, :32], 0.0)
    assert scales[3 * 4] == 0.0
    # each block's largest-magnitude element is reproduced exactly
    blocks = w.reshape(16, 4, 32)
    idx = np.abs(blocks).argmax(-1)
    np.testing.assert_array_equal(np.take_along_axis(deq.reshape(16, 4, 32), idx[..., None], -1),
                                  np.take_along_axis(blocks, idx[..., None], -1))
    # quantizing the dequantized weights gives the same bytes (the dequantized model is a fixed point)
    packed2, scales2 = quantize_int4(deq)
    np.testing.assert_array_equal(packed2, packed)
    np.testing.assert_array_equal(scales2, scales)


def test_padding_when_k_is_not_a_multiple_of_32():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((2, 40)).astype(np.float32)
    packed, scales = quantize_int4(w)
    assert packed.shape == (2, 2, 16) and scales.shape == (4,)
    deq = dequantize_int4(packed, scales, 40)
    assert deq.shape == (2, 40)
    # padded tail quantizes to zero (stored 8)
    tail = np.concatenate([packed[:, 1, 4:] & 0xF, packed[:, 1, 4:] >> 4], axis=-1)
    assert np.all(tail == 8)


def test_torch_input_accepted():
    torch = pytest.importorskip("torch")
    w = torch.randn(4, 32)
    p1, s1 = quantize_int4(w)
    p2, s2 = quantize_int4(w.numpy())
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(s1, s2)


def test_gather_pack_layout():
    rng = np.random.default_rng(3)
    t = rng.standard_normal((5, 64)).astype(np.float32)
    packed, scales = quantize_gather_int4(t)
    assert packed.shape == (5, 32) and scales.shape == (5, 2)
    # same bytes as the MatMulNBits layout, just without the block axis
    mp, ms = quantize_int4(t)
    np.testing.assert_array_equal(packed, mp.reshape(5, 32))
    np.testing.assert_array_equal(scales.reshape(-1), ms)
    np.testing.assert_array_equal(dequantize_gather_int4(packed, scales), dequantize_int4(mp, ms, 64))


# ----------------------------------------------------------------------------- through ORT (wasm)

needs_node = pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")


def _save(model, path):
    path.write_bytes(model.SerializeToString())
    return path


@needs_node
@pytest.mark.parametrize("k", [64, 40])
def test_matmulnbits_in_ort_equals_dequantized_matmul(tmp_path, k):
    rng = np.random.default_rng(4)
    n = 48
    w = rng.standard_normal((n, k)).astype(np.float32)
    packed, scales = quantize_int4(w)
    graph = helper.make_graph(
        [helper.make_node("MatMulNBits", ["x", "B", "scales"], ["y"], domain="com.microsoft",
                          K=k, N=n, bits=4, block_size=32)],
        "mmnb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, n])],
        [helper.make_tensor("B", TensorProto.UINT8, packed.shape, packed.tobytes(), raw=True),
         helper.make_tensor("scales", TensorProto.FLOAT, scales.shape, scales.tobytes(), raw=True)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    x = rng.standard_normal((2, 3, k)).astype(np.float32)
    y = run_onnx(_save(model, tmp_path / "mmnb.onnx"), {"x": x})["y"]
    ref = x.astype(np.float64) @ dequantize_int4(packed, scales, k).T.astype(np.float64)
    np.testing.assert_allclose(y, ref, atol=2e-5, rtol=1e-5)


@needs_node
def test_gather_block_quantized_in_ort_equals_dequantized_rows(tmp_path):
    rng = np.random.default_rng(5)
    t = rng.standard_normal((40, 64)).astype(np.float32)
    packed, scales = quantize_gather_int4(t)
    graph = helper.make_graph(
        [helper.make_node("GatherBlockQuantized", ["data", "ids", "scales"], ["y"], domain="com.microsoft",
                          bits=4, block_size=32, gather_axis=0, quantize_axis=1)],
        "gbq",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 64])],
        [helper.make_tensor("data", TensorProto.UINT8, packed.shape, packed.tobytes(), raw=True),
         helper.make_tensor("scales", TensorProto.FLOAT, scales.shape, scales.tobytes(), raw=True)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    ids = np.array([[0, 39, 7, 7]], np.int64)
    y = run_onnx(_save(model, tmp_path / "gbq.onnx"), {"ids": ids})["y"]
    np.testing.assert_array_equal(y, dequantize_gather_int4(packed, scales)[ids])
