"""The tiny ALARM-P checkpoint (make_tiny_alarm.write_tiny_alarm_p) through the strict loader, and
AlarmAudio's ALARM-P path against a step-by-step composition:

* config.json (alarm_p.yaml's field lists at tiny sizes) reads back into the sizes it was written
  from, and its fusion keys `model.audio_fusion.fusion_model.*` load strictly (a renamed key, or a
  perceiver width that is not the encoder's, is refused);
* AlarmAudio(wave) = the encoders' hidden states (as AlarmAudio computed them), each identity adapter written out as a softmax-
  weighted layer average, Whisper's adapter, then the float64 perceivers of test_alarm_perceiver.py
  on each conditional encoder's UNPADDED real frames (AlarmAudio pads to the longest and masks:
  the same numbers), with [cond_start, latents, cond_end, Whisper's rows] cut to 2 + latents +
  Whisper's adapter length;
* the stages as the bundle's graphs cut them (alarm/stages_p.py) = AlarmAudio(wave).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

import make_tiny_alarm as tiny
from alarm.checkpoints import build_alarm_audio, encoder_config_from_file, load_alarm, whisper_config_from_file
from alarm.model import ENCODERS, AlarmConfig
from alarm.perceiver import MultiPerceiverConfig
from alarm.stages_p import perceiver_stages
from salmonn import safetensors_io
from salmonn.checkpoints import CheckpointError
from test_alarm_perceiver import perceiver64

FUSION = "model.audio_fusion.fusion_model."


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> tiny.TinyAlarmCaPaths:
    return tiny.write_tiny_alarm_p(tmp_path_factory.mktemp("tiny_alarm_p"), seed=0)


@pytest.fixture(scope="module")
def configs(paths) -> dict:
    out = {k: encoder_config_from_file(k, v) for k, v in paths.encoder_configs.items() if k != "whisper"}
    return out


@pytest.fixture(scope="module")
def whisper_cfg(paths):
    return whisper_config_from_file(paths.encoder_configs["whisper"])


@pytest.fixture(scope="module")
def audio(paths, whisper_cfg, configs):
    return build_alarm_audio(paths.alarm, whisper_cfg, encoder_configs=configs)[0].eval()


def test_config_reads_back_the_sizes_it_was_written_with(paths, audio):
    raw = json.loads((paths.alarm / "config.json").read_text())
    cfg = audio.cfg  # through load_alarm
    assert cfg == AlarmConfig.from_hf_config(raw)
    assert isinstance(cfg.fusion, MultiPerceiverConfig) and cfg.fusion_type == "multiperceiver"
    assert cfg.fusion.conditional_encoders == tiny.P_SIZES.fusion_order == ("w2vbert", "muq", "sslam")
    for (name, p), q in zip(cfg.fusion.conditional, tiny.P_SIZES.perceivers):
        assert (p.num_latents, p.latent_dim, p.cross_heads, p.self_heads, p.self_blocks, p.layers_per_block,
                p.widening, p.input_dim) == (q.latents, q.channels, q.cross_heads, q.self_heads, q.blocks,
                                             q.layers_per_block, q.widening, tiny.ENCODER_DIMS[name])
    assert cfg.fusion.leading_rows == 2 + sum(q.latents for q in tiny.P_SIZES.perceivers)
    assert [cfg.adapter(e).adapter_name for e in ("whisper", "w2vbert", "muq", "sslam")] == [
        "downsampler_conformer", "identity", "identity", "identity"]


def edited(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    tensors = safetensors_io.load_file(dst / "model.safetensors")
    edit(tensors)
    safetensors_io.save_file(tensors, dst / "model.safetensors")
    return dst


def test_fusion_keys_load_strictly(paths, whisper_cfg, configs, tmp_path):
    key = FUSION + "perceiver.muq.self_attn_1.1.0.module.attention.q_proj.weight"
    renamed = edited(paths.alarm, tmp_path / "renamed",
                     lambda t: t.__setitem__(key.replace("self_attn_1", "self_attn_n"), t.pop(key)))
    with pytest.raises(CheckpointError, match="self_attn_n") as err:
        load_alarm(renamed, whisper_cfg, encoder_configs=configs)
    assert "missing key" in str(err.value) and "unknown key" in str(err.value)
    # a perceiver that reads another width than its encoder's frames
    cfg_dir = tmp_path / "wide"
    shutil.copytree(paths.alarm, cfg_dir)
    raw = json.loads((cfg_dir / "config.json").read_text())
    raw["audio_fusion_config"]["conditional_embedding_dim"] = [32, 32, 40]
    (cfg_dir / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="adapter sslam outputs 32 channels, its perceiver takes 40"):
        load_alarm(cfg_dir, whisper_cfg, encoder_configs=configs)


def weighted_average64(states: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    w = torch.exp(weights.double() - weights.double().max())
    return torch.einsum("l,lbtd->btd", w / w.sum(), states.double())


@pytest.fixture(scope="module")
def wave() -> torch.Tensor:
    """1.3 s: every encoder's length differs (MuQ's mel of it is cached, so the tests below that run
    the encoders again on it do not pay for its 30 s DFT twice)."""
    return torch.randn(20800, generator=torch.Generator().manual_seed(1)) * 0.1


@pytest.fixture(scope="module")
def forward(audio, wave):
    """AlarmAudio(wave), and each encoder's (hidden states, length) as it computed them (recorded,
    so that the composition below starts from the same states without running the encoders again)."""
    recorded = {}
    originals = dict(ENCODERS)

    def recording(name):
        entry = originals[name]

        def encode(*args):
            recorded[name] = entry.encode(*args)
            return recorded[name]
        return dataclasses.replace(entry, encode=encode)

    try:
        for name in originals:
            ENCODERS[name] = recording(name)
        out = audio(wave)
    finally:
        ENCODERS.update(originals)
    return out, recorded


def test_audio_equals_the_step_by_step_composition(audio, wave, forward):
    got, recorded = forward
    cfg = audio.cfg
    fusion = cfg.fusion
    s = {k: v.double() for k, v in audio.fusion.state_dict().items()}
    frames = {}
    lengths = {}
    for name in cfg.encoders:
        states, length = recorded[name]
        assert states.shape[0] == len(cfg.adapter(name).audio_encoder_layers)
        lengths[name] = length
        frames[name] = states[:, :, :length]  # ALARM's trim to the (batch's) real length
    with torch.no_grad():
        whisper = audio.adapters["whisper"](frames["whisper"], torch.tensor([lengths["whisper"]]))[0].double()
    rows = [s["cond_start_emb"]]
    for name, p in fusion.conditional:
        weights = audio.adapters[name].layer_fusion.layer_weights.detach()
        x = weighted_average64(frames[name], weights)[0]  # [T_e, C_e]: the encoder's real frames only
        lat = perceiver64(x, s, f"perceiver.{name}.", p, x.shape[0])
        rows.append(lat @ s[f"out_proj.{name}.weight"].T + s[f"out_proj.{name}.bias"])
    main_length = lengths["whisper"] // 2
    rows += [s["cond_end_emb"], whisper[:main_length]]
    want = torch.cat(rows)
    assert got.shape == want.shape == (fusion.leading_rows + main_length, cfg.llm.hidden_size)
    assert len({lengths[e] for e in cfg.encoders}) > 1  # the encoders' lengths differ: padding is exercised
    assert torch.allclose(got.double(), want, atol=1e-5, rtol=1e-4), (got.double() - want).abs().max()


def test_stages_as_the_graphs_cut_them_equal_the_reference(audio, wave, forward):
    forward = forward[0]
    """alarm/stages_p.py (encoder chunk modules, real frames fed unpadded and unmasked to the
    connector module) against AlarmAudio.forward (ALARM's padding and masks)."""
    stages = perceiver_stages(audio, wave)
    fusion = audio.cfg.fusion
    assert stages.leading == fusion.leading_rows
    for name, p in fusion.conditional:
        s = stages.encoders[name]
        assert s.adapted.shape == (s.frames, p.input_dim) and s.adapter_length == s.frames
    w = stages.encoders["whisper"]
    assert stages.main_length == w.frames // 2 and w.adapted.shape[0] == -(-w.frames // 2)
    assert stages.fused.shape[0] == stages.leading + w.adapted.shape[0]
    assert stages.audio.shape == forward.shape
    assert torch.allclose(stages.audio, forward, atol=1e-5, rtol=1e-4), (stages.audio - forward).abs().max()
