"""Write a Hark bundle: ONNX graphs per precision, tokenizer, feature config and `manifest.json`.

A bundle is plain static files (any static server or a Hugging Face model repo can host it):

    manifest.json                 everything the runtime needs, incl. each file's size and SHA-256
    tokenizer.json, tokenizer_config.json, preprocessor_config.json
    onnx/speech_encoder{,_q4}.onnx     Whisper encoder      input_features -> speech_embeds
    onnx/audio_encoder{,_q4}.onnx      BEATs encoder        fbank -> audio_embeds
    onnx/connector{,_q4}.onnx          window Q-Former      speech_embeds + audio_embeds -> audio_tokens
    onnx/embed_tokens{,_fp16,_q4,_q4f16}.onnx          token embedding   input_ids -> inputs_embeds
    onnx/decoder_model_merged{,_fp16,_q4,_q4f16}.onnx (+ .onnx_data)  LLaMA + LoRA with KV cache
    onnx/decoder_probe{,_q4}.onnx      steering probe (localization; opened only when used)

File suffixes follow transformers.js ('' fp32, '_fp16' fp16, '_q4' int4, '_q4f16' int4 with fp16
compute). The fp16 variants change only the LLM graphs: the audio side (speech encoder, audio
encoder, connector) stays fp32 compute, because fp16 overflows audio encoders (a known WebGPU
issue), so variant fp16 points at the fp32 audio files and int4f16 at the int4 ones
(MatMulNBits with fp32 activations); no file is written twice.

Localization (models/salmonn/localize.py): the decoder also outputs the residual entering the
first probed layer (`probe_hidden`), and each variant names a `probe` graph of the probed layers:
fp32 weights for fp32/fp16, int4 for int4/int4f16 (the fp16 variants reuse those files). The
manifest's `localization` holds the method's defaults.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import jsonschema
import onnx

from .checkpoints import ReferenceModules
from .export import export_audio_encoder, export_connector, export_speech_encoder
from .localize import FOCUS_INSTRUCTION, NEUTRAL_INSTRUCTION, LocalizeOptions, default_layers
from .onnx_decoder import MAX_TENSOR_BYTES, build_decoder_model, build_embed_graph, save_model
from .onnx_probe import build_probe_model

FORMAT_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "manifest.schema.json"
SUFFIX = {"fp32": "", "fp16": "_fp16", "int4": "_q4", "int4f16": "_q4f16"}
# Precision of the audio-side graphs (speech encoder, audio encoder, connector) per variant.
AUDIO_PRECISION = {"fp32": "fp32", "fp16": "fp32", "int4": "int4", "int4f16": "int4"}
AUDIO_GRAPHS = ("speechEncoder", "audioEncoder", "connector")
# Precision of the steering probe per variant (fp32 activations always; see onnx_probe.py).
PROBE_PRECISION = {"fp32": "fp32", "fp16": "fp32", "int4": "int4", "int4f16": "int4"}
VARIANT_NOTES = {
    "fp32": "All weights float32.",
    "int4": "int4 MatMulNBits (block 32) for every Linear; LoRA, norms and convolutions stay fp32.",
    "fp16": ("LLM (embed_tokens, decoder) in fp16: fp16 weights and compute, float16 KV cache; "
             "the audio side stays fp32 (the fp32 files). fp16 compute needs shader-f16; "
             "verified on the wasm CPU backend only, not yet on a WebGPU GPU."),
    "int4f16": ("LLM int4 MatMulNBits (block 32) with fp16 activations and fp16 scales, float16 KV cache; "
                "the audio side is the int4 variant's (fp32 activations). fp16 compute needs shader-f16; "
                "verified on the wasm CPU backend only, not yet on a WebGPU GPU."),
}
# Variants whose graphs this converter checks on every target it ships for (WebGPU included).
TESTED = {"fp32": True, "int4": True, "fp16": False, "int4f16": False}
GRAPH_FILES = {
    "speechEncoder": "speech_encoder",
    "audioEncoder": "audio_encoder",
    "connector": "connector",
    "embedTokens": "embed_tokens",
    "decoder": "decoder_model_merged",
    "probe": "decoder_probe",
}
# Encoders and connector keep weights inside the .onnx unless they are big; browsers cap one
# ArrayBuffer at ~2 GB and protobuf at 2 GB, so large graphs move weights to 1 GiB data files.
EMBEDDED_LIMIT_BYTES = 512 << 20

# SALMONN's decode config (configs/decode_config.yaml); sampling knobs are Hark's UI defaults.
SALMONN_GENERATION = {
    "maxNewTokens": 200, "numBeams": 4, "doSample": False, "temperature": 1.0, "topP": 0.9, "topK": 0,
    "repetitionPenalty": 1.0, "lengthPenalty": 1.0,
}
WHISPER_PREPROCESSOR = {
    "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 80,
    "hop_length": 160, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right",
    "padding_value": 0.0, "processor_class": "WhisperProcessor", "return_attention_mask": False,
    "sampling_rate": 16000,
}


@dataclass(frozen=True)
class BundleInfo:
    name: str
    label: str
    description: str
    random_weights: bool
    source: Mapping[str, str]
    # Overrides of SALMONN_GENERATION (the tiny test bundle decodes with one beam by default).
    generation: Mapping[str, object] = field(default_factory=dict)
    # The manifest's `reasoning` section (a reasoning LLM's markers and thinking budget; see
    # salmonn/reasoning.py and ReasoningTemplate.to_manifest); None: the model answers directly.
    reasoning: Optional[Mapping[str, object]] = None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def _save_graph(model: onnx.ModelProto, path: Path, always_external: bool) -> list[Path]:
    external = always_external or _initializer_bytes(model) > EMBEDDED_LIMIT_BYTES
    return save_model(model, path, external_data=external)


def probe_layers(ref: ReferenceModules) -> tuple[int, ...]:
    """The layers localization probes (consecutive; see localize.default_layers)."""
    return default_layers(ref.configs.llama.num_hidden_layers)


def localization_defaults(ref: ReferenceModules) -> dict:
    """The manifest's `localization`: the method's defaults (localize.LocalizeOptions)."""
    options = LocalizeOptions(layers=probe_layers(ref))
    return {
        "layers": list(options.layers), "alpha": options.alpha, "widthSeconds": options.width_seconds,
        "smoothTokens": options.smooth_tokens, "focusInstruction": FOCUS_INSTRUCTION,
        "neutralInstruction": NEUTRAL_INSTRUCTION,
    }


def write_graphs(ref: ReferenceModules, out: Path, precision: str, max_positions: int, *,
                 max_tensor_bytes: int = MAX_TENSOR_BYTES, audio_graphs: Mapping[str, dict] | None = None,
                 probe_graph: dict | None = None) -> dict:
    """Export one precision's graphs into out/onnx; returns the manifest's graph table.

    The audio side (speech encoder, audio encoder, connector) is exported in
    AUDIO_PRECISION[precision] under that precision's suffix, unless `audio_graphs` (a graph table
    already written for that audio precision) is given: then its entries are reused as they are.
    Likewise the probe in PROBE_PRECISION[precision], unless `probe_graph` is given.
    max_tensor_bytes: passed to the LLM graph builders (no initializer larger; see onnx_decoder).
    """
    onnx_dir = out / "onnx"
    suffix = SUFFIX[precision]
    audio_precision = AUDIO_PRECISION[precision]
    llm_state = ref.llm.state_dict()
    models = {}
    if audio_graphs is None:
        models.update({
            "speechEncoder": (export_speech_encoder(ref.whisper, audio_precision), SUFFIX[audio_precision]),
            "audioEncoder": (export_audio_encoder(ref.beats, audio_precision), SUFFIX[audio_precision]),
            "connector": (export_connector(ref.connector, audio_precision), SUFFIX[audio_precision]),
        })
    models["embedTokens"] = (build_embed_graph(llm_state["model.embed_tokens.weight"], precision,
                                               max_tensor_bytes=max_tensor_bytes), suffix)
    layers = probe_layers(ref)
    models["decoder"] = (build_decoder_model(
        ref.configs.llama, llm_state, precision,
        lora_default_scale=ref.configs.lora.scaling, max_positions=max_positions, max_tensor_bytes=max_tensor_bytes,
        probe_layer=layers[0],
    ), suffix)
    if probe_graph is None:
        probe_precision = PROBE_PRECISION[precision]
        models["probe"] = (build_probe_model(ref.configs.llama, llm_state, layers[0], layers[-1], precision=probe_precision,
                                             max_positions=max_positions), SUFFIX[probe_precision])
    graphs = {key: dict(audio_graphs[key]) for key in AUDIO_GRAPHS} if audio_graphs is not None else {}
    if probe_graph is not None:
        graphs["probe"] = dict(probe_graph)
    for key, (model, file_suffix) in models.items():
        path = onnx_dir / f"{GRAPH_FILES[key]}{file_suffix}.onnx"
        written = _save_graph(model, path, always_external=(key == "decoder"))
        graphs[key] = {"path": f"onnx/{path.name}", "externalData": [p.name for p in written[1:]]}
    return {key: graphs[key] for key in GRAPH_FILES}


def architecture(ref: ReferenceModules, max_positions: int) -> dict:
    c = ref.configs
    return {
        "speechEncoder": {
            "type": "whisper", "numMelBins": c.whisper.num_mel_bins, "inputFrames": c.whisper.input_frames,
            "outputFrames": c.whisper.max_source_positions, "width": c.whisper.d_model,
            "layers": c.whisper.encoder_layers, "heads": c.whisper.encoder_attention_heads,
            "ffnDim": c.whisper.encoder_ffn_dim,
        },
        "audioEncoder": {
            "type": "beats", "numMelBins": 128, "patchSize": c.beats.input_patch_size,
            "width": c.beats.encoder_embed_dim, "layers": c.beats.encoder_layers,
            "heads": c.beats.encoder_attention_heads, "ffnDim": c.beats.encoder_ffn_embed_dim,
        },
        "connector": {
            "type": "window-qformer", "hidden": c.connector.qformer_hidden, "layers": c.connector.qformer_layers,
            "heads": c.connector.qformer_heads, "ffnDim": c.connector.qformer_ffn,
            "windowFrames": c.connector.window_frames, "strideFrames": c.connector.stride_frames,
            "tokensPerChunk": (c.whisper.max_source_positions - c.connector.window_frames) // c.connector.stride_frames + 1,
            "outputWidth": c.connector.llm_hidden,
        },
        "llm": {
            "type": "llama", "vocabSize": c.llama.vocab_size, "hiddenSize": c.llama.hidden_size,
            "intermediateSize": c.llama.intermediate_size, "numLayers": c.llama.num_hidden_layers,
            "numHeads": c.llama.num_attention_heads, "numKvHeads": c.llama.num_key_value_heads,
            "headDim": c.llama.head_dim, "maxPositions": max_positions, "ropeTheta": float(c.llama.rope_theta),
            "rmsNormEps": float(c.llama.rms_norm_eps),
        },
        "lora": {
            "rank": c.lora.r, "alpha": float(c.lora.alpha), "defaultScale": float(c.lora.scaling),
            "targets": list(c.lora.target_modules),
        },
    }


def build_manifest(ref: ReferenceModules, info: BundleInfo, tasks: Mapping[str, str], variants: dict,
                   max_positions: int, eos_id: int, bos_id: int) -> dict:
    return {
        "format": "hark-bundle",
        "formatVersion": FORMAT_VERSION,
        "name": info.name,
        "family": "salmonn",
        "label": info.label,
        "description": info.description,
        "randomWeights": info.random_weights,
        "source": dict(info.source),
        "architecture": architecture(ref, max_positions),
        "audio": {"sampleRate": 16000, "minSeconds": 1.0, "chunkSeconds": 30.0, "encoderFrameSeconds": 0.02},
        "features": {
            "whisper": {
                "preprocessorConfig": "preprocessor_config.json", "featureSize": ref.configs.whisper.num_mel_bins,
                "samplingRate": 16000, "nFft": 400, "hopLength": 160, "chunkLength": 30,
            },
            "fbank": {
                "waveformScale": 32768.0, "numMelBins": 128, "sampleFrequency": 16000, "frameLengthMs": 25.0,
                "frameShiftMs": 10.0, "mean": 15.41663, "std": 6.55582, "stdMultiplier": 2.0,
            },
        },
        "prompt": {
            "template": "USER: {}\nASSISTANT:", "userText": "<Speech><SpeechHere></Speech> {}",
            "audioSlot": "<SpeechHere>", "bosTokenId": bos_id, "eosTokenId": eos_id,
        },
        "tasks": dict(tasks),
        "generation": {**SALMONN_GENERATION, **info.generation, "stopTokenIds": [eos_id]},
        "tokenizer": {"tokenizerJson": "tokenizer.json", "tokenizerConfig": "tokenizer_config.json"},
        "localization": localization_defaults(ref),
        **({"reasoning": dict(info.reasoning)} if info.reasoning is not None else {}),
        "variants": variants,
        "files": [],
    }


def list_files(out: Path) -> list[dict]:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    return [{"path": p.relative_to(out).as_posix(), "size": p.stat().st_size, "sha256": sha256_file(p)} for p in files]


def validate_manifest(manifest: dict) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(manifest, schema)
    paths = {f["path"] for f in manifest["files"]}
    for variant, spec in manifest["variants"].items():
        for key, graph in spec["graphs"].items():
            folder = graph["path"].rsplit("/", 1)[0] + "/" if "/" in graph["path"] else ""
            for needed in [graph["path"], *(folder + name for name in graph["externalData"])]:
                if needed not in paths:
                    raise ValueError(f"variant {variant}: {key} needs {needed}, which is not in the file list")


def write_bundle(ref: ReferenceModules, out: Path, info: BundleInfo, tasks: Mapping[str, str],
                 tokenizer_dir: Path, precisions: Sequence[str], max_positions: Optional[int] = None, *,
                 max_tensor_bytes: int = MAX_TENSOR_BYTES) -> dict:
    """Export everything into `out` (emptied first) and write a validated manifest.json.

    max_positions: the longest context (rotary cache rows, the manifest's maxPositions); default:
    the LLM checkpoint's own `max_position_embeddings` (4096 for Vicuna-7B v1.5, 2048 for 13B v1.1).

    precisions: any of fp32, int4, fp16, int4f16 (manifest variants in this order). fp16/int4f16
    reuse the fp32/int4 audio graphs (written once, also when fp32/int4 itself is not listed).
    """
    max_positions = max_positions or ref.configs.llama.max_position_embeddings
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer_dir / name, out / name)
    tokenizer_config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    vocab = json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"]
    bos_id, eos_id = vocab[tokenizer_config["bos_token"]], vocab[tokenizer_config["eos_token"]]
    preprocessor = {**WHISPER_PREPROCESSOR, "feature_size": ref.configs.whisper.num_mel_bins}
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2, sort_keys=True) + "\n")

    variants = {}
    audio_by_precision: dict[str, dict] = {}
    probe_by_precision: dict[str, dict] = {}
    for precision in precisions:
        if precision not in SUFFIX:
            raise ValueError(f"unknown precision {precision!r}; expected one of {sorted(SUFFIX)}")
        graphs = write_graphs(ref, out, precision, max_positions, max_tensor_bytes=max_tensor_bytes,
                              audio_graphs=audio_by_precision.get(AUDIO_PRECISION[precision]),
                              probe_graph=probe_by_precision.get(PROBE_PRECISION[precision]))
        audio_by_precision.setdefault(AUDIO_PRECISION[precision], {key: graphs[key] for key in AUDIO_GRAPHS})
        probe_by_precision.setdefault(PROBE_PRECISION[precision], graphs["probe"])
        variants[precision] = {"tested": TESTED[precision], "note": VARIANT_NOTES[precision], "graphs": graphs}

    manifest = build_manifest(ref, info, tasks, variants, max_positions, eos_id, bos_id)
    manifest["files"] = list_files(out)
    validate_manifest(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest
