"""The GPU kit's data plans (models/bench_data_plan.py): a plan describes every external tensor, a
fill recreates files of the same layout with finite, small floats and random bytes, and the same
tensor name gets the same contents in two graphs (the bench's peer twin)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MODELS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(MODELS))

import bench_data_plan  # noqa: E402


def save_graph(folder: Path, name: str, tensors: dict[str, np.ndarray]) -> Path:
    """A graph whose initializers all live in `<name>.onnx_data`."""
    inits = [numpy_helper.from_array(value, key) for key, value in tensors.items()]
    nodes = [helper.make_node("Identity", [key], [f"{key}_out"]) for key in tensors]
    graph = helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(f"{k}_out", TensorProto.UNDEFINED, None) for k in tensors], inits)
    model = helper.make_model(graph)
    path = folder / f"{name}.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{name}.onnx_data", size_threshold=0)
    return path


def test_plan_then_fill_recreates_the_layout(tmp_path: Path) -> None:
    src = tmp_path / "src" / "m"
    src.mkdir(parents=True)
    tensors = {"w.q4": np.arange(4096, dtype=np.uint8), "w.scales": np.ones(512, np.float32), "norm": np.ones(64, np.float16)}
    save_graph(src, "a", tensors)
    save_graph(src, "b", {"w.q4": np.zeros(4096, np.uint8)})  # same name, same length: a "peer twin"
    out = subprocess.run([sys.executable, str(MODELS / "bench_data_plan.py"), "plan", "--out", str(tmp_path / "plan.json"),
                          "--min-bytes", "0", "m"], cwd=src.parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    paths = {entry["path"]: entry for entry in plan["files"]}
    assert set(paths) == {"m/a.onnx_data", "m/b.onnx_data"}
    assert sorted(t[3] for t in paths["m/a.onnx_data"]["tensors"]) == sorted(tensors)

    filled = tmp_path / "filled"
    run = subprocess.run([sys.executable, str(MODELS / "bench_data_plan.py"), "fill", "--root", str(filled), str(tmp_path / "plan.json")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for path, entry in paths.items():
        assert (filled / path).stat().st_size == entry["size"] == (src.parent / path).stat().st_size
    # The filled graph loads with its new data: floats finite and small, bytes spread out.
    (filled / "m" / "a.onnx").write_bytes((src / "a.onnx").read_bytes())
    (filled / "m" / "b.onnx").write_bytes((src / "b.onnx").read_bytes())
    a = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(filled / "m" / "a.onnx")).graph.initializer}
    b = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(filled / "m" / "b.onnx")).graph.initializer}
    assert a["w.scales"].dtype == np.float32 and np.isfinite(a["w.scales"]).all() and 0.005 < a["w.scales"].std() < 0.05
    assert a["norm"].dtype == np.float16 and np.isfinite(a["norm"]).all()
    assert len(np.unique(a["w.q4"])) > 200
    np.testing.assert_array_equal(a["w.q4"], b["w.q4"])  # seeded by name
    assert not np.array_equal(a["w.q4"], tensors["w.q4"])  # new contents, not a copy


def test_externalize_moves_inline_weights(tmp_path: Path) -> None:
    folder = tmp_path / "encoders"
    (folder / "onnx").mkdir(parents=True)
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((512, 600)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [512, 600])], [weight])
    onnx.save_model(helper.make_model(graph), str(folder / "onnx" / "enc.onnx"))
    info = {"variants": {"int4": {"speechEncoder": {"path": "onnx/enc.onnx", "externalData": []}}}}
    (folder / "bench.json").write_text(json.dumps(info))
    bench_data_plan.externalize(folder)
    entry = json.loads((folder / "bench.json").read_text())["variants"]["int4"]["speechEncoder"]
    assert entry["externalData"] == ["enc.onnx_data"]
    assert (folder / "onnx" / "enc.onnx").stat().st_size < 10_000
    loaded = onnx.load(str(folder / "onnx" / "enc.onnx"))
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), numpy_helper.to_array(weight))


def test_plan_describes_bytes_shared_by_two_graphs_once(tmp_path: Path) -> None:
    """A tied head reading the embed graph's data file in place (qwen3-4b's shared_head): the
    plan lists those bytes once (under whichever name it meets first), so fill writes them once."""
    from salmonn.onnx_decoder import ExternalTensor

    folder = tmp_path / "m"
    folder.mkdir()
    table = {"table.q4": np.arange(8192, dtype=np.uint8), "table.scales": np.ones(256, np.float32)}
    embed = save_graph(folder, "embed", table)
    owned = {t.name: ExternalTensor.of(t) for t in onnx.load(str(embed), load_external_data=False).graph.initializer}
    head = [owned["table.q4"].proto("head.q4"), owned["table.scales"].proto("head.scales")]
    nodes = [helper.make_node("Identity", [t.name], [f"{t.name}_out"]) for t in head]
    outputs = [helper.make_tensor_value_info(f"{t.name}_out", TensorProto.UNDEFINED, None) for t in head]
    onnx.save_model(helper.make_model(helper.make_graph(nodes, "decoder", [], outputs, head)), str(folder / "decoder.onnx"))
    plan = bench_data_plan.make_plan([folder], 0)
    assert [e["path"] for e in plan["files"]] == [str(folder / "embed.onnx_data")]
    tensors = plan["files"][0]["tensors"]
    assert sorted((t[0], t[1]) for t in tensors) == sorted({(t[0], t[1]) for t in tensors}) and len(tensors) == 2


def test_bytes_under_two_names_are_filled_alike_in_engine_and_peer(tmp_path: Path) -> None:
    """A tied head: the engine's decoder reads the embed graph's table under its own name (seen
    first, `decoder` sorts before `embed`), the peer stores it once under both names (embed's
    first). Both are described under the smaller name, so fill gives them the same bytes."""
    table = np.arange(8192, dtype=np.uint8)
    folder = tmp_path / "m"
    folder.mkdir()
    save_graph(folder, "embed", {"model.embed_tokens.weight_Q4": table})

    def aliased(name: str, keys: list[str], data: str) -> None:
        """A graph whose initializers `keys` all point at the same bytes of `data`."""
        inits = []
        for key in keys:
            t = onnx.TensorProto(name=key, data_type=TensorProto.UINT8, dims=[table.size])
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", data), ("offset", "0"), ("length", str(table.size))):
                t.external_data.append(onnx.StringStringEntryProto(key=k, value=v))
            inits.append(t)
        nodes = [helper.make_node("Identity", [k], [f"{k}_out"]) for k in keys]
        outs = [helper.make_tensor_value_info(f"{k}_out", TensorProto.UINT8, None) for k in keys]
        (folder / f"{name}.onnx").write_bytes(helper.make_model(helper.make_graph(nodes, name, [], outs, inits)).SerializeToString())

    # The engine's decoder: only the head's name, over embed's file.
    aliased("decoder", ["lm_head.shared_Q4"], "embed.onnx_data")
    (folder / "peer").mkdir()
    (folder / "peer" / "merged.onnx_data").write_bytes(table.tobytes())
    aliased("peer/merged", ["model.embed_tokens.weight_Q4", "lm_head.shared_Q4"], "merged.onnx_data")
    plan = bench_data_plan.make_plan([folder], 0)
    names = {entry["path"]: [t[3] for t in entry["tensors"]] for entry in plan["files"]}
    assert names == {str(folder / "embed.onnx_data"): ["lm_head.shared_Q4"],
                     str(folder / "peer" / "merged.onnx_data"): ["lm_head.shared_Q4"]}
    filled = tmp_path / "filled"
    for i, entry in enumerate(plan["files"]):
        entry["path"] = f"f{i}"
        bench_data_plan.fill_file(filled, entry, seed=0)
    assert (filled / "f0").read_bytes() == (filled / "f1").read_bytes()
