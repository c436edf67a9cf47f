"""The fused model's configuration and loading (alarm/model.py, alarm/checkpoints.py):

* ALARM's released configs: ALARM-CA parses up to its unimplemented encoders, ALARM-P's
  multiperceiver config parses (its identity adapters feed the perceivers), unknown encoders are
  refused;
* a tiny checkpoint with the cross-attention fusion (make_tiny_alarm fused=True: Whisper as main
  and conditional encoder, which ALARM allows) loads strictly, refuses renamed / missing /
  wrong-shaped fusion keys, and runs end to end equal to the written-out float64 fusion applied
  to the single-encoder path's adapter output;
* the generic per-encoder path equals the single-encoder path exactly;
* an encoder entry's ignored checkpoint keys are checked by name and shape and never loaded.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

import make_tiny_alarm as tiny
from alarm import model as alarm_model
from alarm.checkpoints import build_alarm_audio, load_alarm, whisper_config_from_file
from alarm.model import AlarmConfig, fused_token_count
from alarm.whisper_v3 import alarm_whisper_features, encoder_frames, hidden_states
from salmonn import safetensors_io
from salmonn.checkpoints import CheckpointError, _on_meta_device
from test_alarm_adapter import AL_WHISPER, QWEN3_4B
from test_alarm_fusion import reference_fusion64

MODELS = Path(__file__).resolve().parents[1]
FUSION = "model.audio_fusion.fusion_model."


@pytest.fixture(scope="module")
def fused(tmp_path_factory) -> tiny.TinyAlarmPaths:
    return tiny.write_tiny_alarm(tmp_path_factory.mktemp("tiny_alarm_fused"), seed=0, fused=True)


@pytest.fixture(scope="module")
def whisper_cfg(fused):
    return whisper_config_from_file(fused.whisper_config)


def edited(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    tensors = safetensors_io.load_file(dst / "model.safetensors")
    edit(tensors)
    safetensors_io.save_file(tensors, dst / "model.safetensors")
    return dst


# ---------------------------------------------------------------------------------------------
# Configuration

# src/configs/model/alarm_ca.yaml's `config` with the ${} references resolved (Qwen3-0.6B: 1024)
ALARM_CA_ADAPTERS = [
    {"encoder_name": "whisper", "adapter_name": "downsampler_conformer",
     "layer_fusion_config": {"layer_fusion_type": "weighted_average"}, "audio_encoder_layers": [7, 15, 23, 31],
     "norm_type": "batch", "pre_average": True, "downsampler_depth": 1, "use_conformer": False,
     "encoder_embedding_dim": 1280, "adapter_embedding_dim": 1024, "llm_embedding_dim": 1024},
    {"encoder_name": "sslam", "adapter_name": "downsampler_conformer",
     "layer_fusion_config": {"layer_fusion_type": "weighted_average"}, "audio_encoder_layers": [3, 7, 11],
     "norm_type": "layer", "pre_average": True, "downsampler_depth": 1, "use_conformer": False,
     "encoder_embedding_dim": 768, "adapter_embedding_dim": 1024, "llm_embedding_dim": 1024},
    {"encoder_name": "muq", "adapter_name": "mlp", "layer_fusion_config": {"layer_fusion_type": "weighted_average"},
     "audio_encoder_layers": [4, 8, 12], "pre_average": True, "encoder_embedding_dim": 1024, "hidden_dim": 1024,
     "adapter_embedding_dim": 1024, "llm_embedding_dim": 1024},
    {"encoder_name": "w2vbert", "adapter_name": "downsampler_conformer",
     "layer_fusion_config": {"layer_fusion_type": "weighted_average"}, "audio_encoder_layers": [6, 10, 15, 20, 24],
     "norm_type": "layer", "pre_average": True, "downsampler_depth": 1, "use_conformer": False,
     "encoder_embedding_dim": 1024, "adapter_embedding_dim": 1024, "llm_embedding_dim": 1024},
]
ALARM_CA = {
    **QWEN3_4B, "hidden_size": 1024, "model_type": "qwen3_audio", "use_explicit_audio_tokens": False,
    "audio_sep_d_embed": 1024,
    "audio_encoder_configs": [{"encoder_name": n} for n in ("whisper", "sslam", "muq", "w2vbert")],
    "audio_adapter_configs": ALARM_CA_ADAPTERS,
    "audio_fusion_config": {"fusion_type": "crossattention", "llm_embedding_dim": 1024, "hidden_dim": 1024,
                            "ffn_dims": 4096, "dropout": 0.1, "num_attention_heads": 16,
                            "num_hidden_layers": [1, 1, 1], "main_encoder": "whisper",
                            "conditional_encoders": ["w2vbert", "muq", "sslam"], "use_skip_connection": False},
    "audio_postprocessing_config": {"postprocessing_type": "identity"},
}


def test_alarm_ca_is_refused_only_for_its_unimplemented_encoders(monkeypatch):
    missing = sorted(set(alarm_model.ALARM_ENCODERS) - set(alarm_model.ENCODERS))
    if not missing:
        cfg = AlarmConfig.from_hf_config(ALARM_CA)
        assert cfg.fusion is not None and cfg.encoders == ("muq", "sslam", "w2vbert", "whisper")
        return
    with pytest.raises(ValueError, match=r"encoders \[.*'%s'.*\] are not implemented yet" % missing[0]):
        AlarmConfig.from_hf_config(ALARM_CA)
    # with entries for them (Whisper's stands in: the configuration does not build modules)
    for name in missing:
        monkeypatch.setitem(alarm_model.ENCODERS, name, alarm_model.ENCODERS["whisper"])
    cfg = AlarmConfig.from_hf_config(ALARM_CA)
    assert cfg.encoders == ("muq", "sslam", "w2vbert", "whisper")
    assert [a.encoder_name for a in cfg.adapters] == list(cfg.encoders)
    assert cfg.fusion.encoders == ("whisper", "w2vbert", "muq", "sslam")
    assert (cfg.fusion.hidden_dim, cfg.fusion.ffn_dims, cfg.fusion.num_hidden_layers) == (1024, 4096, (1, 1, 1))
    # every encoder ends at 25 per second: for 30 s, 750 rows from each (lengths as ALARM counts them)
    assert fused_token_count(cfg, {"whisper": 1500, "w2vbert": 1500, "sslam": 1500, "muq": 750}) == 750
    assert fused_token_count(cfg, {"whisper": 1, "w2vbert": 0, "sslam": 0, "muq": 0}) == 1
    with pytest.raises(ValueError, match="reads encoders"):
        AlarmConfig.from_hf_config({**ALARM_CA, "audio_fusion_config": {
            **ALARM_CA["audio_fusion_config"], "conditional_encoders": ["w2vbert", "muq"], "num_hidden_layers": [1, 1]}})


def identity_adapter(name: str, layers: list) -> dict:
    """alarm_p.yaml's conditional adapters: identity, no llm_proj (no encoder_embedding_dim given)."""
    return {"encoder_name": name, "adapter_name": "identity",
            "layer_fusion_config": {"layer_fusion_type": "weighted_average"}, "audio_encoder_layers": layers,
            "pre_average": True, "adapter_embedding_dim": 1024, "llm_embedding_dim": 1024, "use_llm_proj": False}


