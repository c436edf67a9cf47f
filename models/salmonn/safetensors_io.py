"""A tiny reader and writer for the `.safetensors` format (no `safetensors` package needed).

The format, as Hugging Face specifies it:

    [8 bytes]  N, the length of the header, unsigned 64-bit little-endian
    [N bytes]  a UTF-8 JSON object:
                 {"<name>": {"dtype": "F16", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
                  "__metadata__": {"<str>": "<str>", ...}}            (metadata optional)
               padded at the end with spaces (writers pad to a multiple of 8)
    [rest]     the byte buffer: each tensor's raw little-endian, C-order data lies at
               buffer[begin:end], offsets counted from the start of the buffer (not the file);
               the tensors tile the buffer with no gaps and no overlaps.

Reading goes tensor by tensor (seek + read), so a multi-GB file never sits in memory twice.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from dataclasses import dataclass
from typing import BinaryIO, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

PathLike = Union[str, "os.PathLike[str]"]

# safetensors dtype name <-> torch dtype
DTYPES: Dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES: Dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}

HEADER_LENGTH_BYTES = 8
METADATA_KEY = "__metadata__"
# The reference implementation refuses headers above 100 MB; so do we (a guard against garbage).
MAX_HEADER_BYTES = 100_000_000


class SafetensorsError(ValueError):
    """The file is not valid safetensors (bad header, offsets, dtype or truncated data)."""


@dataclass(frozen=True)
class TensorEntry:
    """One header entry: where a tensor lives in the byte buffer."""

    name: str
    dtype: str
    shape: Tuple[int, ...]
    begin: int  # offset into the byte buffer
    end: int

    @property
    def num_bytes(self) -> int:
        return self.end - self.begin


def _require_little_endian() -> None:
    # torch.frombuffer and Tensor.numpy().tobytes() use the host byte order
    if sys.byteorder != "little":
        raise NotImplementedError("safetensors_io only supports little-endian hosts")


def _element_size(dtype_name: str) -> int:
    return torch.empty((), dtype=DTYPES[dtype_name]).element_size()


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ----------------------------------------------------------------------------------------------
# Reading


def _parse_entry(path: str, name: str, info: object) -> TensorEntry:
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise SafetensorsError(f"{path}: header entry {name!r} must have dtype, shape, data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPES:
        raise SafetensorsError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise SafetensorsError(f"{path}: tensor {name!r} has a bad shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        raise SafetensorsError(f"{path}: tensor {name!r} has bad data_offsets {offsets!r}")
    entry = TensorEntry(name, dtype, tuple(shape), offsets[0], offsets[1])
    expected = _numel(entry.shape) * _element_size(dtype)
    if entry.num_bytes != expected:
        raise SafetensorsError(
            f"{path}: tensor {name!r} spans {entry.num_bytes} bytes, but {dtype} {list(shape)} needs {expected}"
        )
    return entry


def _check_tiling(path: str, entries: List[TensorEntry], buffer_bytes: int) -> None:
    """The tensors must cover the byte buffer exactly, without gaps or overlaps."""
    position = 0
    for entry in sorted(entries, key=lambda e: (e.begin, e.end)):
        if entry.begin != position:
            raise SafetensorsError(f"{path}: tensor {entry.name!r} starts at {entry.begin}, expected {position}")
        position = entry.end
    if position != buffer_bytes:
        raise SafetensorsError(f"{path}: tensors cover {position} bytes, but the data section has {buffer_bytes}")


def _read_header(f: BinaryIO, path: str, file_size: int) -> Tuple[int, Dict[str, object]]:
    """Returns (start of the byte buffer in the file, parsed JSON header)."""
    raw_length = f.read(HEADER_LENGTH_BYTES)
    if len(raw_length) != HEADER_LENGTH_BYTES:
        raise SafetensorsError(f"{path}: file too short for a safetensors header")
    (header_length,) = struct.unpack("<Q", raw_length)
    if header_length > MAX_HEADER_BYTES or HEADER_LENGTH_BYTES + header_length > file_size:
        raise SafetensorsError(f"{path}: header length {header_length} does not fit the file")
    try:
        header = json.loads(f.read(header_length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header must be a JSON object")
    return HEADER_LENGTH_BYTES + header_length, header


def _parse(path: str) -> Tuple[int, Dict[str, TensorEntry], Dict[str, str]]:
    """(start of the byte buffer in the file, {name: TensorEntry}, metadata), all validated."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        data_start, header = _read_header(f, path, file_size)
    metadata = header.pop(METADATA_KEY, None) or {}
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
    entries = {name: _parse_entry(path, name, info) for name, info in header.items()}
    _check_tiling(path, list(entries.values()), file_size - data_start)
    return data_start, entries, metadata


def read_header(path: PathLike) -> Tuple[Dict[str, TensorEntry], Dict[str, str]]:
    """Parse and validate the header only: ({name: TensorEntry}, metadata)."""
    _, entries, metadata = _parse(os.fspath(path))
    return entries, metadata


def _tensor_from_bytes(raw: bytearray, entry: TensorEntry) -> Tensor:
    dtype = DTYPES[entry.dtype]
    if entry.num_bytes == 0:
        return torch.empty(entry.shape, dtype=dtype)
    # frombuffer shares memory with `raw`; the bytearray is owned by this tensor alone
    return torch.frombuffer(raw, dtype=dtype).reshape(entry.shape)


def load_file(path: PathLike, names: Optional[Iterable[str]] = None) -> Dict[str, Tensor]:
    """Read tensors (all, or only `names`) into CPU tensors, in the file's header order."""
    _require_little_endian()
    path = os.fspath(path)
    data_start, entries, _ = _parse(path)
    wanted = list(entries) if names is None else list(names)
    missing = [n for n in wanted if n not in entries]
    if missing:
        raise KeyError(f"{path}: no tensor named {missing[0]!r}")
    out: Dict[str, Tensor] = {}
    with open(path, "rb") as f:
        for name in wanted:
            entry = entries[name]
            f.seek(data_start + entry.begin)
            raw = bytearray(f.read(entry.num_bytes))
            if len(raw) != entry.num_bytes:
                raise SafetensorsError(f"{path}: data of {name!r} is truncated")
            out[name] = _tensor_from_bytes(raw, entry)
    return out


def load_metadata(path: PathLike) -> Dict[str, str]:
    return read_header(path)[1]


# ----------------------------------------------------------------------------------------------
# Writing


def _tensor_bytes(t: Tensor) -> bytes:
    """Raw little-endian C-order bytes of a CPU tensor (any dtype, bfloat16 included)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    return flat.view(torch.uint8).numpy().tobytes()


def save_file(tensors: Mapping[str, Tensor], path: PathLike, metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write `tensors` (in the mapping's order) as a .safetensors file.

    Tensors that share storage are written as independent copies, as the format requires.
    """
    _require_little_endian()
    header: Dict[str, object] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map str to str")
        header[METADATA_KEY] = dict(metadata)
    blobs: List[bytes] = []
    position = 0
    for name, tensor in tensors.items():
        if name == METADATA_KEY:
            raise ValueError(f"{METADATA_KEY!r} cannot be a tensor name")
        if tensor.dtype not in DTYPE_NAMES:
            raise TypeError(f"tensor {name!r}: dtype {tensor.dtype} has no safetensors name")
        blob = _tensor_bytes(tensor)
        header[name] = {
            "dtype": DTYPE_NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [position, position + len(blob)],
        }
        blobs.append(blob)
        position += len(blob)

    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # the data section starts 8-byte aligned
    with open(os.fspath(path), "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for blob in blobs:
            f.write(blob)
