"""Run ONNX graphs with onnxruntime-web (wasm) in Node, from Python.

There is no Python onnxruntime here, so tests check exported graphs through
`models/tools/ort_run.mjs`: inputs go out as .npy files named after the graph inputs
(`past_key_values.0.key.npy`, ...), outputs come back the same way.

* `run_onnx(model_path, inputs)` runs one session once.
* `OrtSession(model_path)` keeps a session alive for many runs (a greedy loop). Use it as a
  context manager.

Both go through one Node process per Python process and execution provider (`ort_run.mjs
--serve`), started at the first use: starting Node and onnxruntime-web costs ~0.4 s, which a
process per session paid ~150 times in a pytest run (BENCHMARKS.md, "CI time on one machine").

Numbers are ORT's own (the same wasm kernels the browser's CPU fallback uses).
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import tempfile
import threading
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


class _OrtServer:
    """One `ort_run.mjs --serve` process: sessions opened, run and closed by ID."""

    def __init__(self, ep: str) -> None:
        self._proc = subprocess.Popen(
            ["node", str(ORT_RUN), "--serve", "--ep", ep],
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self._ids = 0
        # Drained all along (a long-lived process could fill the pipe and block); the tail is kept
        # for error messages.
        self._stderr = collections.deque(maxlen=200)
        threading.Thread(target=self._stderr.extend, args=(self._proc.stderr,), daemon=True).start()
        line = self._proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"ort_run.mjs --serve did not start: {line!r}\n{self._stderr_tail()}")

    def alive(self) -> bool:
        return self._proc.poll() is None

    def new_id(self) -> str:
        self._ids += 1
        return str(self._ids)

    def ask(self, *fields: str) -> None:
        """Send one command; raise with ORT's message (or the process's stderr) unless it answers ok."""
        if not self.alive():
            raise RuntimeError(f"ort_run.mjs --serve has exited:\n{self._stderr_tail()}")
        self._proc.stdin.write("\t".join(fields) + "\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline().strip()
        if reply != "ok":
            raise RuntimeError(f"ORT {fields[0]} failed: {reply or self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        return "".join(self._stderr)[-4000:]


_servers: dict[str, _OrtServer] = {}


def _server(ep: str) -> _OrtServer:
    """This process's server for `ep`, started (again, if the last one died) on demand."""
    server = _servers.get(ep)
    if server is None or not server.alive():
        server = _servers[ep] = _OrtServer(ep)
    return server


def run_onnx(
    model_path: str | os.PathLike,
    inputs: Mapping[str, np.ndarray],
    ep: str = "wasm",
) -> dict[str, np.ndarray]:
    """Run `model_path` once with `inputs` {graph input name: array}; return {output name: array}."""
    with OrtSession(model_path, ep) as session:
        return session.run(inputs)


class OrtSession:
    """An ORT session in this process's `ort_run.mjs --serve` (closed on `close`, exit or collection)."""

    def __init__(self, model_path: str | os.PathLike, ep: str = "wasm") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ort_session_")
        self._count = 0
        self._server = _server(ep)
        self._id: Optional[str] = self._server.new_id()
        try:
            self._server.ask("open", self._id, str(model_path))
        except BaseException:
            self._id = None
            self._tmp.cleanup()
            raise

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._id is None:
            raise RuntimeError("this OrtSession is closed")
        self._count += 1
        step = Path(self._tmp.name) / str(self._count)
        in_dir, out_dir = step / "in", step / "out"
        _write_inputs(in_dir, inputs)
        self._server.ask("run", self._id, str(in_dir), str(out_dir))
        outputs = _read_outputs(out_dir)
        shutil.rmtree(step, ignore_errors=True)
        return outputs

    def close(self) -> None:
        if self._id is not None and self._server.alive():
            self._server.ask("close", self._id)
        self._id = None
        self._tmp.cleanup()

    def __del__(self) -> None:
        # Sessions a test never closes (held by a fixture or a helper object) would otherwise stay
        # in the shared process's wasm heap until the process ends.
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> "OrtSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
