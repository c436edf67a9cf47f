"""fp16 / int4f16 decoder and embedding graphs, and tensor splitting (max_tensor_bytes), run by
onnxruntime-web (wasm, in Node) against the PyTorch reference.

The fp16 graphs take and return float16 KV caches: `ort_bridge.OrtSession` passes them as '<f2'
.npy files (`ort_run.mjs` hands ORT their raw bits as Uint16Array, as ORT does in Node 20).

References: `LlamaDecoder` loaded with `onnx_decoder.reference_weights(state, precision)`, i.e.
the exact weights the graph holds (fp16-rounded; int4-dequantized with fp16 scales), computing
in fp32. So the measured error is the error of fp16 *compute* alone. Tolerances are relative to
max(1, max |reference|). Tiny random models as in test_onnx_decoder.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper

from salmonn.int4 import dequantize_gather_int4
from salmonn.llama import LlamaDecoder, position_ids_from
from salmonn.onnx_decoder import (
    _split_sizes,
    build_decoder_model,
    build_embed_graph,
    compute_dtype,
    quantize_embedding,
    reference_weights,
    save_model,
)
from salmonn.ort_bridge import OrtSession, node_available
from test_onnx_decoder import LORA, close, embeds, make_decoder, tiny_config

pytestmark = pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")

FP16_TOL = 5e-2  # logits / present, relative to max(1, max |ref|)
MEASURED: dict[str, float] = {}  # filled by the tests; printed with -s

def reference_decoder(decoder: LlamaDecoder, precision: str) -> LlamaDecoder:
    ref = LlamaDecoder(decoder.config, decoder.lora).eval()
    ref.load_state_dict(reference_weights(decoder.state_dict(), precision))
    return ref


class Harness:
    """One ONNX decoder (any precision) in a long-lived session, with its weight-exact reference."""

    def __init__(self, decoder: LlamaDecoder, model_path: Path, precision: str) -> None:
        self.ref = reference_decoder(decoder, precision)
        self.config = decoder.config
        self.kv_dtype = compute_dtype(precision)
        self.session = OrtSession(model_path)

    def run(self, x: torch.Tensor, start: int, past, lora_scale: float):
        cfg = self.config
        feeds = {
            "inputs_embeds": x.numpy().astype(np.float32),
            "attention_mask": np.ones((1, start + x.shape[1]), np.int64),
            "position_ids": position_ids_from(start, x.shape[1]).numpy(),
            "lora_scale": np.array(lora_scale, np.float32),
            "num_logits_to_keep": np.array(x.shape[1], np.int64),
        }
        empty = np.zeros((1, cfg.num_key_value_heads, 0, cfg.head_dim), self.kv_dtype)
        for i in range(cfg.num_hidden_layers):
            feeds[f"past_key_values.{i}.key"] = empty if past is None else past[i][0]
            feeds[f"past_key_values.{i}.value"] = empty if past is None else past[i][1]
        out = self.session.run(feeds)
        return out["logits"], [(out[f"present.{i}.key"], out[f"present.{i}.value"])
                               for i in range(cfg.num_hidden_layers)]

    @torch.no_grad()
    def reference(self, x: torch.Tensor, start: int, past, lora_scale: float):
        logits, present = self.ref(x, position_ids_from(start, x.shape[1]), past, lora_scale)
        return logits.numpy(), present

    def close(self) -> None:
        self.session.close()


@pytest.fixture(scope="module", params=["fp16", "int4f16"])
def precision(request):
    return request.param


@pytest.fixture(scope="module", params=[4, 2], ids=["mha", "gqa"])
def kv_heads(request):
    return request.param


@pytest.fixture(scope="module")
def harness(precision, kv_heads, tmp_path_factory):
    decoder = make_decoder(tiny_config(kv_heads))
    path = tmp_path_factory.mktemp(f"{precision}_kv{kv_heads}") / "decoder_model_merged.onnx"
    save_model(build_decoder_model(decoder.config, decoder.state_dict(), precision), path)
    h = Harness(decoder, path, precision)
    yield h
    h.close()


# ----------------------------------------------------------------------------- graph structure


@pytest.mark.parametrize("precision_", ["fp16", "int4f16"])
def test_fp16_graph_interface_and_types(precision_):
    cfg = tiny_config(2)
    model = build_decoder_model(cfg, make_decoder(cfg).state_dict(), precision_)
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    f32, f16, i64 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64
    assert [i.name for i in model.graph.input] == (
        ["inputs_embeds", "attention_mask", "position_ids"]
        + [f"past_key_values.{i}.{k}" for i in range(2) for k in ("key", "value")]
        + ["lora_scale", "num_logits_to_keep"])
    assert types["inputs_embeds"] == f32 and types["lora_scale"] == f32 and types["logits"] == f32
    assert types["attention_mask"] == i64 and types["position_ids"] == i64
    assert all(types[n] == f16 for n in types if n.startswith(("past_key_values.", "present.")))
    # every float initializer is fp16 (weights, scales, norms, rotary caches, LoRA)
    float_inits = [t for t in model.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert float_inits and all(t.data_type == f16 for t in float_inits)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Cast") == 2 + 3  # seqlens/total_seq_len + inputs_embeds, lora_scale, logits
    if precision_ == "int4f16":
        assert ops.count("MatMulNBits") == 11 and ops.count("MatMul") == 4
    else:
        assert "MatMulNBits" not in ops and ops.count("MatMul") == 11 + 4
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["precision"] == precision_
    assert meta["int4_block_size"] == ("32" if precision_ == "int4f16" else "")


def test_fp16_refuses_weights_outside_the_fp16_range():
    cfg = tiny_config(2)
    state = make_decoder(cfg).state_dict()
    state["model.layers.0.mlp.up_proj.weight"][0, 0] = 1e6
    with pytest.raises(ValueError, match="float16 range"):
        build_decoder_model(cfg, state, "fp16")
    build_decoder_model(cfg, state, "fp32")  # fine in fp32


# ----------------------------------------------------------------------------- numerics on wasm


def test_fp16_prefill_decode_and_continuation(harness, precision, kv_heads):
    h = harness
    past_onnx = past_ref = None
    start, worst, worst_kv = 0, 0.0, 0.0
    for step, t in enumerate((7, 1, 5)):
        x = embeds(t, seed=10 + step)
        logits, present = h.run(x, start, past_onnx, LORA.scaling)
        ref_logits, ref_present = h.reference(x, start, past_ref, LORA.scaling)
        assert logits.dtype == np.float32 and logits.shape == (1, t, h.config.vocab_size)
        err = close(logits, ref_logits)
        worst = max(worst, err)
        assert err < FP16_TOL, f"step {step}: logits error {err:.2e}"
        for (k, v), (rk, rv) in zip(present, ref_present):
            assert k.dtype == np.float16 and v.dtype == np.float16
            assert k.shape == tuple(rk.shape) == (1, h.config.num_key_value_heads, start + t, h.config.head_dim)
            kv_err = max(close(k.astype(np.float32), rk.numpy()), close(v.astype(np.float32), rv.numpy()))
            worst_kv = max(worst_kv, kv_err)
            assert kv_err < FP16_TOL
        start += t
        past_onnx, past_ref = present, ref_present
    MEASURED[f"{precision}/kv{kv_heads} logits"] = worst
    MEASURED[f"{precision}/kv{kv_heads} present"] = worst_kv
    print(f"\n{precision} kv_heads={kv_heads}: max logits error {worst:.3e}, max present error {worst_kv:.3e}")


@pytest.mark.parametrize("precision_", ["fp16", "int4f16"])
def test_fp16_well_conditioned_decoder_is_tighter(tmp_path, precision_):
    """The N(0, 0.3) test decoder is chaotic (rounding only its *inputs* to fp16 moves the fp32
    reference's logits by ~2 %), so FP16_TOL is loose. With weights N(0, 0.15) (about
    1/sqrt(hidden)) the fp16 compute error is ~3e-3; a tighter bound here catches regressions."""
    from salmonn.llama import RMSNorm

    cfg = tiny_config(2)
    torch.manual_seed(0)
    decoder = LlamaDecoder(cfg, LORA)
    with torch.no_grad():
        for p in decoder.parameters():
            p.normal_(0, 0.15)
        for norm in [m for m in decoder.modules() if isinstance(m, RMSNorm)]:
            norm.weight.uniform_(0.5, 1.5)
    decoder.eval()
    path = tmp_path / "decoder_model_merged.onnx"
    save_model(build_decoder_model(cfg, decoder.state_dict(), precision_), path)
    h = Harness(decoder, path, precision_)
    try:
        past_onnx = past_ref = None
        start, worst = 0, 0.0
        for step, t in enumerate((7, 1, 5)):
            x = embeds(t, seed=10 + step)
            logits, past_onnx = h.run(x, start, past_onnx, LORA.scaling)
            ref, past_ref = h.reference(x, start, past_ref, LORA.scaling)
            worst = max(worst, close(logits, ref))
            start += t
    finally:
        h.close()
    MEASURED[f"{precision_} well-conditioned logits"] = worst
    print(f"\n{precision_} well-conditioned (std 0.15): max logits error {worst:.3e}")
    assert worst < 1e-2


@pytest.mark.parametrize("scale", [0.0, LORA.scaling / 2])
def test_fp16_lora_scale_is_a_runtime_input(harness, scale):
    x = embeds(7, seed=3)
    logits, _ = harness.run(x, 0, None, scale)
    ref, _ = harness.reference(x, 0, None, scale)
    assert close(logits, ref) < FP16_TOL


@pytest.mark.parametrize("precision_", ["fp16", "int4f16"])
def test_fp16_embed_graph(tmp_path, precision_):
    table = torch.randn(512, 64, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "embed_tokens.onnx"
    model = build_embed_graph(table, precision_)
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    save_model(model, path)
    ids = np.array([[0, 511, 5, 5], [2, 3, 4, 1]], np.int64)
    with OrtSession(path) as s:
        out = s.run({"input_ids": ids})["inputs_embeds"]
    assert out.dtype == np.float32
    expected = reference_weights({"model.embed_tokens.weight": table}, precision_)["model.embed_tokens.weight"].numpy()
    np.testing.assert_array_equal(out, expected[ids])
    if precision_ == "int4f16":  # fp16 scales: the table differs from int4 with fp32 scales only by the scale rounding
        packed, scales = quantize_embedding(table, precision_)
        assert scales.dtype == np.float16
        np.testing.assert_allclose(expected, dequantize_gather_int4(packed, scales.astype(np.float32)), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("precision_", ["fp16", "int4f16"])
def test_fp16_greedy_16_tokens(tmp_path, precision_):
    """Free-running greedy on the ONNX graphs (embed + decoder of the same precision) vs the reference.

    Reports how many of the 16 tokens agree with the reference's own greedy run; asserts that at
    every step ONNX picked the reference's argmax unless the reference itself sees a near-tie
    (top logit minus the picked logit below FP16_TOL * max(1, max|logit|)) on ONNX's prefix.
    """
    decoder = make_decoder(tiny_config(2), seed=7)
    dec_path, emb_path = tmp_path / "decoder_model_merged.onnx", tmp_path / "embed_tokens.onnx"
    save_model(build_decoder_model(decoder.config, decoder.state_dict(), precision_), dec_path)
    save_model(build_embed_graph(decoder.model.embed_tokens.weight, precision_), emb_path)
    h = Harness(decoder, dec_path, precision_)
    emb = OrtSession(emb_path)
    prompt = np.array([[1, 17, 300, 42, 9, 256, 77]], np.int64)
    with torch.no_grad():
        from salmonn.llama import greedy_generate

        expected = greedy_generate(h.ref, h.ref.embed(torch.from_numpy(prompt)), 16, stop_ids=(), lora_scale=LORA.scaling)
    try:
        x = torch.from_numpy(emb.run({"input_ids": prompt})["inputs_embeds"])
        np.testing.assert_array_equal(x.numpy(), h.ref.embed(torch.from_numpy(prompt)).detach().numpy())
        logits, past = h.run(x, 0, None, LORA.scaling)
        ref_logits, ref_past = h.reference(x, 0, None, LORA.scaling)
        start, got, margins = prompt.shape[1], [], []
        for _ in range(16):
            pick, ref_row = int(logits[0, -1].argmax()), ref_logits[0, -1]
            margin = float(ref_row.max() - ref_row[pick])
            margins.append(margin)
            assert margin < FP16_TOL * max(1.0, float(np.abs(ref_row).max())), (got, pick, margin)
            got.append(pick)
            x = torch.from_numpy(emb.run({"input_ids": np.array([[pick]], np.int64)})["inputs_embeds"])
            logits, past = h.run(x, start, past, LORA.scaling)
            ref_logits, ref_past = h.reference(x, start, ref_past, LORA.scaling)
            start += 1
    finally:
        h.close()
        emb.close()
    agree = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), len(expected))
    MEASURED[f"{precision_} greedy agreeing steps"] = agree
    print(f"\n{precision_}: greedy 16 tokens, first {agree} agree with the fp32 reference; "
          f"picks off the reference argmax: {sum(m > 0 for m in margins)}")
    assert len(set(got)) > 1


# ----------------------------------------------------------------------------- max_tensor_bytes


SMALL = 4096


def test_split_sizes():
    assert _split_sizes(10, 4, 40, "w") == [10]
    assert _split_sizes(10, 4, 12, "w") == [3, 3, 2, 2]
    assert _split_sizes(7, 1, 2, "w") == [2, 2, 2, 1]
    with pytest.raises(ValueError, match="over max_tensor_bytes"):
        _split_sizes(10, 50, 40, "w")
    # real SALMONN sizes against the 256 MiB default
    limit = 256 << 20
    assert _split_sizes(32000, 4096 * 4, limit, "7B lm_head fp32") == [16000, 16000]   # 524 MB
    assert _split_sizes(13824, 5120 * 4, limit, "13B mlp fp32") == [6912, 6912]        # 283 MB
    assert _split_sizes(32000, 5120 * 2, limit, "13B lm_head fp16") == [16000, 16000]  # 327 MB
    assert _split_sizes(11008, 4096 * 2, limit, "7B mlp fp16") == [11008]              # 90 MB: unsplit


@pytest.mark.parametrize("precision_", ["fp32", "int4", "fp16", "int4f16"])
def test_split_decoder_matches_unsplit(tmp_path, precision_):
    decoder = make_decoder(tiny_config(2))
    cfg, state = decoder.config, decoder.state_dict()
    whole = build_decoder_model(cfg, state, precision_, max_positions=64)
    split = build_decoder_model(cfg, state, precision_, max_positions=64, max_tensor_bytes=SMALL)
    assert max(len(t.raw_data) for t in whole.graph.initializer) > SMALL
    assert max(len(t.raw_data) for t in split.graph.initializer) <= SMALL
    n_concat = [n.op_type for n in split.graph.node].count("Concat")
    assert n_concat >= (2 * 3 + 1 if precision_ in ("fp32", "fp16") else 1)  # MLP x 2 layers + lm_head at least
    # the split weights are exactly the unsplit ones, column blocks side by side
    inits = {t.name: numpy_helper.to_array(t) for t in split.graph.initializer}
    if precision_ in ("fp32", "fp16"):
        parts = sorted((k for k in inits if k.startswith("/lm_head.weight_T.part")), key=lambda k: int(k.rsplit("part", 1)[1]))
        whole_w = numpy_helper.to_array(next(t for t in whole.graph.initializer if t.name == "/lm_head.weight_T"))
        np.testing.assert_array_equal(np.concatenate([inits[k] for k in parts], axis=1), whole_w)
    paths = {}
    for name, model in (("whole", whole), ("split", split)):
        paths[name] = tmp_path / name / "decoder_model_merged.onnx"
        save_model(model, paths[name])
    feeds = {
        "inputs_embeds": embeds(5, seed=1).numpy(),
        "attention_mask": np.ones((1, 5), np.int64),
        "position_ids": position_ids_from(0, 5).numpy(),
        "lora_scale": np.array(LORA.scaling, np.float32),
        "num_logits_to_keep": np.array(5, np.int64),
    }
    kv = np.zeros((1, 2, 0, 16), compute_dtype(precision_))
    feeds.update({f"past_key_values.{i}.{k}": kv for i in range(2) for k in ("key", "value")})
    outs = {}
    for name, path in paths.items():
        with OrtSession(path) as s:
            outs[name] = s.run(feeds)
    err = close(outs["split"]["logits"], outs["whole"]["logits"])
    MEASURED[f"split vs unsplit {precision_}"] = err
    print(f"\nsplit vs unsplit {precision_}: logits {err:.2e}")
    assert err <= 1e-5


@pytest.mark.parametrize("precision_", ["fp32", "int4", "fp16", "int4f16"])
def test_split_embed_matches_unsplit(tmp_path, precision_):
    table = torch.randn(512, 64, generator=torch.Generator().manual_seed(0))
    # int4 splits in whole quantization blocks: one 32-column block of 512 rows packs to 8 KiB
    limit = SMALL if precision_ in ("fp32", "fp16") else 8192
    whole, split = build_embed_graph(table, precision_), build_embed_graph(table, precision_, max_tensor_bytes=limit)
    assert max(len(t.raw_data) for t in whole.graph.initializer) > limit
    assert max(len(t.raw_data) for t in split.graph.initializer) <= limit
    assert [n.name for n in split.graph.node].count("/model/embed_tokens/Concat") == 1
    ids = np.array([[0, 511, 5, 5], [2, 3, 4, 1]], np.int64)
    outs = []
    for name, model in (("whole", whole), ("split", split)):
        save_model(model, tmp_path / name / "embed_tokens.onnx")
        with OrtSession(tmp_path / name / "embed_tokens.onnx") as s:
            outs.append(s.run({"input_ids": ids})["inputs_embeds"])
    np.testing.assert_array_equal(outs[1], outs[0])


def test_unsplittable_tensor_is_refused():
    decoder = make_decoder(tiny_config(2))
    with pytest.raises(ValueError, match="max_tensor_bytes"):  # one lm_head column = 64 f32 = 256 bytes
        build_decoder_model(decoder.config, decoder.state_dict(), "fp32", max_tensor_bytes=128)
    with pytest.raises(ValueError, match="cos_cache"):  # rotary caches are never split
        build_decoder_model(decoder.config, decoder.state_dict(), "fp32", max_tensor_bytes=SMALL)


@pytest.mark.parametrize("precision_", ["fp32", "int4"])
def test_default_limit_changes_nothing(precision_):
    """Graphs with nothing to split are the same bytes with or without the parameter."""
    decoder = make_decoder(tiny_config(2))
    a = build_decoder_model(decoder.config, decoder.state_dict(), precision_)
    b = build_decoder_model(decoder.config, decoder.state_dict(), precision_, max_tensor_bytes=1 << 30)
    assert a.SerializeToString() == b.SerializeToString()


BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "salmonn-tiny"


@pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="tiny bundle not built")
@pytest.mark.parametrize("variant,base", [("fp16", "fp32"), ("int4f16", "int4")])
def test_tiny_bundle_fp16_variant_runs_and_tracks_its_base(variant, base):
    """The shipped tiny bundle's fp16 LLM graphs run on wasm and agree with the fp32-compute
    variant they derive from (prefill + one decode step); the audio side is shared with it."""
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    spec, base_spec = manifest["variants"][variant], manifest["variants"][base]
    assert spec["tested"] is False and "verified on the wasm CPU backend only" in spec["note"]
    for key in ("speechEncoder", "audioEncoder", "connector"):
        assert spec["graphs"][key] == base_spec["graphs"][key]
    llm = manifest["architecture"]["llm"]
    prompt = np.array([[1, 3148, 1001, 29901, 278, 4149, 13]], np.int64)
    results = {}
    for name, graphs in ((variant, spec["graphs"]), (base, base_spec["graphs"])):
        with OrtSession(BUNDLE / graphs["embedTokens"]["path"]) as emb:
            x = emb.run({"input_ids": prompt})["inputs_embeds"]
            x_next = emb.run({"input_ids": np.array([[278]], np.int64)})["inputs_embeds"]
        kv_dtype = compute_dtype(name)
        empty = np.zeros((1, llm["numKvHeads"], 0, llm["headDim"]), kv_dtype)
        with OrtSession(BUNDLE / graphs["decoder"]["path"]) as dec:
            feeds = {"inputs_embeds": x, "attention_mask": np.ones((1, 7), np.int64),
                     "position_ids": position_ids_from(0, 7).numpy(),
                     "lora_scale": np.array(manifest["architecture"]["lora"]["defaultScale"], np.float32),
                     "num_logits_to_keep": np.array(1, np.int64)}
            feeds.update({f"past_key_values.{i}.{k}": empty for i in range(llm["numLayers"]) for k in ("key", "value")})
            out = dec.run(feeds)
            feeds.update({"inputs_embeds": x_next, "attention_mask": np.ones((1, 8), np.int64),
                          "position_ids": position_ids_from(7, 1).numpy()})
            feeds.update({f"past_key_values.{i}.{k}": out[f"present.{i}.{k}"]
                          for i in range(llm["numLayers"]) for k in ("key", "value")})
            assert all(out[f"present.{i}.key"].dtype == kv_dtype for i in range(llm["numLayers"]))
            step = dec.run(feeds)
        results[name] = (x, out["logits"], step["logits"])
    (x16, a16, b16), (x32, a32, b32) = results[variant], results[base]
    assert close(x16, x32) < 1e-2  # the embedding table itself rounded to fp16 (or fp16 int4 scales)
    errs = (close(a16, a32), close(b16, b32))
    MEASURED[f"tiny bundle {variant} vs {base}"] = max(errs)
    print(f"\ntiny bundle {variant} vs {base}: logits {errs[0]:.2e} (prefill), {errs[1]:.2e} (decode)")
    assert max(errs) < FP16_TOL


def test_report_measured():
    """Prints what the tests above measured (run with -s to see it)."""
    if MEASURED:
        print("\n" + json.dumps(MEASURED, indent=1))
