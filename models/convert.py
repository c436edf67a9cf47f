#!/usr/bin/env python3
"""checkpoints -> Hark bundle.

    /usr/bin/python3 models/convert.py \\
        --whisper  PATH/whisper-large-v2          (HF dir: config.json + safetensors or .bin)
        --beats    PATH/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt
        --vicuna   PATH/vicuna-7b-v1.5            (HF dir, single or sharded)
        --salmonn  PATH/salmonn_7b_v0.pth
        --prompts  PATH/SALMONN/prompts/test_prompt.json
        --out      bundles/salmonn-7b  [--precisions fp32,int4] [--lora-alpha 32] [--qformer-heads 12]

Any wrong shape, missing or unknown key stops the conversion with a message naming the key
and the expected shape (see salmonn/checkpoints.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from salmonn.bundle import BundleInfo, write_bundle  # noqa: E402
from salmonn.checkpoints import CheckpointError, build_reference  # noqa: E402

TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--whisper", type=Path, required=True, help="HF openai/whisper-large-v2 directory")
    p.add_argument("--beats", type=Path, required=True, help="BEATs .pt (cfg + model)")
    p.add_argument("--vicuna", type=Path, required=True, help="Vicuna HF directory (7B v1.5 or 13B v1.1)")
    p.add_argument("--salmonn", type=Path, required=True, help="SALMONN .pth ({'model': state_dict})")
    p.add_argument("--prompts", type=Path, required=True, help="SALMONN-style task prompt JSON")
    p.add_argument("--tokenizer", type=Path, default=TOKENIZER_DIR, help="dir with tokenizer.json + tokenizer_config.json")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default=None, help="bundle name (default: the output folder's name)")
    p.add_argument("--label", default=None)
    p.add_argument("--description", default="SALMONN audio language model converted for Hark.")
    p.add_argument("--precisions", default="fp32,int4")
    p.add_argument("--lora-alpha", type=float, default=32.0, help="LoRA alpha; scale = alpha / rank (SALMONN: 32)")
    p.add_argument("--qformer-heads", type=int, default=12, help="Q-Former attention heads (12 for SALMONN)")
    p.add_argument("--max-positions", type=int, default=None,
                   help="longest context (rotary cache rows); default: the LLM config's max_position_embeddings")
    p.add_argument("--random-weights", action="store_true", help="label the bundle as random test weights")
    p.add_argument("--allow-pickle", action="store_true", help="load checkpoints whose pickles import other objects")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    try:
        ref = build_reference(args.whisper, args.beats, args.vicuna, args.salmonn, lora_alpha=args.lora_alpha,
                              qformer_heads=args.qformer_heads, allow_pickle=args.allow_pickle)
    except CheckpointError as error:
        print(f"convert: {error}", file=sys.stderr)
        return 2
    tasks = json.loads(args.prompts.read_text(encoding="utf-8"))
    name = args.name or args.out.name
    info = BundleInfo(
        name=name, label=args.label or name, description=args.description, random_weights=args.random_weights,
        source={"whisper": args.whisper.name, "beats": args.beats.name, "vicuna": args.vicuna.name,
                "salmonn": args.salmonn.name, "converter": "hark models/convert.py (format 1)"},
    )
    manifest = write_bundle(ref, args.out, info, tasks, args.tokenizer, precisions, args.max_positions)
    total = sum(f["size"] for f in manifest["files"])
    print(f"wrote {args.out} ({len(manifest['files'])} files, {total / 1e6:.1f} MB, variants {', '.join(manifest['variants'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
