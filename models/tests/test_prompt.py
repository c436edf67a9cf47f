"""SALMONN prompt splitting, embedding assembly and the follow-up turn format."""

from __future__ import annotations

import pytest
import torch

from salmonn.llama import LlamaConfig, LlamaDecoder
from salmonn.prompt import (
    DEFAULT_TEMPLATE,
    PromptParts,
    assemble_inputs_embeds,
    build_prompt_text,
    followup_ids,
    prompt_length,
    split_prompt,
)
from salmonn.tokenizer import load_default_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_default_tokenizer()


def test_prompt_text_default_template():
    text = build_prompt_text("  Please describe the audio. ")
    assert text == "USER: <Speech><SpeechHere></Speech> Please describe the audio.\nASSISTANT:"


def test_split_ids_default_prompt(tok):
    parts = split_prompt(tok, "Please describe the audio.")
    print("before", parts.before_ids, [tok.id_to_piece[i] for i in parts.before_ids])
    print("after ", parts.after_ids, [tok.id_to_piece[i] for i in parts.after_ids])
    # "USER: <Speech>" -> ▁US ER : ▁< Spe ech >
    assert parts.before_ids == (3148, 1001, 29901, 529, 10649, 5309, 29958)
    # "</Speech> Please describe the audio.\nASSISTANT:" tokenized on its own: it starts with its
    # own dummy-prefix piece "▁</", and "\nASSISTANT:" is <0x0A> ASS IST ANT :
    assert parts.after_ids == (1533, 10649, 5309, 29958, 3529, 8453, 278, 10348, 29889,
                               13, 22933, 9047, 13566, 29901)


def test_custom_template_and_slot(tok):
    parts = split_prompt(tok, "hi", template="Q: {} A:", user_text="[AUDIO]{}", slot="[AUDIO]")
    assert parts.before_ids == tuple(tok.encode("Q: "))
    assert parts.after_ids == tuple(tok.encode("hi A:"))


def test_missing_slot_is_an_error(tok):
    with pytest.raises(ValueError):
        split_prompt(tok, "hi", user_text="no slot {}")


def test_assemble_inputs_embeds_layout():
    torch.manual_seed(0)
    decoder = LlamaDecoder(LlamaConfig(vocab_size=50, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=2))
    parts = PromptParts(before_ids=(5, 6, 7), after_ids=(8, 9))
    audio = torch.randn(1, 88, 8)
    embeds = assemble_inputs_embeds(decoder, parts, audio)
    assert embeds.shape == (1, prompt_length(parts, 88), 8) == (1, 1 + 3 + 88 + 2, 8)
    table = decoder.model.embed_tokens.weight
    assert torch.equal(embeds[0, 0], table[1])  # BOS
    assert torch.equal(embeds[0, 1:4], table[[5, 6, 7]])
    assert torch.equal(embeds[0, 4:92], audio[0])
    assert torch.equal(embeds[0, 92:], table[[8, 9]])


def test_followup_ids(tok):
    ids = followup_ids(tok, " What is the speaker's emotion? ")
    print("followup", ids)
    # </s>, then the next turn tokenized on its own: ▁US ER : ▁What ▁is ▁the ▁speaker ' s ▁em otion ? \n ASS IST ANT :
    assert ids == [2, 3148, 1001, 29901, 1724, 338, 278, 25657, 29915, 29879, 953, 8194, 29973,
                   13, 22933, 9047, 13566, 29901]
    assert ids[1:] == tok.encode(DEFAULT_TEMPLATE.format("What is the speaker's emotion?"))
