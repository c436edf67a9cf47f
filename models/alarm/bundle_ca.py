"""Write a fused ALARM (ALARM-CA) bundle in format 2 (docs/bundle-format-2.md, "Fused ALARM
(ALARM-CA) in format 2" and "As built for ALARM-CA"):

    manifest.json, tokenizer.json, tokenizer_config.json, preprocessor_config.json (Whisper's)
    audio_boundaries.f32                          [2, D] float32 LE: audio_start_emb, audio_end_emb
    onnx/encoder_{whisper,w2vbert,sslam}{,_q4}.onnx   encoder.<enc>   one chunk's features -> encoder_out
    onnx/encoder_muq.onnx                         encoder.muq     fp32 in every variant (see below)
    onnx/adapter_{whisper,w2vbert,sslam,muq}{,_q4}.onnx   adapter.<enc>   frames -> adapted
    onnx/connector{,_q4}.onnx                     connector       adapted_<enc>..., main_length -> audio_tokens
    onnx/embed_tokens{,_q4,...}.onnx, onnx/decoder_model_merged{,_q4,...}.onnx   as the single-encoder bundle

The LLM graphs (and the tied head sharing embed_tokens' table) are bundle.write_graphs'; fp16 /
int4f16 reuse the fp32 / int4 audio graphs as there. encoder.muq exists in fp32 only (the int4
pass cannot take its front end's DFT basis and filter bank, which must stay fp32 anyway): the
int4 variant lists the fp32 file, and its note says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Sequence

from salmonn.bundle import AUDIO_PRECISION, SUFFIX, WHISPER_PREPROCESSOR, _save_graph, list_files
from salmonn.onnx_decoder import MAX_TENSOR_BYTES

from . import muq, sslam, w2vbert
from .bundle import (BOUNDARIES_FILE, TESTED, AlarmBundleInfo, _graph_entry, boundaries_bytes, build_manifest,
                     check_manifest, pipeline_section, write_graphs)
from .checkpoints import AlarmReference
from .export import ADAPTER_INPUT, ADAPTER_OUTPUT
from .export_ca import FP32_ONLY_ENCODERS, adapter_input_width, encoder_precision, export_adapter, export_connector, export_encoder
from .export_fusion import LENGTH_INPUT, FUSION_OUTPUT, fusion_input_name
from .export_muq import FRAME_MASK, INPUT_VALUES
from .feature_specs import muq_feature_spec, sslam_feature_spec, w2vbert_feature_spec
from .fusion import CrossAttentionFusion
from .model import AlarmAudio

# the manifest's encoder order: Whisper (the main encoder) first, then as the doc's table
ENCODER_ORDER = ("whisper", "w2vbert", "sslam", "muq")
ENCODER_TYPES = {"whisper": "whisper", "w2vbert": "w2v-bert", "sslam": "sslam", "muq": "muq"}
VARIANT_NOTES_CA = {
    "fp32": "All weights float32.",
    "int4": "int4 MatMulNBits (block 32) for every Linear (the connector's attention in_proj_weight too), "
            "the LM head and the embedding table; convolutions, norms and the boundary vectors stay fp32. "
            "encoder.muq stays fp32 (the same file as the fp32 variant): its mel front end's DFT basis and "
            "filter bank are not Linears and must stay fp32.",
    "fp16": "LLM (embed_tokens, decoder) in fp16 with a float16 KV cache; the audio side is the fp32 files. "
            "Verified on the wasm CPU backend only.",
    "int4f16": "LLM int4 with fp16 activations and scales, float16 KV cache; the audio side is the int4 files "
               "(encoder.muq: fp32). Verified on the wasm CPU backend only.",
}


def graph_file(key: str) -> str:
    """`encoder.w2vbert` -> `encoder_w2vbert`; `connector` -> `connector`."""
    return key.replace(".", "_")


def audio_graph_keys(audio: AlarmAudio) -> List[str]:
    """Every encoder's graph, the adapters that have one (not ALARM-P's identity ones), the connector."""
    adapters = [e for e in ENCODER_ORDER if audio.adapters[e].cfg.adapter_name != "identity"]
    return [f"encoder.{e}" for e in ENCODER_ORDER] + [f"adapter.{e}" for e in adapters] + ["connector"]


def encoder_sections(audio: AlarmAudio, whisper_entry: dict) -> List[dict]:
    """pipeline.encoders: Whisper's entry from the single-encoder writer plus its chunk and
    real-frame rule, then w2vbert, sslam, muq."""
    cfgs = audio.encoder_configs
    whisper = {**whisper_entry, "chunkSeconds": 30.0, "realFrames": {"from": "melFrames", "divisor": 2}}
    w, s, m = cfgs["w2vbert"], cfgs["sslam"], cfgs["muq"]
    out = {"whisper": whisper}
    out["w2vbert"] = {
        "name": "w2vbert", "type": "w2v-bert", "features": w2vbert_feature_spec(),
        "architecture": {"inputChannels": w.feature_projection_input_dim, "width": w.hidden_size,
                         "layers": w.num_hidden_layers, "heads": w.num_attention_heads, "ffnDim": w.intermediate_size,
                         "leftPositions": w.left_max_position_embeddings,
                         "rightPositions": w.right_max_position_embeddings,
                         "convKernel": w.conv_depthwise_kernel_size, "maxInputFrames": w2vbert.CHUNK_FRAMES},
        "input": "input_features", "output": "encoder_out",
        "frameSeconds": 0.02, "chunkSeconds": 30.0, "realFrames": {"from": "featureFrames", "divisor": 1},
    }
    out["sslam"] = {
        "name": "sslam", "type": "sslam", "features": sslam_feature_spec(),
        "architecture": {"numMelBins": s.mel_bins, "inputFrames": sslam.CHUNK_FRAMES,
                         "outputFrames": sslam.CHUNK_FRAMES // s.patch_size * (s.mel_bins // s.patch_size),
                         "width": s.embed_dim, "layers": s.depth, "heads": s.num_heads, "patchSize": s.patch_size},
        "input": "input_features", "output": "encoder_out",
        "frameSeconds": 0.02, "chunkSeconds": sslam.CHUNK_FRAMES / 100, "realFrames": {"from": "fbankFrames", "divisor": 2},
    }
    out["muq"] = {
        "name": "muq", "type": "muq", "features": muq_feature_spec(),
        "architecture": {"inputSamples": muq.CHUNK_SAMPLES, "outputFrames": muq.chunk_frames(muq.CHUNK_SAMPLES),
                         "nFft": muq.N_FFT, "hopLength": m.hop_length, "numMelBins": muq.N_MELS,
                         "convDim": m.conv_dim, "width": m.encoder_dim, "layers": m.encoder_depth,
                         "heads": m.num_attention_heads, "ffnDim": m.intermediate_size},
        "input": INPUT_VALUES, "maskInput": FRAME_MASK, "output": "encoder_out",
        "frameSeconds": muq.SAMPLES_PER_FRAME / muq.SAMPLE_RATE, "chunkSeconds": muq.CHUNK_SECONDS,
        "sampleRate": muq.SAMPLE_RATE, "realFrames": {"from": "samples", "divisor": muq.SAMPLES_PER_FRAME},
    }
    for name in ("w2vbert", "sslam", "muq"):
        entry = out[name]
        entry["hiddenLayers"] = list(audio.adapters[name].cfg.audio_encoder_layers)
        entry["outputWidth"] = adapter_input_width(audio, name)
    return [out[name] for name in ENCODER_ORDER]


def adapter_sections(audio: AlarmAudio, width: int, only: Sequence[str] = ENCODER_ORDER) -> List[dict]:
    """The adapter entries with a graph (conv downsampler, mlp) of the encoders `only`."""
    out = []
    for name in only:
        a = audio.adapters[name].cfg
        conv = a.adapter_name == "downsampler_conformer"
        details = ({"norm": a.norm_type, "depth": a.downsampler_depth, "llmProj": a.use_llm_proj} if conv
                   else {"hidden": a.hidden_dim, "llmProj": a.use_llm_proj})
        out.append({"encoder": name, "type": "conv-downsampler" if conv else "mlp", "graph": f"adapter.{name}",
                    "input": ADAPTER_INPUT, "output": ADAPTER_OUTPUT,
                    "downsample": 2 ** a.downsampler_depth if conv else 1, "width": width, "details": details})
    return out


def fusion_section(audio: AlarmAudio, width: int) -> dict:
    f = audio.fusion.cfg
    return {
        "type": "cross-attention", "scope": "recording", "graph": "connector", "mainEncoder": f.main_encoder,
        "inputs": {e: fusion_input_name(e) for e in f.encoders}, "lengthInput": LENGTH_INPUT,
        "output": FUSION_OUTPUT, "width": width,
        "details": {"hidden": f.hidden_dim, "ffn": f.ffn_dims, "heads": f.num_attention_heads,
                    "layers": ",".join(str(n) for n in f.num_hidden_layers), "order": ",".join(f.conditional_encoders)},
        "tokens": {"perSecond": 25, "from": "adapterLengths", "min": 1},
    }


def fused_pipeline_section(ref: AlarmReference, max_positions: int) -> dict:
    single = pipeline_section(ref, max_positions)  # Whisper's encoder entry, boundaries, llm, lora
    width = ref.decoder.config.hidden_size
    return {
        "encoders": encoder_sections(ref.audio, single["encoders"][0]),
        "adapters": adapter_sections(ref.audio, width),
        "fusion": fusion_section(ref.audio, width),
        "audioBoundaries": single["audioBoundaries"],
        "llm": single["llm"],
        "lora": None,
    }


def write_audio_graphs(audio: AlarmAudio, out: Path, precision: str, done: Dict[str, dict]) -> dict:
    """The audio graphs of one audio precision; encoders kept fp32 reuse `done` (fp32's entries)."""
    graphs: dict = {}
    for key in audio_graph_keys(audio):
        kind, _, name = key.partition(".")
        if kind == "encoder" and encoder_precision(name, precision) != precision and key in done:
            graphs[key] = done[key]
            continue
        if kind == "encoder":
            model = export_encoder(audio, name, precision)
        elif kind == "adapter":
            model = export_adapter(audio, name, precision)
        else:
            model = export_connector(audio, precision)
        suffix = SUFFIX[encoder_precision(name, precision) if kind == "encoder" else precision]
        path = out / "onnx" / f"{graph_file(key)}{suffix}.onnx"
        graphs[key] = _graph_entry(_save_graph(model, path, False), out)
    return graphs


def write_fused_bundle(ref: AlarmReference, out: Path, info: AlarmBundleInfo, tokenizer_dir: Path,
                       precisions: Sequence[str], max_positions: int, notes: Dict[str, str],
                       pipeline: Callable[[AlarmReference, int], dict], *,
                       max_tensor_bytes: int = MAX_TENSOR_BYTES) -> dict:
    """Export a fused model (ALARM-CA, or ALARM-P through alarm/bundle_p.py) into `out` (emptied
    first) and write manifest.json with `pipeline(ref, max_positions)` and the variants' `notes`."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer_dir / name, out / name)
    preprocessor = {**WHISPER_PREPROCESSOR, "feature_size": ref.audio.whisper_cfg.num_mel_bins}
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2, sort_keys=True) + "\n")
    (out / BOUNDARIES_FILE).write_bytes(boundaries_bytes(ref.audio))

    audio_by_precision: Dict[str, dict] = {}
    variants = {}
    for precision in precisions:
        if precision not in SUFFIX:
            raise ValueError(f"unknown precision {precision!r}; expected one of {sorted(SUFFIX)}")
        audio_precision = AUDIO_PRECISION[precision]
        if audio_precision not in audio_by_precision:
            fp32 = audio_by_precision.get("fp32", {})
            audio_by_precision[audio_precision] = write_audio_graphs(ref.audio, out, audio_precision, fp32)
        graphs = write_graphs(ref, out, precision, max_positions, max_tensor_bytes=max_tensor_bytes,
                              audio_graphs=audio_by_precision[audio_precision])
        variants[precision] = {"tested": TESTED[precision], "note": notes[precision], "graphs": graphs}
    manifest = build_manifest(ref, info, variants, max_positions)
    manifest["pipeline"] = pipeline(ref, max_positions)
    manifest["files"] = list_files(out)
    check_manifest(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def write_bundle_ca(ref: AlarmReference, out: Path, info: AlarmBundleInfo, tokenizer_dir: Path,
                    precisions: Sequence[str], max_positions: int, *,
                    max_tensor_bytes: int = MAX_TENSOR_BYTES) -> dict:
    """Export everything into `out` (emptied first) and write manifest.json; returns the manifest."""
    if not isinstance(ref.audio.fusion, CrossAttentionFusion) or set(ref.audio.cfg.encoders) != set(ENCODER_ORDER):
        raise ValueError(f"not an ALARM-CA model: encoders {list(ref.audio.cfg.encoders)}, "
                         f"fusion {ref.audio.cfg.fusion_type!r}")
    return write_fused_bundle(ref, out, info, tokenizer_dir, precisions, max_positions, VARIANT_NOTES_CA,
                              fused_pipeline_section, max_tensor_bytes=max_tensor_bytes)


__all__ = ["write_bundle_ca", "fused_pipeline_section", "FP32_ONLY_ENCODERS"]
