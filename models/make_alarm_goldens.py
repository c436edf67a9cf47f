#!/usr/bin/env python3
"""Golden outputs of the ALARM PyTorch reference for the tiny ALARM bundle (models/bundles/alarm-tiny).

    /usr/bin/python3 models/make_alarm_goldens.py           # rewrite models/golden/alarm/
    /usr/bin/python3 models/make_alarm_goldens.py --check   # recompute; fail if any byte differs

Same storage as models/golden (make_goldens.py): `golden/alarm/index.json` describes everything,
arrays are float32 little-endian .npy files under `golden/alarm/arrays/`, each referenced as
{"file", "shape"}. The checkpoints are the tiny bundle's (make_tiny_alarm.py seed 0, strict
loaders), the tokenizer Qwen3's real one.

For each input (GOLDEN_INPUTS: the 5.4 s speech clip, and the 35 s clip: two chunks)
and each precision (fp32; int4 = the reference holding exactly the weights of the int4 graphs):
    features      per chunk: the 128-bin log-mel [128, 3000] (fp32 only; the same for int4)
    melFrames     attended mel frames; audioTokens = max(1, melFrames // 4)
    stages        per chunk `encoderOut` [1500, A] (encoder.whisper's output); `adapted`
                  [ceil(T / 2), D] (adapter.whisper on the chunks' outputs cut to T = melFrames // 2
                  frames); `audio` [audioTokens, D] (what the LLM reads between the boundaries)
    promptIds     system / start / main ids (tokenized separately, as ALARM does)
    promptEmbeds  [system, start, audio_start, audio, audio_end, main] embeddings [T, D]
    logits        the first step's logits [vocab]
    tokens        GREEDY_TOKENS greedy ids (plain greedy: stop ids <|im_end|> / <|endoftext|>, no budget)
and for the speech clip one reasoning run (salmonn/reasoning.py's rules): thinking budget
REASONING_BUDGET, then ALARM's forced closing sentence + </think>, then REASONING_ANSWER_TOKENS
answer tokens, and a follow-up question after it (`followUp`): the second turn's prompt built afresh
as Qwen3's chat template writes a conversation (the first turn written back as its answer only,
alarm/prompt.py `conversation_texts`), its first-step logits and the same reasoning run on it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from alarm.checkpoints import AlarmReference  # noqa: E402
from alarm.pipeline import AlarmPipeline  # noqa: E402
from alarm.qwen3 import STOP_IDS  # noqa: E402
from alarm.stages import audio_stages  # noqa: E402
from alarm.tokenizer import Qwen3Tokenizer  # noqa: E402
from build_tiny_alarm_bundle import INFO, QWEN3_TOKENIZER_DIR, tiny_reference  # noqa: E402
from build_tiny_bundle import differences  # noqa: E402
from make_goldens import ArrayWriter, read_wav_int16  # noqa: E402
from salmonn.export import fake_quantize_linears, int4_llm_reference  # noqa: E402
from salmonn.int4 import dequantize_gather_int4, quantize_gather_int4  # noqa: E402
from salmonn.llama import greedy_generate  # noqa: E402
from salmonn.reasoning import reason_greedy  # noqa: E402

GOLDEN_DIR = HERE / "golden" / "alarm"
AUDIO_DIR = HERE / "golden" / "audio"
GREEDY_TOKENS = 16
FREE_QUESTION = "What is happening in this recording?"
# (name, wav, task, question): the question fills the task's "{}" (the free-question task "QA").
GOLDEN_INPUTS = [
    ("speech", "speech.wav", "describe", None),
    ("long_35s", "long_35s.wav", "QA", FREE_QUESTION),
]
REASONING_INPUT = "speech"
REASONING_BUDGET = 4
REASONING_ANSWER_TOKENS = 8
FOLLOW_UP_QUESTION = "And what came right after that?"


def int4_reference(ref: AlarmReference) -> AlarmReference:
    """The reference with every weight the int4 graphs quantize replaced by its dequantized value."""
    table = dequantize_gather_int4(*quantize_gather_int4(ref.embed_tokens))
    return AlarmReference(fake_quantize_linears(ref.audio).eval(), torch.from_numpy(table.copy()),
                          int4_llm_reference(ref.decoder))


def question_of(task_text: str, question: str | None) -> str:
    """The user text after the audio slot (ALARM's question), from a task prompt of the bundle."""
    slot = "<AudioHere>"
    text = task_text[len(slot):] if task_text.startswith(slot) else task_text
    return text.replace("{}", question) if "{}" in text else text


def golden_for_input(refs: dict[str, AlarmReference], tok: Qwen3Tokenizer, name: str, wav: str, task: str,
                     question: str | None, save: ArrayWriter) -> dict:
    samples = read_wav_int16(AUDIO_DIR / wav)
    wave = torch.from_numpy(samples)
    text = question_of(INFO.tasks[task], question)
    entry: dict = {"audio": f"audio/{wav}", "samples": int(len(samples)), "task": task,
                   "taskPrompt": INFO.tasks[task], "question": text, "precisions": {}}
    for precision, ref in refs.items():
        stages = audio_stages(ref.audio, wave)
        if precision == "fp32":
            entry["chunks"] = len(stages.mels)
            entry["melFrames"] = stages.mel_frames
            entry["audioTokens"] = int(stages.audio.shape[0])
            entry["features"] = [save(f"{name}.c{i}.mel", m) for i, m in enumerate(stages.mels)]
        pipe = AlarmPipeline(ref.audio, ref.embed_tokens, ref.decoder, tok)
        prompt = pipe.prompt(wave, text)
        if not torch.equal(prompt.audio, stages.audio):
            raise AssertionError("the staged audio side differs from AlarmAudio's")
        with torch.no_grad():  # the last position's logits only (the whole prompt's would be [T, 151936])
            hidden, _ = ref.decoder.hidden(prompt.embeds, torch.arange(prompt.embeds.shape[1])[None])
            logits = torch.nn.functional.linear(hidden[:, -1:], ref.decoder.head_weight())
        tokens = greedy_generate(ref.decoder, prompt.embeds, GREEDY_TOKENS, stop_ids=STOP_IDS)
        if precision == "fp32":
            entry["promptIds"] = {"system": prompt.system_ids, "start": prompt.start_ids, "main": prompt.main_ids}
        stem = f"{name}.{precision}"
        run = {
            "stages": {
                "encoderOut": [save(f"{stem}.c{i}.encoder_out", e) for i, e in enumerate(stages.encoder_out)],
                "adapted": save(f"{stem}.adapted", stages.adapted),
                "audio": save(f"{stem}.audio", stages.audio),
            },
            "promptEmbeds": save(f"{stem}.prompt_embeds", prompt.embeds[0]),
            "logits": save(f"{stem}.logits", logits[0, -1]),
            "tokens": tokens,
        }
        if name == REASONING_INPUT:
            run["reasoning"] = reasoning_golden(ref, tok, prompt.embeds)
            history = [(text, tok.decode(run["reasoning"]["tokens"]))]
            run["followUp"] = follow_up_golden(ref, pipe, tok, wave, history, f"{stem}.follow_up", save)
        entry["precisions"][precision] = run
    return entry


def reasoning_golden(ref: AlarmReference, tok: Qwen3Tokenizer, embeds: torch.Tensor) -> dict:
    template = replace(INFO.reasoning, default_thinking_budget=REASONING_BUDGET)
    result = reason_greedy(ref.decoder, tok, embeds, template, REASONING_BUDGET, REASONING_ANSWER_TOKENS,
                           stop_ids=STOP_IDS)
    return {"thinkingBudget": REASONING_BUDGET, "maxAnswerTokens": REASONING_ANSWER_TOKENS,
            "forcedCloseIds": tok.encode(template.forced_close), "tokens": result.ids,
            "thinkingTokens": result.thinking_tokens, "forcedClose": result.forced_close,
            "forcedAt": result.forced_at, "answerStart": result.answer_start,
            "thoughts": result.thoughts, "answer": result.answer}


def follow_up_golden(ref: AlarmReference, pipe: AlarmPipeline, tok: Qwen3Tokenizer, wave: torch.Tensor,
                     history: list[tuple[str, str]], stem: str, save: ArrayWriter) -> dict:
    """The second turn, its prompt built from scratch (no KV cache): what a follow-up must equal."""
    prompt = pipe.prompt(wave, FOLLOW_UP_QUESTION, history=history)
    with torch.no_grad():
        hidden, _ = ref.decoder.hidden(prompt.embeds, torch.arange(prompt.embeds.shape[1])[None])
        logits = torch.nn.functional.linear(hidden[:, -1:], ref.decoder.head_weight())
    run = reasoning_golden(ref, tok, prompt.embeds)
    return {"question": FOLLOW_UP_QUESTION, "history": [{"question": q, "generated": g} for q, g in history],
            "mainIds": prompt.main_ids, "promptTokens": int(prompt.embeds.shape[1]),
            "logits": save(f"{stem}.logits", logits[0, -1]), "reasoning": run}


def write_goldens(out: Path, scratch: Path) -> dict:
    ref = tiny_reference(scratch)
    tok = Qwen3Tokenizer.from_file(QWEN3_TOKENIZER_DIR / "tokenizer.json")
    refs = {"fp32": ref, "int4": int4_reference(ref)}
    save = ArrayWriter(out)
    index = {
        "description": "Golden outputs of the ALARM PyTorch reference (models/make_alarm_goldens.py) for the tiny "
                       "ALARM bundle.",
        "bundle": INFO.name,
        "greedyTokens": GREEDY_TOKENS,
        "stopTokenIds": list(STOP_IDS),
        "inputs": {name: golden_for_input(refs, tok, name, wav, task, question, save)
                   for name, wav, task, question in GOLDEN_INPUTS},
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
            print(f"make_alarm_goldens --check: {line}", file=sys.stderr)
        if problems:
            print("The committed ALARM goldens are stale: run /usr/bin/python3 models/make_alarm_goldens.py and commit.",
                  file=sys.stderr)
            return 1
        print("ALARM goldens are byte-identical to a fresh computation")
        return 0


if __name__ == "__main__":
    sys.exit(main())
