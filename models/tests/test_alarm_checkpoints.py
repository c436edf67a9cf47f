"""ALARM's loaders against tiny checkpoints in the official layouts: they load, and an unknown,
missing or wrong-shaped key stops with the key's name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Dict

import pytest
import torch
from torch import Tensor

import make_tiny_alarm as tiny
from alarm.checkpoints import (
    build_alarm_audio,
    build_qwen3,
    load_alarm,
    load_qwen3,
    whisper_config_from_file,
)
from salmonn import safetensors_io
from salmonn.checkpoints import CheckpointError

S = tiny.SIZES
ADAPTER = "model.audio_adapter.adapters.whisper."
WHISPER = "model.audio_encoder.encoders.whisper.encoder."


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> tiny.TinyAlarmPaths:
    return tiny.write_tiny_alarm(tmp_path_factory.mktemp("tiny_alarm"), seed=0)


@pytest.fixture(scope="module")
def whisper_cfg(ckpt):
    return whisper_config_from_file(ckpt.whisper_config)


def edited_copy(src: Path, dst: Path, edit: Callable[[Dict[str, Tensor]], None], file: str = "model.safetensors") -> Path:
    """A copy of a checkpoint folder with `edit` applied to the tensors of one safetensors file."""
    shutil.copytree(src, dst)
    tensors = safetensors_io.load_file(dst / file)
    edit(tensors)
    safetensors_io.save_file(tensors, dst / file)
    return dst


def test_tiny_loads(ckpt, whisper_cfg) -> None:
    qcfg, qstate = load_qwen3(ckpt.qwen3)
    assert qcfg.head_dim == 16 and qcfg.num_key_value_heads == 2 and qcfg.tie_word_embeddings
    assert "lm_head.weight" not in qstate and qstate["model.embed_tokens.weight"].dtype == torch.float32
    parts = load_alarm(ckpt.alarm, whisper_cfg)
    assert parts.config.whisper_adapter.audio_encoder_layers == S.audio_encoder_layers
    assert parts.config.whisper_adapter.norm_type == "batch"
    assert parts.audio_state["adapters.whisper.adapter.downsampler.0.2.num_batches_tracked"].dtype == torch.int64
    # ALARM's copy of embed_tokens is Qwen3's (bf16 values in both downloads)
    assert torch.equal(parts.embed_tokens, qstate["model.embed_tokens.weight"])
    # the LLM layers of the ALARM file are checked, never loaded
    assert not any(k.startswith("model.layers") for k in parts.audio_state)
    audio, _ = build_alarm_audio(ckpt.alarm, whisper_cfg)
    assert not audio.training and not audio.adapters["whisper"].adapter.downsampler[0][2].training


def test_alarm_needs_the_right_whisper(ckpt) -> None:
    with pytest.raises(CheckpointError, match=r"conv1\.weight' has shape"):
        load_alarm(ckpt.alarm)  # large-v3's sizes against the tiny encoder


@pytest.mark.parametrize("case, edit, message", [
    ("unknown adapter key", lambda t: t.__setitem__(ADAPTER + "adapter.encoder.weight", torch.zeros(2)),
     r"unknown key 'model\.audio_adapter\.adapters\.whisper\.adapter\.encoder\.weight'"),
    ("unknown top-level key", lambda t: t.__setitem__("model.audio_fusion.fusion_model.w", torch.zeros(2)),
     r"unknown key 'model\.audio_fusion\.fusion_model\.w'"),
    ("missing running_var", lambda t: t.pop(ADAPTER + "adapter.downsampler.1.2.running_var"),
     r"missing key 'model\.audio_adapter\.adapters\.whisper\.adapter\.downsampler\.1\.2\.running_var'"),
    ("missing separator", lambda t: t.pop("model.audio_end_emb"), r"missing key 'model\.audio_end_emb'"),
    ("missing whisper layer", lambda t: t.pop(WHISPER + "layers.3.fc2.bias"),
     r"missing key 'model\.audio_encoder\.encoders\.whisper\.encoder\.layers\.3\.fc2\.bias'"),
    ("missing llm layer", lambda t: t.pop("model.layers.1.self_attn.k_norm.weight"),
     r"missing key 'model\.layers\.1\.self_attn\.k_norm\.weight'"),
    ("wrong layer_weights", lambda t: t.__setitem__(ADAPTER + "layer_fusion.layer_weights", torch.zeros(4)),
     r"layer_fusion\.layer_weights' has shape \[4\], expected shape \[3\]"),
    ("wrong llm shape", lambda t: t.__setitem__("model.layers.0.mlp.up_proj.weight", torch.zeros(65, 32)),
     r"'model\.layers\.0\.mlp\.up_proj\.weight' has shape \[65, 32\], expected shape \[64, 32\]"),
    ("untied head of the wrong size", lambda t: t.__setitem__("lm_head.weight", torch.zeros(10, 32)),
     r"'lm_head\.weight' has shape \[10, 32\]"),
])
def test_alarm_strict(ckpt, whisper_cfg, tmp_path, case, edit, message) -> None:
    bad = edited_copy(ckpt.alarm, tmp_path / "bad", edit)
    with pytest.raises(CheckpointError, match=message):
        load_alarm(bad, whisper_cfg)


def test_alarm_config_checked(ckpt, whisper_cfg, tmp_path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(ckpt.alarm, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_type"] = "qwen3"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="qwen3_audio"):
        load_alarm(bad, whisper_cfg)


def _qwen_shard(ckpt, key: str) -> str:
    index = json.loads((ckpt.qwen3 / "model.safetensors.index.json").read_text())
    return index["weight_map"][key]


def test_qwen3_strict(ckpt, tmp_path) -> None:
    key = "model.layers.1.self_attn.q_norm.weight"
    shard = _qwen_shard(ckpt, key)
    bad = edited_copy(ckpt.qwen3, tmp_path / "wrong", lambda t: t.__setitem__(key, torch.zeros(8, dtype=torch.bfloat16)), shard)
    with pytest.raises(CheckpointError, match=r"'model\.layers\.1\.self_attn\.q_norm\.weight' has shape \[8\], expected shape \[16\]"):
        load_qwen3(bad)

    def extra(t: Dict[str, Tensor]) -> None:
        t["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(64, dtype=torch.bfloat16)

    bad = edited_copy(ckpt.qwen3, tmp_path / "unknown", extra, shard)
    index = json.loads((bad / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.0.self_attn.q_proj.bias"] = shard
    (bad / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"unknown key 'model\.layers\.0\.self_attn\.q_proj\.bias'"):
        load_qwen3(bad)

    # a key the index lists but whose shard lacks it
    key = "model.norm.weight"
    bad = edited_copy(ckpt.qwen3, tmp_path / "missing", lambda t: t.pop(key), _qwen_shard(ckpt, key))
    with pytest.raises(CheckpointError, match=r"missing key 'model\.norm\.weight'"):
        load_qwen3(bad)


def test_qwen3_tied_head(ckpt, tmp_path) -> None:
    key = "model.embed_tokens.weight"
    shard = _qwen_shard(ckpt, key)

    def add_head(value: float) -> Callable[[Dict[str, Tensor]], None]:
        def edit(t: Dict[str, Tensor]) -> None:
            t["lm_head.weight"] = t[key].clone() + value
        return edit

    for name, value, ok in (("same", 0.0, True), ("different", 1.0, False)):
        d = edited_copy(ckpt.qwen3, tmp_path / name, add_head(value), shard)
        index = json.loads((d / "model.safetensors.index.json").read_text())
        index["weight_map"]["lm_head.weight"] = shard
        (d / "model.safetensors.index.json").write_text(json.dumps(index))
        if ok:
            assert "lm_head.weight" not in load_qwen3(d)[1]
        else:
            with pytest.raises(CheckpointError, match=r"'lm_head\.weight' differs from 'model\.embed_tokens\.weight'"):
                load_qwen3(d)


def test_qwen3_builds(ckpt) -> None:
    dec = build_qwen3(ckpt.qwen3)
    assert dec.lm_head is None and dec.head_weight() is dec.model.embed_tokens.weight
    logits, _ = dec(dec.embed(torch.tensor([[151644, 151667, 151668, 151645]])), torch.arange(4)[None])
    assert logits.shape == (1, 4, 151936)
