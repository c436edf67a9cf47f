"""The manifest feature specs (format 2, docs/bundle-format-2.md "Recording-scoped features") of
ALARM-CA's w2v-BERT, SSLAM and MuQ encoders: what a bundle declares so that the engine's
src/engine/features/ compute exactly `w2vbert_features`, `sslam_features` and `muq_features`.

Each number comes from the reference module's constants (whose docstrings cite ALARM's and the
encoders' public sources); nothing is restated here except the names the engine reads:

* seamless-fbank (w2vbert.py): facebook/w2v-bert-2.0's preprocessor_config.json (80 mel bins,
  stride 2, padding_value 1), ALARM's 160 zero samples on both sides, 1500 stacked frames per
  encoder piece (ALARM's max_time 30 s x frame_rate 50).
* kaldi-fbank-recording (sslam.py): torchaudio Kaldi fbank with a Hann window, no 2^15 scale,
  25 ms / 10 ms frames at 16 kHz, 128 bins, waveform mean removed, 160 zero samples each side,
  log-mel padded to a multiple of 1024 frames, (x + 4.268) / (2 * 4.569); 1024 frames per piece.
* resampled-waveform (muq.py): torchaudio Resample(16000, 24000) defaults (lowpass_filter_width
  6, rolloff 0.99, Hann-windowed sinc), zeros to a multiple of 720000 samples (30 s); 720000
  samples per piece.
"""

from __future__ import annotations

from typing import Any, Dict

from . import muq, sslam, w2vbert

LOWPASS_FILTER_WIDTH = 6  # torchaudio.transforms.Resample's default
ROLLOFF = 0.99  # idem


def w2vbert_feature_spec() -> Dict[str, Any]:
    return {
        "type": "seamless-fbank",
        "scope": "recording",
        "splitFrames": w2vbert.CHUNK_FRAMES,
        "numMelBins": w2vbert.N_MELS,
        "samplingRate": w2vbert.SAMPLE_RATE,
        "stride": w2vbert.STRIDE,
        "paddingValue": w2vbert.PADDING_VALUE,
        "edgePadding": w2vbert.EDGE_PADDING,
    }


def sslam_feature_spec() -> Dict[str, Any]:
    return {
        "type": "kaldi-fbank-recording",
        "scope": "recording",
        "splitFrames": sslam.CHUNK_FRAMES,
        "waveformScale": 1,
        "numMelBins": sslam.NUM_MEL_BINS,
        "sampleFrequency": sslam.SAMPLE_RATE,
        "frameLengthMs": 25,
        "frameShiftMs": 10,
        "mean": sslam.NORM_MEAN,
        "std": sslam.NORM_STD,
        "stdMultiplier": 2,
        "window": "hanning",
        "removeMean": True,
        "edgePadding": sslam.EDGE_PADDING,
        "padToMultiple": sslam.CHUNK_FRAMES,
    }


def muq_feature_spec() -> Dict[str, Any]:
    return {
        "type": "resampled-waveform",
        "scope": "recording",
        "splitFrames": muq.CHUNK_SAMPLES,
        "inputRate": muq.INPUT_SAMPLE_RATE,
        "outputRate": muq.SAMPLE_RATE,
        "lowpassFilterWidth": LOWPASS_FILTER_WIDTH,
        "rolloff": ROLLOFF,
        "padToMultiple": muq.CHUNK_SAMPLES,
    }


FEATURE_SPECS = {"w2vbert": w2vbert_feature_spec, "sslam": sslam_feature_spec, "muq": muq_feature_spec}
