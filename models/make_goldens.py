#!/usr/bin/env python3
"""Golden outputs of the PyTorch reference, for the TypeScript parity tests.

For each golden recording (golden/audio/*.wav) and each precision (fp32, and int4 = the same
reference with the weights the int4 graphs use), stores every stage: Whisper log-mel and kaldi
fbank per chunk, each encoder's output, the connector's audio tokens, the first-step logits and
32 greedy tokens at LoRA scales 0, default (alpha/r) and half the default — plus one two-turn
conversation, and, for two recordings, the localization of one event (steering vector, Δ curve,
interval and confidence, localize.py with the bundle's defaults) and the answer from a fixed label
set (classify.py: each label's score and probability, and a follow-up question after it), and for
one recording SALMONN's beam search (beam_search.py; BEAM_RUNS below). Arrays are .npy (float32, little endian) under golden/arrays/, described by golden/index.json.
"""

from __future__ import annotations

import json
import sys
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from salmonn.checkpoints import ReferenceModules  # noqa: E402
from salmonn.export import fake_quantize_linears, int4_llm_reference  # noqa: E402
from salmonn.bundle import probe_layers  # noqa: E402
from salmonn.localize import LocalizeOptions  # noqa: E402
from salmonn.pipeline import answer, beam_answer, classify_answer, encode_audio, follow_up, localize_event  # noqa: E402
from salmonn.tokenizer import LlamaTokenizer  # noqa: E402

GOLDEN_TOKENS = 32
FOLLOWUP_TOKENS = 16
FOLLOWUP_QUESTION = "What else can you hear?"
# (name, wav, task) — tasks are keys of the bundle's task prompts.
GOLDEN_INPUTS = [
    ("speech", "speech.wav", "asr"),
    ("tone_noise", "tone_noise.wav", "audiocaption"),
    ("one_second", "one_second.wav", "audiocaption"),
    ("thirty_seconds", "thirty_seconds.wav", "audio_story_telling"),
    ("long_35s", "long_35s.wav", "audiocaption"),
]

# Recordings whose localization of LOCALIZE_EVENT is stored (one chunk, and two chunks).
LOCALIZE_INPUTS = ("speech", "long_35s")
LOCALIZE_EVENT = "a dog barking"

# Recordings answered from CLASSIFY_LABELS (at the default LoRA scale), then asked FOLLOWUP_QUESTION.
CLASSIFY_INPUTS = ("speech", "tone_noise")
CLASSIFY_QUESTION = "Is this speech, music or noise?"
CLASSIFY_LABELS = ["speech", "speech and music", "music", "noise"]  # one label is a prefix of another

# Recording decoded with SALMONN's beam search (beam_search.py): 2 and 4 beams at two LoRA scales,
# and two runs with an extra stop id, so that hypotheses finish early: one whose winner ended with a
# stop id (length penalty 1, SALMONN's), one stopped early by the "done" rule (length penalty 0).
# Two runs are followed by a beam-search follow-up question.
BEAM_INPUT = "speech"
BEAM_TOKENS = 16
BEAM_FOLLOWUP_TOKENS = 8
BEAM_RUNS = [  # (beams, scale name, length penalty, extra stop id, follow-up)
    (2, "default", 1.0, None, False),
    (4, "default", 1.0, None, True),
    (2, "zero", 1.0, None, False),
    (4, "zero", 1.0, None, False),
    (4, "default", 1.0, 25197, True),
    (4, "default", 0.0, 365, False),
]


