"""Run ONNX graphs with onnxruntime-web (wasm) in Node, from Python.

There is no Python onnxruntime here, so tests check exported graphs through
`models/tools/ort_run.mjs`: inputs go out as .npy files named after the graph inputs
(`past_key_values.0.key.npy`, ...), outputs come back the same way.

* `run_onnx(model_path, inputs)` runs one session once (one Node process per call).
* `OrtSession(model_path)` keeps one Node process and session alive for many runs
  (a greedy loop), via `ort_run.mjs --serve`. Use it as a context manager.

Numbers are ORT's own (the same wasm kernels the browser's CPU fallback uses).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Optional
from urllib.parse import quote, unquote

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
ORT_RUN = REPO_ROOT / "models" / "tools" / "ort_run.mjs"
_NPY_DTYPES = (np.float32, np.float16, np.int64, np.int32, np.uint8, np.bool_)


def node_available() -> bool:
    """True if `node` and onnxruntime-web are installed (tests skip otherwise)."""
    return shutil.which("node") is not None and (REPO_ROOT / "node_modules" / "onnxruntime-web").is_dir()


def _file_name(name: str) -> str:
    """A tensor name as ort_run.mjs spells it in file names (JavaScript's encodeURIComponent)."""
    return quote(name, safe="!*'()")


def _write_inputs(directory: Path, inputs: Mapping[str, np.ndarray]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in inputs.items():
        arr = np.asarray(value)
        if arr.dtype == np.float64:
            raise TypeError(f"input {name!r} is float64; pass float32 explicitly")
        if not any(arr.dtype == t for t in _NPY_DTYPES):
            raise TypeError(f"input {name!r} has unsupported dtype {arr.dtype}")
        # np.ascontiguousarray would turn a rank-0 scalar (lora_scale, num_logits_to_keep) into shape (1,)
        np.save(directory / f"{_file_name(name)}.npy", np.require(arr, requirements="C"))


def _read_outputs(directory: Path) -> dict[str, np.ndarray]:
    return {unquote(p.name[: -len(".npy")]): np.load(p) for p in sorted(directory.glob("*.npy"))}


def run_onnx(
    model_path: str | os.PathLike,
    inputs: Mapping[str, np.ndarray],
    ep: str = "wasm",
    timeout: float = 600.0,
) -> dict[str, np.ndarray]:
    """Run `model_path` once with `inputs` {graph input name: array}; return {output name: array}."""
    with tempfile.TemporaryDirectory(prefix="ort_run_") as tmp:
        in_dir, out_dir = Path(tmp) / "in", Path(tmp) / "out"
        _write_inputs(in_dir, inputs)
        proc = subprocess.run(
            ["node", str(ORT_RUN), str(model_path), str(in_dir), str(out_dir), "--ep", ep],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ort_run.mjs failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return _read_outputs(out_dir)


class OrtSession:
    """A long-lived ORT session in one Node process (`ort_run.mjs --serve`)."""

    def __init__(self, model_path: str | os.PathLike, ep: str = "wasm") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ort_session_")
        self._count = 0
        self._proc = subprocess.Popen(
            ["node", str(ORT_RUN), str(model_path), "--serve", "--ep", ep],
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self._proc.stdout.readline().strip()
        if line != "ready":
            err = self._proc.stderr.read()
            self.close()
            raise RuntimeError(f"ort_run.mjs --serve did not start: {line!r}\n{err[-4000:]}")

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._count += 1
        step = Path(self._tmp.name) / str(self._count)
        in_dir, out_dir = step / "in", step / "out"
        _write_inputs(in_dir, inputs)
        self._proc.stdin.write(f"{in_dir}\t{out_dir}\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline().strip()
        if reply != "ok":
            raise RuntimeError(f"ORT run failed: {reply or self._proc.stderr.read()[-4000:]}")
        outputs = _read_outputs(out_dir)
        shutil.rmtree(step, ignore_errors=True)
        return outputs

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream:
                stream.close()
        self._tmp.cleanup()

    def __enter__(self) -> "OrtSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
