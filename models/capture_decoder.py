"""A decoder graph onnxruntime-web can graph-capture: the decode step with no node on the CPU.

    /usr/bin/python3 models/capture_decoder.py IN.onnx OUT.onnx [--weights-as-inputs] [--embedding EMBED.onnx]
    /usr/bin/python3 models/capture_decoder.py --bench-cache .bench-cache

The second form writes every kind for every decoder of every bench model built there, as
`.bench-cache/capture/<model>_decoder[_q4].onnx`, `<model>_decoder[_q4].weights-in.onnx` and
`<model>_decoder[_q4].ids.weights-in.onnx` (each weights-in graph with its `.json` table): what
`npm run bench:capture` and the GPU kit read.

ORT's WebGPU EP records a run's kernels and replays them (`enableGraphCapture`) only when every
node runs on the GPU and shapes stay fixed (BENCHMARKS.md, session 11: replay saves ~90 % of each
kernel's CPU cost). The converter's decoder computes GroupQueryAttention's `seqlens_k` and
`total_seq_len` from `attention_mask` with shape ops that ORT places on the CPU, so capture is
refused. This rewrites a converted decoder (weights untouched, still in IN's external data file,
named as before) so that:
- `seqlens_k` (int32 [batch]) and `total_seq_len` (int32 []) are graph inputs the engine writes;
- `attention_mask` and the unused `position_ids` are gone (positions follow from `seqlens_k`);
- `num_logits_to_keep` is the constant 1 (a decode step's one row);
- `probe_hidden` (localization's probe) is not an output;
- a tied head (Qwen3: `lm_head` reads the embedding table) reshapes its rows back with the constant
  [0, 1, -1] instead of a shape computed by `Shape`/`Concat` (CPU ops; one row is kept), and its
  `logits` are written by a kernel (`+ 0`), not by the `Reshape`: ORT leaves the buffer copy of a
  graph output written by a Reshape out of the captured commands, so replays returned the first
  run's logits (measured on the tiny ALARM decoder).
Everything else, and so every number the graph computes, is unchanged.

`--weights-as-inputs` also turns every initializer kept in the external data file into a graph
input of the same name, type and shape, and writes a table of where each one's bytes are
(`OUT` with `.json` for `.onnx`: name, dtype, dims, file, offset, length). Why: onnxruntime-web
captures one graph per session and shares no weights between sessions, so a captured decode
session next to an uncaptured one for prompts would hold the weights twice on the GPU. With the
weights as inputs both sessions bind the same GPU buffers, uploaded once by the runtime.

`--embedding EMBED.onnx` puts the embedding graph in front of the decoder: the graph takes
`input_ids` instead of `inputs_embeds`, so a decode step is one captured run.
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
HEAD_SHAPE_NODES = {"/lm_head/Shape", "/lm_head/Concat"}
HEAD_RESHAPE = "/lm_head/Reshape_back"


def _fixed_head_shape(g: onnx.GraphProto) -> None:
    """A tied head's reshape back to [batch, 1, vocab] with a constant shape, logits from a kernel (in place)."""
    found = {n.name: n for n in g.node if n.name in HEAD_SHAPE_NODES}
    if not found:
        return
    if set(found) != HEAD_SHAPE_NODES:
        raise ValueError(f"not a converter decoder: the tied head has only {sorted(found)}")
    shape_name = found["/lm_head/Concat"].output[0]
    kept = [n for n in g.node if n.name not in HEAD_SHAPE_NODES]
    reshape = next(n for n in kept if n.name == HEAD_RESHAPE)
    if reshape.output[0] == "logits":
        reshape.output[0] = f"{HEAD_RESHAPE}/output_0"
        kept.append(helper.make_node("Add", [reshape.output[0], "/lm_head/zero"], ["logits"], name="/lm_head/write_logits"))
        g.initializer.append(numpy_helper.from_array(np.array(0, dtype=np.float32), "/lm_head/zero"))
    del g.node[:]
    g.node.extend(kept)
    g.initializer.append(numpy_helper.from_array(np.array([0, 1, -1], dtype=np.int64), shape_name))


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
    _fixed_head_shape(g)
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


def with_embedding(decoder: onnx.ModelProto, embed: onnx.ModelProto) -> onnx.ModelProto:
    """The step graph takes token ids: the embedding graph's nodes feed the decoder (in place).

    Why: a decode step is then one captured run (token id in, logits out) instead of an uncaptured
    embedding run before it, which costs a whole `session.run` per token. The embedding graph must
    sit next to the decoder (its external data is named relative to the same folder).
    """
    d, e = decoder.graph, embed.graph
    clashes = ({i.name for i in d.initializer} & {i.name for i in e.initializer}) | \
              ({n.name for n in d.node} & {n.name for n in e.node})
    if clashes:
        raise ValueError(f"embedding and decoder graphs share names: {sorted(clashes)[:5]}")
    if [o.name for o in e.output] != ["inputs_embeds"]:
        raise ValueError("not an embedding graph: its output is not inputs_embeds")
    inputs = [*e.input, *(i for i in d.input if i.name != "inputs_embeds")]
    del d.input[:]
    d.input.extend(inputs)
    nodes = [*e.node, *d.node]  # the embedding first: topological order
    del d.node[:]
    d.node.extend(nodes)
    d.initializer.extend(e.initializer)
    have = {o.domain for o in decoder.opset_import}
    decoder.opset_import.extend(o for o in embed.opset_import if o.domain not in have)
    return decoder


def rewrite(source: Path, target: Path, lift_weights: bool = False, embed: Path | None = None) -> None:
    model = capturable_decoder(onnx.load(str(source), load_external_data=False))
    if embed is not None:
        if embed.parent.resolve() != source.parent.resolve():
            raise ValueError(f"{embed} is not in the decoder's folder {source.parent}")
        with_embedding(model, onnx.load(str(embed), load_external_data=False))
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
                rewrite(source, target.with_suffix(".ids.weights-in.onnx"), lift_weights=True, embed=root / files["embed"])
            except ValueError as error:  # e.g. a decoder without the converter's mask nodes
                print(f"skipped {source}: {error}")
                continue
            print(f"wrote {target} and its weights-in forms (embeddings in, token ids in)")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--bench-cache"]:
        cache = Path(argv[1])
        rewrite_bench_cache(cache, cache.resolve().parent)
    else:
        embed = Path(argv[argv.index("--embedding") + 1]) if "--embedding" in argv else None
        rewrite(Path(argv[0]), Path(argv[1]), lift_weights="--weights-as-inputs" in argv[2:], embed=embed)


if __name__ == "__main__":
    main(sys.argv[1:])