def read_wav_int16(path: Path) -> np.ndarray:
    """16-bit PCM mono WAV -> float32 in [-1, 1) (sample / 32768), as the engine reads it."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != 16000:
            raise ValueError(f"{path}: golden audio must be 16 kHz mono 16-bit PCM")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.astype(np.float32) / 32768.0


def int4_reference(ref: ReferenceModules) -> ReferenceModules:
    return ref._replace(
        whisper=fake_quantize_linears(ref.whisper).eval(), beats=fake_quantize_linears(ref.beats).eval(),
        connector=fake_quantize_linears(ref.connector).eval(), llm=int4_llm_reference(ref.llm),
    )


class ArrayWriter:
    def __init__(self, root: Path) -> None:
        self.dir = root / "arrays"
        self.dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, array) -> dict:
        data = np.ascontiguousarray(np.asarray(array.detach() if hasattr(array, "detach") else array, dtype=np.float32))
        np.save(self.dir / f"{name}.npy", data, allow_pickle=False)
        return {"file": f"arrays/{name}.npy", "shape": list(data.shape)}


def lora_scales(ref: ReferenceModules) -> dict[str, float]:
    default = float(ref.configs.lora.scaling)
    return {"zero": 0.0, "default": default, "half": default / 2}


def golden_for_input(refs: dict[str, ReferenceModules], tok: LlamaTokenizer, tasks: dict[str, str],
                     name: str, wav: Path, task: str, save: ArrayWriter) -> dict:
    samples = read_wav_int16(wav)
    entry: dict = {"audio": f"audio/{wav.name}", "samples": int(len(samples)), "task": task,
                   "prompt": tasks[task], "precisions": {}}
    for precision, ref in refs.items():
        encoded = encode_audio(ref, samples)
        if precision == "fp32":
            entry["chunks"] = len(encoded.chunks)
            entry["timeMap"] = encoded.time_map.round(6).tolist()
            entry["features"] = [{"mel": save(f"{name}.c{i}.mel", c.mel), "fbank": save(f"{name}.c{i}.fbank", c.fbank)}
                                 for i, c in enumerate(encoded.chunks)]
        stages = [{
            "speech": save(f"{name}.{precision}.c{i}.speech", c.speech[0]),
            "audio": save(f"{name}.{precision}.c{i}.audio", c.audio[0]),
            "tokens": save(f"{name}.{precision}.c{i}.tokens", c.tokens[0]),
        } for i, c in enumerate(encoded.chunks)]
        runs = {}
        for scale_name, scale in lora_scales(ref).items():
            result = answer(ref, tok, encoded.tokens, tasks[task], GOLDEN_TOKENS, lora_scale=scale)
            runs[scale_name] = {
                "loraScale": scale,
                "logits": save(f"{name}.{precision}.{scale_name}.logits", result.first_logits),
                "tokens": result.ids,
            }
            if precision == "fp32":
                entry["promptIds"] = {"before": list(result.prompt_ids.before_ids), "after": list(result.prompt_ids.after_ids)}
            if name == "speech" and scale_name == "default":
                turn, ids = follow_up(ref, tok, result, FOLLOWUP_QUESTION, FOLLOWUP_TOKENS, lora_scale=scale)
                runs[scale_name]["followUp"] = {"question": FOLLOWUP_QUESTION, "turnIds": turn, "tokens": ids}
        entry["precisions"][precision] = {"stages": stages, "runs": runs}
        if name == BEAM_INPUT:
            entry["precisions"][precision]["beamSearch"] = beam_golden(ref, tok, encoded.tokens, tasks[task])
        if name in CLASSIFY_INPUTS:
            entry["precisions"][precision]["classification"] = classification_golden(ref, tok, encoded.tokens)
        if name in LOCALIZE_INPUTS:
            entry["precisions"][precision]["localization"] = localization_golden(
                ref, tok, encoded, len(samples) / 16000, f"{name}.{precision}", save)
    return entry


def localization_golden(ref: ReferenceModules, tok: LlamaTokenizer, encoded, duration: float, stem: str,
                        save: ArrayWriter) -> dict:
    options = LocalizeOptions(layers=probe_layers(ref))
    result, vector = localize_event(ref, tok, encoded, duration, LOCALIZE_EVENT, options)
    return {
        "event": LOCALIZE_EVENT, "layers": list(options.layers), "durationSeconds": duration,
        "vector": save(f"{stem}.localize.vector", np.stack([vector[layer].numpy() for layer in options.layers])),
        "delta": save(f"{stem}.localize.delta", result.delta.numpy()),
        "times": save(f"{stem}.localize.times", result.times.numpy()),
        "start": result.start, "end": result.end, "confidence": result.confidence,
    }


def beam_golden(ref: ReferenceModules, tok: LlamaTokenizer, audio_tokens, prompt: str) -> dict:
    scales = lora_scales(ref)
    runs = []
    for beams, scale_name, length_penalty, extra_stop, with_follow_up in BEAM_RUNS:
        stops = [tok.eos_id] + ([extra_stop] if extra_stop is not None else [])
        turn, result = beam_answer(ref, tok, audio_tokens, prompt, beams, BEAM_TOKENS, lora_scale=scales[scale_name],
                                   stop_ids=stops, length_penalty=length_penalty)
        run = {"numBeams": beams, "loraScale": scales[scale_name], "lengthPenalty": length_penalty,
               "stopTokenIds": stops, "tokens": result.tokens, "score": result.score,
               "finishedByStop": result.finished_by_stop, "steps": result.steps}
        if with_follow_up:
            _, ids = follow_up(ref, tok, turn, FOLLOWUP_QUESTION, BEAM_FOLLOWUP_TOKENS,
                               lora_scale=scales[scale_name], num_beams=beams)
            run["followUp"] = {"question": FOLLOWUP_QUESTION, "numBeams": beams, "tokens": ids}
        runs.append(run)
    return {"prompt": prompt, "maxNewTokens": BEAM_TOKENS, "followUpTokens": BEAM_FOLLOWUP_TOKENS, "runs": runs}


def classification_golden(ref: ReferenceModules, tok: LlamaTokenizer, audio_tokens) -> dict:
    scale = lora_scales(ref)["default"]
    scores, turn = classify_answer(ref, tok, audio_tokens, CLASSIFY_QUESTION, CLASSIFY_LABELS, lora_scale=scale)
    _, follow_up_ids = follow_up(ref, tok, turn, FOLLOWUP_QUESTION, FOLLOWUP_TOKENS, lora_scale=scale)
    return {
        "question": CLASSIFY_QUESTION, "loraScale": scale, "labels": scores.labels, "labelIds": scores.token_ids,
        "logProbs": scores.log_probs, "probabilities": scores.probabilities, "label": scores.label,
        "followUp": {"question": FOLLOWUP_QUESTION, "tokens": follow_up_ids},
    }


def write_goldens(ref: ReferenceModules, tok: LlamaTokenizer, tasks: dict[str, str], audio_dir: Path, out: Path) -> dict:
    save = ArrayWriter(out)
    refs = {"fp32": ref, "int4": int4_reference(ref)}
    index = {
        "description": "Golden outputs of the PyTorch reference (models/make_goldens.py) for the tiny bundle.",
        "bundle": "salmonn-tiny",
        "greedyTokens": GOLDEN_TOKENS,
        "inputs": {name: golden_for_input(refs, tok, tasks, name, audio_dir / wav, task, save)
                   for name, wav, task in GOLDEN_INPUTS},
    }
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index
