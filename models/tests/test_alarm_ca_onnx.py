"""The committed tiny ALARM-CA bundle (models/bundles/alarm-ca-tiny), run by onnxruntime-web in
Node, against the committed goldens of the PyTorch reference (models/golden/alarm-ca), stage by
stage: every encoder graph per chunk on the golden features, every adapter graph on the golden
encoder outputs cut to their real frames, the connector on the golden adapter outputs, then the
LLM graphs' first-step logits and greedy tokens; fp32 and int4. Plus the manifest's fused
pipeline section. Tolerances as test_alarm_onnx.py (1e-4 fp32, 1e-3 int4, relative to
max(1, max |expected|)).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from salmonn.ort_bridge import OrtSession, node_available
from test_alarm_onnx import TOL, close

pytestmark = pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")

MODELS = Path(__file__).resolve().parents[1]
BUNDLE = MODELS / "bundles" / "alarm-ca-tiny"
GOLDEN = MODELS / "golden" / "alarm-ca"
ENCODERS = ("whisper", "w2vbert", "sslam", "muq")


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


def test_manifest_describes_the_fused_pipeline(manifest):
    p = manifest["pipeline"]
    assert [e["name"] for e in p["encoders"]] == list(ENCODERS)
    features = {e["name"]: e["features"]["type"] for e in p["encoders"]}
    assert features == {"whisper": "whisper-mel", "w2vbert": "seamless-fbank", "sslam": "kaldi-fbank-recording",
                        "muq": "resampled-waveform"}
    rules = {e["name"]: e["realFrames"] for e in p["encoders"]}
    assert rules == {"whisper": {"from": "melFrames", "divisor": 2}, "w2vbert": {"from": "featureFrames", "divisor": 1},
                     "sslam": {"from": "fbankFrames", "divisor": 2}, "muq": {"from": "samples", "divisor": 960}}
    assert [(a["encoder"], a["type"], a["downsample"]) for a in p["adapters"]] == [
        ("whisper", "conv-downsampler", 2), ("w2vbert", "conv-downsampler", 2), ("sslam", "conv-downsampler", 2),
        ("muq", "mlp", 1)]
    f = p["fusion"]
    assert (f["type"], f["scope"], f["graph"], f["mainEncoder"], f["lengthInput"]) == (
        "cross-attention", "recording", "connector", "whisper", "main_length")
    assert f["tokens"] == {"perSecond": 25, "from": "adapterLengths", "min": 1} and f["width"] == p["llm"]["hiddenSize"]
    expected = sorted([f"encoder.{e}" for e in ENCODERS] + [f"adapter.{e}" for e in ENCODERS]
                      + ["connector", "embedTokens", "decoder"])
    for variant in ("fp32", "int4"):
        assert sorted(manifest["variants"][variant]["graphs"]) == expected
    # encoder.muq has no int4 form: both variants list the one fp32 file
    assert graph_path(manifest, "int4", "encoder.muq") == graph_path(manifest, "fp32", "encoder.muq")
    assert graph_path(manifest, "int4", "encoder.sslam") != graph_path(manifest, "fp32", "encoder.sslam")


def test_manifest_lists_every_file_with_size_and_hash(manifest):
    on_disk = sorted(p.relative_to(BUNDLE).as_posix() for p in BUNDLE.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert [f["path"] for f in manifest["files"]] == on_disk
    for f in manifest["files"]:
        data = (BUNDLE / f["path"]).read_bytes()
        assert len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]


def encoder_inputs(entry: dict, name: str) -> list[dict]:
    """Each chunk's graph inputs, from the golden features, cut as the runtime cuts them."""
    feats = entry["features"]
    if name == "whisper":
        return [{"input_features": array(m)[None]} for m in feats["whisper"]]
    if name == "sslam":
        return [{"input_features": array(c)[None]} for c in feats["sslam"]]
    if name == "w2vbert":
        real = array(feats["w2vbert"])
        return [{"input_features": real[i:i + 1500][None]} for i in range(0, real.shape[0], 1500)]
    wave = array(feats["muq"])
    masks = [array(m) for m in entry["frameMasks"]["muq"]]
    padded = np.zeros(720000 * len(masks), np.float32)
    padded[: wave.shape[0]] = wave
    return [{"input_values": padded[i * 720000:(i + 1) * 720000][None], "frame_mask": m[None]}
            for i, m in enumerate(masks)]


@pytest.mark.parametrize("variant", ["fp32", "int4"])
@pytest.mark.parametrize("encoder", ENCODERS)
def test_encoder_and_adapter_graphs_match_the_golden_stages(manifest, golden, variant, encoder):
    tol = TOL[variant]
    with OrtSession(graph_path(manifest, variant, f"encoder.{encoder}")) as enc, \
            OrtSession(graph_path(manifest, variant, f"adapter.{encoder}")) as adapter:
        for name, entry in golden["inputs"].items():
            run = entry["precisions"][variant]["stages"]
            expected_chunks = run["encoderOut"][encoder]
            inputs = encoder_inputs(entry, encoder)
            assert len(inputs) == len(expected_chunks) == entry["chunks"][encoder]
            for feeds, expected in zip(inputs, expected_chunks):
                out = enc.run(feeds)["encoder_out"][0]
                assert close(out, array(expected)) < tol, f"{name}: encoder.{encoder}"
            frames = np.concatenate([array(e) for e in expected_chunks])[: entry["realFrames"][encoder]]
            adapted = adapter.run({"frames": frames[None]})["adapted"][0]
            assert close(adapted, array(run["adapted"][encoder])) < tol, f"{name}: adapter.{encoder}"


@pytest.mark.parametrize("variant", ["fp32", "int4"])
def test_connector_matches_the_golden_fusion(manifest, golden, variant):
    fusion = manifest["pipeline"]["fusion"]
    with OrtSession(graph_path(manifest, variant, "connector")) as connector:
        for name, entry in golden["inputs"].items():
            run = entry["precisions"][variant]["stages"]
            feeds = {fusion["inputs"][e]: array(run["adapted"][e])[None] for e in ENCODERS}
            feeds[fusion["lengthInput"]] = np.array([entry["mainLength"]], np.int64)
            fused = connector.run(feeds)[fusion["output"]][0]
            assert close(fused, array(run["fused"])) < TOL[variant], f"{name}: connector"
            assert entry["audioTokens"] == max(1, max(entry["adapterLengths"].values()))
            np.testing.assert_array_equal(array(run["audio"]), array(run["fused"])[: entry["audioTokens"]])


@pytest.mark.parametrize("variant", ["fp32", "int4"])
def test_llm_graphs_match_the_golden_logits_and_tokens(manifest, golden, variant):
    from test_alarm_onnx import Llm  # its graph_path is alarm-tiny's: drive it with this bundle's paths

    class CaLlm(Llm):
        def __init__(self) -> None:
            self.llm = manifest["pipeline"]["llm"]
            self.embed = OrtSession(graph_path(manifest, variant, "embedTokens"))
            self.decoder = OrtSession(graph_path(manifest, variant, "decoder"))
            self.past, self.length = None, 0

    stops = set(manifest["generation"]["stopTokenIds"])
    for name, entry in golden["inputs"].items():
        run = entry["precisions"][variant]
        embeds = array(run["promptEmbeds"])
        llm = CaLlm()
        try:
            ids = entry["promptIds"]
            main = llm.embed_ids(ids["main"])[0]
            np.testing.assert_array_equal(main, embeds[embeds.shape[0] - len(ids["main"]):])
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
