#!/usr/bin/env python3
"""The tiny reasoning bundle's `reasoning` section, and golden runs with thinking budgets.

    /usr/bin/python3 models/make_reasoning_goldens.py           # rewrite models/golden/reasoning.json
    /usr/bin/python3 models/make_reasoning_goldens.py --check   # recompute; fail if any byte differs

The tiny reasoning bundle is the tiny bundle (models/bundles/salmonn-tiny, random weights) with a
`reasoning` section added to its manifest: nothing else differs, so no second copy of the weights
is kept. The tests make it from the tiny bundle's files and `reasoning.json`'s "reasoning" (Node:
test/helpers/reasoningBundle.ts; Chromium: the engine harness and the UI test rewrite manifest.json
the same way; `reasoning_manifest` below is the Python side, validated against the schema).

The markers: thinkOpen is "<think>" (fed after the prompt: Vicuna's template does not open the
thoughts). A random model never writes "</think>", so thinkClose is taken from what the tiny model
writes after the thoughts open (the text of its 6th to 8th greedy tokens on the golden speech
prompt): thinking then ends by itself after 8 tokens with a large budget, and is forced with a
smaller one. forcedClose is ALARM's sentence followed by that marker. All markers tokenize to
several tokens, so the engine's split is exercised across token boundaries.

Runs (speech golden recording, its ASR prompt, default LoRA scale, fp32): budgets 0 (thinking
skipped), 3 and 7 (forced), and ALARM's 1024 (thinking ends by itself); each then answers greedily
for up to MAX_ANSWER_TOKENS tokens (models/salmonn/reasoning.py states the rules); the budget-3 run
is followed by a follow-up question answered with the same budget (thoughts and all stay in context).
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

from make_goldens import read_wav_int16  # noqa: E402
from make_tiny_checkpoints import write_tiny_checkpoints  # noqa: E402
from salmonn.bundle import validate_manifest  # noqa: E402
from salmonn.checkpoints import build_reference  # noqa: E402
from salmonn.llama import greedy_generate  # noqa: E402
from salmonn.pipeline import encode_audio, user_text_for  # noqa: E402
from salmonn.prompt import assemble_inputs_embeds, followup_ids, split_prompt  # noqa: E402
from salmonn.reasoning import (ALARM_DEFAULT_BUDGET, ReasoningTemplate, alarm_forced_close,  # noqa: E402
                               reason_greedy)
from salmonn.tokenizer import LlamaTokenizer  # noqa: E402

BASE_BUNDLE = HERE / "bundles" / "salmonn-tiny"
GOLDEN_FILE = HERE / "golden" / "reasoning.json"
INPUT = "speech"
BUDGETS = [0, 3, 7, ALARM_DEFAULT_BUDGET]
MAX_ANSWER_TOKENS = 12
# A follow-up question after the run with this budget: [</s>] + its turn + thinkOpen's tokens are
# fed after that run's ids, then it is answered with the same budget.
FOLLOW_UP_AFTER_BUDGET = 3
FOLLOW_UP_QUESTION = "And then?"
FOLLOW_UP_TOKENS = 3
# The tiny bundle's default budget: small, so that a test asking with the defaults stays short.
TINY_DEFAULT_BUDGET = 16
CLOSE_TOKENS = slice(5, 8)  # the greedy thought tokens whose text becomes thinkClose
NAME = "salmonn-tiny-reasoning"
LABEL = "Tiny reasoning test model, random weights"
DESCRIPTION = ("The tiny test model with a reasoning template in its manifest (models/make_reasoning_goldens.py): "
               "its thoughts stream apart from the answer and are closed after a thinking budget, as ALARM does. "
               "Random weights: the thoughts and answers are meaningless.")


def reasoning_manifest(base: dict, template: ReasoningTemplate) -> dict:
    """The tiny reasoning bundle's manifest: the tiny bundle's, renamed, with `reasoning` added."""
    manifest = {**base, "name": NAME, "label": LABEL, "description": DESCRIPTION, "reasoning": template.to_manifest()}
    validate_manifest(manifest)
    return manifest


def close_marker(tok: LlamaTokenizer, ids: list[int]) -> str:
    """The text the thought tokens in CLOSE_TOKENS add, trimmed; it must first appear with the last of them."""
    before, through = tok.decode(ids[:CLOSE_TOKENS.start]), tok.decode(ids[:CLOSE_TOKENS.stop])
    if not through.startswith(before):
        raise ValueError("the tiny model's thought text is rewritten by later tokens: pick other CLOSE_TOKENS")
    marker = through[len(before):].strip(" \t\n\r")
    if not marker or "\ufffd" in marker or marker in tok.decode(ids[:CLOSE_TOKENS.stop - 1]):
        raise ValueError(f"unsuitable close marker {marker!r}: pick other CLOSE_TOKENS")
    return marker


def compute(scratch: Path) -> dict:
    tok = LlamaTokenizer.from_file(HERE / "tokenizer" / "tokenizer.json")
    paths = write_tiny_checkpoints(scratch / "checkpoints", seed=0)
    heads = json.loads(paths.manifest_json.read_text())["not_in_the_weights"]["qformer_heads"]
    ref = build_reference(paths.whisper_dir, paths.beats_pt, paths.vicuna_dir, paths.salmonn_pth, qformer_heads=heads)
    golden = json.loads((HERE / "golden" / "index.json").read_text())["inputs"][INPUT]
    base = json.loads((BASE_BUNDLE / "manifest.json").read_text())
    prompt = golden["prompt"]
    lora_scale = float(ref.configs.lora.scaling)

    encoded = encode_audio(ref, read_wav_int16(HERE / "golden" / golden["audio"]))
    parts = split_prompt(tok, prompt, user_text=user_text_for(prompt))
    think_open = "<think>"
    open_ids = tok.encode(think_open)
    with torch.no_grad():
        embeds = torch.cat([assemble_inputs_embeds(ref.llm, parts, encoded.tokens, bos_id=tok.bos_id),
                            ref.llm.embed(torch.tensor([open_ids]))], dim=1)
        thoughts = greedy_generate(ref.llm, embeds, CLOSE_TOKENS.stop, stop_ids=(tok.eos_id,), lora_scale=lora_scale)
    think_close = close_marker(tok, thoughts)
    template = ReasoningTemplate(
        think_open=think_open, think_close=think_close, prompt_opens_thinking=False,
        default_thinking_budget=TINY_DEFAULT_BUDGET, forced_close=alarm_forced_close(think_close),
        answer_open="<answer>", answer_close="</answer>")
    reasoning_manifest(base, template)  # validated against the schema

    runs = []
    for budget in BUDGETS:
        result = reason_greedy(ref.llm, tok, embeds, template, budget, MAX_ANSWER_TOKENS,
                               stop_ids=(tok.eos_id,), lora_scale=lora_scale)
        runs.append({"thinkingBudget": budget, "tokens": result.ids, "thinkingTokens": result.thinking_tokens,
                     "forcedClose": result.forced_close, "forcedAt": result.forced_at,
                     "answerStart": result.answer_start, "thoughts": result.thoughts, "answer": result.answer})
        if budget == FOLLOW_UP_AFTER_BUDGET:
            turn = followup_ids(tok, FOLLOW_UP_QUESTION)
            with torch.no_grad():
                follow_embeds = torch.cat([embeds, ref.llm.embed(torch.tensor([result.ids + turn + open_ids]))], dim=1)
            follow = reason_greedy(ref.llm, tok, follow_embeds, template, budget, FOLLOW_UP_TOKENS,
                                   stop_ids=(tok.eos_id,), lora_scale=lora_scale)
            runs[-1]["followUp"] = {"question": FOLLOW_UP_QUESTION, "maxNewTokens": FOLLOW_UP_TOKENS, "turnIds": turn,
                                    "tokens": follow.ids, "thinkingTokens": follow.thinking_tokens,
                                    "forcedClose": follow.forced_close, "thoughts": follow.thoughts, "answer": follow.answer}
    return {
        "description": "Reasoning runs with thinking budgets on the tiny reasoning bundle (models/make_reasoning_goldens.py).",
        "bundle": NAME,
        "baseBundle": "salmonn-tiny",
        "label": LABEL,
        "bundleDescription": DESCRIPTION,
        "reasoning": template.to_manifest(),
        "input": INPUT,
        "audio": golden["audio"],
        "prompt": prompt,
        "precision": "fp32",
        "loraScale": lora_scale,
        "maxNewTokens": MAX_ANSWER_TOKENS,
        "thinkOpenIds": open_ids,
        "thinkCloseIds": tok.encode(think_close),
        "forcedCloseIds": tok.encode(template.forced_close),
        "runs": runs,
    }


def render(golden: dict) -> str:
    return json.dumps(golden, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="recompute and compare with the committed file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        text = render(compute(Path(tmp)))
    if args.check:
        if not GOLDEN_FILE.exists() or GOLDEN_FILE.read_text(encoding="utf-8") != text:
            print("models/golden/reasoning.json is stale: run /usr/bin/python3 models/make_reasoning_goldens.py and commit.",
                  file=sys.stderr)
            return 1
        print("reasoning goldens are byte-identical to a fresh computation")
        return 0
    GOLDEN_FILE.write_text(text, encoding="utf-8")
    print(f"wrote {GOLDEN_FILE.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
