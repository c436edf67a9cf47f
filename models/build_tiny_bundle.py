#!/usr/bin/env python3
"""Builds the tiny test bundle the app ships, and the golden outputs, from scratch.

    /usr/bin/python3 models/build_tiny_bundle.py           # rewrite models/bundles/salmonn-tiny + models/golden
    /usr/bin/python3 models/build_tiny_bundle.py --check   # rebuild in a temp dir; fail if any byte differs

Steps: tiny random checkpoints in the official layouts (make_tiny_checkpoints.py, seed 0) ->
the same converter real checkpoints go through (salmonn/bundle.py) -> goldens (make_goldens.py).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_goldens import write_goldens  # noqa: E402
from make_tiny_checkpoints import write_tiny_checkpoints  # noqa: E402
from salmonn.bundle import BundleInfo, write_bundle  # noqa: E402
from salmonn.checkpoints import build_reference  # noqa: E402
from salmonn.tokenizer import LlamaTokenizer  # noqa: E402

BUNDLE_NAME = "salmonn-tiny"
BUNDLE_DIR = HERE / "bundles" / BUNDLE_NAME
GOLDEN_DIR = HERE / "golden"
TOKENIZER_DIR = HERE / "tokenizer"
# fp16/int4f16 only add LLM graphs (embed_tokens, decoder); their audio side reuses the fp32/int4 files.
# The goldens cover fp32 and int4 only.
PRECISIONS = ["fp32", "int4", "fp16", "int4f16"]
INFO = BundleInfo(
    name=BUNDLE_NAME,
    label="Tiny test model, random weights",
    description=("A SALMONN-shaped model with tiny random weights (seed 0), made by models/build_tiny_bundle.py. "
                 "It has the real structure (Whisper 80-bin log-mel, 128-bin fbank BEATs, 88 window tokens per 30 s, "
                 "LLaMA tokenizer) so the whole pipeline runs, but its answers are meaningless token soup."),
    random_weights=True,
    source={"checkpoints": "models/make_tiny_checkpoints.py --seed 0", "converter": "hark models/convert.py (format 1)"},
    # One beam by default: its answers are meaningless, and the tests' default path stays cheap.
    # Beam search (SALMONN's 4 beams) is a setting; converted SALMONN bundles default to 4.
    generation={"numBeams": 1},
)


def build(bundle_dir: Path, golden_dir: Path, scratch: Path) -> None:
    paths = write_tiny_checkpoints(scratch / "checkpoints", seed=0)
    heads = json.loads(paths.manifest_json.read_text())["not_in_the_weights"]["qformer_heads"]
    ref = build_reference(paths.whisper_dir, paths.beats_pt, paths.vicuna_dir, paths.salmonn_pth, qformer_heads=heads)
    tasks = json.loads(paths.prompts_json.read_text(encoding="utf-8"))
    write_bundle(ref, bundle_dir, INFO, tasks, TOKENIZER_DIR, PRECISIONS, max_positions=2048)
    golden_dir.mkdir(parents=True, exist_ok=True)
    write_goldens(ref, LlamaTokenizer.from_file(TOKENIZER_DIR / "tokenizer.json"), tasks, GOLDEN_DIR / "audio", golden_dir)


def differences(expected: Path, actual: Path) -> list[str]:
    def files(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    want, got = files(expected), files(actual)
    problems = [f"missing from the rebuild: {p}" for p in sorted(want - got)]
    problems += [f"not committed: {p}" for p in sorted(got - want)]
    problems += [f"bytes differ: {p}" for p in sorted(want & got) if not filecmp.cmp(expected / p, actual / p, shallow=False)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="rebuild elsewhere and compare with the committed files")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # torch.onnx's tracer warnings are expected and noisy
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if not args.check:
            build(BUNDLE_DIR, GOLDEN_DIR, scratch)
            print(f"wrote {BUNDLE_DIR.relative_to(HERE.parent)} and {GOLDEN_DIR.relative_to(HERE.parent)}")
            return 0
        build(scratch / "bundle", scratch / "golden", scratch)
        problems = differences(BUNDLE_DIR, scratch / "bundle")
        committed_golden = {GOLDEN_DIR / "index.json", *(GOLDEN_DIR / "arrays").glob("*")}
        problems += differences_golden(scratch / "golden", committed_golden)
        for line in problems:
            print(f"build_tiny_bundle --check: {line}", file=sys.stderr)
        if problems:
            print("The committed tiny bundle/goldens are stale: run /usr/bin/python3 models/build_tiny_bundle.py and commit.",
                  file=sys.stderr)
            return 1
        print("tiny bundle and goldens are byte-identical to a fresh rebuild")
        return 0


def differences_golden(rebuilt: Path, committed: set[Path]) -> list[str]:
    rebuilt_files = {p.relative_to(rebuilt).as_posix() for p in rebuilt.rglob("*") if p.is_file()}
    committed_rel = {p.relative_to(GOLDEN_DIR).as_posix() for p in committed}
    problems = [f"golden missing from the rebuild: {p}" for p in sorted(committed_rel - rebuilt_files)]
    problems += [f"golden not committed: {p}" for p in sorted(rebuilt_files - committed_rel)]
    problems += [f"golden bytes differ: {p}" for p in sorted(committed_rel & rebuilt_files)
                 if not filecmp.cmp(GOLDEN_DIR / p, rebuilt / p, shallow=False)]
    return problems


if __name__ == "__main__":
    sys.exit(main())
