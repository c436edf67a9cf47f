"""Write an ALARM-P bundle in format 2 (docs/bundle-format-2.md, "ALARM-P in format 2"): ALARM-CA's
files and writer (alarm/bundle_ca.py) with what differs after the encoders:

    onnx/adapter_whisper{,_q4}.onnx   adapter.whisper   the only adapter graph: the conditional
                                      encoders' identity adapters are the layer average already
                                      folded into encoder.<enc>, listed without a graph
    onnx/connector{,_q4}.onnx         connector         the perceivers (alarm/export_perceiver.py):
                                      adapted_whisper, adapted_<enc> (real frames) -> audio_tokens

The manifest's fusion is `type: "perceiver"` with no lengthInput; its tokens rule is "mainLength":
the LLM reads leading + floor(Whisper's realFrames / 2) rows, leading = 2 + sum(num_latents).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from salmonn.onnx_decoder import MAX_TENSOR_BYTES

from .bundle import AlarmBundleInfo, pipeline_section
from .bundle_ca import ENCODER_ORDER, adapter_sections, encoder_sections, write_fused_bundle
from .checkpoints import AlarmReference
from .export_fusion import FUSION_OUTPUT, fusion_input_name
from .model import AlarmAudio
from .perceiver import MultiPerceiverFusion

VARIANT_NOTES_P = {
    "fp32": "All weights float32.",
    "int4": "int4 MatMulNBits (block 32) for every Linear (the perceivers' shared blocks packed once), the LM "
            "head and the embedding table; convolutions, norms, the latent queries and the boundary vectors stay "
            "fp32. encoder.muq stays fp32 (the same file as the fp32 variant): its mel front end's DFT basis and "
            "filter bank are not Linears and must stay fp32.",
    "fp16": "LLM (embed_tokens, decoder) in fp16 with a float16 KV cache; the audio side is the fp32 files. "
            "Verified on the wasm CPU backend only.",
    "int4f16": "LLM int4 with fp16 activations and scales, float16 KV cache; the audio side is the int4 files "
               "(encoder.muq: fp32). Verified on the wasm CPU backend only.",
}


def _perceiver(audio: AlarmAudio) -> MultiPerceiverFusion:
    fusion = audio.fusion
    if not isinstance(fusion, MultiPerceiverFusion) or set(audio.cfg.encoders) != set(ENCODER_ORDER):
        raise ValueError(f"not an ALARM-P model: encoders {list(audio.cfg.encoders)}, fusion {audio.cfg.fusion_type!r}")
    return fusion


def p_adapter_sections(audio: AlarmAudio, width: int, encoders: List[dict]) -> List[dict]:
    """Whisper's conv adapter as ALARM-CA's; identity adapters: no graph, the encoder's width."""
    conv = {a["encoder"]: a for a in adapter_sections(audio, width, only=("whisper",))}
    out_widths = {e["name"]: e["outputWidth"] for e in encoders}
    out = []
    for name in ENCODER_ORDER:
        cfg = audio.adapters[name].cfg
        if cfg.adapter_name == "identity" and not cfg.use_llm_proj:
            out.append({"encoder": name, "type": "identity", "downsample": 1, "width": out_widths[name]})
        elif name in conv:
            out.append(conv[name])
        else:
            raise ValueError(f"adapter {name!r} ({cfg.adapter_name}) is not one of ALARM-P's")
    return out


def p_fusion_section(audio: AlarmAudio, width: int) -> dict:
    f = _perceiver(audio).cfg
    per = [c for _, c in f.conditional]

    def joined(values: Sequence[object]) -> str:
        return ",".join(str(v) for v in values)

    return {
        "type": "perceiver", "scope": "recording", "graph": "connector", "mainEncoder": f.main_encoder,
        "inputs": {e: fusion_input_name(e) for e in f.encoders}, "output": FUSION_OUTPUT, "width": width,
        "details": {"latents": joined(c.num_latents for c in per), "latentWidth": joined(c.latent_dim for c in per),
                    "crossHeads": joined(c.cross_heads for c in per), "selfHeads": joined(c.self_heads for c in per),
                    "blocks": joined(c.self_blocks for c in per),
                    "layersPerBlock": joined(c.layers_per_block for c in per),
                    "order": joined(f.conditional_encoders)},
        "tokens": {"perSecond": 25, "from": "mainLength", "leading": f.leading_rows, "min": 0},
    }


def p_pipeline_section(ref: AlarmReference, max_positions: int) -> dict:
    single = pipeline_section(ref, max_positions)  # Whisper's encoder entry, boundaries, llm, lora
    width = ref.decoder.config.hidden_size
    encoders = encoder_sections(ref.audio, single["encoders"][0])
    return {
        "encoders": encoders,
        "adapters": p_adapter_sections(ref.audio, width, encoders),
        "fusion": p_fusion_section(ref.audio, width),
        "audioBoundaries": single["audioBoundaries"],
        "llm": single["llm"],
        "lora": None,
    }


def write_bundle_p(ref: AlarmReference, out: Path, info: AlarmBundleInfo, tokenizer_dir: Path,
                   precisions: Sequence[str], max_positions: int, *,
                   max_tensor_bytes: int = MAX_TENSOR_BYTES) -> dict:
    """Export everything into `out` (emptied first) and write manifest.json; returns the manifest."""
    _perceiver(ref.audio)
    return write_fused_bundle(ref, out, info, tokenizer_dir, precisions, max_positions, VARIANT_NOTES_P,
                              p_pipeline_section, max_tensor_bytes=max_tensor_bytes)


__all__ = ["write_bundle_p", "p_pipeline_section"]
