"""The builder paths the benchmark uses (models/build_bench_models.py): pre-quantized int4 weights,
external data streamed while building, and the text-only graph transformers.js loads. Each must
compute exactly what the ordinary build computes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from salmonn.int4 import quantize_int4
from salmonn.onnx_decoder import (
    ExternalDataWriter,
    QuantizedLinear,
    build_decoder_model,
    build_embed_graph,
    save_model,
    text_only_decoder,
)
from salmonn.ort_bridge import OrtSession, node_available
from test_onnx_decoder import INT4_LINEARS, LORA, make_decoder, tiny_config

pytestmark = pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")


def prequantized(state: dict) -> dict:
    """The state dict with every int4 linear weight handed over already packed."""
    out = dict(state)
    for key, value in state.items():
        if key == "lm_head.weight" or (key.endswith(".weight") and any(f".{n}." in key for n in INT4_LINEARS)):
            out[key] = QuantizedLinear(*quantize_int4(value.detach().numpy()))
    return out


def initializers(model: onnx.ModelProto) -> dict[str, bytes]:
    return {t.name: t.raw_data for t in model.graph.initializer}


def test_prequantized_weights_build_the_same_graph():
    decoder = make_decoder(tiny_config(2))
    plain = build_decoder_model(decoder.config, decoder.state_dict(), "int4")
    packed = build_decoder_model(decoder.config, prequantized(decoder.state_dict()), "int4")
    assert [n.op_type for n in plain.graph.node] == [n.op_type for n in packed.graph.node]
    assert initializers(plain) == initializers(packed)  # the fused q|k|v rows stack as packed blocks too


def test_streamed_external_data_matches_save_model(tmp_path):
    decoder = make_decoder(tiny_config(2))
    whole = build_decoder_model(decoder.config, decoder.state_dict(), "int4")
    saved = save_model(whole, tmp_path / "a" / "decoder_model_merged_q4.onnx")
    writer = ExternalDataWriter(tmp_path / "b" / "decoder_model_merged_q4.onnx")
    streamed = writer.finish(build_decoder_model(decoder.config, decoder.state_dict(), "int4", external_data=writer))
    assert [p.name for p in saved] == [p.name for p in streamed]
    for a, b in zip(saved, streamed):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_text_only_decoder_computes_what_embed_plus_decoder_compute(tmp_path):
    decoder = make_decoder(tiny_config(2))
    state = decoder.state_dict()
    dec = build_decoder_model(decoder.config, state, "fp32")
    emb = build_embed_graph(state["model.embed_tokens.weight"], "fp32")
    merged = text_only_decoder(dec, emb, LORA.scaling)
    assert "input_ids" in [i.name for i in merged.graph.input]
    assert not {"inputs_embeds", "lora_scale", "num_logits_to_keep"} & {i.name for i in merged.graph.input}
    paths = {name: tmp_path / f"{name}.onnx" for name in ("dec", "emb", "merged")}
    save_model(dec, paths["dec"])
    save_model(emb, paths["emb"])
    save_model(merged, paths["merged"])
    ids = np.array([[1, 17, 300, 42, 7]], np.int64)
    cfg = decoder.config
    empty = np.zeros((1, cfg.num_key_value_heads, 0, cfg.head_dim), np.float32)
    past = {f"past_key_values.{i}.{k}": empty for i in range(cfg.num_hidden_layers) for k in ("key", "value")}
    common = {"attention_mask": np.ones((1, 5), np.int64), "position_ids": np.arange(5, dtype=np.int64)[None], **past}
    with OrtSession(paths["emb"]) as e, OrtSession(paths["dec"]) as d, OrtSession(paths["merged"]) as m:
        x = e.run({"input_ids": ids})["inputs_embeds"]
        two = d.run({"inputs_embeds": x, "lora_scale": np.array(LORA.scaling, np.float32),
                     "num_logits_to_keep": np.array(1, np.int64), **common})
        one = m.run({"input_ids": ids, **common})
    assert one["logits"].shape == (1, 1, cfg.vocab_size)
    np.testing.assert_array_equal(one["logits"], two["logits"])
    np.testing.assert_array_equal(one["present.1.value"], two["present.1.value"])
