"""ALARM-CA end to end in the reference (alarm/model.py's four-encoder path) on the tiny ALARM-CA
checkpoint (make_tiny_alarm.write_tiny_alarm_ca), against a stage-by-stage composition written out
here: each encoder run chunk by chunk as ALARM's BaseAudioEncoder splits its features (with the
attention masks ALARM builds), the adapters written out in float64 from their state dicts
(softmax layer average, conv blocks with BatchNorm / LayerNorm, MLP, llm_proj), the fusion in
float64 (test_alarm_fusion.reference_fusion64), cut to max(1, max adapter length) rows.
"""

from __future__ import annotations

from typing import Dict

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import make_tiny_alarm as tiny
from alarm import muq, sslam, w2vbert
from alarm.checkpoints import build_alarm_audio, encoder_config_from_file, load_alarm
from alarm.model import AlarmAudio
from alarm.whisper_v3 import alarm_whisper_features, encoder_frames, hidden_states
from test_alarm_fusion import reference_fusion64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tiny.TinyAlarmCaPaths:
    return tiny.write_tiny_alarm_ca(tmp_path_factory.mktemp("tiny_alarm_ca"), seed=0)


@pytest.fixture(scope="module")
def audio(checkpoint) -> AlarmAudio:
    configs = {k: encoder_config_from_file(k, v) for k, v in checkpoint.encoder_configs.items()}
    model, _ = build_alarm_audio(checkpoint.alarm, configs["whisper"], encoder_configs=configs)
    return model


def test_tiny_alarm_ca_loads_every_key_strictly(checkpoint, audio):
    configs = {k: encoder_config_from_file(k, v) for k, v in checkpoint.encoder_configs.items()}
    parts = load_alarm(checkpoint.alarm, configs["whisper"], encoder_configs=configs)
    assert parts.config.encoders == ("muq", "sslam", "w2vbert", "whisper")
    assert parts.config.fusion.encoders == ("whisper", "w2vbert", "muq", "sslam")
    prefixes = {k.split(".")[0] + "." + k.split(".")[1] for k in parts.audio_state if k.startswith(("encoders", "adapters"))}
    assert prefixes == {f"{p}.{e}" for p in ("encoders", "adapters") for e in ("whisper", "w2vbert", "sslam", "muq")}
    # the never-run keys are in the file but not loaded
    assert not any("masked_spec_embed" in k or ".head." in k or "cls_token" in k for k in parts.audio_state)


def adapter64(state: Dict[str, Tensor], stacked: Tensor, length: int, kind: str, norm: str = "") -> Tensor:
    """ALARM's adapter in float64 from its state dict: [L, T, E] -> [T', D] (trim, average, ...)."""
    s = {k: v.double() for k, v in state.items()}
    x = stacked[:, :length].double()
    w = torch.softmax(s["layer_fusion.layer_weights"], dim=0)
    x = (x * w[:, None, None]).sum(0)
    if kind == "mlp":
        x = F.gelu(x @ s["adapter.model.0.weight"].T + s["adapter.model.0.bias"])
        x = F.gelu(x @ s["adapter.model.2.weight"].T + s["adapter.model.2.bias"])
    else:
        if "adapter.input_proj.weight" in s:
            x = x @ s["adapter.input_proj.weight"].T + s["adapter.input_proj.bias"]
        if x.shape[0] % 2:
            x = torch.cat([x, torch.zeros(1, x.shape[1], dtype=x.dtype)])
        h = x.T[None]
        for i, (stride, pad) in enumerate(((1, 1), (2, 1))):
            p = f"adapter.downsampler.{i}."
            h = F.gelu(F.conv1d(h, s[p + "0.weight"], s[p + "0.bias"], stride=stride, padding=pad))
            if norm == "batch":
                h = (h - s[p + "2.running_mean"][:, None]) / torch.sqrt(s[p + "2.running_var"][:, None] + 1e-5)
                h = h * s[p + "2.weight"][:, None] + s[p + "2.bias"][:, None]
            else:
                h = F.layer_norm(h.transpose(1, 2), (h.shape[1],), s[p + "2.norm.weight"], s[p + "2.norm.bias"]).transpose(1, 2)
        x = h[0].T
    return x @ s["llm_proj.weight"].T + s["llm_proj.bias"]


