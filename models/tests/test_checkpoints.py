"""Checkpoint loaders against tiny checkpoints in the official layouts, and the safetensors codec."""

from __future__ import annotations

import json
import math
import pathlib
import re
import shutil
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict

import pytest
import torch
from torch import Tensor

import make_tiny_checkpoints as tiny
from salmonn import safetensors_io
from salmonn.beats import kaldi_fbank
from salmonn.checkpoints import (
    CheckpointError,
    build_reference,
    load_beats,
    load_llama,
    load_salmonn_trainables,
    load_whisper_encoder,
    torch_load,
)
from salmonn.whisper import log_mel_spectrogram

S = tiny.SIZES
LORA_Q_A = "llama_model.base_model.model.model.layers.{}.self_attn.q_proj.lora_A.default.weight"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> tiny.TinyPaths:
    return tiny.write_tiny_checkpoints(tmp_path_factory.mktemp("tiny"), seed=0)


def copy_tree(paths: tiny.TinyPaths, tmp_path: Path) -> tiny.TinyPaths:
    """A private copy of the tiny set that a test may corrupt."""
    root = paths.whisper_dir.parent
    shutil.copytree(root, tmp_path / "copy")
    return tiny.TinyPaths(*(tmp_path / "copy" / Path(p).relative_to(root) for p in vars(paths).values()))


# ---------------------------------------------------------------------------------- the layouts


def test_tiny_files_have_the_official_layouts(ckpt):
    whisper = safetensors_io.load_file(ckpt.whisper_dir / "model.safetensors")
    assert "model.encoder.embed_positions.weight" in whisper and "model.decoder.layers.0.encoder_attn.k_proj.weight" in whisper
    assert "model.encoder.layers.0.self_attn.k_proj.bias" not in whisper  # Whisper's k_proj has no bias
    assert whisper["model.encoder.embed_positions.weight"].shape == (1500, S.whisper_d_model)

    beats = torch.load(ckpt.beats_pt)
    assert set(beats) == {"cfg", "model"} and beats["cfg"]["deep_norm"] and not beats["cfg"]["layer_norm_first"]
    assert beats["model"]["encoder.pos_conv.0.weight_g"].shape == (1, 1, S.beats_conv_pos)
    assert "predictor.weight" in beats["model"] and "encoder.pos_conv.0.weight" not in beats["model"]

    index = json.loads((ckpt.vicuna_dir / "pytorch_model.bin.index.json").read_text())["weight_map"]
    last = S.llama_layers - 1
    shards_of_last_layer = {f for k, f in index.items() if k.startswith(f"model.layers.{last}.")}
    assert len(shards_of_last_layer) == 2  # a layer split across the two shards
    shard1 = torch.load(ckpt.vicuna_dir / "pytorch_model-00001-of-00002.bin")
    assert shard1["model.embed_tokens.weight"].dtype == torch.float16
    assert shard1["model.layers.0.self_attn.rotary_emb.inv_freq"].dtype == torch.float32
    assert shard1["model.embed_tokens.weight"].shape == (32000, S.llama_hidden)

    model = torch.load(ckpt.salmonn_pth)["model"]
    assert model["speech_Qformer.bert.embeddings.position_ids"].dtype == torch.int64
    for i in range(S.llama_layers):
        for proj in ("q_proj", "v_proj"):
            for m in "AB":
                key = f"llama_model.base_model.model.model.layers.{i}.self_attn.{proj}.lora_{m}.default.weight"
                assert (model[key] != 0).all()  # non-zero A and B: a wrong LoRA path shows
        assert f"llama_model.base_model.model.model.layers.{i}.self_attn.rotary_emb.inv_freq" in model
    assert not any(re.search(r"layer\.\d+\.(intermediate|output)\.", k) for k in model)  # removed by SALMONN

    prompts = json.loads(ckpt.prompts_json.read_text(encoding="utf-8"))
    for task in ("asr", "audiocaption", "audio_story_telling", "speech_audio_coreasoning", "speech_query",
                 "emotion_recognition", "music_description", "translation_ec"):
        assert prompts[task].count("<SpeechHere>") == 1
    assert prompts["asr"] == "<Speech><SpeechHere></Speech> Recognize the speech and give me the transcription."

    total = sum(f.stat().st_size for f in ckpt.whisper_dir.parent.rglob("*") if f.is_file())
    assert total < 8e6


