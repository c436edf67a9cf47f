"""models/capture_decoder.py: the capturable decode graph computes what the converter's graph does.

The rewrite only moves GroupQueryAttention's sequence lengths from shape ops on `attention_mask` to
graph inputs (and fixes `num_logits_to_keep` at 1), so both graphs, run by onnxruntime-web (wasm)
on the same embeddings and past, must give the same logits and presents: a prompt on an empty
past, then a decode step on its cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from random_decoder import random_decoder

from salmonn.llama import LlamaConfig, LoraConfig
from salmonn.onnx_decoder import build_decoder_model, build_embed_graph, save_model
from salmonn.ort_bridge import node_available, run_onnx

from capture_decoder import capturable_decoder, rewrite  # models/ is on sys.path (conftest.py)

pytestmark = pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")

CONFIG = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                     max_position_embeddings=256)


@pytest.fixture(scope="module", params=["fp32", "int4"])
def graphs(request, tmp_path_factory) -> tuple[Path, Path]:
    decoder = random_decoder(CONFIG, LoraConfig(r=4, alpha=16), 0)
    folder = tmp_path_factory.mktemp(f"capture_{request.param}")
    original = folder / "decoder_model_merged.onnx"
    save_model(build_decoder_model(CONFIG, decoder.state_dict(), request.param), original)
    # Next to the original: the rewritten graph reads the same external data file.
    captured = folder / "decoder_capture.onnx"
    onnx.save(capturable_decoder(onnx.load(str(original), load_external_data=False)), str(captured))
    return original, captured


def _past(present: dict | None) -> dict[str, np.ndarray]:
    empty = np.zeros((1, CONFIG.num_key_value_heads, 0, CONFIG.head_dim), np.float32)
    return {f"past_key_values.{i}.{part}": empty if present is None else present[f"present.{i}.{part}"]
            for i in range(CONFIG.num_hidden_layers) for part in ("key", "value")}


def _run_both(graphs, embeds: np.ndarray, past_length: int, present: dict | None):
    original, captured = graphs
    n = embeds.shape[1]
    total = past_length + n
    common = {"inputs_embeds": embeds, "lora_scale": np.array(4.0, np.float32), **_past(present)}
    a = run_onnx(original, {**common, "attention_mask": np.ones((1, total), np.int64),
                            "position_ids": np.arange(past_length, total, dtype=np.int64)[None],
                            "num_logits_to_keep": np.array(1, np.int64)})
    b = run_onnx(captured, {**common, "seqlens_k": np.array([total - 1], np.int32),
                            "total_seq_len": np.array(total, np.int32)})
    return a, b


def test_same_logits_and_presents_for_a_prompt_then_a_step(graphs):
    rng = np.random.default_rng(0)
    prompt = rng.standard_normal((1, 7, CONFIG.hidden_size)).astype(np.float32)
    a, b = _run_both(graphs, prompt, 0, None)
    assert a["logits"].shape == b["logits"].shape == (1, 1, CONFIG.vocab_size)
    for name in a:
        if name != "probe_hidden":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    step = rng.standard_normal((1, 1, CONFIG.hidden_size)).astype(np.float32)
    a2, b2 = _run_both(graphs, step, 7, a)
    assert np.abs(a2["logits"]).max() > 0
    for name in a2:
        if name != "probe_hidden":
            np.testing.assert_array_equal(a2[name], b2[name], err_msg=name)


def test_the_graph_has_no_shape_ops_and_takes_the_lengths(graphs):
    _, captured = graphs
    graph = onnx.load(str(captured), load_external_data=False).graph
    inputs = {i.name for i in graph.input}
    assert {"seqlens_k", "total_seq_len"} <= inputs
    assert not inputs & {"attention_mask", "position_ids", "num_logits_to_keep"}
    assert not [n.name for n in graph.node if n.op_type in ("Shape", "ReduceSum")]


def test_refuses_a_graph_that_is_not_a_converter_decoder():
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    with pytest.raises(ValueError, match="mask nodes missing"):
        capturable_decoder(onnx.helper.make_model(graph))


def _weights_from_table(table_path: Path) -> dict[str, np.ndarray]:
    """Each lifted weight read back from the external data file the table names."""
    table = __import__("json").loads(table_path.read_text())["weights"]
    out = {}
    for entry in table:
        raw = np.fromfile(table_path.parent / entry["file"], dtype=np.uint8, count=entry["length"], offset=entry["offset"])
        out[entry["name"]] = raw.view(np.dtype(entry["dtype"])).reshape(entry["dims"])
    return out


def test_weights_as_inputs_give_the_same_numbers(graphs):
    """The weights-in graph, fed its weights from the file the table points into, is bit-identical."""
    original, captured = graphs
    lifted = original.parent / "decoder_weights_in.onnx"
    rewrite(original, lifted, lift_weights=True)
    graph = onnx.load(str(lifted), load_external_data=False).graph
    assert not [i.name for i in graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
    weights = _weights_from_table(lifted.with_suffix(".json"))
    assert weights and set(weights) <= {i.name for i in graph.input}
    rng = np.random.default_rng(1)
    prompt = rng.standard_normal((1, 5, CONFIG.hidden_size)).astype(np.float32)
    feeds = {"inputs_embeds": prompt, "lora_scale": np.array(4.0, np.float32), **_past(None),
             "seqlens_k": np.array([4], np.int32), "total_seq_len": np.array(5, np.int32)}
    a = run_onnx(captured, feeds)
    b = run_onnx(lifted, {**feeds, **weights})
    assert np.abs(a["logits"]).max() > 0
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_token_ids_in_give_the_same_numbers(graphs):
    """The step graph with the embedding in front, fed token ids, equals the decoder fed their rows."""
    original, captured = graphs
    precision = "int4" if "int4" in original.parent.name else "fp32"
    table = (np.random.default_rng(2).standard_normal((CONFIG.vocab_size, CONFIG.hidden_size)) * 0.02).astype(np.float32)
    embed = original.parent / "embed_tokens.onnx"
    save_model(build_embed_graph(table, precision), embed)
    stepped = original.parent / "decoder_ids.onnx"
    rewrite(original, stepped, lift_weights=True, embed=embed)
    graph = onnx.load(str(stepped), load_external_data=False).graph
    assert "input_ids" in {i.name for i in graph.input} and "inputs_embeds" not in {i.name for i in graph.input}
    ids = np.array([[5, 17, 300, 2, 9]], np.int64)
    rows = run_onnx(embed, {"input_ids": ids})["inputs_embeds"]
    feeds = {"lora_scale": np.array(4.0, np.float32), **_past(None),
             "seqlens_k": np.array([4], np.int32), "total_seq_len": np.array(5, np.int32)}
    a = run_onnx(captured, {**feeds, "inputs_embeds": rows})
    b = run_onnx(stepped, {**feeds, "input_ids": ids, **_weights_from_table(stepped.with_suffix(".json"))})
    assert np.abs(a["logits"]).max() > 0
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_tied_head_needs_no_shape_op_and_gives_the_same_numbers(tmp_path):
    """The tiny ALARM decoder (Qwen3: the head reads the embedding table): no Shape/Concat left, the
    logits written by a kernel, and a prompt then a step give the original's numbers bit for bit."""
    bundle = Path(__file__).resolve().parents[1] / "bundles" / "alarm-tiny" / "onnx"
    for name in ("decoder_model_merged.onnx", "decoder_model_merged.onnx_data", "embed_tokens.onnx_data"):
        shutil.copy(bundle / name, tmp_path / name)
    original = tmp_path / "decoder_model_merged.onnx"
    captured = tmp_path / "decoder_capture.onnx"
    onnx.save(capturable_decoder(onnx.load(str(original), load_external_data=False)), str(captured))
    nodes = {n.name: n for n in onnx.load(str(captured), load_external_data=False).graph.node}
    assert "/lm_head/Shape" not in nodes and "/lm_head/Concat" not in nodes
    assert nodes["/lm_head/write_logits"].op_type == "Add" and list(nodes["/lm_head/write_logits"].output) == ["logits"]

    layers, kv_heads, head_dim, hidden = 2, 2, 16, 32
    def past(present: dict | None) -> dict[str, np.ndarray]:
        empty = np.zeros((1, kv_heads, 0, head_dim), np.float32)
        return {f"past_key_values.{i}.{part}": empty if present is None else present[f"present.{i}.{part}"]
                for i in range(layers) for part in ("key", "value")}
    rng = np.random.default_rng(3)
    present = None
    for past_length, n in ((0, 5), (5, 1)):  # a prompt, then a step on its cache
        embeds = (rng.standard_normal((1, n, hidden)) * 0.5).astype(np.float32)
        total = past_length + n
        a = run_onnx(original, {"inputs_embeds": embeds, **past(present), "attention_mask": np.ones((1, total), np.int64),
                                "position_ids": np.arange(past_length, total, dtype=np.int64)[None],
                                "num_logits_to_keep": np.array(1, np.int64)})
        b = run_onnx(captured, {"inputs_embeds": embeds, **past(present), "seqlens_k": np.array([total - 1], np.int32),
                                "total_seq_len": np.array(total, np.int32)})
        assert b["logits"].shape == (1, 1, 151936) and np.abs(a["logits"]).max() > 0
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        present = a