def composed(audio: AlarmAudio, wave: Tensor) -> Tensor:
    """The written-out path: features, chunked encoders, float64 adapters, float64 fusion, cut."""
    enc, ad = audio.encoders, audio.adapters
    stacked: Dict[str, Tensor] = {}
    lengths: Dict[str, int] = {}
    with torch.no_grad():
        # whisper: 30 s pieces of mel, attended frames // 2
        mel, mel_frames = alarm_whisper_features(wave, audio.encoder_configs["whisper"].num_mel_bins)
        stacked["whisper"] = hidden_states(enc["whisper"], mel[None], ad["whisper"].cfg.audio_encoder_layers)[:, 0]
        lengths["whisper"] = encoder_frames(mel_frames)
        # w2vbert: whole-recording features, pieces of 1500 stacked frames, last padded frame masked
        feats, n = w2vbert.w2vbert_features(wave)
        pieces = []
        for start in range(0, feats.shape[0], w2vbert.CHUNK_FRAMES):
            piece = feats[start:start + w2vbert.CHUNK_FRAMES][None]
            mask = (torch.arange(start, start + piece.shape[1]) < n).to(torch.int64)[None]
            pieces.append(enc["w2vbert"](piece, ad["w2vbert"].cfg.audio_encoder_layers, None if bool(mask.all()) else mask))
        stacked["w2vbert"], lengths["w2vbert"] = torch.cat(pieces, dim=-2)[:, 0], n
        # sslam: 1024-frame chunks, block outputs without CLS
        fbank, frames = sslam.sslam_features(wave)
        chunks = [sslam.hidden_states(enc["sslam"], c[None], ad["sslam"].cfg.audio_encoder_layers)
                  for c in fbank.split(sslam.CHUNK_FRAMES)]
        stacked["sslam"], lengths["sslam"] = torch.cat(chunks, dim=-2)[:, 0], frames // 2
        # muq: 24 kHz waveform in 30 s chunks, each with its frame mask
        wave24, samples = muq.muq_features(wave)
        chunks = [enc["muq"].chunk_hidden_states(c[None], muq.frame_mask(samples - i * muq.CHUNK_SAMPLES)[None],
                                                 ad["muq"].cfg.audio_encoder_layers)
                  for i, c in enumerate(wave24.split(muq.CHUNK_SAMPLES))]
        stacked["muq"], lengths["muq"] = torch.cat(chunks, dim=-2)[:, 0], samples // 960
    kinds = {"whisper": ("conv", "batch"), "w2vbert": ("conv", "layer"), "sslam": ("conv", "layer"), "muq": ("mlp", "")}
    adapted, adapter_lengths = {}, {}
    for name, (kind, norm) in kinds.items():
        state = ad[name].state_dict()
        adapted[name] = adapter64(state, stacked[name], lengths[name], kind, norm)[None]
        adapter_lengths[name] = lengths[name] // 2 if kind == "conv" else lengths[name]
    rows = max(1, max(adapter_lengths.values()))
    fused = reference_fusion64(audio.fusion, adapted, adapter_lengths["whisper"])
    return fused[:rows]


# 1.37 s: 137 fbank frames (odd: w2vbert's last stacked frame is masked), 34 rows from every
# encoder; 0.31 s: 7 rows (31 mel frames -> 15 -> 7; muq 7440 samples // 960 = 7)
@pytest.mark.parametrize("seconds,rows", [(1.37, 34), (0.31, 7)])
def test_alarm_ca_pipeline_equals_the_written_out_stages(audio, seconds, rows):
    wave = torch.randn(round(seconds * 16000), generator=torch.Generator().manual_seed(7)) * 0.1
    got = audio(wave)
    want = composed(audio, wave)
    assert got.shape == want.shape == (rows, 32)
    assert torch.allclose(got.double(), want, atol=2e-5), float((got.double() - want).abs().max())
