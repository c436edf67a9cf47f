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


def test_random_qwen3_bench_graph_computes_the_reference_qwen3(tmp_path):
    """qwen3-4b's build path (build_random with its RandomModel) at a small geometry: the streamed
    int4 Qwen3 graph (per-head q/k norms, tied head reading embed_tokens' data file, no lora_scale)
    computes what the PyTorch Qwen3 reference computes on the same random weights, dequantized."""
    import json
    from dataclasses import replace

    import torch

    import build_bench_models as bench
    from alarm.qwen3 import Qwen3Config, Qwen3Decoder
    from salmonn.int4 import dequantize_int4
    from salmonn.llama import position_ids_from
    from salmonn.onnx_decoder import reference_weights
    from test_alarm_onnx import TOL, close, decoder_feeds

    cfg = Qwen3Config(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=32)  # q width 128 != hidden 64
    spec = replace(bench.RANDOM_MODELS["qwen3-4b"], config=cfg, max_positions=64)
    bench.build_random(tmp_path, "qwen3-small", spec, "test", seed=0)
    info = json.loads((tmp_path / "bench.json").read_text())
    files = info["variants"]["int4"]
    assert (info["llm"], info["tokenizer"], info["geometry"]["maxPositions"]) == ("qwen3", "models/bundles/alarm-tiny", 64)
    assert files["decoderData"][-1] == "embed_tokens_q4.onnx_data"  # the tied head reads the embed file

    state = {}
    for key, value in bench.RandomInt4Weights(cfg, 0, lora=False, flavor=spec.flavor).items():
        is_packed = isinstance(value, QuantizedLinear)
        state[key] = torch.from_numpy(dequantize_int4(value.packed, value.scales, value.shape[1]) if is_packed else value)
    table = bench.embedding_table(cfg, 0, streamed=True)
    state.update(reference_weights({"model.embed_tokens.weight": table}, "int4"))
    ref = Qwen3Decoder(cfg).eval()
    ref.load_state_dict(state)  # strict: the lazy weights hold exactly Qwen3's keys (q_norm, k_norm, no lm_head)

    ids = np.array([[5, 300, 17, 511, 42, 9]], np.int64)
    with OrtSession(tmp_path / files["embed"]) as embed, OrtSession(tmp_path / files["decoder"]) as decoder:
        x = embed.run({"input_ids": ids})["inputs_embeds"]
        out = decoder.run(decoder_feeds(cfg, x, 0, None, np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(x, ref.embed(torch.from_numpy(ids)).numpy(), rtol=0, atol=1e-7)
        logits, _ = ref(torch.from_numpy(x), position_ids_from(0, ids.shape[1]))
    assert close(out["logits"], logits.numpy()) < TOL["int4"]


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_qwen3_peer_graph_computes_what_embed_plus_decoder_compute(tmp_path, precision):
    """qwen3-medium's build path (build_random + write_peer_folder) at a small geometry: the peer's
    single text-only graph (no lora_scale, tied head deduplicated) computes, on the same ids, what
    the two graphs the engine runs compute (embed_tokens, then the decoder reading embed's data)."""
    import json
    from dataclasses import replace

    import build_bench_models as bench
    from alarm.qwen3 import Qwen3Config
    from test_alarm_onnx import decoder_feeds

    cfg = Qwen3Config(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=64)
    spec = replace(bench.RANDOM_MODELS["qwen3-medium"], config=cfg, precisions=(precision,))
    bench.build_random(tmp_path, "qwen3-small", spec, "test", seed=0)
    info = json.loads((tmp_path / "bench.json").read_text())
    files = info["variants"][precision]
    peer = tmp_path / info["peer"]
    config = json.loads((peer / "config.json").read_text())
    name = f"decoder_model_merged{bench.SUFFIX[precision]}.onnx"
    assert (config["model_type"], config["tie_word_embeddings"]) == ("qwen3", True)
    assert config["transformers.js_config"]["use_external_data_format"] == {name: 1}

    merged = onnx.load(str(peer / "onnx" / name), load_external_data=False)
    assert "input_ids" in [i.name for i in merged.graph.input]
    assert not {"inputs_embeds", "lora_scale", "num_logits_to_keep"} & {i.name for i in merged.graph.input}
    # The table and the tied head are one set of bytes in the peer's data file.
    where = {t.name: tuple((e.key, e.value) for e in t.external_data) for t in merged.graph.initializer}
    table = ("model.embed_tokens.weight",) if precision == "fp32" else \
        ("model.embed_tokens.weight_Q4", "model.embed_tokens.weight_scales")
    head = ("lm_head.shared_weight",) if precision == "fp32" else ("lm_head.shared_Q4", "lm_head.shared_scales")
    for t, h in zip(table, head):
        assert where[t] and where[t] == where[h], (t, h)
    stored = {(dict(e)["offset"], dict(e)["length"]) for e in where.values() if e}
    written = sum(int(length) for _, length in stored)
    assert written <= (peer / "onnx" / f"{name}_data").stat().st_size < written + 4096 * len(stored)

    ids = np.array([[5, 300, 17, 511, 42, 9]], np.int64)
    feeds = decoder_feeds(cfg, np.zeros((1, ids.shape[1], cfg.hidden_size), np.float32), 0, None, np.float32)
    common = {k: v for k, v in feeds.items() if k not in ("inputs_embeds", "num_logits_to_keep")}
    with OrtSession(tmp_path / files["embed"]) as e, OrtSession(tmp_path / files["decoder"]) as d, \
            OrtSession(peer / "onnx" / name) as m:
        x = e.run({"input_ids": ids})["inputs_embeds"]
        two = d.run({"inputs_embeds": x, "num_logits_to_keep": np.array(1, np.int64), **common})
        one = m.run({"input_ids": ids, **common})
    assert one["logits"].shape == (1, 1, cfg.vocab_size)
    np.testing.assert_allclose(one["logits"], two["logits"], rtol=0, atol=1e-5)
    assert one["logits"].argmax() == two["logits"].argmax()
    np.testing.assert_allclose(one["present.1.key"], two["present.1.key"], rtol=0, atol=1e-5)


def test_text_only_decoder_refuses_one_name_for_two_tensors():
    decoder = make_decoder(tiny_config(2))
    state = decoder.state_dict()
    dec = build_decoder_model(decoder.config, state, "fp32")
    same = build_embed_graph(state["model.embed_tokens.weight"], "fp32")
    other = build_embed_graph(state["model.embed_tokens.weight"] * 2, "fp32")
    name = same.graph.initializer[0].name
    dec.graph.initializer.extend([t for t in same.graph.initializer if t.name == name])
    merged = text_only_decoder(dec, same, LORA.scaling)  # the same tensor in both: kept once
    assert [t.name for t in merged.graph.initializer].count(name) == 1
    with pytest.raises(ValueError, match="different tensors"):
        text_only_decoder(dec, other, LORA.scaling)
