"""The engine's recording-scoped encoder features (src/engine/features/, TypeScript, run in Node by
models/tools/engine_features.ts through `encoderFeatures` with the manifest specs of
alarm/feature_specs.py) against the Python reference of ALARM's feature extractors, on the golden
clips (a short one, real speech and the 35 s one) and on noise clips of edge-case lengths:

* seamless-fbank (transformers.js' SeamlessM4TFeatureExtractor) vs w2vbert.py's float64 fbank;
* kaldi-fbank-recording (the engine's float32-exact Kaldi fbank, Hann window) vs torchaudio's
  kaldi.fbank as sslam.py (ALARM's own call) uses it;
* resampled-waveform (the engine's windowed sinc) vs torchaudio's Resample (muq.py, ALARM's call)
  and vs muq.py's float64 `sinc_resample_reference`.

Also: the specs are valid format-2 feature specs (models/manifest.v2.schema.json), and the engine's
ALARM-CA constants (W2VBERT_SEAMLESS_FBANK, SSLAM_FBANK, MUQ_RESAMPLE) equal them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Dict, Tuple

import jsonschema
import numpy as np
import pytest
import torch

from alarm.feature_specs import FEATURE_SPECS
from alarm.muq import muq_features, sinc_resample_reference
from alarm.sslam import sslam_features
from alarm.w2vbert import w2vbert_features

REPO = Path(__file__).resolve().parents[2]
AUDIO = REPO / "models" / "golden" / "audio"
GOLDEN_CLIPS = ("one_second", "speech", "long_35s")
# Edge cases written here as 16-bit WAVs of noise: an odd fbank frame count (w2v-BERT's padded
# last frame), the shortest recording w2v-BERT takes (2 fbank frames), an odd sample count (the
# resampler's ceil(3 n / 2)).
SYNTHETIC_CLIPS = {"noise_odd_frames": 16161, "noise_shortest": 240, "noise_odd_samples": 4001}
CLIPS = (*GOLDEN_CLIPS, *SYNTHETIC_CLIPS)
TSX = REPO / "node_modules" / ".bin" / "tsx"
needs_tsx = pytest.mark.skipif(shutil.which("node") is None or not TSX.exists(), reason="node + tsx not installed")


def write_noise_wav(path: Path, samples: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = np.clip(rng.normal(0, 3000, samples), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(data.tobytes())


def clip_path(engine, clip: str) -> Path:
    return AUDIO / f"{clip}.wav" if clip in GOLDEN_CLIPS else engine[0] / f"{clip}.wav"


def read_wav(path: Path) -> np.ndarray:
    """16-bit PCM mono WAV -> float32 sample / 32768 (what the engine's decodeWav gives)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != 16000:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit PCM")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.astype(np.float32) / 32768.0


def errors(ours: np.ndarray, ref: np.ndarray) -> Tuple[float, float]:
    """(max |ours - ref|, that divided by max |ref|)."""
    diff = float(np.abs(ours.astype(np.float64) - ref.astype(np.float64)).max())
    return diff, diff / max(float(np.abs(ref).max()), 1e-30)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Tuple[Path, Dict[str, int]]:
    out = tmp_path_factory.mktemp("engine_features")
    specs = out / "specs.json"
    specs.write_text(json.dumps({kind: make() for kind, make in FEATURE_SPECS.items()}))
    for seed, (clip, samples) in enumerate(SYNTHETIC_CLIPS.items()):
        write_noise_wav(out / f"{clip}.wav", samples, seed)
    wavs = [AUDIO / f"{clip}.wav" for clip in GOLDEN_CLIPS] + [out / f"{clip}.wav" for clip in SYNTHETIC_CLIPS]
    run = subprocess.run([str(TSX), "models/tools/engine_features.ts", str(specs), str(out), *map(str, wavs)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    print(run.stdout)
    return out, json.loads((out / "lengths.json").read_text())


def engine_output(engine, clip: str, kind: str) -> Tuple[np.ndarray, int]:
    out, lengths = engine
    return np.load(out / f"{clip}.{kind}.npy"), lengths[f"{clip}.{kind}"]


@needs_tsx
@pytest.mark.parametrize("clip", CLIPS)
def test_w2vbert_features(engine, clip: str):
    ours, length = engine_output(engine, clip, "w2vbert")
    ref, ref_length = w2vbert_features(torch.from_numpy(read_wav(clip_path(engine, clip))))
    assert ours.shape == (1, *ref.shape) and length == ref_length
    abs_err, rel_err = errors(ours[0], ref.numpy())
    print(f"w2vbert {clip} {tuple(ours.shape)} length {length}: max abs {abs_err:.3g}, rel {rel_err:.3g}")
    assert abs_err < 2e-4


@needs_tsx
@pytest.mark.parametrize("clip", CLIPS)
def test_sslam_features(engine, clip: str):
    ours, length = engine_output(engine, clip, "sslam")
    ref, ref_length = sslam_features(torch.from_numpy(read_wav(clip_path(engine, clip))))
    assert ours.shape == (1, *ref.shape) and length == ref_length
    abs_err, rel_err = errors(ours[0], ref.numpy())
    real_abs, real_rel = errors(ours[0, :length], ref.numpy()[:length])
    print(f"sslam {clip} {tuple(ours.shape)} length {length}: max abs {abs_err:.3g}, rel {rel_err:.3g} "
          f"(real frames: {real_abs:.3g}, {real_rel:.3g})")
    assert np.array_equal(ours[0, length:], ref.numpy()[length:])  # padding frames: the same constant
    assert rel_err < 2e-5


@needs_tsx
@pytest.mark.parametrize("clip", CLIPS)
def test_muq_features(engine, clip: str):
    ours, length = engine_output(engine, clip, "muq")
    wave16k = torch.from_numpy(read_wav(clip_path(engine, clip)))
    ref, ref_length = muq_features(wave16k)
    assert ours.shape == (1, *ref.shape) and length == ref_length
    assert not ours[0, length:].any()  # zero padding to a multiple of 30 s
    abs_err, rel_err = errors(ours[0], ref.numpy())
    exact = sinc_resample_reference(wave16k).numpy()
    abs64, rel64 = errors(ours[0, :length], exact)
    print(f"muq {clip} {tuple(ours.shape)} length {length}: vs torchaudio max abs {abs_err:.3g}, rel {rel_err:.3g}; "
          f"vs float64 reference max abs {abs64:.3g}, rel {rel64:.3g}")
    assert rel_err < 1e-6 and rel64 < 1e-6


@needs_tsx
def test_engine_constants_are_the_reference_specs(engine):
    out, _ = engine
    assert json.loads((out / "engine_specs.json").read_text()) == {kind: make() for kind, make in FEATURE_SPECS.items()}


def test_specs_are_valid_format_2_feature_specs():
    schema = json.loads((REPO / "models" / "manifest.v2.schema.json").read_text())
    features_schema = {**schema["$defs"]["encoder"]["properties"]["features"], "$defs": schema["$defs"]}
    if "$schema" in schema:
        features_schema["$schema"] = schema["$schema"]
    for kind, make in FEATURE_SPECS.items():
        spec = make()
        jsonschema.validate(spec, features_schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**spec, "splitFrames": 0}, features_schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**spec, "unknown": 1}, features_schema)
        broken = dict(spec)
        del broken["scope"]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, features_schema)
