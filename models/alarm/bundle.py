"""Write an ALARM bundle in format 2 (docs/bundle-format-2.md): graphs per precision, the audio
boundary vectors, the Qwen3 tokenizer, the Whisper feature config and `manifest.json`.

    manifest.json, tokenizer.json, tokenizer_config.json, preprocessor_config.json
    audio_boundaries.f32                     [2, D] float32 LE: audio_start_emb, audio_end_emb
    onnx/encoder_whisper{,_q4}.onnx          encoder.whisper   input_features -> encoder_out
    onnx/adapter_whisper{,_q4}.onnx          adapter.whisper   frames -> adapted
    onnx/embed_tokens{,_fp16,_q4,_q4f16}.onnx            embedTokens  input_ids -> inputs_embeds
    onnx/decoder_model_merged{,_fp16,_q4,_q4f16}.onnx (+ .onnx_data)   decoder (Qwen3, KV cache)

As for SALMONN (salmonn/bundle.py), fp16/int4f16 change only the LLM graphs and reuse the fp32 /
int4 audio graphs.

Tied LM head: Qwen3's head is its embedding table, and ALARM's embed_tokens (which embedTokens
holds) is a frozen copy of it. When the two are equal and the table is one tensor (not split for
max_tensor_bytes), the decoder stores no copy: its head reads the table's bytes from
embed_tokens{suffix}.onnx_data, which the decoder's `externalData` then lists too (int4: the
GatherBlockQuantized packing is MatMulNBits' packing of the same rows). Otherwise the decoder
holds its own copy.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from salmonn.bundle import AUDIO_PRECISION, SUFFIX, WHISPER_PREPROCESSOR, _save_graph, list_files
import onnx

from salmonn.onnx_decoder import MAX_TENSOR_BYTES, embed_table_tensors, save_model
from salmonn.reasoning import ReasoningTemplate, alarm_template
from salmonn.whisper import WhisperConfig

from .export import (ADAPTER_INPUT, ADAPTER_OUTPUT, ENCODER_INPUT, ENCODER_OUTPUT, export_embed_tokens,
                     export_qwen3_decoder, export_whisper_adapter, export_whisper_encoder)
from .checkpoints import AlarmReference
from .model import AlarmAudio
from .prompt import ASSISTANT_TURN, GENERATION_PROMPT, IM_END, IM_START, SYSTEM_PROMPT, THOUGHTS_END, system_text
from .qwen3 import STOP_IDS

FORMAT_VERSION = 2
BOUNDARIES_FILE = "audio_boundaries.f32"
AUDIO_SLOT = "<AudioHere>"
GRAPH_FILES = {
    "encoder.whisper": "encoder_whisper",
    "adapter.whisper": "adapter_whisper",
    "embedTokens": "embed_tokens",
    "decoder": "decoder_model_merged",
}
AUDIO_GRAPHS = ("encoder.whisper", "adapter.whisper")
VARIANT_NOTES = {
    "fp32": "All weights float32.",
    "int4": "int4 MatMulNBits (block 32) for every Linear, the LM head and the embedding table; "
            "convolutions, norms and the boundary vectors stay fp32.",
    "fp16": "LLM (embed_tokens, decoder) in fp16 with a float16 KV cache; the audio side is the fp32 files. "
            "Verified on the wasm CPU backend only.",
    "int4f16": "LLM int4 with fp16 activations and scales, float16 KV cache; the audio side is the int4 files. "
               "Verified on the wasm CPU backend only.",
}
TESTED = {"fp32": True, "int4": True, "fp16": False, "int4f16": False}
# ALARM decodes with the LLM's own sampling defaults (llm.get_default_sampling_params(): Qwen3-4B-
# Thinking-2507's generation_config.json) and max_tokens 8192 (src/configs/model/default_inference.yaml).
ALARM_GENERATION = {
    "maxNewTokens": 8192, "numBeams": 1, "doSample": True, "temperature": 0.6, "topP": 0.95, "topK": 20,
    "repetitionPenalty": 1.0, "lengthPenalty": 1.0,
}
# ALARM has no fixed task prompts (its prompts come with each data set); the one example question of
# its README, and a free question.
ALARM_TASKS = {"describe": AUDIO_SLOT + "Describe the audio content.", "QA": AUDIO_SLOT + "{}"}


@dataclass(frozen=True)
class AlarmBundleInfo:
    name: str
    label: str
    description: str
    random_weights: bool
    source: Mapping[str, str]
    generation: Mapping[str, object] = field(default_factory=dict)  # overrides of ALARM_GENERATION
    reasoning: ReasoningTemplate = field(default_factory=alarm_template)
    tasks: Mapping[str, str] = field(default_factory=lambda: dict(ALARM_TASKS))


def pipeline_section(ref: AlarmReference, max_positions: int) -> dict:
    w: WhisperConfig = ref.audio.whisper_cfg
    a = ref.audio.cfg.whisper_adapter
    llm = ref.decoder.config
    return {
        "encoders": [{
            "name": "whisper", "type": "whisper",
            "features": {"type": "whisper-mel", "preprocessorConfig": "preprocessor_config.json",
                         "featureSize": w.num_mel_bins, "samplingRate": 16000, "nFft": 400, "hopLength": 160,
                         "chunkLength": 30},
            "architecture": {"numMelBins": w.num_mel_bins, "inputFrames": w.input_frames,
                             "outputFrames": w.max_source_positions, "width": w.d_model,
                             "layers": w.encoder_layers, "heads": w.encoder_attention_heads,
                             "ffnDim": w.encoder_ffn_dim},
            "hiddenLayers": list(a.audio_encoder_layers),
            "input": ENCODER_INPUT, "output": ENCODER_OUTPUT, "outputWidth": a.adapter_embedding_dim,
            "frameSeconds": 0.02,
        }],
        "adapters": [{
            "encoder": "whisper", "type": "conv-downsampler", "graph": "adapter.whisper",
            "input": ADAPTER_INPUT, "output": ADAPTER_OUTPUT, "downsample": 2 ** a.downsampler_depth,
            "width": llm.hidden_size,
            "details": {"norm": a.norm_type, "depth": a.downsampler_depth, "llmProj": a.use_llm_proj},
        }],
        "fusion": {
            "type": "sum", "scope": "recording", "width": llm.hidden_size,
            "tokens": {"perSecond": 25, "from": "melFrames", "divisor": 2 * 2 ** a.downsampler_depth, "min": 1},
        },
        "audioBoundaries": {"path": BOUNDARIES_FILE, "shape": [2, llm.hidden_size]},
        "llm": {
            "type": "qwen3", "vocabSize": llm.vocab_size, "hiddenSize": llm.hidden_size,
            "intermediateSize": llm.intermediate_size, "numLayers": llm.num_hidden_layers,
            "numHeads": llm.num_attention_heads, "numKvHeads": llm.num_key_value_heads, "headDim": llm.head_dim,
            "maxPositions": max_positions, "ropeTheta": float(llm.rope_theta), "rmsNormEps": float(llm.rms_norm_eps),
            "qkNorm": True, "tieWordEmbeddings": bool(llm.tie_word_embeddings),
        },
        "lora": None,
    }


def prompt_section() -> dict:
    return {
        "template": f"{IM_START}user\n{{}}{IM_END}\n{GENERATION_PROMPT}",
        "userText": AUDIO_SLOT + "{}",
        "audioSlot": AUDIO_SLOT,
        "bosTokenId": None,
        "eosTokenId": STOP_IDS[0],
        "system": system_text(SYSTEM_PROMPT),
        # follow-ups as Qwen3's chat template writes a conversation (alarm/prompt.py)
        "history": {"generationPrompt": GENERATION_PROMPT, "assistantTurn": ASSISTANT_TURN,
                    "thoughtsEnd": THOUGHTS_END},
    }


def boundaries_bytes(audio: AlarmAudio) -> bytes:
    rows = torch.cat([audio.audio_start_emb, audio.audio_end_emb], dim=0).detach().float().numpy()
    return np.ascontiguousarray(rows, dtype="<f4").tobytes()


def _graph_entry(written: list[Path], out: Path) -> dict:
    return {"path": written[0].relative_to(out).as_posix(), "externalData": [p.name for p in written[1:]]}


def write_graphs(ref: AlarmReference, out: Path, precision: str, max_positions: int, *,
                 audio_graphs: Optional[Mapping[str, dict]] = None,
                 max_tensor_bytes: int = MAX_TENSOR_BYTES) -> dict:
    """One precision's graphs under out/onnx; the audio ones are reused from `audio_graphs` if given."""
    onnx_dir = out / "onnx"
    suffix = SUFFIX[precision]
    graphs: dict = {}
    if audio_graphs is None:
        audio_precision = AUDIO_PRECISION[precision]
        audio_suffix = SUFFIX[audio_precision]
        for key, export in (("encoder.whisper", export_whisper_encoder), ("adapter.whisper", export_whisper_adapter)):
            path = onnx_dir / f"{GRAPH_FILES[key]}{audio_suffix}.onnx"
            graphs[key] = _graph_entry(_save_graph(export(ref.audio, audio_precision), path, False), out)
    else:
        graphs.update(audio_graphs)
    embed_path = onnx_dir / f"{GRAPH_FILES['embedTokens']}{suffix}.onnx"
    embed_files = save_model(export_embed_tokens(ref.embed_tokens, precision, max_tensor_bytes), embed_path)
    graphs["embedTokens"] = _graph_entry(embed_files, out)
    shared = None
    if ref.decoder.config.tie_word_embeddings and torch.equal(ref.embed_tokens, ref.decoder.model.embed_tokens.weight):
        shared = embed_table_tensors(onnx.load(str(embed_path), load_external_data=False))
    decoder = export_qwen3_decoder(ref.decoder, precision, max_positions, max_tensor_bytes, shared_head=shared)
    graphs["decoder"] = _graph_entry(
        save_model(decoder, onnx_dir / f"{GRAPH_FILES['decoder']}{suffix}.onnx", external_data=True), out)
    if shared is not None:
        graphs["decoder"]["externalData"] += sorted({t.location for t in shared.values()})
    return graphs


