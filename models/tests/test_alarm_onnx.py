"""ALARM's ONNX graphs (run by onnxruntime-web in Node) against the PyTorch reference.

Two layers:
* the graph builders on small models made here: the Qwen3 decoder graph (per-head q/k RMSNorm,
  grouped KV heads, rope theta 5e6, tied head, no lora_scale) through prefill, decode and
  continuation with its KV cache, in fp32 / int4 / fp16; the adapter graph at odd and even
  lengths (its length is dynamic); the staged audio side equals the reference's;
* the committed tiny bundle (models/bundles/alarm-tiny) against the committed goldens
  (models/golden/alarm, from the reference): every stage, the first-step logits, greedy tokens
  and the reasoning run with a forced close, in fp32 and int4; and the manifest's contents.
Tolerances are those of the SALMONN graph tests (max error relative to max(1, max |expected|)):
1e-4 fp32, 1e-3 int4 (and 5e-3 for the fp16 decoder).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import make_tiny_alarm as tiny
from alarm.checkpoints import build_reference
from alarm.export import AdapterRecording, export_whisper_adapter
from alarm.qwen3 import Qwen3Config, Qwen3Decoder
from alarm.stages import audio_stages
from salmonn.llama import position_ids_from
from salmonn.onnx_decoder import (build_decoder_model, build_embed_graph, embed_table_tensors, qwen3_flavor,
                                  reference_weights, save_model)
from salmonn.ort_bridge import OrtSession, node_available
from salmonn.reasoning import alarm_template

pytestmark = pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")

MODELS = Path(__file__).resolve().parents[1]
BUNDLE = MODELS / "bundles" / "alarm-tiny"
GOLDEN = MODELS / "golden" / "alarm"
TOL = {"fp32": 1e-4, "int4": 1e-3, "fp16": 5e-3}


def close(actual: np.ndarray, expected: np.ndarray) -> float:
    """Max abs error relative to max(1, max |expected|)."""
    return float(np.abs(actual - expected).max() / max(1.0, float(np.abs(expected).max())))


# ---------------------------------------------------------------------------------------------
# Graph builders on small models


def small_qwen3(tied: bool = True) -> Qwen3Decoder:
    cfg = Qwen3Config(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=32, rope_theta=5_000_000.0,
                      tie_word_embeddings=tied, max_position_embeddings=256)
    g = torch.Generator().manual_seed(0)
    decoder = Qwen3Decoder(cfg).eval()
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            scale = 0.1 if "embed" in name else (1.0 / p.shape[-1] ** 0.5 if p.dim() == 2 else 0.2)
            p.copy_((1.0 if p.dim() == 1 else 0.0) + torch.randn(p.shape, generator=g) * scale)
    return decoder


def decoder_feeds(cfg: Qwen3Config, embeds: np.ndarray, start: int, past, kv_dtype) -> dict:
    t = embeds.shape[1]
    feeds = {"inputs_embeds": embeds.astype(np.float32), "attention_mask": np.ones((1, start + t), np.int64),
             "position_ids": position_ids_from(start, t).numpy(), "num_logits_to_keep": np.array(t, np.int64)}
    for i in range(cfg.num_hidden_layers):
        for j, kind in enumerate(("key", "value")):
            empty = np.zeros((1, cfg.num_key_value_heads, 0, cfg.head_dim), kv_dtype)
            feeds[f"past_key_values.{i}.{kind}"] = empty if past is None else past[i][j]
    return feeds


@pytest.mark.parametrize("shared", [False, True], ids=["own_head", "shared_head"])
@pytest.mark.parametrize("precision", ["fp32", "int4", "fp16"])
def test_qwen3_decoder_graph_prefill_decode_continue(tmp_path, precision, shared):
    """shared_head: the tied head reads the embed graph's data file (no copy of the table)."""
    decoder = small_qwen3()
    cfg = decoder.config
    ref = Qwen3Decoder(cfg).eval()
    ref.load_state_dict(reference_weights(decoder.state_dict(), precision))
    table = None
    if shared:
        embed_path = tmp_path / "embed_tokens.onnx"
        save_model(build_embed_graph(decoder.model.embed_tokens.weight, precision), embed_path, size_threshold=0)
        table = embed_table_tensors(onnx.load(str(embed_path), load_external_data=False))
    model = build_decoder_model(cfg, decoder.state_dict(), precision, flavor=qwen3_flavor(), shared_head=table)
    inputs = [i.name for i in model.graph.input]
    assert "lora_scale" not in inputs and inputs[-1] == "num_logits_to_keep"
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("SimplifiedLayerNormalization") == 1 + 2 * cfg.num_hidden_layers  # + q_norm, k_norm per layer
    head = sorted(t.name for t in model.graph.initializer if "lm_head" in t.name and t.name.startswith(("/lm_head.", "lm_head.")))
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert (head == sorted(external) and external) if shared else not external  # the head's only weights are the embed file's
    path = tmp_path / "decoder.onnx"
    save_model(model, path)
    kv_dtype = np.float16 if precision == "fp16" else np.float32
    g = torch.Generator().manual_seed(1)
    past, ref_past, start = None, None, 0
    with OrtSession(path) as session:
        for t in (7, 1, 4):  # prefill, one decode step, a continuation on the cache
            x = torch.randn(1, t, cfg.hidden_size, generator=g) * 0.3
            out = session.run(decoder_feeds(cfg, x.numpy(), start, past, kv_dtype))
            with torch.no_grad():
                logits, ref_past = ref(x, position_ids_from(start, t), ref_past)
            assert close(out["logits"], logits.numpy()) < TOL[precision], f"seq {t} past {start}"
            past = [(out[f"present.{i}.key"], out[f"present.{i}.value"]) for i in range(cfg.num_hidden_layers)]
            assert close(past[1][0].astype(np.float32), ref_past[1][0].numpy()) < TOL[precision]
            start += t


