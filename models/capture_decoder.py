"""A decoder graph onnxruntime-web can graph-capture: the decode step with no node on the CPU.

    /usr/bin/python3 models/capture_decoder.py IN.onnx OUT.onnx [--weights-as-inputs]
    /usr/bin/python3 models/capture_decoder.py --bench-cache .bench-cache

The second form writes both kinds for every decoder of every bench model built there, as
`.bench-cache/capture/<model>_decoder[_q4].onnx` and `<model>_decoder[_q4].weights-in.onnx` (+ its
`.json` table): what `npm run bench:capture` and the GPU kit read.

ORT's WebGPU EP records a run's kernels and replays them (`enableGraphCapture`) only when every
node runs on the GPU and shapes stay fixed (BENCHMARKS.md, session 11: replay saves ~90 % of each
kernel's CPU cost). The converter's decoder computes GroupQueryAttention's `seqlens_k` and
`total_seq_len` from `attention_mask` with shape ops that ORT places on the CPU, so capture is
refused. This rewrites a converted decoder (weights untouched, still in IN's external data file,
named as before) so that:
- `seqlens_k` (int32 [batch]) and `total_seq_len` (int32 []) are graph inputs the engine writes;
- `attention_mask` and the unused `position_ids` are gone (positions follow from `seqlens_k`);
- `num_logits_to_keep` is the constant 1 (a decode step's one row);
- `probe_hidden` (localization's probe) is not an output.
Everything else, and so every number the graph computes, is unchanged.

`--weights-as-inputs` also turns every initializer kept in the external data file into a graph
input of the same name, type and shape, and writes a table of where each one's bytes are
(`OUT` with `.json` for `.onnx`: name, dtype, dims, file, offset, length). Why: onnxruntime-web
captures one graph per session and shares no weights between sessions, so a captured decode
session next to an uncaptured one for prompts would hold the weights twice on the GPU. With the
weights as inputs both sessions bind the same GPU buffers, uploaded once by the runtime.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MASK_NODES = {"/model/attn_mask/ReduceSum", "/model/attn_mask/Sub", "/model/attn_mask/seqlens_k/Cast",
              "/model/attn_mask/Shape", "/model/attn_mask/Gather", "/model/attn_mask/total_seq_len/Cast"}
DROPPED_INPUTS = {"attention_mask", "position_ids", "num_logits_to_keep"}


def capturable_decoder(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    found = {n.name for n in g.node} & MASK_NODES
    if found != MASK_NODES:
        raise ValueError(f"not a converter decoder: mask nodes missing {sorted(MASK_NODES - found)}")
    kept = [n for n in g.node if n.name not in MASK_NODES]
    del g.node[:]
    g.node.extend(kept)
    inputs = [i for i in g.input if i.name not in DROPPED_INPUTS]
    del g.input[:]
    g.input.extend(inputs)
    g.input.append(helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch_size"]))
    g.input.append(helper.make_tensor_value_info("total_seq_len", TensorProto.INT32, []))
    g.initializer.append(numpy_helper.from_array(np.array(1, dtype=np.int64), "num_logits_to_keep"))
    outputs = [o for o in g.output if o.name != "probe_hidden"]
    del g.output[:]
    g.output.extend(outputs)
    return model


ONNX_DTYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.UINT8: "uint8",
               TensorProto.INT32: "int32", TensorProto.INT64: "int64"}


def weights_as_inputs(model: onnx.ModelProto) -> list[dict]:
    """Moves every external-data initializer to the graph inputs (in place); returns where its bytes are."""
    g = model.graph
    table, kept = [], []
    for init in g.initializer:
        if init.data_location != TensorProto.EXTERNAL:
            kept.append(init)
            continue
        where = {entry.key: entry.value for entry in init.external_data}
        if init.data_type not in ONNX_DTYPES:
            raise ValueError(f"{init.name}: data type {init.data_type} has no GPU buffer type")
        table.append({"name": init.name, "dtype": ONNX_DTYPES[init.data_type], "dims": list(init.dims),
                      "file": where["location"], "offset": int(where.get("offset", 0)),
                      "length": int(where["length"])})
        g.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    del g.initializer[:]
    g.initializer.extend(kept)
    return table


def rewrite(source: Path, target: Path, lift_weights: bool = False) -> None:
    model = capturable_decoder(onnx.load(str(source), load_external_data=False))
    if lift_weights:
        table = weights_as_inputs(model)
        target.with_suffix(".json").write_text(json.dumps({"weights": table}, indent=1) + "\n")
    onnx.save(model, str(target))


def rewrite_bench_cache(cache: Path, repo: Path) -> None:
    out = cache / "capture"
    out.mkdir(exist_ok=True)
    for info_path in sorted(cache.glob("*/bench.json")):
        info = json.loads(info_path.read_text())
        for precision, files in info.get("variants", {}).items():
            if precision not in ("fp32", "int4"):
                continue
            root = repo if files.get("fromRepoRoot") else info_path.parent
            source = root / files["decoder"]
            target = out / f"{info_path.parent.name}_decoder{'_q4' if precision == 'int4' else ''}.onnx"
            try:
                rewrite(source, target)
                rewrite(source, target.with_suffix(".weights-in.onnx"), lift_weights=True)
            except ValueError as error:  # e.g. a decoder without the converter's mask nodes
                print(f"skipped {source}: {error}")
                continue
            print(f"wrote {target} and its weights-in form")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--bench-cache"]:
        cache = Path(argv[1])
        rewrite_bench_cache(cache, cache.resolve().parent)
    else:
        rewrite(Path(argv[0]), Path(argv[1]), lift_weights="--weights-as-inputs" in argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