def build_manifest(ref: AlarmReference, info: AlarmBundleInfo, variants: dict, max_positions: int) -> dict:
    return {
        "format": "hark-bundle",
        "formatVersion": FORMAT_VERSION,
        "name": info.name,
        "family": "alarm",
        "label": info.label,
        "description": info.description,
        "randomWeights": info.random_weights,
        "source": dict(info.source),
        "pipeline": pipeline_section(ref, max_positions),
        # ALARM pads nothing: a recording shorter than 1 s keeps its own length (its token count
        # follows from its mel frames), unlike SALMONN's 1 s minimum.
        "audio": {"sampleRate": 16000, "minSeconds": 0.0, "chunkSeconds": 30.0, "encoderFrameSeconds": 0.02},
        "prompt": prompt_section(),
        "tasks": dict(info.tasks),
        "generation": {**ALARM_GENERATION, **info.generation, "stopTokenIds": list(STOP_IDS)},
        "tokenizer": {"tokenizerJson": "tokenizer.json", "tokenizerConfig": "tokenizer_config.json"},
        "reasoning": info.reasoning.to_manifest(),
        "variants": variants,
        "files": [],
    }


def check_manifest(manifest: dict) -> None:
    """What this side can check without the runtime's format-2 schema (models/manifest.v2.schema.json,
    the engine's, is also applied when present): every graph's files are listed, the boundary file
    has the declared shape, and the prompt's template and user text hold their slots."""
    schema_path = Path(__file__).resolve().parents[1] / "manifest.v2.schema.json"
    if schema_path.is_file():
        import jsonschema

        jsonschema.validate(manifest, json.loads(schema_path.read_text()))
    sizes = {f["path"]: f["size"] for f in manifest["files"]}
    for variant, spec in manifest["variants"].items():
        for key, graph in spec["graphs"].items():
            folder = graph["path"].rsplit("/", 1)[0] + "/" if "/" in graph["path"] else ""
            for needed in [graph["path"], *(folder + name for name in graph["externalData"])]:
                if needed not in sizes:
                    raise ValueError(f"variant {variant}: {key} needs {needed}, which is not in the file list")
    boundaries = manifest["pipeline"]["audioBoundaries"]
    rows, width = boundaries["shape"]
    if sizes.get(boundaries["path"]) != rows * width * 4:
        raise ValueError(f"{boundaries['path']}: expected {rows * width * 4} bytes")
    prompt = manifest["prompt"]
    if prompt["template"].count("{}") != 1 or prompt["audioSlot"] not in prompt["userText"]:
        raise ValueError("prompt: the template needs one {} and the user text the audio slot")
    for name, text in manifest["tasks"].items():
        if prompt["audioSlot"] not in text:
            raise ValueError(f"task {name!r} has no audio slot")