def test_qwen3_decoder_graph_refuses_lora_and_untied_head_reads_lm_head():
    decoder = small_qwen3(tied=False)
    state = decoder.state_dict()
    model = build_decoder_model(decoder.config, state, "fp32", flavor=qwen3_flavor(tie_word_embeddings=False))
    assert "/lm_head.weight_T" in {t.name for t in model.graph.initializer}
    state["model.layers.0.self_attn.q_proj.lora_A"] = torch.zeros(2, 64)
    state["model.layers.0.self_attn.q_proj.lora_B"] = torch.zeros(128, 2)
    with pytest.raises(ValueError, match="lora_scale"):
        build_decoder_model(decoder.config, state, "fp32", flavor=qwen3_flavor(tie_word_embeddings=False))


@pytest.fixture(scope="module")
def tiny_ref(tmp_path_factory):
    paths = tiny.write_tiny_alarm(tmp_path_factory.mktemp("tiny_alarm_onnx"), seed=3)
    return build_reference(paths.qwen3, paths.alarm, paths.whisper_config)


def test_adapter_graph_any_length(tmp_path, tiny_ref):
    """One graph for every recording length: odd T is padded with a zero frame, even T is not."""
    path = tmp_path / "adapter.onnx"
    save_model(export_whisper_adapter(tiny_ref.audio), path)
    module = AdapterRecording(tiny_ref.audio).eval()
    g = torch.Generator().manual_seed(2)
    with OrtSession(path) as session:
        for t in (1, 2, 7, 8, 750, 875):
            frames = torch.randn(1, t, 48, generator=g)
            out = session.run({"frames": frames.numpy()})["adapted"]
            with torch.no_grad():
                expected = module(frames).numpy()
            assert out.shape == expected.shape == (1, (t + 1) // 2, 32)
            assert close(out, expected) < TOL["fp32"], f"T={t}"


@pytest.mark.parametrize("seconds", [0.3, 5.0, 30.0, 41.7])
def test_stages_are_the_reference_audio_side(tiny_ref, seconds):
    wave = torch.randn(round(seconds * 16000), generator=torch.Generator().manual_seed(4)) * 0.1
    stages = audio_stages(tiny_ref.audio, wave)
    assert len(stages.mels) == max(1, -(-wave.numel() // 480000))
    assert stages.audio.shape[0] == max(1, stages.mel_frames // 4)
    assert torch.equal(stages.audio, tiny_ref.audio(wave))


# ---------------------------------------------------------------------------------------------
# The committed tiny bundle against the committed goldens


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((BUNDLE / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads((GOLDEN / "index.json").read_text(encoding="utf-8"))


def array(ref: dict) -> np.ndarray:
    a = np.load(GOLDEN / ref["file"])
    assert list(a.shape) == ref["shape"]
    return a


def graph_path(manifest: dict, variant: str, graph: str) -> Path:
    return BUNDLE / manifest["variants"][variant]["graphs"][graph]["path"]


def test_manifest_is_format_2_for_alarm(manifest):
    assert (manifest["formatVersion"], manifest["family"]) == (2, "alarm")
    assert "architecture" not in manifest and "features" not in manifest
    p = manifest["pipeline"]
    assert [e["name"] for e in p["encoders"]] == ["whisper"] and p["encoders"][0]["features"]["featureSize"] == 128
    assert p["adapters"][0]["graph"] == "adapter.whisper" and p["fusion"]["type"] == "sum"
    assert p["fusion"]["tokens"] == {"perSecond": 25, "from": "melFrames", "divisor": 4, "min": 1}
    assert p["llm"]["type"] == "qwen3" and p["llm"]["qkNorm"] and p["llm"]["tieWordEmbeddings"] and p["lora"] is None
    assert manifest["prompt"]["bosTokenId"] is None and manifest["prompt"]["system"].startswith("<|im_start|>system\n")
    assert manifest["prompt"]["template"].endswith("<|im_start|>assistant\n<think>\n")
    assert manifest["generation"]["stopTokenIds"] == [151645, 151643]
    expected = alarm_template().to_manifest()
    assert manifest["reasoning"] == {**expected, "defaultThinkingBudget": manifest["reasoning"]["defaultThinkingBudget"]}
    for variant in ("fp32", "int4"):
        assert sorted(manifest["variants"][variant]["graphs"]) == sorted(
            ["encoder.whisper", "adapter.whisper", "embedTokens", "decoder"])


def test_manifest_lists_every_file_with_size_and_hash(manifest):
    on_disk = sorted(p.relative_to(BUNDLE).as_posix() for p in BUNDLE.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert [f["path"] for f in manifest["files"]] == on_disk
    for f in manifest["files"]:
        data = (BUNDLE / f["path"]).read_bytes()
        assert len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]


def test_boundaries_file_holds_the_reference_vectors(manifest, golden):
    """audio_boundaries.f32 rows are the prompt embeddings just before and after the audio."""
    rows = np.fromfile(BUNDLE / manifest["pipeline"]["audioBoundaries"]["path"], dtype="<f4").reshape(2, -1)
    entry = golden["inputs"]["speech"]
    at = len(entry["promptIds"]["system"]) + len(entry["promptIds"]["start"])
    embeds = array(entry["precisions"]["fp32"]["promptEmbeds"])
    np.testing.assert_array_equal(rows[0], embeds[at])
    np.testing.assert_array_equal(rows[1], embeds[at + 1 + entry["audioTokens"]])


@pytest.mark.parametrize("variant", ["fp32", "int4"])
def test_audio_graphs_match_the_golden_stages(manifest, golden, variant):
    tol = TOL[variant]
    with OrtSession(graph_path(manifest, variant, "encoder.whisper")) as encoder, \
            OrtSession(graph_path(manifest, variant, "adapter.whisper")) as adapter:
        for name, entry in golden["inputs"].items():
            run = entry["precisions"][variant]
            outs = []
            for mel, expected in zip(entry["features"], run["stages"]["encoderOut"]):
                out = encoder.run({"input_features": array(mel)[None]})["encoder_out"][0]
                assert close(out, array(expected)) < tol, f"{name}: encoder"
                outs.append(array(expected))
            frames = np.concatenate(outs)[: entry["melFrames"] // 2]
            adapted = adapter.run({"frames": frames[None]})["adapted"][0]
            assert close(adapted, array(run["stages"]["adapted"])) < tol, f"{name}: adapter"
            np.testing.assert_array_equal(array(run["stages"]["audio"]), array(run["stages"]["adapted"])[: entry["audioTokens"]])


class Llm:
    """embedTokens + decoder of one variant, driven like the engine: prefill, then one token a step."""

    def __init__(self, manifest: dict, variant: str) -> None:
        self.llm = manifest["pipeline"]["llm"]
        self.embed = OrtSession(graph_path(manifest, variant, "embedTokens"))
        self.decoder = OrtSession(graph_path(manifest, variant, "decoder"))
        self.past, self.length = None, 0

    def close(self) -> None:
        self.embed.close()
        self.decoder.close()

    def embed_ids(self, ids: list[int]) -> np.ndarray:
        return self.embed.run({"input_ids": np.array([ids], np.int64)})["inputs_embeds"]

    def step(self, embeds: np.ndarray) -> np.ndarray:
        t = embeds.shape[1]
        feeds = {"inputs_embeds": embeds.astype(np.float32), "attention_mask": np.ones((1, self.length + t), np.int64),
                 "position_ids": position_ids_from(self.length, t).numpy(), "num_logits_to_keep": np.array(1, np.int64)}
        for i in range(self.llm["numLayers"]):
            for j, kind in enumerate(("key", "value")):
                empty = np.zeros((1, self.llm["numKvHeads"], 0, self.llm["headDim"]), np.float32)
                feeds[f"past_key_values.{i}.{kind}"] = empty if self.past is None else self.past[i][j]
        out = self.decoder.run(feeds)
        self.past = [(out[f"present.{i}.key"], out[f"present.{i}.value"]) for i in range(self.llm["numLayers"])]
        self.length += t
        return out["logits"][0, -1]


@pytest.mark.parametrize("variant", ["fp32", "int4"])
def test_llm_graphs_match_the_golden_prompt_logits_and_tokens(manifest, golden, variant):
    stops = set(manifest["generation"]["stopTokenIds"])
    for name, entry in golden["inputs"].items():
        run = entry["precisions"][variant]
        embeds = array(run["promptEmbeds"])
        ids = entry["promptIds"]
        llm = Llm(manifest, variant)
        try:
            # the prompt's text rows are embedTokens of its ids, exactly
            system, start, main = (llm.embed_ids(ids[k])[0] for k in ("system", "start", "main"))
            audio_end = len(ids["system"]) + len(ids["start"]) + entry["audioTokens"] + 2
            np.testing.assert_array_equal(np.concatenate([system, start]), embeds[: audio_end - entry["audioTokens"] - 2])
            np.testing.assert_array_equal(main, embeds[audio_end:])
            logits = llm.step(embeds[None])
            assert close(logits, array(run["logits"])) < TOL[variant], f"{name}: first-step logits"
            tokens = []
            while len(tokens) < golden["greedyTokens"]:
                next_id = int(logits.argmax())
                if next_id in stops:
                    break
                tokens.append(next_id)
                logits = llm.step(llm.embed_ids([next_id]))
            assert tokens == run["tokens"], f"{name}: greedy tokens"
        finally:
            llm.close()


@pytest.mark.parametrize("variant", ["fp32"])  # int4's steps are the same code; its tokens are checked above
def test_llm_graphs_follow_the_golden_reasoning_run(manifest, golden, variant):
    """Thinking budget reached: ALARM's closing text is fed, then the answer is greedy again."""
    entry = golden["inputs"]["speech"]
    reasoning = entry["precisions"][variant]["reasoning"]
    assert reasoning["forcedClose"] and reasoning["forcedAt"] == reasoning["thinkingBudget"]
    forced = range(reasoning["forcedAt"], reasoning["forcedAt"] + len(reasoning["forcedCloseIds"]))
    assert [reasoning["tokens"][i] for i in forced] == reasoning["forcedCloseIds"]
    llm = Llm(manifest, variant)
    try:
        logits = llm.step(array(entry["precisions"][variant]["promptEmbeds"])[None])
        for i, token in enumerate(reasoning["tokens"]):
            if i not in forced:
                assert int(logits.argmax()) == token, f"step {i}"
            logits = llm.step(llm.embed_ids([token]))
    finally:
        llm.close()
