#!/usr/bin/env python3
"""Builds SALMONN's audio side at real geometry for `npm run bench -- --encoders` (time to first
token of a 30 s clip), with the converter's own module and export code.

    /usr/bin/python3 models/build_bench_encoders.py --out .bench-cache --precisions int4 [--key STAMP]

Writes `<out>/encoders/`:

    bench.json                                  geometry, files per precision, the manifest fields the
                                                engine's AudioTokenizer reads (architecture, audio)
    preprocessor_config.json                    Whisper's feature extractor config (bundle.py's)
    onnx/speech_encoder{,_q4}.onnx (+ data)     Whisper-large-v2 encoder: 32 layers, d 1280, 20 heads,
                                                80 mels x 3000 frames -> [1, 1500, 1280]
    onnx/audio_encoder{,_q4}.onnx (+ data)      BEATs iter3+: 12 layers, d 768, 128-mel fbank, 16 px
                                                patches, relative positions with GRU gating
    onnx/connector{,_q4}.onnx (+ data)          window Q-Former: 1 query per 17-frame window, 2 BERT-base
                                                layers (768), projection to the LLM's hidden size 4096

The modules are models/salmonn/{whisper,beats,connector}.py with torch's default random
initialisation (seed 0: random, not zero, weights) and are exported by models/salmonn/export.py,
exactly as models/convert.py exports a real checkpoint (int4: fake-quantized, then MatMulNBits).
Graph files are saved like bundle.py saves them (weights over 512 MiB go to 1 GiB data files).

Tracing runs each module once at full size (Whisper-large: ~2.2 TFLOP per trace, two traces for
int4 + fp32). Debian's python3-torch links the reference BLAS (`libblas.so.3`, ~0.25 GFLOP/s
here), which makes that take hours; OpenBLAS's copy of the same library does ~8 GFLOP/s. Without
changing the system, unpack it and point the loader at it for this build:

    apt-get download libopenblas0-pthread && dpkg -x libopenblas0-pthread_*.deb /tmp/oblas
    LD_LIBRARY_PATH=/tmp/oblas/usr/lib/x86_64-linux-gnu/openblas-pthread npm run bench -- --models encoders

The build measures torch's matmul speed first and says how long the traces will take.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import onnx
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from salmonn.beats import BeatsConfig, BeatsEncoder  # noqa: E402
from salmonn.bundle import EMBEDDED_LIMIT_BYTES, SUFFIX, WHISPER_PREPROCESSOR  # noqa: E402
from salmonn.connector import ConnectorConfig, SalmonnConnector  # noqa: E402
from salmonn.export import export_audio_encoder, export_connector, export_speech_encoder  # noqa: E402
from salmonn.onnx_decoder import save_model  # noqa: E402
from salmonn.whisper import WhisperConfig, WhisperEncoder  # noqa: E402

# The architecture keys of BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt's cfg (SALMONN's BEATs).
BEATS_ITER3_PLUS: dict[str, object] = {
    "input_patch_size": 16, "embed_dim": 512, "conv_bias": False, "encoder_layers": 12,
    "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12,
    "activation_fn": "gelu", "layer_norm_first": False, "deep_norm": True, "conv_pos": 128,
    "conv_pos_groups": 16, "relative_position_embedding": True, "num_buckets": 320,
    "max_distance": 800, "gru_rel_pos": True,
}
# Cheapest first: the Whisper-large trace is by far the longest step, and bench.json is rewritten
# after every graph, so a build stopped during it still leaves the Q-Former and BEATs usable.
GRAPHS = ("connector", "audioEncoder", "speechEncoder")
FILE_STEMS = {"speechEncoder": "speech_encoder", "audioEncoder": "audio_encoder", "connector": "connector"}


def make_module(name: str, seed: int) -> nn.Module:
    """One audio-side module at SALMONN's real geometry, randomly initialised (seeded)."""
    torch.manual_seed(seed)
    if name == "speechEncoder":
        return WhisperEncoder(WhisperConfig()).eval()
    if name == "audioEncoder":
        return BeatsEncoder(BeatsConfig.from_cfg(BEATS_ITER3_PLUS)).eval()
    if name == "connector":
        return SalmonnConnector(ConnectorConfig()).eval()
    raise ValueError(f"unknown graph {name}")


EXPORTERS: dict[str, Callable[[nn.Module, str], onnx.ModelProto]] = {
    "speechEncoder": export_speech_encoder,  # type: ignore[dict-item]
    "audioEncoder": export_audio_encoder,  # type: ignore[dict-item]
    "connector": export_connector,  # type: ignore[dict-item]
}


WHISPER_TRACE_FLOP = 2.2e12  # one forward of the 32-layer encoder on 3000 mel frames


