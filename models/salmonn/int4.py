"""Block-wise symmetric int4 packing for ONNX Runtime's com.microsoft int4 ops.

Layout (what `MatMulNBits` with bits=4, block_size=32 and *no* zero_points input reads):

* A torch Linear weight W is [N = out_features, K = in_features]; y = x W^T.
* K is cut into blocks of 32 along the input axis: n_blocks = ceil(K / 32).
* `packed` uint8 [N, n_blocks, 16]: byte j of block b of row n holds
  k = 32 b + 2 j in its LOW nibble and k = 32 b + 2 j + 1 in its HIGH nibble.
* `scales` float32 [N * n_blocks] (row-major over [N, n_blocks]).
* No zero points means the implicit zero point 8: the kernel computes
  W'[n, k] = (q[n, k] - 8) * scale[n, b]   (q in 0..15, i.e. signed -8..7)
  `dequantize_int4` computes exactly this in float32, so a reference that uses the
  dequantized weights sees bit-identical weights.

Scale rule (llama.cpp Q4_0 style, uses all 16 levels): per block, m = the element with the
largest magnitude (keeping its sign), scale = m / -8, q = clamp(round(w / scale), -8, 7) + 8.
So the extreme element maps exactly to -8 (q = 0) and is reproduced exactly; elements of the
opposite sign up to |m| map to at most +7 (clamped from +8, error <= |scale|). An all-zero block
gets scale 0 and q = 8. Rounding is numpy's round-half-to-even (deterministic).

Padding: if K is not a multiple of 32 the weight is zero-padded on the input axis to
n_blocks * 32 columns before quantizing (the kernel's attribute K stays the true K, and
ORT ignores the padded tail); `dequantize_int4(..., K)` crops it again. SALMONN's dims
(4096, 5120, 11008, 13824) are all multiples of 32, so this never happens in practice.

`quantize_gather_int4` packs an embedding table for com.microsoft `GatherBlockQuantized`
(same nibble order and scale rule; blocks run along the hidden axis; see its docstring).
"""

from __future__ import annotations

import numpy as np

BLOCK_SIZE = 32
ZERO_POINT = 8


def _as_f32(w) -> np.ndarray:
    if hasattr(w, "detach"):  # torch tensor
        w = w.detach().cpu().float().numpy()
    return np.ascontiguousarray(np.asarray(w, dtype=np.float32))


def _quantize_blocks(w: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """w [R, C] -> (q uint8 [R, n_blocks, block_size] in 0..15, scales f32 [R, n_blocks])."""
    rows, cols = w.shape
    n_blocks = -(-cols // block_size)
    padded = np.zeros((rows, n_blocks * block_size), dtype=np.float32)
    padded[:, :cols] = w
    blocks = padded.reshape(rows, n_blocks, block_size)
    idx = np.abs(blocks).argmax(axis=-1)
    extreme = np.take_along_axis(blocks, idx[..., None], axis=-1)[..., 0]  # signed max-magnitude
    scales = (extreme / np.float32(-8.0)).astype(np.float32)
    scales[scales == 0] = 0.0  # no -0.0 (stable bytes)
    safe = np.where(scales == 0, np.float32(1.0), scales)
    q = np.rint(blocks / safe[..., None])
    q = np.where(scales[..., None] == 0, 0.0, q)
    q = np.clip(q, -8, 7).astype(np.int16) + ZERO_POINT
    return q.astype(np.uint8), scales


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """[..., 2m] values 0..15 -> [..., m] bytes, even index in the low nibble."""
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def _unpack_nibbles(packed: np.ndarray) -> np.ndarray:
    """Inverse of _pack_nibbles: [..., m] bytes -> [..., 2m] values 0..15."""
    out = np.empty(packed.shape[:-1] + (packed.shape[-1] * 2,), dtype=np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out


def quantize_int4(w, block_size: int = BLOCK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Linear weight W [N, K] -> (packed uint8 [N, ceil(K/bs), bs/2], scales f32 [N * ceil(K/bs)])."""
    w = _as_f32(w)
    if w.ndim != 2:
        raise ValueError(f"expected a 2-D weight [out, in], got shape {w.shape}")
    if block_size % 2 or block_size < 16:
        raise ValueError("block_size must be an even number >= 16")
    q, scales = _quantize_blocks(w, block_size)
    return _pack_nibbles(q), scales.reshape(-1)


def dequantize_int4(packed: np.ndarray, scales: np.ndarray, K: int) -> np.ndarray:
    """Exactly what MatMulNBits uses as W [N, K] (float32): (q - 8) * scale, cropped to K."""
    n, n_blocks, half = packed.shape
    q = _unpack_nibbles(packed).astype(np.float32) - np.float32(ZERO_POINT)  # [N, nb, bs]
    w = q * scales.reshape(n, n_blocks, 1).astype(np.float32)
    return np.ascontiguousarray(w.reshape(n, n_blocks * half * 2)[:, :K])


def quantize_gather_int4(table, block_size: int = BLOCK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Embedding table [V, H] -> (packed uint8 [V, H/2], scales f32 [V, H/block_size]).

    For com.microsoft `GatherBlockQuantized` with uint8 data, bits=4, gather_axis=0,
    quantize_axis=1 (last), block_size, and no zero_points (implicit 8, like MatMulNBits).
    Row v, column h is in byte h // 2 of row v, low nibble for even h. H must be a multiple
    of block_size (no padding here: the op's output width is 2 * packed width).
    """
    t = _as_f32(table)
    if t.shape[1] % block_size:
        raise ValueError(f"hidden size {t.shape[1]} is not a multiple of block_size {block_size}")
    q, scales = _quantize_blocks(t, block_size)
    return _pack_nibbles(q.reshape(t.shape[0], -1)), scales


def dequantize_gather_int4(packed: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Inverse of quantize_gather_int4 as the op computes it: [V, H] float32."""
    v, half = packed.shape
    n_blocks = scales.shape[1]
    q = _unpack_nibbles(packed).astype(np.float32) - np.float32(ZERO_POINT)
    return np.ascontiguousarray((q.reshape(v, n_blocks, -1) * scales[..., None]).reshape(v, half * 2))
