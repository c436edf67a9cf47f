#!/usr/bin/env python3
"""Golden outputs of the ALARM-CA PyTorch reference for the tiny ALARM-CA bundle
(models/bundles/alarm-ca-tiny).

    /usr/bin/python3 models/make_alarm_ca_goldens.py           # rewrite models/golden/alarm-ca/
    /usr/bin/python3 models/make_alarm_ca_goldens.py --check   # recompute; fail if any byte differs

Storage as models/golden (index.json + float32 .npy files under arrays/, each {"file", "shape"}).
The checkpoints are the tiny bundle's (make_tiny_alarm.write_tiny_alarm_ca seed 0, strict loaders).
Stages are cut as the bundle's graphs cut them (alarm/stages_ca.py); index.json's "fields" says
what each field holds. Per input (the 5.4 s speech clip; the 35 s clip: two Whisper / MuQ chunks,
two w2v-BERT pieces, four SSLAM chunks) and precision (fp32; int4 = the reference holding exactly
the int4 graphs' weights, encoder.muq fp32): features (fp32 only), each encoder's per-chunk output,
each adapter's output, the connector's output, the audio embeddings, prompt ids / embeddings, the
first step's logits, GREEDY_TOKENS greedy tokens, and for the speech clip one forced-close
reasoning run (as make_alarm_goldens.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from alarm.bundle import AlarmBundleInfo  # noqa: E402
from alarm.checkpoints import AlarmReference  # noqa: E402
from alarm.pipeline import AlarmPipeline  # noqa: E402
from alarm.qwen3 import STOP_IDS  # noqa: E402
from alarm.stages_ca import ENCODERS, fused_stages, int4_audio  # noqa: E402
from alarm.tokenizer import Qwen3Tokenizer  # noqa: E402
from build_tiny_alarm_ca_bundle import INFO, tiny_ca_reference  # noqa: E402
from build_tiny_alarm_bundle import QWEN3_TOKENIZER_DIR  # noqa: E402
from build_tiny_bundle import differences  # noqa: E402
from make_alarm_goldens import (AUDIO_DIR, GOLDEN_INPUTS, GREEDY_TOKENS, REASONING_INPUT, question_of,  # noqa: E402
                                reasoning_golden)
from make_goldens import ArrayWriter, read_wav_int16  # noqa: E402
from salmonn.export import int4_llm_reference  # noqa: E402
from salmonn.int4 import dequantize_gather_int4, quantize_gather_int4  # noqa: E402
from salmonn.llama import greedy_generate  # noqa: E402

GOLDEN_DIR = HERE / "golden" / "alarm-ca"
FIELDS = {
    "samples": "16 kHz samples of the clip",
    "features.whisper": "per 30 s piece: the 128-bin log-mel [128, 3000] (encoder.whisper's input_features)",
    "features.w2vbert": "the recording's SeamlessM4T features cut to its real stacked frames [T, 160], T = "
                        "realLength; encoder.w2vbert runs on pieces of <= 1500 rows",
    "features.sslam": "per 1024-frame chunk: the normalised fbank [1024, 128] (the recording's, zero log-mel "
                      "rows appended, then normalised)",
    "features.muq": "the 24 kHz waveform's real samples [realLength] (zeros follow up to each 720000-sample chunk)",
    "frameMasks.muq": "per chunk: encoder.muq's frame_mask [750]",
    "realLength": "ALARM's feature length per encoder: whisper attended mel frames, w2vbert stacked frames, "
                  "sslam fbank frames, muq 24 kHz samples",
    "realFrames": "encoder frames the adapter reads: whisper melFrames // 2, w2vbert = realLength, sslam "
                  "fbankFrames // 2, muq samples // 960",
    "adapterLengths": "ALARM's adapter lengths: floor(realFrames / downsample)",
    "mainLength": "the connector's main_length (whisper's adapter length)",
    "audioTokens": "rows the LLM reads: max(1, max adapterLengths)",
    "stages.encoderOut.<enc>": "per chunk: encoder.<enc>'s encoder_out [frames per chunk, outputWidth]",
    "stages.adapted.<enc>": "adapter.<enc>'s output on the chunks' outputs cut to realFrames "
                            "[ceil(realFrames / downsample), D]",
    "stages.fused": "the connector's audio_tokens [max over encoders of the adapted rows, D]",
    "stages.audio": "the audio embeddings [audioTokens, D] (= AlarmAudio's fused path)",
    "promptIds": "system / start / main ids (tokenized separately, as ALARM does)",
    "promptEmbeds": "[system, start, audio_start, audio, audio_end, main] embeddings [T, D]",
    "logits": "the first step's logits [vocab]",
    "tokens": "greedy ids (stop ids <|im_end|> / <|endoftext|>, no budget)",
    "reasoning": "speech clip only: thinking budget, ALARM's forced close, answer tokens (salmonn/reasoning.py)",
}


def int4_reference(ref: AlarmReference) -> AlarmReference:
    table = dequantize_gather_int4(*quantize_gather_int4(ref.embed_tokens))
    return AlarmReference(int4_audio(ref.audio), torch.from_numpy(table.copy()), int4_llm_reference(ref.decoder))


def golden_for_input(refs: dict[str, AlarmReference], tok: Qwen3Tokenizer, name: str, wav: str, task: str,
                     question: str | None, save: ArrayWriter, stages_of: Callable = fused_stages,
                     info: AlarmBundleInfo = INFO, verified: tuple = ("fp32", "int4")) -> dict:
    """One clip's entry; `stages_of(audio, wave)` cuts the stages (ALARM-P: stages_p.perceiver_stages,
    whose result has the same fields). For the precisions `verified` the staged audio embeddings are
    checked against AlarmAudio's own path (which runs every encoder again); the others' prompts are
    built around the staged embeddings."""
    samples = read_wav_int16(AUDIO_DIR / wav)
    wave = torch.from_numpy(samples)
    text = question_of(info.tasks[task], question)
    entry: dict = {"audio": f"audio/{wav}", "samples": int(len(samples)), "task": task,
                   "taskPrompt": info.tasks[task], "question": text, "precisions": {}}
    for precision, ref in refs.items():
        stages = stages_of(ref.audio, wave)
        enc = stages.encoders
        if precision == "fp32":
            entry["chunks"] = {e: len(enc[e].chunks) for e in ENCODERS}
            entry["realLength"] = {e: enc[e].real_length for e in ENCODERS}
            entry["realFrames"] = {e: enc[e].frames for e in ENCODERS}
            entry["adapterLengths"] = {e: enc[e].adapter_length for e in ENCODERS}
            entry["mainLength"] = stages.main_length
            entry["audioTokens"] = int(stages.audio.shape[0])
            entry["features"] = {
                "whisper": [save(f"{name}.whisper.c{i}.mel", c) for i, c in enumerate(enc["whisper"].chunks)],
                "w2vbert": save(f"{name}.w2vbert.features", torch.cat(enc["w2vbert"].chunks)),
                "sslam": [save(f"{name}.sslam.c{i}.fbank", c) for i, c in enumerate(enc["sslam"].chunks)],
                "muq": save(f"{name}.muq.wave24k", torch.cat(enc["muq"].chunks)[: enc["muq"].real_length]),
            }
            entry["frameMasks"] = {"muq": [save(f"{name}.muq.c{i}.mask", m) for i, m in enumerate(enc["muq"].masks)]}
        pipe = AlarmPipeline(ref.audio, ref.embed_tokens, ref.decoder, tok)
        if precision in verified:
            prompt = pipe.prompt(wave, text)
            gap = float((prompt.audio - stages.audio).abs().max())
            if prompt.audio.shape != stages.audio.shape or gap > 1e-5:
                raise AssertionError(f"the staged audio side differs from AlarmAudio's by {gap}")
        else:
            prompt = pipe.prompt_with_audio(stages.audio, text)
        with torch.no_grad():
            hidden, _ = ref.decoder.hidden(prompt.embeds, torch.arange(prompt.embeds.shape[1])[None])
            logits = torch.nn.functional.linear(hidden[:, -1:], ref.decoder.head_weight())
        tokens = greedy_generate(ref.decoder, prompt.embeds, GREEDY_TOKENS, stop_ids=STOP_IDS)
        if precision == "fp32":
            entry["promptIds"] = {"system": prompt.system_ids, "start": prompt.start_ids, "main": prompt.main_ids}
        stem = f"{name}.{precision}"
        run = {
            "stages": {
                "encoderOut": {e: [save(f"{stem}.{e}.c{i}.encoder_out", x) for i, x in enumerate(enc[e].encoder_out)]
                               for e in ENCODERS},
                "adapted": {e: save(f"{stem}.{e}.adapted", enc[e].adapted) for e in ENCODERS},
                "fused": save(f"{stem}.fused", stages.fused),
                "audio": save(f"{stem}.audio", prompt.audio),
            },
            "promptEmbeds": save(f"{stem}.prompt_embeds", prompt.embeds[0]),
            "logits": save(f"{stem}.logits", logits[0, -1]),
            "tokens": tokens,
        }
        if name == REASONING_INPUT:
            run["reasoning"] = reasoning_golden(ref, tok, prompt.embeds)
        entry["precisions"][precision] = run
    return entry


def write_goldens(out: Path, scratch: Path) -> dict:
    ref = tiny_ca_reference(scratch)
    tok = Qwen3Tokenizer.from_file(QWEN3_TOKENIZER_DIR / "tokenizer.json")
    refs = {"fp32": ref, "int4": int4_reference(ref)}
    save = ArrayWriter(out)
    index = {
        "description": "Golden outputs of the ALARM-CA PyTorch reference (models/make_alarm_ca_goldens.py) for the "
                       "tiny ALARM-CA bundle.",
        "bundle": INFO.name,
        "fields": FIELDS,
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
            print(f"make_alarm_ca_goldens --check: {line}", file=sys.stderr)
        if problems:
            print("The committed ALARM-CA goldens are stale: run /usr/bin/python3 models/make_alarm_ca_goldens.py "
                  "and commit.", file=sys.stderr)
            return 1
        print("ALARM-CA goldens are byte-identical to a fresh computation")
        return 0


if __name__ == "__main__":
    sys.exit(main())