def matmul_gflops() -> float:
    """torch's fp32 matmul speed on this machine (GFLOP/s), from a Whisper-sized product."""
    a, b = torch.randn(1500, 1280), torch.randn(1280, 1280)
    started = time.time()
    for _ in range(3):
        a @ b
    return 3 * 2 * 1500 * 1280 * 1280 / max(time.time() - started, 1e-9) / 1e9


def warn_if_slow_blas(precisions: list[str]) -> None:
    gflops = matmul_gflops()
    minutes = len(precisions) * WHISPER_TRACE_FLOP / (gflops * 1e9) / 60
    print(f"torch matmul: {gflops:.1f} GFLOP/s; tracing Whisper-large ({len(precisions)}x) takes ~{minutes:.0f} min", flush=True)
    if gflops < 2:
        print("  (a reference BLAS: see this script's docstring for running it with OpenBLAS)", flush=True)


def initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def export_graph(name: str, precision: str, onnx_dir: Path, seed: int) -> dict[str, object]:
    """Exports one graph at one precision; returns its bench.json entry (paths relative to the folder)."""
    started = time.time()
    module = make_module(name, seed)
    params = sum(p.numel() for p in module.parameters())
    model = EXPORTERS[name](module, precision)
    del module
    gc.collect()
    path = onnx_dir / f"{FILE_STEMS[name]}{SUFFIX[precision]}.onnx"
    weight_bytes = initializer_bytes(model)
    written = save_model(model, path, external_data=weight_bytes > EMBEDDED_LIMIT_BYTES)
    del model
    gc.collect()
    data = [p.name for p in written if p != path]
    print(f"  {name} {precision}: {params / 1e6:.0f} M params, {weight_bytes / 1e6:.0f} MB of weights, "
          f"{len(data)} data file(s), {time.time() - started:.0f} s", flush=True)
    return {"path": f"onnx/{path.name}", "externalData": data, "params": params, "weightBytes": weight_bytes}


def manifest_fields() -> dict[str, object]:
    """The manifest fields the engine's AudioTokenizer reads, keyed as bundle.architecture writes them."""
    w, c = WhisperConfig(), ConnectorConfig()
    b = BeatsConfig.from_cfg(BEATS_ITER3_PLUS)
    return {
        "architecture": {
            "speechEncoder": {"type": "whisper", "numMelBins": w.num_mel_bins, "inputFrames": w.input_frames,
                              "outputFrames": w.max_source_positions, "width": w.d_model, "layers": w.encoder_layers,
                              "heads": w.encoder_attention_heads, "ffnDim": w.encoder_ffn_dim},
            "audioEncoder": {"type": "beats", "numMelBins": 128, "patchSize": b.input_patch_size,
                             "width": b.encoder_embed_dim, "layers": b.encoder_layers,
                             "heads": b.encoder_attention_heads, "ffnDim": b.encoder_ffn_embed_dim},
            "connector": {"type": "window-qformer", "hidden": c.qformer_hidden, "layers": c.qformer_layers,
                          "heads": c.qformer_heads, "ffnDim": c.qformer_ffn, "windowFrames": c.window_frames,
                          "strideFrames": c.stride_frames,
                          "tokensPerChunk": (w.max_source_positions - c.window_frames) // c.stride_frames + 1,
                          "outputWidth": c.llm_hidden},
        },
        "audio": {"sampleRate": 16000, "minSeconds": 1.0, "chunkSeconds": 30.0, "encoderFrameSeconds": 0.02},
    }


def build(out: Path, precisions: list[str], key: str, seed: int) -> None:
    folder = out / "encoders"
    if folder.exists():
        shutil.rmtree(folder)
    onnx_dir = folder / "onnx"
    onnx_dir.mkdir(parents=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(WHISPER_PREPROCESSOR, indent=1) + "\n")
    variants: dict[str, dict[str, object]] = {}
    for precision in precisions:
        variants[precision] = {}
        for name in GRAPHS:
            variants[precision][name] = export_graph(name, precision, onnx_dir, seed + GRAPHS.index(name))
            write_info(folder, variants, seed, complete=False)
    write_info(folder, variants, seed, complete=True)
    (folder / "stamp").write_text(key + "\n")


def write_info(folder: Path, variants: dict[str, dict[str, object]], seed: int, complete: bool) -> None:
    """bench.json after every graph: a build stopped later still leaves the finished graphs usable."""
    info = {"model": "encoders", "seed": seed, "complete": complete, "variants": variants, **manifest_fields()}
    (folder / "bench.json").write_text(json.dumps(info, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--precisions", default="int4", help="comma-separated: int4, fp32")
    p.add_argument("--key", default="", help="stamp written when the build completes")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
    for precision in precisions:
        if precision not in ("fp32", "int4"):
            raise SystemExit(f"precision must be fp32 or int4, got {precision}")
    started = time.time()
    warn_if_slow_blas(precisions)
    build(args.out, precisions, args.key, args.seed)
    print(f"encoders ({', '.join(precisions)}) built in {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
