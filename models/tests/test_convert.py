"""The converter CLI end to end on tiny checkpoints: a valid bundle, and clear failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import convert
from make_tiny_checkpoints import write_tiny_checkpoints
from salmonn.bundle import sha256_file, validate_manifest


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"), seed=0)


def cli_args(paths, out: Path, salmonn: Path | None = None) -> list[str]:
    return ["--whisper", str(paths.whisper_dir), "--beats", str(paths.beats_pt), "--vicuna", str(paths.vicuna_dir),
            "--salmonn", str(salmonn or paths.salmonn_pth), "--prompts", str(paths.prompts_json),
            "--out", str(out), "--qformer-heads", "4", "--precisions", "fp32", "--random-weights"]


def test_convert_writes_a_valid_bundle(tiny, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert convert.main(cli_args(tiny, out)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    validate_manifest(manifest)
    assert manifest["architecture"]["connector"]["tokensPerChunk"] == 88
    assert manifest["architecture"]["lora"] == {"rank": 8, "alpha": 32.0, "defaultScale": 4.0, "targets": ["q_proj", "v_proj"]}
    assert manifest["tasks"]["audiocaption"].endswith("Please describe the audio.")
    # SALMONN's decode config: 4 beams (the app's default for converted bundles), length penalty 1.
    assert manifest["generation"]["numBeams"] == 4 and manifest["generation"]["lengthPenalty"] == 1.0
    for entry in manifest["files"]:
        assert sha256_file(out / entry["path"]) == entry["sha256"]
        assert (out / entry["path"]).stat().st_size == entry["size"]


def test_manifest_schema_rejects_a_bad_hash(tiny, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    convert.main(cli_args(tiny, out))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"][0]["sha256"] = "not-a-hash"
    with pytest.raises(Exception, match="does not match"):
        validate_manifest(manifest)


def test_wrong_shape_fails_with_key_and_expected_shape(tiny, tmp_path: Path, capsys) -> None:
    state = torch.load(tiny.salmonn_pth)
    key = "speech_llama_proj.weight"
    state["model"][key] = torch.zeros(7, 7)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    assert convert.main(cli_args(tiny, tmp_path / "out", salmonn=broken)) == 2
    err = capsys.readouterr().err
    assert key in err and "[7, 7]" in err and "expected" in err


def test_missing_key_fails_naming_it(tiny, tmp_path: Path, capsys) -> None:
    state = torch.load(tiny.salmonn_pth)
    key = "ln_audio.weight"
    del state["model"][key]
    broken = tmp_path / "missing.pth"
    torch.save(state, broken)
    assert convert.main(cli_args(tiny, tmp_path / "out", salmonn=broken)) == 2
    err = capsys.readouterr().err
    assert key in err and "missing" in err