# src/configs/model/alarm_p.yaml's `config` with the ${} references resolved (Qwen3-0.6B: 1024)
ALARM_P = {
    **ALARM_CA,
    "audio_adapter_configs": [ALARM_CA_ADAPTERS[0], identity_adapter("sslam", [3, 7, 11]),
                              identity_adapter("muq", [4, 8, 12]), identity_adapter("w2vbert", [6, 10, 15, 20, 24])],
    "audio_fusion_config": {
        "fusion_type": "multiperceiver", "llm_embedding_dim": 1024, "num_latents": [20, 20, 20],
        "num_latent_channels": [768, 768, 768], "num_cross_attention_heads": [4, 4, 4],
        "num_cross_attention_layers": [1, 1, 1], "first_cross_attention_layer_shared": [True, True, True],
        "first_self_attention_block_shared": [True, True, True], "num_self_attention_heads": [4, 4, 4],
        "num_self_attention_blocks": [3, 3, 3], "num_self_attention_layers_per_block": [6, 6, 6],
        "main_encoder": "whisper", "conditional_encoders": ["w2vbert", "muq", "sslam"],
        "conditional_embedding_dim": [1024, 1024, 768]},
}


def test_alarm_p_config_reads_the_multiperceiver_and_counts_its_rows():
    cfg = AlarmConfig.from_hf_config(ALARM_P)
    assert cfg.fusion_type == "multiperceiver" and cfg.fusion.encoders == ("whisper", "w2vbert", "muq", "sslam")
    perceivers = dict(cfg.fusion.conditional)
    assert [perceivers[e].input_dim for e in ("w2vbert", "muq", "sslam")] == [1024, 1024, 768]
    assert all((p.num_latents, p.latent_dim, p.self_blocks, p.layers_per_block) == (20, 768, 3, 6)
               for p in perceivers.values())
    assert [cfg.perceiver_reads(e) for e in ("whisper", "w2vbert", "muq", "sslam")] == [False, True, True, True]
    # 30 s: Whisper's 1500 frames -> 750 rows, after 2 + 60 leading rows; the others' lengths do not count
    assert fused_token_count(cfg, {"whisper": 1500, "w2vbert": 1500, "sslam": 1500, "muq": 750}) == 812
    assert fused_token_count(cfg, {"whisper": 0, "w2vbert": 9000, "sslam": 0, "muq": 0}) == 62
    # the main encoder must still reach the LLM's width; a projected conditional one its perceiver's
    bad_main = {**ALARM_CA_ADAPTERS[0], "llm_embedding_dim": 512}
    with pytest.raises(ValueError, match="adapter whisper outputs 512 channels, the LLM takes 1024"):
        AlarmConfig.from_hf_config({**ALARM_P, "audio_adapter_configs": [bad_main] + ALARM_P["audio_adapter_configs"][1:]})
    projected = {**identity_adapter("sslam", [3, 7, 11]), "use_llm_proj": True}
    with pytest.raises(ValueError, match=r"adapter sslam outputs 1024 channels, its perceiver takes 768"):
        AlarmConfig.from_hf_config({**ALARM_P, "audio_adapter_configs": [
            ALARM_CA_ADAPTERS[0], projected] + ALARM_P["audio_adapter_configs"][2:]})
    with pytest.raises(ValueError, match="'perceiver'.*not implemented"):
        AlarmConfig.from_hf_config({**ALARM_P, "audio_fusion_config": {"fusion_type": "perceiver"}})
    # at real size, the released encoders' own widths are the perceivers' input widths
    with _on_meta_device():
        audio = alarm_model.AlarmAudio(cfg)
    assert [audio.adapter_output_width(e) for e in ("w2vbert", "muq", "sslam", "whisper")] == [1024, 1024, 768, 1024]