def test_generation_is_deterministic(ckpt, tmp_path):
    again = tiny.write_tiny_checkpoints(tmp_path / "again", seed=0)
    other = tiny.write_tiny_checkpoints(tmp_path / "other", seed=1)
    a, b, c = (torch.load(p.salmonn_pth)["model"] for p in (ckpt, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a[LORA_Q_A.format(0)], c[LORA_Q_A.format(0)])
    w1 = (ckpt.whisper_dir / "model.safetensors").read_bytes()
    assert w1 == (again.whisper_dir / "model.safetensors").read_bytes()


# ---------------------------------------------------------------------------------- round trip


def test_load_whisper_encoder(ckpt):
    cfg, state = load_whisper_encoder(ckpt.whisper_dir)
    assert (cfg.d_model, cfg.encoder_layers, cfg.encoder_attention_heads, cfg.encoder_ffn_dim) == (64, 2, 4, 128)
    assert cfg.num_mel_bins == 80 and cfg.max_source_positions == 1500
    assert not any(k.startswith(("model.", "decoder")) for k in state)
    assert all(t.dtype == torch.float32 for t in state.values())
    raw = safetensors_io.load_file(ckpt.whisper_dir / "model.safetensors")
    assert torch.equal(state["layers.1.fc1.weight"], raw["model.encoder.layers.1.fc1.weight"])


def test_load_beats_folds_weight_norm(ckpt):
    cfg, state = load_beats(ckpt.beats_pt)
    assert (cfg.encoder_embed_dim, cfg.num_buckets, cfg.max_distance, cfg.conv_pos) == (48, 32, 64, 16)
    assert cfg.deep_norm and cfg.gru_rel_pos and not cfg.layer_norm_first
    raw = torch.load(ckpt.beats_pt)["model"]
    g, v = raw["encoder.pos_conv.0.weight_g"], raw["encoder.pos_conv.0.weight_v"]
    # torch's own weight_norm(dim=2) as the independent reference
    conv = torch.nn.Conv1d(48, 48, 16, padding=8, groups=4)
    conv = torch.nn.utils.weight_norm(conv, dim=2)
    with torch.no_grad():
        conv.weight_g.copy_(g)
        conv.weight_v.copy_(v)
    conv(torch.zeros(1, 48, 16))  # the forward pre-hook recomputes .weight
    assert torch.allclose(state["encoder.pos_conv.0.weight"], conv.weight, atol=1e-7)
    assert not any(k.startswith("predictor") or k.endswith(("weight_g", "weight_v")) for k in state)


def test_load_llama_casts_fp16_shards(ckpt):
    cfg, state = load_llama(ckpt.vicuna_dir)
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (32000, 32, 2, 86)
    assert cfg.rms_norm_eps == 1e-5
    assert all(t.dtype == torch.float32 for t in state.values())
    assert not any("inv_freq" in k for k in state)
    shard2 = torch.load(ckpt.vicuna_dir / "pytorch_model-00002-of-00002.bin")
    assert torch.equal(state["lm_head.weight"], shard2["lm_head.weight"].float())


def test_load_salmonn_trainables(ckpt):
    tr = load_salmonn_trainables(ckpt.salmonn_pth, qformer_heads=S.qformer_heads)
    c = tr.connector_config
    assert (c.speech_width, c.audio_width, c.qformer_hidden, c.qformer_layers, c.qformer_ffn, c.llm_hidden) == (
        64, 48, 48, 2, 96, 32)
    assert (c.qformer_heads, c.window_frames, c.stride_frames, c.num_query_tokens) == (4, 17, 17, 1)
    assert tr.lora_rank == 8 and tr.lora_targets == ("q_proj", "v_proj") and sorted(tr.lora) == [0, 1]
    a, b = tr.lora[1]["v_proj"]
    assert a.shape == (8, 32) and b.shape == (32, 8) and b.abs().sum() > 0
    assert "speech_Qformer.bert.embeddings.position_ids" not in tr.connector_state
    assert set(tr.lora_state_dict()) == {
        f"model.layers.{i}.self_attn.{p}.lora_{m}" for i in range(2) for p in ("q_proj", "v_proj") for m in "AB"}


def test_build_reference_runs_end_to_end(ckpt):
    ref = build_reference(ckpt.whisper_dir, ckpt.beats_pt, ckpt.vicuna_dir, ckpt.salmonn_pth,
                          lora_alpha=24, qformer_heads=S.qformer_heads)
    assert ref.configs.lora.alpha == 24 and ref.llm.default_lora_scale == 3.0
    assert ref.configs.connector.qformer_heads == 4
    assert not any(p.requires_grad for m in ref[:4] for p in m.parameters())
    wave = 0.1 * torch.randn(16000 * 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        speech = ref.whisper(log_mel_spectrogram(wave)[None])
        audio = ref.beats(kaldi_fbank(wave)[None])
        embeds = ref.connector(speech, audio)
        positions = torch.arange(embeds.shape[1])[None]
        logits, cache = ref.llm(embeds, positions)
        logits_no_lora, _ = ref.llm(embeds, positions, lora_scale=0.0)
    assert speech.shape == (1, 1500, 64)
    assert audio.shape == (1, (198 // 16) * 8, 48)  # 2 s -> 198 fbank frames -> 96 tokens
    assert embeds.shape == (1, 88, 32)
    assert logits.shape == (1, 88, 32000) and len(cache) == 2
    assert torch.isfinite(logits).all()
    assert 0.1 < speech.std() < 10 and 0.1 < audio.std() < 10 and 0.05 < embeds.std() < 10
    assert (logits - logits_no_lora).abs().max() > 0.1  # the LoRA path matters


# ---------------------------------------------------------------------------------- sharding


def vicuna_raw(vicuna_dir: Path) -> Dict[str, Tensor]:
    """The tiny Vicuna's tensors as stored (fp16, fp32 inv_freq), both shards merged in key order."""
    merged: Dict[str, Tensor] = OrderedDict()
    for shard in sorted(vicuna_dir.glob("pytorch_model-*.bin")):
        merged.update(torch.load(shard))
    return merged


def write_layout(directory: Path, state: Dict[str, Tensor], layout: str) -> None:
    directory.mkdir(parents=True)
    shards = tiny.vicuna_shard_keys(list(state))
    if layout == "single-bin":
        torch.save(OrderedDict(state), directory / "pytorch_model.bin")
    elif layout == "single-safetensors":
        safetensors_io.save_file(state, directory / "model.safetensors")
    elif layout == "sharded-safetensors":
        weight_map = {}
        for i, keys in enumerate(shards, start=1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            safetensors_io.save_file({k: state[k] for k in keys}, directory / name, metadata={"format": "pt"})
            weight_map.update({k: name for k in keys})
        (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    else:
        tiny.write_sharded_bin(directory, state, shards)


@pytest.mark.parametrize("layout", ["single-bin", "single-safetensors", "sharded-safetensors", "sharded-bin"])
def test_llama_layouts_load_identically(ckpt, tmp_path, layout):
    _, reference = load_llama(ckpt.vicuna_dir)
    raw = vicuna_raw(ckpt.vicuna_dir)
    write_layout(tmp_path / layout, raw, layout)
    shutil.copy(ckpt.vicuna_dir / "config.json", tmp_path / layout / "config.json")
    cfg, state = load_llama(tmp_path / layout)
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in state)


def test_shard_not_matching_index_is_refused(ckpt, tmp_path):
    paths = copy_tree(ckpt, tmp_path)
    index_path = paths.vicuna_dir / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["lm_head.weight"] = "pytorch_model-00001-of-00002.bin"
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="lm_head.weight"):
        load_llama(paths.vicuna_dir)


# ---------------------------------------------------------------------------------- failures


def edit_whisper(paths: tiny.TinyPaths, edit: Callable[[Dict[str, Tensor]], None]) -> None:
    file = paths.whisper_dir / "model.safetensors"
    state = safetensors_io.load_file(file)
    edit(state)
    safetensors_io.save_file(state, file)


def edit_beats(paths: tiny.TinyPaths, edit: Callable[[Dict[str, Tensor]], None]) -> None:
    ckpt = torch.load(paths.beats_pt)
    edit(ckpt["model"])
    torch.save(ckpt, paths.beats_pt)


def edit_vicuna(paths: tiny.TinyPaths, edit: Callable[[Dict[str, Tensor]], None]) -> None:
    state = vicuna_raw(paths.vicuna_dir)
    edit(state)
    for f in paths.vicuna_dir.glob("pytorch_model*"):
        f.unlink()
    tiny.write_sharded_bin(paths.vicuna_dir, state, tiny.vicuna_shard_keys(list(state)))


def edit_salmonn(paths: tiny.TinyPaths, edit: Callable[[Dict[str, Tensor]], None]) -> None:
    ckpt = torch.load(paths.salmonn_pth)
    edit(ckpt["model"])
    torch.save(ckpt, paths.salmonn_pth)


def load_part(part: str, paths: tiny.TinyPaths):
    if part == "whisper":
        return load_whisper_encoder(paths.whisper_dir)
    if part == "beats":
        return load_beats(paths.beats_pt)
    if part == "vicuna":
        return load_llama(paths.vicuna_dir)
    llama_cfg, _ = load_llama(paths.vicuna_dir)
    return load_salmonn_trainables(paths.salmonn_pth, qformer_heads=S.qformer_heads, llama_config=llama_cfg)


EDITORS = {"whisper": edit_whisper, "beats": edit_beats, "vicuna": edit_vicuna, "salmonn": edit_salmonn}

# part -> (a key, its shape) used for the missing-key and wrong-shape cases
VICTIMS = {
    "whisper": ("model.encoder.layers.1.fc1.weight", [128, 64]),
    "beats": ("encoder.layers.1.self_attn.grep_linear.weight", [8, 12]),
    "vicuna": ("model.layers.1.mlp.up_proj.weight", [86, 32]),  # in the second shard
    "salmonn": ("speech_Qformer.bert.encoder.layer.1.crossattention.self.key.weight", [48, 112]),
}


@pytest.mark.parametrize("part", sorted(VICTIMS))
def test_missing_key(ckpt, tmp_path, part):
    paths = copy_tree(ckpt, tmp_path)
    key, shape = VICTIMS[part]
    EDITORS[part](paths, lambda sd: sd.pop(key))
    with pytest.raises(CheckpointError) as e:
        load_part(part, paths)
    message = str(e.value)
    assert "missing key" in message and repr(key) in message and str(shape) in message


@pytest.mark.parametrize("part", sorted(VICTIMS))
def test_unknown_key(ckpt, tmp_path, part):
    paths = copy_tree(ckpt, tmp_path)
    key = {"whisper": "model.encoder.layers.0.extra.weight", "beats": "encoder.extra_norm.weight",
           "vicuna": "model.layers.0.mlp.extra.weight", "salmonn": "speech_Qformer.bert.pooler.dense.weight"}[part]
    EDITORS[part](paths, lambda sd: sd.__setitem__(key, torch.zeros(3, 5)))
    with pytest.raises(CheckpointError) as e:
        load_part(part, paths)
    assert "unknown key" in str(e.value) and repr(key) in str(e.value) and "[3, 5]" in str(e.value)


@pytest.mark.parametrize("part", sorted(VICTIMS))
def test_wrong_shape(ckpt, tmp_path, part):
    paths = copy_tree(ckpt, tmp_path)
    key, shape = VICTIMS[part]
    wrong = [shape[0], shape[1] + 1]
    EDITORS[part](paths, lambda sd: sd.__setitem__(key, torch.zeros(wrong, dtype=sd[key].dtype)))
    with pytest.raises(CheckpointError) as e:
        load_part(part, paths)
    message = str(e.value)
    assert repr(key) in message and f"expected shape {shape}" in message and str(wrong) in message


def test_unknown_key_outside_kept_prefixes(ckpt, tmp_path):
    paths = copy_tree(ckpt, tmp_path)
    edit_whisper(paths, lambda sd: sd.__setitem__("model.something_else.weight", torch.zeros(2)))
    with pytest.raises(CheckpointError, match="unknown key 'model.something_else.weight'"):
        load_whisper_encoder(paths.whisper_dir)


def test_missing_weight_norm_half(ckpt, tmp_path):
    paths = copy_tree(ckpt, tmp_path)
    edit_beats(paths, lambda sd: sd.pop("encoder.pos_conv.0.weight_g"))
    with pytest.raises(CheckpointError, match=r"'encoder.pos_conv.0.weight_g' \(expected shape \[1, 1, 16\]\)"):
        load_beats(paths.beats_pt)


def test_missing_lora_matrix_and_layer(ckpt, tmp_path):
    paths = copy_tree(ckpt, tmp_path)
    key_b = "llama_model.base_model.model.model.layers.0.self_attn.v_proj.lora_B.default.weight"
    edit_salmonn(paths, lambda sd: sd.pop(key_b))
    with pytest.raises(CheckpointError, match=key_b.replace(".", r"\.")):
        load_salmonn_trainables(paths.salmonn_pth, qformer_heads=4)

    paths = copy_tree(ckpt, tmp_path / "b")
    edit_salmonn(paths, lambda sd: [sd.pop(k) for k in list(sd) if ".layers.1.self_attn" in k and "lora" in k])
    load_salmonn_trainables(paths.salmonn_pth, qformer_heads=4)  # consistent on its own ...
    llama_cfg, _ = load_llama(paths.vicuna_dir)
    with pytest.raises(CheckpointError) as e:  # ... but the LLaMA has 2 layers
        load_salmonn_trainables(paths.salmonn_pth, qformer_heads=4, llama_config=llama_cfg)
    assert repr(LORA_Q_A.format(1)) in str(e.value) and "expected shape [8, 32]" in str(e.value)


def test_salmonn_skip_list_accepts_removed_bert_parts(ckpt, tmp_path):
    paths = copy_tree(ckpt, tmp_path)

    def add_bert_text_parts(sd):
        sd["speech_Qformer.bert.embeddings.word_embeddings.weight"] = torch.zeros(30522, 4)
        sd["speech_Qformer.bert.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(96, 48)
        sd["speech_Qformer.bert.encoder.layer.0.output.LayerNorm.bias"] = torch.zeros(48)

    edit_salmonn(paths, add_bert_text_parts)
    tr = load_salmonn_trainables(paths.salmonn_pth, qformer_heads=4)
    assert not any("word_embeddings" in k or ".intermediate." in k for k in tr.connector_state)


def test_no_lora_at_all_is_an_error(ckpt, tmp_path):
    paths = copy_tree(ckpt, tmp_path)
    edit_salmonn(paths, lambda sd: [sd.pop(k) for k in list(sd) if ".lora_" in k])
    with pytest.raises(CheckpointError, match="no LoRA weights"):
        load_salmonn_trainables(paths.salmonn_pth, qformer_heads=4)


def test_qformer_heads_must_divide_width(ckpt):
    with pytest.raises(CheckpointError, match="qformer_heads=5"):
        load_salmonn_trainables(ckpt.salmonn_pth, qformer_heads=5)


def test_wrong_rope_theta_is_caught(ckpt, tmp_path):
    paths = copy_tree(ckpt, tmp_path)
    config = json.loads((paths.vicuna_dir / "config.json").read_text())
    config["rope_theta"] = 500000.0
    (paths.vicuna_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="rotary_emb.inv_freq' does not match rope_theta"):
        load_llama(paths.vicuna_dir)


def test_mismatched_parts_are_refused(ckpt, tmp_path):
    paths = copy_tree(ckpt, tmp_path)
    config = json.loads((paths.whisper_dir / "config.json").read_text())
    config.update(d_model=32, encoder_ffn_dim=64)
    (paths.whisper_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"expected shape \[32, 80, 3\]"):  # checkpoint vs config
        load_whisper_encoder(paths.whisper_dir)


def test_pickle_allow_list(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.ones(2)}, "note": pathlib.PurePosixPath("/etc")}, path)
    with pytest.raises(CheckpointError, match="pathlib"):
        torch_load(path)
    assert torch_load(path, allow_pickle=True)["note"] == pathlib.PurePosixPath("/etc")
    torch.save({"cfg": {"a": 0.5, "b": True, "c": [1, "x"]}, "model": OrderedDict(w=torch.ones(2).half())}, path)
    assert torch_load(path)["cfg"]["a"] == 0.5
    torch.save({"model": {"x": torch.ones(2)}}, path, pickle_protocol=4)  # STACK_GLOBAL: not screened
    with pytest.raises(CheckpointError, match="protocol 4"):
        torch_load(path)


# ---------------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 4, generator=g),
        "f16": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).to(torch.bfloat16),
        "f64": torch.randn(2, generator=g).double(),
        "i64": torch.arange(7) - 3,
        "i32": torch.tensor([[-1, 2]], dtype=torch.int32),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "strided": torch.randn(4, 6, generator=g)[:, ::2],  # non-contiguous input
    }
    path = tmp_path / "t.safetensors"
    safetensors_io.save_file(tensors, path, metadata={"format": "pt"})
    back = safetensors_io.load_file(path)
    assert list(back) == list(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape and torch.equal(back[name], t), name
    assert safetensors_io.load_metadata(path) == {"format": "pt"}
    assert list(safetensors_io.load_file(path, ["bf16"])) == ["bf16"]

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert n % 8 == 0 and header["f16"]["dtype"] == "F16" and header["bf16"]["dtype"] == "BF16"
    begin, end = header["f16"]["data_offsets"]
    assert raw[8 + n + begin: 8 + n + end] == tensors["f16"].numpy().tobytes()  # raw little-endian


def test_safetensors_reads_a_hand_made_file(tmp_path):
    """A file assembled from the spec alone (no writer): offsets relative to the data section."""
    a = torch.tensor([1.0, -2.0], dtype=torch.float16).numpy().tobytes()
    b = struct.pack("<3q", 7, -8, 9)
    header = json.dumps({"b": {"dtype": "I64", "shape": [3], "data_offsets": [len(a), len(a) + len(b)]},
                         "a": {"dtype": "F16", "shape": [2, 1], "data_offsets": [0, len(a)]}}).encode()
    path = tmp_path / "hand.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + a + b)
    out = safetensors_io.load_file(path)
    assert out["a"].tolist() == [[1.0], [-2.0]] and out["b"].tolist() == [7, -8, 9]


@pytest.mark.parametrize("damage", ["truncate", "gap", "bad_dtype"])
def test_safetensors_rejects_broken_files(tmp_path, damage):
    path = tmp_path / "x.safetensors"
    safetensors_io.save_file({"a": torch.ones(4), "b": torch.ones(2)}, path)
    raw = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    if damage == "truncate":
        raw = raw[:-3]
    elif damage == "gap":
        header["b"]["data_offsets"] = [header["b"]["data_offsets"][0] + 4, header["b"]["data_offsets"][1] + 4]
    else:
        header["a"]["dtype"] = "F8"
    if damage != "truncate":
        new = json.dumps(header).encode()
        raw = bytearray(struct.pack("<Q", len(new)) + new) + raw[8 + n:]
    path.write_bytes(bytes(raw))
    with pytest.raises(safetensors_io.SafetensorsError):
        safetensors_io.load_file(path)


def test_cli_writes_the_set(tmp_path):
    assert tiny.main([str(tmp_path / "cli"), "--seed", "3"]) == 0
    manifest = json.loads((tmp_path / "cli" / "tiny_manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["not_in_the_weights"]["qformer_heads"] == 4
    assert math.isclose(manifest["sizes"]["llama_rms_eps"], 1e-5)
