"""ONNX decoder/embedding graphs, run by onnxruntime-web (wasm, in Node), vs the PyTorch reference.

Tiny random models: vocab 512, hidden 64, 2 layers, 4 heads, intermediate 128; kv heads 4 (MHA)
and 2 (GQA). LoRA r=4, alpha=16 (default scale 4.0, like SALMONN's 32/8) with random B.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from random_decoder import random_decoder

from salmonn.int4 import dequantize_int4, quantize_int4
from salmonn.llama import (
    LlamaConfig,
    LlamaDecoder,
    LoraConfig,
    greedy_generate,
    position_ids_from,
)
from salmonn.onnx_decoder import build_decoder_model, build_embed_graph, save_model
from salmonn.ort_bridge import OrtSession, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")

LORA = LoraConfig(r=4, alpha=16)
INT4_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tiny_config(kv_heads: int) -> LlamaConfig:
    return LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=kv_heads, rms_norm_eps=1e-6,
                       max_position_embeddings=256)


def make_decoder(config: LlamaConfig, seed: int = 0) -> LlamaDecoder:
    return random_decoder(config, LORA, seed)


def dequantized_copy(decoder: LlamaDecoder) -> LlamaDecoder:
    """The reference with every int4 weight replaced by dequantize_int4(quantize_int4(W))."""
    ref = LlamaDecoder(decoder.config, decoder.lora).eval()
    state = decoder.state_dict()
    for key, value in state.items():
        if key == "lm_head.weight" or (key.endswith(".weight") and any(f".{n}." in key for n in INT4_LINEARS)):
            state[key] = torch.from_numpy(dequantize_int4(*quantize_int4(value), value.shape[1]))
    ref.load_state_dict(state)
    return ref


def close(actual: np.ndarray, expected: np.ndarray) -> float:
    """Max abs error relative to max(1, max |expected|)."""
    return float(np.abs(actual - expected).max() / max(1.0, float(np.abs(expected).max())))


class Harness:
    """Drives one ONNX decoder through a long-lived ORT session and keeps the reference alongside."""

    def __init__(self, decoder: LlamaDecoder, model_path: Path) -> None:
        self.decoder = decoder
        self.config = decoder.config
        self.session = OrtSession(model_path)

    def feeds(self, embeds, start, past, lora_scale):
        cfg = self.config
        t = embeds.shape[1]
        feeds = {
            "inputs_embeds": embeds.numpy().astype(np.float32),
            "attention_mask": np.ones((1, start + t), np.int64),
            "position_ids": position_ids_from(start, t).numpy(),
            "lora_scale": np.array(lora_scale, np.float32),
            "num_logits_to_keep": np.array(t, np.int64),  # every position, to compare each with the reference
        }
        empty = np.zeros((1, cfg.num_key_value_heads, 0, cfg.head_dim), np.float32)
        for i in range(cfg.num_hidden_layers):
            feeds[f"past_key_values.{i}.key"] = empty if past is None else np.asarray(past[i][0])
            feeds[f"past_key_values.{i}.value"] = empty if past is None else np.asarray(past[i][1])
        return feeds

    def run(self, embeds, start, past, lora_scale):
        out = self.session.run(self.feeds(embeds, start, past, lora_scale))
        presents = [(out[f"present.{i}.key"], out[f"present.{i}.value"]) for i in range(self.config.num_hidden_layers)]
        return out["logits"], presents

    @torch.no_grad()
    def reference(self, embeds, start, past, lora_scale):
        torch_past = None if past is None else [(torch.as_tensor(k), torch.as_tensor(v)) for k, v in past]
        logits, present = self.decoder(embeds, position_ids_from(start, embeds.shape[1]), torch_past, lora_scale)
        return logits.numpy(), [(k.numpy(), v.numpy()) for k, v in present]


@pytest.fixture(scope="module", params=[4, 2], ids=["mha", "gqa"])
def kv_heads(request):
    return request.param


@pytest.fixture(scope="module")
def fp32_harness(kv_heads, tmp_path_factory):
    decoder = make_decoder(tiny_config(kv_heads))
    path = tmp_path_factory.mktemp(f"fp32_kv{kv_heads}") / "decoder_model_merged.onnx"
    save_model(build_decoder_model(decoder.config, decoder.state_dict(), "fp32"), path)
    h = Harness(decoder, path)
    yield h
    h.session.close()


@pytest.fixture(scope="module")
def int4_harness(kv_heads, tmp_path_factory):
    decoder = make_decoder(tiny_config(kv_heads))
    path = tmp_path_factory.mktemp(f"int4_kv{kv_heads}") / "decoder_model_merged_q4.onnx"
    save_model(build_decoder_model(decoder.config, decoder.state_dict(), "int4"), path)
    h = Harness(dequantized_copy(decoder), path)
    yield h
    h.session.close()


def embeds(t: int, seed: int) -> torch.Tensor:
    return torch.randn(1, t, 64, generator=torch.Generator().manual_seed(seed))


def check_prefill_decode_continue(h: Harness, tol: float, present_tol: float) -> None:
    scale = LORA.scaling
    past_onnx = past_ref = None
    start = 0
    # prefill 7 (empty past), decode 1, then a 5-token continuation on a non-empty past
    for step, t in enumerate((7, 1, 5)):
        x = embeds(t, seed=10 + step)
        logits, present = h.run(x, start, past_onnx, scale)
        ref_logits, ref_present = h.reference(x, start, past_ref, scale)
        assert logits.shape == (1, t, h.config.vocab_size)
        err = close(logits, ref_logits)
        assert err < tol, f"step {step} (seq {t}, past {start}): logits error {err:.2e}"
        for (k, v), (rk, rv) in zip(present, ref_present):
            assert k.shape == rk.shape == (1, h.config.num_key_value_heads, start + t, h.config.head_dim)
            assert close(k, rk) < present_tol and close(v, rv) < present_tol
        start += t
        past_onnx, past_ref = present, ref_present  # each side keeps its own cache


def test_fp32_prefill_decode_and_multi_token_continuation(fp32_harness):
    check_prefill_decode_continue(fp32_harness, tol=1e-4, present_tol=1e-5)


@pytest.mark.parametrize("scale", [0.0, LORA.scaling, LORA.scaling / 2])
def test_fp32_lora_scale_is_a_runtime_input(fp32_harness, scale):
    h = fp32_harness
    x = embeds(7, seed=3)
    logits, _ = h.run(x, 0, None, scale)
    ref, _ = h.reference(x, 0, None, scale)
    assert close(logits, ref) < 1e-4


def test_lora_scale_changes_the_output(fp32_harness):
    h = fp32_harness
    x = embeds(7, seed=3)
    a, _ = h.run(x, 0, None, 0.0)
    b, _ = h.run(x, 0, None, LORA.scaling)
    assert np.abs(a - b).max() > 1e-2


def test_int4_matches_reference_with_dequantized_weights(int4_harness):
    check_prefill_decode_continue(int4_harness, tol=1e-3, present_tol=1e-4)


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_graph_io_and_ops(precision):
    cfg = tiny_config(2)
    model = build_decoder_model(cfg, make_decoder(cfg).state_dict(), precision)
    names = [i.name for i in model.graph.input]
    assert names == (["inputs_embeds", "attention_mask", "position_ids"]
                     + [f"past_key_values.{i}.{k}" for i in range(2) for k in ("key", "value")]
                     + ["lora_scale", "num_logits_to_keep"])
    assert [o.name for o in model.graph.output] == (
        ["logits"] + [f"present.{i}.{k}" for i in range(2) for k in ("key", "value")])
    assert len(model.graph.input[-2].type.tensor_type.shape.dim) == 0  # lora_scale is a scalar
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("GroupQueryAttention") == 2 and ops.count("RotaryEmbedding") == 0  # rotary inside GQA
    assert ops.count("SimplifiedLayerNormalization") == 1 and ops.count("SkipSimplifiedLayerNormalization") == 4
    big = 5 * 2 + 1  # per layer: packed qkv, o, gate, up, down; then lm_head
    if precision == "int4":
        assert ops.count("MatMulNBits") == big
        assert ops.count("MatMul") == 2 * 2  # one LoRA path (A, B) for q and v together, 2 layers
    else:
        assert "MatMulNBits" not in ops and ops.count("MatMul") == big + 4
    assert len({n.name for n in model.graph.node}) == len(model.graph.node)


def test_greedy_16_tokens_matches_reference(tmp_path):
    decoder = make_decoder(tiny_config(2), seed=7)
    dec_path, emb_path = tmp_path / "decoder_model_merged.onnx", tmp_path / "embed_tokens.onnx"
    save_model(build_decoder_model(decoder.config, decoder.state_dict(), "fp32"), dec_path)
    save_model(build_embed_graph(decoder.model.embed_tokens.weight, "fp32"), emb_path)
    prompt = np.array([[1, 17, 300, 42, 9, 256, 77]], np.int64)
    with torch.no_grad():
        expected = greedy_generate(decoder, decoder.embed(torch.from_numpy(prompt)), 16, stop_ids=())
    h = Harness(decoder, dec_path)
    emb = OrtSession(emb_path)
    try:
        x = torch.from_numpy(emb.run({"input_ids": prompt})["inputs_embeds"])
        logits, past = h.run(x, 0, None, LORA.scaling)
        start, got = prompt.shape[1], []
        for _ in range(16):
            got.append(int(logits[0, -1].argmax()))
            x = torch.from_numpy(emb.run({"input_ids": np.array([[got[-1]]], np.int64)})["inputs_embeds"])
            logits, past = h.run(x, start, past, LORA.scaling)
            start += 1
    finally:
        h.session.close()
        emb.close()
    assert got == expected
    assert len(set(got)) > 1


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_embed_graph(tmp_path, precision):
    from salmonn.int4 import dequantize_gather_int4, quantize_gather_int4

    table = torch.randn(512, 64, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "embed_tokens.onnx"
    save_model(build_embed_graph(table, precision), path)
    ids = np.array([[0, 511, 5, 5], [2, 3, 4, 1]], np.int64)
    with OrtSession(path) as s:
        out = s.run({"input_ids": ids})["inputs_embeds"]
    expected = table.numpy() if precision == "fp32" else dequantize_gather_int4(*quantize_gather_int4(table))
    np.testing.assert_array_equal(out, expected[ids])


def _digests(paths) -> dict[str, str]:
    return {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_save_is_deterministic(tmp_path, precision):
    cfg = tiny_config(2)
    state = make_decoder(cfg).state_dict()
    a = save_model(build_decoder_model(cfg, state, precision), tmp_path / "a" / "decoder.onnx")
    b = save_model(build_decoder_model(cfg, state, precision), tmp_path / "b" / "decoder.onnx")
    # saving again over the same files replaces (not appends to) the external data
    model = build_decoder_model(cfg, state, precision)
    save_model(model, tmp_path / "a" / "decoder.onnx")
    assert len(a) == 2 and (tmp_path / "a" / "decoder.onnx_data").exists()
    assert _digests(a) == _digests(b)
    # the in-memory model is unchanged by saving
    assert all(t.data_location == 0 for t in model.graph.initializer)


def test_external_data_split_into_several_files_runs(tmp_path):
    decoder = make_decoder(tiny_config(2))
    path = tmp_path / "decoder_model_merged.onnx"
    files = save_model(build_decoder_model(decoder.config, decoder.state_dict(), "fp32"), path,
                       max_file_bytes=160 * 1024)
    assert [f.name for f in files[:3]] == ["decoder_model_merged.onnx", "decoder_model_merged.onnx_data",
                                           "decoder_model_merged.onnx_data_1"]
    assert all(f.stat().st_size <= 160 * 1024 for f in files[1:])  # largest tensor: lm_head, 128 KiB
    h = Harness(decoder, path)
    try:
        x = embeds(3, seed=5)
        logits, _ = h.run(x, 0, None, 1.0)
        ref, _ = h.reference(x, 0, None, 1.0)
    finally:
        h.session.close()
    assert close(logits, ref) < 1e-4


@pytest.mark.parametrize("precision,layer", [("fp32", 1), ("fp32", 0), ("int4", 1), ("fp16", 1)])
def test_probe_hidden_is_the_residual_entering_the_probe_layer(tmp_path, precision, layer):
    """With probe_layer, the decoder also returns the residual stream entering that layer for every
    new position (prefill and a continuation on a past), equal to the reference's; logits unchanged."""
    from salmonn.llama import rotary_cos_sin
    from salmonn.onnx_decoder import reference_weights

    decoder = make_decoder(tiny_config(2))
    ref = LlamaDecoder(decoder.config, decoder.lora).eval()
    ref.load_state_dict(reference_weights(decoder.state_dict(), precision))
    path = tmp_path / "decoder.onnx"
    save_model(build_decoder_model(decoder.config, decoder.state_dict(), precision, probe_layer=layer), path)
    plain_path = tmp_path / "decoder_plain.onnx"
    save_model(build_decoder_model(decoder.config, decoder.state_dict(), precision), plain_path)
    x = embeds(9, seed=3)
    scale = LORA.scaling
    with torch.no_grad():
        cos, sin = rotary_cos_sin(position_ids_from(0, 9), ref.inv_freq())
        expected = x
        for block in ref.model.layers[:layer]:
            expected, _ = block(expected, cos, sin, None, scale)
    tol = 5e-3 if precision == "fp16" else 1e-5
    for session_path in (path, plain_path):
        h = Harness(ref, session_path)
        try:
            feeds = h.feeds(x, 0, None, scale)
            if precision == "fp16":
                for name in list(feeds):
                    if name.startswith("past_key_values"):
                        feeds[name] = feeds[name].astype(np.float16)
            out = h.session.run(feeds)
        finally:
            h.session.close()
        if session_path == path:
            assert out["probe_hidden"].shape == (1, 9, 64) and out["probe_hidden"].dtype == np.float32
            assert close(out["probe_hidden"], expected.numpy()) < tol
            logits = out["logits"]
        else:
            assert "probe_hidden" not in out
            np.testing.assert_array_equal(out["logits"], logits)