def test_unknown_and_unimplemented_encoders_are_named():
    with pytest.raises(ValueError, match=r"\['beats'\] are not ALARM encoders"):
        AlarmConfig.from_hf_config({**AL_WHISPER, "audio_encoder_configs": [{"encoder_name": "beats"}]})
    with pytest.raises(ValueError, match=r"fusion 'concat' is not one of"):
        AlarmConfig.from_hf_config({**AL_WHISPER, "audio_fusion_config": {"fusion_type": "concat"}})


# ---------------------------------------------------------------------------------------------
# The fused tiny checkpoint


def test_fused_tiny_loads_strictly_with_alarms_fusion_keys(fused, whisper_cfg):
    parts = load_alarm(fused.alarm, whisper_cfg)
    assert parts.config.fusion_type == "crossattention" and parts.config.fusion.encoders == ("whisper",)
    fusion_keys = sorted(k for k in parts.audio_state if k.startswith("fusion."))
    header = safetensors_io.read_header(fused.alarm / "model.safetensors")[0]
    assert fusion_keys == sorted("fusion." + k[len(FUSION):] for k in header if k.startswith(FUSION))
    assert "fusion.condition_modules.whisper.1.multihead_attn.in_proj_weight" in fusion_keys
    assert any(k.startswith("encoders.whisper.layers.") for k in parts.audio_state)


