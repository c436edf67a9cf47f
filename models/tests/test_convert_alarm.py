"""models/convert_alarm.py on tiny checkpoints in the official layouts (the path real downloads take)."""

from __future__ import annotations

import json

import pytest

import convert_alarm
import make_tiny_alarm as tiny
from salmonn import safetensors_io

TOKENIZER = convert_alarm.NPM_TOKENIZER_DIR
needs_tokenizer = pytest.mark.skipif(not (TOKENIZER / "tokenizer.json").is_file(), reason="Qwen3's tokenizer is not installed")


@needs_tokenizer
def test_converts_all_four_variants(tmp_path):
    paths = tiny.write_tiny_alarm(tmp_path / "ckpt", seed=5)
    out = tmp_path / "bundle"
    assert convert_alarm.main(["--qwen3", str(paths.qwen3), "--alarm", str(paths.alarm), "--whisper-config",
                               str(paths.whisper_config), "--out", str(out), "--precisions", "fp32,int4,fp16,int4f16",
                               "--max-positions", "512", "--thinking-budget", "64", "--random-weights"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "bundle" and manifest["family"] == "alarm" and manifest["randomWeights"]
    assert list(manifest["variants"]) == ["fp32", "int4", "fp16", "int4f16"]
    assert manifest["reasoning"]["defaultThinkingBudget"] == 64 and manifest["pipeline"]["llm"]["maxPositions"] == 512
    graphs = {v: spec["graphs"] for v, spec in manifest["variants"].items()}
    assert graphs["fp16"]["encoder.whisper"] == graphs["fp32"]["encoder.whisper"]  # audio side reused
    assert graphs["int4f16"]["adapter.whisper"] == graphs["int4"]["adapter.whisper"]
    for variant, g in graphs.items():  # the tied head reads the embedding graph's data file
        assert g["embedTokens"]["externalData"][0] in g["decoder"]["externalData"], variant
    assert {f["path"] for f in manifest["files"]} == {p.relative_to(out).as_posix() for p in out.rglob("*")
                                                     if p.is_file() and p.name != "manifest.json"}


def test_refuses_a_checkpoint_with_a_wrong_shape(tmp_path, capsys):
    paths = tiny.write_tiny_alarm(tmp_path / "ckpt", seed=5)
    file = paths.alarm / "model.safetensors"
    state = safetensors_io.load_file(file)
    key = "model.audio_adapter.adapters.whisper.llm_proj.weight"
    state[key] = state[key][:, :-1].contiguous()
    safetensors_io.save_file(state, file, metadata={"format": "pt"})
    code = convert_alarm.main(["--qwen3", str(paths.qwen3), "--alarm", str(paths.alarm), "--whisper-config",
                               str(paths.whisper_config), "--out", str(tmp_path / "bundle"), "--tokenizer", str(TOKENIZER)])
    assert code == 2
    assert "llm_proj.weight" in capsys.readouterr().err and not (tmp_path / "bundle").exists()


def test_the_writer_follows_the_fusion():
    """ALARM-P's multiperceiver -> alarm/bundle_p.py, ALARM-CA's cross-attention -> bundle_ca.py,
    no fusion (AL-Whisper-Instruct-R) -> bundle.py."""
    from alarm.fusion import CrossAttentionConfig, CrossAttentionFusion
    from alarm.perceiver import MultiPerceiverConfig, MultiPerceiverFusion

    p_cfg = tiny.alarm_p_hf_config(tiny.SIZES, tiny.P_SIZES)["audio_fusion_config"]
    perceiver = MultiPerceiverFusion.from_config(MultiPerceiverConfig.from_alarm(p_cfg))
    cross = CrossAttentionFusion(CrossAttentionConfig(llm_embedding_dim=8, hidden_dim=8, ffn_dims=8,
                                                      num_attention_heads=2, num_hidden_layers=(1, 1, 1)))
    assert convert_alarm.writer_for(perceiver) is convert_alarm.write_bundle_p
    assert convert_alarm.writer_for(cross) is convert_alarm.write_bundle_ca
    assert convert_alarm.writer_for(None) is convert_alarm.write_bundle
