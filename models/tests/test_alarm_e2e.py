"""AL-Whisper-Instruct-R end to end on the tiny checkpoints: audio -> prompt embeddings -> greedy
thoughts with ALARM's budget and forced close -> answer."""

from __future__ import annotations

import math
import re
from typing import Sequence

import pytest
import torch

import make_tiny_alarm as tiny
from alarm.checkpoints import build_alarm_audio, build_qwen3, whisper_config_from_file
from alarm.pipeline import AlarmPipeline
from alarm.prompt import SYSTEM_PROMPT, split_added_tokens, system_text, user_texts
from alarm.qwen3 import IM_END_ID, IM_START_ID, THINK_END_ID, THINK_ID
from salmonn.llama import position_ids_from
from salmonn.reasoning import alarm_forced_close

ADDED = {"<|endoftext|>": 151643, "<|im_start|>": IM_START_ID, "<|im_end|>": IM_END_ID,
         "<think>": THINK_ID, "</think>": THINK_END_ID}


class WordTokenizer:
    """Stand-in for Qwen3's BPE (kept short: each decode step costs time): added tokens at their
    real ids, every other word / space run / punctuation mark gets the next free id from 1000 on.
    Decodes ids it never handed out as '[id]' (random tiny weights pick from the whole vocabulary)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.pieces: dict[int, str] = {v: k for k, v in ADDED.items()}

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for piece in split_added_tokens(text, ADDED):
            if isinstance(piece, int):
                out.append(piece)
                continue
            for word in re.findall(r"\w+|\s+|[^\w\s]", piece):
                if word not in self.ids:
                    self.ids[word] = 1000 + len(self.ids)
                    self.pieces[self.ids[word]] = word
                out.append(self.ids[word])
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.pieces.get(i, f"[{i}]") for i in ids)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> AlarmPipeline:
    paths = tiny.write_tiny_alarm(tmp_path_factory.mktemp("tiny_alarm_e2e"), seed=1)
    audio, embed = build_alarm_audio(paths.alarm, whisper_config_from_file(paths.whisper_config))
    return AlarmPipeline(audio, embed, build_qwen3(paths.qwen3), WordTokenizer())


@pytest.fixture(scope="module")
def wave() -> torch.Tensor:
    t = torch.arange(int(2.5 * 16000)) / 16000
    return 0.3 * torch.sin(2 * math.pi * 440 * t) * torch.exp(-t)


QUESTION = "What do you hear?"


@pytest.fixture(scope="module")
def prompt(pipeline, wave):
    return pipeline.prompt(wave, QUESTION)


def test_prompt_layout(pipeline, prompt) -> None:
    start, main = user_texts(QUESTION)
    assert start == "<|im_start|>user\n"
    assert main == "What do you hear?<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert system_text() == f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
    p = prompt
    assert p.audio.shape == (62, tiny.SIZES.hidden_size)  # 2.5 s: 250 frames -> 125 -> 62
    tok = pipeline.tok
    assert p.system_ids[0] == IM_START_ID and p.start_ids == [IM_START_ID, tok.ids["user"], tok.ids["\n"]]
    assert p.main_ids[-2:] == [THINK_ID, tok.ids["\n"]]  # generation starts inside the thoughts
    n_text = len(p.system_ids) + len(p.start_ids) + len(p.main_ids)
    assert p.embeds.shape == (1, n_text + 62 + 2, tiny.SIZES.hidden_size)
    a = p.audio_start
    assert torch.equal(p.embeds[0, a], pipeline.audio.audio_start_emb[0])
    assert torch.equal(p.embeds[0, a + 1:a + 63], p.audio)
    assert torch.equal(p.embeds[0, a + 63], pipeline.audio.audio_end_emb[0])
    assert torch.equal(p.embeds[0, 0], pipeline.embed_tokens[IM_START_ID])


def test_greedy_with_budget(pipeline, wave, prompt) -> None:
    p = prompt
    r = pipeline.answer(wave, QUESTION, budget=4, max_answer_tokens=3, prompt=p)
    forced = pipeline.tok.encode(alarm_forced_close())
    assert THINK_END_ID in forced
    if r.forced_close:  # random weights: the budget runs out before any </think>
        assert r.thinking_tokens == 4 and r.forced_at == 4
        assert r.ids[4:4 + len(forced)] == forced
        assert "Considering the limited time by the user" in pipeline.tok.decode(r.ids)
    assert len(r.ids) <= 4 + len(forced) + 3

    # one uncached pass over prompt + every id: each chosen (not forced) id is the argmax there
    dec = pipeline.decoder
    embeds = torch.cat([p.embeds, dec.embed(torch.tensor([r.ids]))], dim=1)
    h, _ = dec.hidden(embeds, position_ids_from(0, embeds.shape[1]))
    chosen = h[0, p.embeds.shape[1] - 1:-1] @ dec.head_weight().T  # logits before each id
    for i, want in enumerate(r.ids):
        if r.forced_at is None or not (r.forced_at <= i < r.forced_at + len(forced)):
            assert int(chosen[i].argmax()) == want


def test_cli(tmp_path, capsys) -> None:
    """alarm_ask.py on the tiny checkpoints, a WAV file and a tokenizer.json in Qwen3's format
    (byte-level pieces of all 256 bytes, Qwen3's added tokens at their real ids)."""
    import json
    import wave as wavefile

    import alarm_ask
    from alarm.tokenizer import bytes_to_unicode

    paths = tiny.write_tiny_alarm(tmp_path / "ckpt", seed=2)
    table = bytes_to_unicode()
    spec = {"model": {"type": "BPE", "vocab": {table[b]: b for b in range(256)}, "merges": []},
            "added_tokens": [{"id": i, "content": t} for t, i in ADDED.items()]}
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with wavefile.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((torch.sin(torch.arange(8000) * 0.1) * 8000).to(torch.int16).numpy().tobytes())
    assert alarm_ask.main(["--qwen3", str(paths.qwen3), "--alarm", str(paths.alarm), "--whisper-config",
                           str(paths.whisper_config), "--tokenizer", str(tmp_path / "tokenizer.json"),
                           "--audio", str(tmp_path / "a.wav"), "--question", "What?", "--budget", "2",
                           "--max-answer-tokens", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("thoughts:") and "\nanswer:" in out