def write_bundle(ref: AlarmReference, out: Path, info: AlarmBundleInfo, tokenizer_dir: Path,
                 precisions: Sequence[str], max_positions: int, *,
                 max_tensor_bytes: int = MAX_TENSOR_BYTES) -> dict:
    """Export everything into `out` (emptied first) and write manifest.json; returns the manifest."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer_dir / name, out / name)
    preprocessor = {**WHISPER_PREPROCESSOR, "feature_size": ref.audio.whisper_cfg.num_mel_bins}
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2, sort_keys=True) + "\n")
    (out / BOUNDARIES_FILE).write_bytes(boundaries_bytes(ref.audio))

    variants = {}
    audio_by_precision: dict[str, dict] = {}
    for precision in precisions:
        if precision not in SUFFIX:
            raise ValueError(f"unknown precision {precision!r}; expected one of {sorted(SUFFIX)}")
        graphs = write_graphs(ref, out, precision, max_positions, max_tensor_bytes=max_tensor_bytes,
                              audio_graphs=audio_by_precision.get(AUDIO_PRECISION[precision]))
        audio_by_precision.setdefault(AUDIO_PRECISION[precision], {k: graphs[k] for k in AUDIO_GRAPHS})
        variants[precision] = {"tested": TESTED[precision], "note": VARIANT_NOTES[precision], "graphs": graphs}
    manifest = build_manifest(ref, info, variants, max_positions)
    manifest["files"] = list_files(out)
    check_manifest(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest
