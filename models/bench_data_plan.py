#!/usr/bin/env python3
"""Carries the bench graphs to a GPU machine without their gigabytes of weights.

The bench's decoders and encoders (models/build_bench_models.py, build_bench_encoders.py) are
random weights, so their external data need not travel: only where each tensor lies and what it
holds. Two commands:

    /usr/bin/python3 models/bench_data_plan.py plan --out PLAN.json [--min-bytes N] DIR...
        (here, needs `onnx`) every external-data file of DIR's graphs of at least N bytes
        (default 1 MiB) is described tensor by tensor: offset, length, element type. Smaller
        files are left for the caller to copy as they are.

    python3 models/bench_data_plan.py fill --root ROOT PLAN.json
        (there, numpy only) writes each described file under ROOT with fresh random contents of
        the right kind: packed int4 / uint8 tensors get uniform random bytes, floating-point
        tensors small normal values (scales and norms of a plausible size: a kernel's speed must
        not depend on zeros, NaNs or denormals), integer tensors zeros.

    /usr/bin/python3 models/bench_data_plan.py externalize DIR
        (here) moves the inline weights of the graphs an encoders bench folder lists (bench.json)
        into one external-data file per graph, in place, and lists it in bench.json: the graphs
        are unchanged, but only their small .onnx files then need to travel.

Timing on all-zero weights can flatter a kernel (../shared/brief/gpu.md saw 13 % on an H200), and
random bytes in float tensors would be NaN and Inf; hence one kind of content per element type.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
import zlib
from pathlib import Path

# onnx TensorProto element types.
FLOAT, UINT8, INT8, FLOAT16, BFLOAT16 = 1, 2, 3, 10, 16
FLOAT_TYPES = {FLOAT: "float32", FLOAT16: "float16"}
BYTE_TYPES = {UINT8, INT8}


def external_tensors(graph_path: Path) -> list[dict]:
    """(file, offset, length, type) of every initializer of a graph kept in external data."""
    import onnx  # only the `plan` side needs onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    found = []
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        found.append({
            "file": str(graph_path.parent / info["location"]),
            "offset": int(info.get("offset", 0)),
            "length": int(info["length"]),
            "type": int(tensor.data_type),
            "name": tensor.name,
        })
    return found


def make_plan(dirs: list[Path], min_bytes: int) -> dict:
    files: dict[str, dict] = {}
    # A tied head reads the embed graph's table in place (qwen3-4b's shared_head), and its
    # transformers.js peer stores those bytes once under both names: the same bytes are described
    # once, under the smallest of their names, so `fill` (seeded by name) gives the engine's
    # graphs and the peer the same table whichever name a graph lists first.
    described: dict[tuple[str, int, int], list] = {}
    for folder in dirs:
        for graph in sorted(folder.rglob("*.onnx")):
            for t in external_tensors(graph):
                size = Path(t["file"]).stat().st_size
                if size < min_bytes:
                    continue
                where = (t["file"], t["offset"], t["length"])
                if where in described:
                    described[where][3] = min(described[where][3], t["name"])
                    continue
                described[where] = [t["offset"], t["length"], t["type"], t["name"]]
                entry = files.setdefault(t["file"], {"path": t["file"], "size": size, "tensors": []})
                entry["tensors"].append(described[where])
    for entry in files.values():
        entry["tensors"].sort()
    return {"files": sorted(files.values(), key=lambda e: e["path"])}


def fill_file(root: Path, entry: dict, seed: int) -> None:
    import numpy as np

    path = root / entry["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.truncate(entry["size"])
        for offset, length, kind, name in entry["tensors"]:
            # Seeded by the tensor's name: a graph and its transformers.js twin (the bench's peer
            # export names its weights alike) get the same weights, so their greedy ids can agree.
            rng = np.random.default_rng([seed, zlib.crc32(name.encode()), length])
            if kind in BYTE_TYPES:
                data = rng.integers(0, 256, size=length, dtype=np.uint8).tobytes()
            elif kind in FLOAT_TYPES:
                dtype = np.dtype(FLOAT_TYPES[kind])
                data = (rng.standard_normal(length // dtype.itemsize, dtype=np.float32) * 0.02).astype(dtype).tobytes()
            else:
                data = bytes(length)  # int64 shapes and the like: zeros (never hit by the bench graphs)
            out.seek(offset)
            out.write(data)


def externalize(folder: Path) -> None:
    """Inline weights of `folder`'s graphs (an encoders bench.json) → `<graph>.onnx_data`, in place."""
    import onnx

    info_path = folder / "bench.json"
    info = json.loads(info_path.read_text())
    for variant in info["variants"].values():
        for graph in variant.values():
            path = folder / graph["path"]
            if graph["externalData"] or path.stat().st_size < (1 << 20):
                continue
            model = onnx.load(str(path))
            location = path.name + "_data"
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=location, size_threshold=1024)
            graph["externalData"] = [location]
            print(f"{path}: weights moved to {location}")
    info_path.write_text(json.dumps(info, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--min-bytes", type=int, default=1 << 20)
    p.add_argument("dirs", type=Path, nargs="+")
    e = sub.add_parser("externalize")
    e.add_argument("dir", type=Path)
    f = sub.add_parser("fill")
    f.add_argument("--root", type=Path, default=Path("."))
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("plan", type=Path)
    args = parser.parse_args()
    if args.command == "externalize":
        externalize(args.dir)
        return
    if args.command == "plan":
        plan = make_plan(args.dirs, args.min_bytes)
        args.out.write_text(json.dumps(plan))
        total = sum(e["size"] for e in plan["files"])
        print(f"{len(plan['files'])} data files, {total / 1e9:.2f} GB described in {args.out}")
        return
    plan = json.loads(args.plan.read_text())
    # One process per file: numpy's generators run on one core, and a GPU machine has many.
    with ProcessPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        done = {pool.submit(fill_file, args.root, entry, args.seed): entry for entry in plan["files"]}
        for future in as_completed(done):
            future.result()
            entry = done[future]
            print(f"filled {entry['path']} ({entry['size'] / 1e6:.0f} MB)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