@pytest.mark.parametrize("case, edit, message", [
    ("renamed", lambda t: t.__setitem__(FUSION + "condition_modules.whisper.0.norm4.weight",
                                        t.pop(FUSION + "condition_modules.whisper.0.norm3.weight")),
     r"unknown key 'model\.audio_fusion\.fusion_model\.condition_modules\.whisper\.0\.norm4\.weight'"),
    ("missing", lambda t: t.pop(FUSION + "condition_modules.whisper.1.self_attn.in_proj_bias"),
     r"missing key 'model\.audio_fusion\.fusion_model\.condition_modules\.whisper\.1\.self_attn\.in_proj_bias'"),
    ("wrong shape", lambda t: t.__setitem__(FUSION + "in_proj.whisper.weight", torch.zeros(24, 33)),
     r"'model\.audio_fusion\.fusion_model\.in_proj\.whisper\.weight' has shape \[24, 33\], expected shape \[24, 32\]"),
    ("layer beyond the config", lambda t: t.__setitem__(FUSION + "condition_modules.whisper.2.linear1.bias", torch.zeros(40)),
     r"unknown key 'model\.audio_fusion\.fusion_model\.condition_modules\.whisper\.2\.linear1\.bias'"),
    ("encoder not in the config", lambda t: t.__setitem__("model.audio_encoder.encoders.muq.encoder.w", torch.zeros(2)),
     r"unknown key 'model\.audio_encoder\.encoders\.muq\.encoder\.w'"),
])
def test_fused_checkpoint_is_strict(fused, whisper_cfg, tmp_path, case, edit, message):
    bad = edited(fused.alarm, tmp_path / "bad", edit)
    with pytest.raises(CheckpointError, match=message):
        load_alarm(bad, whisper_cfg)


def test_fused_model_runs_the_fusion_after_the_adapter(fused, whisper_cfg):
    audio, _ = build_alarm_audio(fused.alarm, whisper_cfg)
    wave = torch.randn(round(1.37 * 16000), generator=torch.Generator().manual_seed(3)) * 0.1
    got = audio(wave)
    # independent composition: Whisper features and hidden states, the adapter, then the fusion
    # written out in float64, cut to the adapter length
    mel, mel_frames = alarm_whisper_features(wave, whisper_cfg.num_mel_bins)
    acfg = audio.cfg.whisper_adapter
    length = encoder_frames(mel_frames)
    with torch.no_grad():
        adapted = audio.adapters["whisper"](hidden_states(audio.whisper, mel[None], acfg.audio_encoder_layers),
                                            torch.tensor([length]))
    rows = max(1, acfg.out_length(length))
    expected = reference_fusion64(audio.fusion, {"whisper": adapted}, acfg.out_length(length))[:rows]
    assert got.shape == (rows, 32) and rows == mel_frames // 4
    assert torch.allclose(got.double(), expected, atol=1e-5), float((got.double() - expected).abs().max())


def test_generic_path_equals_the_single_encoder_path(tmp_path):
    paths = tiny.write_tiny_alarm(tmp_path, seed=1)
    audio, _ = build_alarm_audio(paths.alarm, whisper_config_from_file(paths.whisper_config))
    for seconds in (0.2, 3.1):
        wave = torch.randn(round(seconds * 16000), generator=torch.Generator().manual_seed(5)) * 0.1
        assert torch.equal(audio.fused_embeddings(wave), audio(wave))


def test_ignored_checkpoint_keys_are_checked_not_loaded(fused, whisper_cfg, tmp_path, monkeypatch):
    """An encoder entry may list keys of modules that never run (e.g. a quantizer)."""
    entry = alarm_model.ENCODERS["whisper"]
    monkeypatch.setitem(alarm_model.ENCODERS, "whisper", dataclasses.replace(
        entry, ignored_checkpoint_keys=lambda cfg: {"quantizer.codebook": (8, cfg.d_model)}))
    key = "model.audio_encoder.encoders.whisper.encoder.quantizer.codebook"
    good = edited(fused.alarm, tmp_path / "good", lambda t: t.__setitem__(key, torch.zeros(8, 64)))
    parts = load_alarm(good, whisper_cfg)
    assert not any("quantizer" in k for k in parts.audio_state)
    with pytest.raises(CheckpointError, match=r"missing key '%s' \(expected shape \[8, 64\]\)" % key.replace(".", r"\.")):
        load_alarm(fused.alarm, whisper_cfg)
    bad = edited(fused.alarm, tmp_path / "bad", lambda t: t.__setitem__(key, torch.zeros(8, 63)))
    with pytest.raises(CheckpointError, match=r"has shape \[8, 63\], expected shape \[8, 64\]"):
        load_alarm(bad, whisper_cfg)
