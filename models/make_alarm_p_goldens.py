#!/usr/bin/env python3
"""Golden outputs of the ALARM-P PyTorch reference for the tiny ALARM-P bundle
(models/bundles/alarm-p-tiny).

    /usr/bin/python3 models/make_alarm_p_goldens.py           # rewrite models/golden/alarm-p/
    /usr/bin/python3 models/make_alarm_p_goldens.py --check   # recompute; fail if any byte differs

The layout is make_alarm_ca_goldens.py's (index.json + float32 .npy files under arrays/, the same
per-input fields, written by its `golden_for_input`), so that the engine's fused-ALARM suite
(test/helpers/fusedAlarm.ts) reads both. The checkpoints are the tiny bundle's
(make_tiny_alarm.write_tiny_alarm_p seed 0, strict loaders); stages are cut as the bundle's graphs
cut them (alarm/stages_p.py). One input, the 5.4 s speech clip (one piece per encoder), to keep the
CI check short: the multi-piece cuts of the encoders, which ALARM-P shares with ALARM-CA, are in
ALARM-CA's goldens (its 35 s clip). Per precision (fp32; int4 = the reference holding exactly the
int4 graphs' weights, encoder.muq fp32): features (fp32 only), each encoder's per-piece output,
each adapter's output (identity: the encoder's real frames), the connector's output, the audio
embeddings, prompt ids / embeddings, the first step's logits, GREEDY_TOKENS greedy tokens and one
forced-close reasoning run. The staged fp32 embeddings are checked against AlarmAudio's own path;
int4's prompt is built around its staged embeddings without running the encoders a third time
(the int4 stages use the same code as fp32's; models/tests/test_alarm_p_model.py checks the stages
against AlarmAudio).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from alarm.qwen3 import STOP_IDS  # noqa: E402
from alarm.stages_p import perceiver_stages  # noqa: E402
from alarm.tokenizer import Qwen3Tokenizer  # noqa: E402
from build_tiny_alarm_bundle import QWEN3_TOKENIZER_DIR  # noqa: E402
from build_tiny_alarm_p_bundle import INFO, tiny_p_reference  # noqa: E402
from build_tiny_bundle import differences  # noqa: E402
from make_alarm_ca_goldens import FIELDS as CA_FIELDS, golden_for_input, int4_reference  # noqa: E402
from make_alarm_goldens import GOLDEN_INPUTS, GREEDY_TOKENS  # noqa: E402
from make_goldens import ArrayWriter  # noqa: E402

GOLDEN_DIR = HERE / "golden" / "alarm-p"
INPUTS = [entry for entry in GOLDEN_INPUTS if entry[0] == "speech"]  # (name, wav, task, question)
FIELDS = {
    **CA_FIELDS,
    "adapterLengths": "ALARM's adapter lengths: whisper floor(realFrames / 2); w2vbert, sslam, muq (identity) = "
                      "realFrames",
    "mainLength": "whisper's adapter length (floor(realFrames / 2)): the rows of Whisper's the LLM reads",
    "audioTokens": "rows the LLM reads: leading + mainLength, leading = 2 + sum(num_latents) (the manifest's "
                   "fusion.tokens.leading)",
    "stages.adapted.<enc>": "whisper: adapter.whisper's output on its chunks' outputs cut to realFrames "
                            "[ceil(realFrames / 2), D]; w2vbert, sslam, muq (identity adapters): the encoder's "
                            "outputs cut to realFrames [realFrames, outputWidth]",
    "stages.fused": "the connector's audio_tokens [leading + ceil(whisper realFrames / 2), D]: cond_start, the "
                    "latents of w2vbert, muq, sslam, cond_end, Whisper's adapted rows",
    "stages.audio": "the audio embeddings [audioTokens, D] (= AlarmAudio's fused path)",
}


def write_goldens(out: Path, scratch: Path) -> dict:
    ref = tiny_p_reference(scratch)
    tok = Qwen3Tokenizer.from_file(QWEN3_TOKENIZER_DIR / "tokenizer.json")
    refs = {"fp32": ref, "int4": int4_reference(ref)}
    save = ArrayWriter(out)
    index = {
        "description": "Golden outputs of the ALARM-P PyTorch reference (models/make_alarm_p_goldens.py) for the "
                       "tiny ALARM-P bundle.",
        "bundle": INFO.name,
        "fields": FIELDS,
        "greedyTokens": GREEDY_TOKENS,
        "stopTokenIds": list(STOP_IDS),
        "leading": ref.audio.cfg.fusion.leading_rows,
        "inputs": {name: golden_for_input(refs, tok, name, wav, task, question, save, perceiver_stages, INFO,
                                               verified=("fp32",))
                   for name, wav, task, question in INPUTS},
    }
    (out / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="recompute and compare with the committed files")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # the same summation order on every machine, so the bytes are stable
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if not args.check:
            if GOLDEN_DIR.exists():
                for old in GOLDEN_DIR.rglob("*.npy"):
                    old.unlink()
            GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
            write_goldens(GOLDEN_DIR, scratch)
            print(f"wrote {GOLDEN_DIR.relative_to(HERE.parent)}")
            return 0
        rebuilt = scratch / "golden"
        rebuilt.mkdir()
        write_goldens(rebuilt, scratch)
        problems = differences(GOLDEN_DIR, rebuilt)
        for line in problems:
            print(f"make_alarm_p_goldens --check: {line}", file=sys.stderr)
        if problems:
            print("The committed ALARM-P goldens are stale: run /usr/bin/python3 models/make_alarm_p_goldens.py "
                  "and commit.", file=sys.stderr)
            return 1
        print("ALARM-P goldens are byte-identical to a fresh computation")
        return 0


if __name__ == "__main__":
    sys.exit(main())
