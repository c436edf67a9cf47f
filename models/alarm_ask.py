"""Ask AL-Whisper-Instruct-R (the PyTorch reference, greedy) about a recording.

    /usr/bin/python3 models/alarm_ask.py --qwen3 Qwen3-4B-Thinking-2507/ \\
        --alarm AL-Whisper-Instruct-R/ --whisper-config whisper-large-v3/config.json \\
        --tokenizer Qwen3-4B-Thinking-2507/tokenizer.json --audio clip.wav \\
        --question "What is happening here?" [--budget 1024] [--max-answer-tokens 512]

The audio must be a 16 kHz mono 16-bit PCM WAV. Prints the thoughts, then the answer (the text
between <answer> and </answer> when the model writes them). Real checkpoints need about 20 GB of
RAM in fp32 (Qwen3 4.0 B + Whisper 0.64 B parameters + ALARM's copy of the embedding: 20 GB).
"""

from __future__ import annotations

import argparse
import sys
import wave
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from alarm.checkpoints import build_alarm_audio, build_qwen3, whisper_config_from_file  # noqa: E402
from alarm.pipeline import AlarmPipeline  # noqa: E402
from alarm.tokenizer import Qwen3Tokenizer  # noqa: E402
from alarm.whisper_v3 import WHISPER_LARGE_V3  # noqa: E402


def read_wav(path: Path) -> torch.Tensor:
    """16 kHz mono 16-bit PCM WAV -> float32 samples / 32768."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != 16000:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit PCM")
        raw = w.readframes(w.getnframes())
    return torch.frombuffer(bytearray(raw), dtype=torch.int16).to(torch.float32) / 32768.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qwen3", type=Path, required=True, help="HF Qwen3 folder")
    ap.add_argument("--alarm", type=Path, required=True, help="HF folder of the ALARM checkpoint")
    ap.add_argument("--whisper-config", type=Path, help="whisper-large-v3's config.json (default: its known sizes)")
    ap.add_argument("--tokenizer", type=Path, required=True, help="Qwen3's tokenizer.json")
    ap.add_argument("--audio", type=Path, required=True)
    ap.add_argument("--question", required=True)
    ap.add_argument("--budget", type=int, default=1024, help="thinking budget in tokens (ALARM's default 1024)")
    ap.add_argument("--max-answer-tokens", type=int, default=512)
    args = ap.parse_args(argv)

    whisper = whisper_config_from_file(args.whisper_config) if args.whisper_config else WHISPER_LARGE_V3
    audio, embed = build_alarm_audio(args.alarm, whisper)
    pipe = AlarmPipeline(audio, embed, build_qwen3(args.qwen3), Qwen3Tokenizer.from_file(args.tokenizer))
    r = pipe.answer(read_wav(args.audio), args.question, args.budget, args.max_answer_tokens)
    print("thoughts:", r.thoughts + (" [budget reached]" if r.forced_close else ""))
    print("answer:", r.answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
