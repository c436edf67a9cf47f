"""LLaMA decoder with runtime LoRA: cache exactness, LoRA algebra, norms, rotary, GQA."""

from __future__ import annotations

import math

import pytest
import torch

from random_decoder import random_decoder

from salmonn.llama import (
    LlamaConfig,
    LlamaDecoder,
    LoraConfig,
    RMSNorm,
    apply_rotary,
    greedy_generate,
    greedy_generate_uncached,
    lora_key_from_peft,
    position_ids_from,
    repeat_kv,
    rotary_cos_sin,
    rotary_inv_freq,
)

TINY = LlamaConfig(
    vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=128,
)
LORA = LoraConfig(r=4, alpha=16)  # scaling 4.0, like SALMONN's 32 / 8


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def make_decoder(config: LlamaConfig = TINY, lora: LoraConfig | None = LORA, seed: int = 0) -> LlamaDecoder:
    """Random decoder; LoRA B is randomised too (a fresh adapter would be a no-op)."""
    return random_decoder(config, lora, seed)


def base_state_dict(decoder: LlamaDecoder) -> dict[str, torch.Tensor]:
    return {k: v for k, v in decoder.state_dict().items() if ".lora_" not in k}


def random_embeds(t: int, seed: int = 1, hidden: int = TINY.hidden_size) -> torch.Tensor:
    return torch.randn(1, t, hidden, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- names & config


def test_state_dict_keys_are_hf_llama_keys():
    keys = set(make_decoder(lora=None).state_dict())
    expected = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for i in range(TINY.num_hidden_layers):
        p = f"model.layers.{i}."
        expected |= {p + n + ".weight" for n in (
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm")}
    assert keys == expected


def test_lora_keys_only_on_q_and_v():
    lora_keys = {k for k in make_decoder().state_dict() if ".lora_" in k}
    assert lora_keys == {f"model.layers.{i}.self_attn.{p}.lora_{ab}"
                         for i in range(2) for p in ("q_proj", "v_proj") for ab in "AB"}
    sd = make_decoder().state_dict()
    assert sd["model.layers.0.self_attn.q_proj.lora_A"].shape == (4, 32)  # [r, in]
    assert sd["model.layers.0.self_attn.v_proj.lora_B"].shape == (16, 4)  # [out = kv_heads*head_dim, r]


def test_from_hf_config_defaults_for_vicuna_v11():
    vicuna_13b = {"vocab_size": 32000, "hidden_size": 5120, "intermediate_size": 13824,
                  "num_hidden_layers": 40, "num_attention_heads": 40, "rms_norm_eps": 1e-6,
                  "max_position_embeddings": 2048, "model_type": "llama"}
    c = LlamaConfig.from_hf_config(vicuna_13b)
    assert (c.num_key_value_heads, c.rope_theta, c.head_dim) == (40, 10000.0, 128)


def test_lora_config_scaling():
    assert LoraConfig().scaling == 4.0 and LoraConfig(alpha=24).scaling == 3.0


def test_load_hf_state_dict_strict_drops_inv_freq():
    src = make_decoder(lora=None, seed=3)
    sd = dict(src.state_dict())
    sd["model.layers.0.self_attn.rotary_emb.inv_freq"] = rotary_inv_freq(TINY.head_dim, 10000.0)
    dst = LlamaDecoder(TINY)
    dst.load_hf_state_dict(sd)  # strict=True
    assert torch.equal(dst.lm_head.weight, src.lm_head.weight)
    sd["model.layers.0.self_attn.rotary_emb.inv_freq"] = rotary_inv_freq(TINY.head_dim, 500000.0)
    with pytest.raises(ValueError):
        dst.load_hf_state_dict(sd)


def test_lora_key_from_peft():
    assert lora_key_from_peft("llama_model.base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight") \
        == "model.layers.3.self_attn.q_proj.lora_A"
    assert lora_key_from_peft("base_model.model.model.layers.12.self_attn.v_proj.lora_B.weight") \
        == "model.layers.12.self_attn.v_proj.lora_B"
    assert lora_key_from_peft("llama_model.base_model.model.model.layers.3.self_attn.q_proj.weight") is None


# ----------------------------------------------------------------------------- building blocks


def test_rmsnorm_by_hand():
    norm = RMSNorm(2, eps=0.0)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0]))
    rms = math.sqrt((3**2 + 4**2) / 2)  # 3.5355
    out = norm(torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(out, torch.tensor([[3 / rms, 2 * 4 / rms]]), atol=1e-6)  # [0.8485, 2.2627]


def test_rmsnorm_statistics_in_fp32():
    norm = RMSNorm(2, eps=1e-6).half()
    out = norm(torch.tensor([[300.0, 400.0]], dtype=torch.float16))  # 400^2 overflows fp16
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert torch.allclose(out.float(), torch.tensor([[300 / 353.553, 400 / 353.553]]), atol=1e-3)


def test_inv_freq_formula():
    inv = rotary_inv_freq(8, 10000.0)
    assert torch.allclose(inv, torch.tensor([1 / 10000 ** (2 * i / 8) for i in range(4)]), rtol=1e-6)


def test_rotary_by_hand_and_position_zero_identity():
    inv = rotary_inv_freq(4, 10000.0)  # [1, 0.01]
    x = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 1, 4)  # [B, heads, T, D]
    cos, sin = rotary_cos_sin(torch.tensor([[0]]), inv)
    assert torch.equal(apply_rotary(x, cos, sin), x)
    cos, sin = rotary_cos_sin(torch.tensor([[1]]), inv)
    # HF layout pairs index 0 with index 2 (first half with second half).
    expected = torch.tensor([math.cos(1.0), 0.0, math.sin(1.0), 0.0]).view(1, 1, 1, 4)
    assert torch.allclose(apply_rotary(x, cos, sin), expected, atol=1e-6)


def test_rotary_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    inv = rotary_inv_freq(16, 10000.0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> float:
        qm = apply_rotary(q, *rotary_cos_sin(torch.tensor([[m]]), inv))
        kn = apply_rotary(k, *rotary_cos_sin(torch.tensor([[n]]), inv))
        return float((qm * kn).sum())

    assert abs(score(7, 3) - score(104, 100)) < 1e-4
    assert abs(score(7, 3) - score(3, 7)) > 1e-3  # direction matters
    rotated = apply_rotary(q, *rotary_cos_sin(torch.tensor([[55]]), inv))
    assert torch.allclose(rotated.norm(), q.norm(), atol=1e-5)  # a rotation


def test_repeat_kv_order():
    kv = torch.arange(2).float().view(1, 2, 1, 1)  # kv heads 0, 1
    assert repeat_kv(kv, 3).flatten().tolist() == [0, 0, 0, 1, 1, 1]  # query head h uses kv head h // 3


def test_gqa_equals_mha_with_duplicated_kv_heads():
    gqa = make_decoder(lora=None, seed=5)
    mha_config = LlamaConfig(**{**TINY.__dict__, "num_key_value_heads": TINY.num_attention_heads})
    mha = LlamaDecoder(mha_config)
    n_rep = TINY.num_attention_heads // TINY.num_key_value_heads
    sd = {}
    for key, value in gqa.state_dict().items():
        if key.endswith(("k_proj.weight", "v_proj.weight")):
            heads = value.view(TINY.num_key_value_heads, TINY.head_dim, TINY.hidden_size)
            value = heads.repeat_interleave(n_rep, dim=0).reshape(-1, TINY.hidden_size)
        sd[key] = value
    mha.load_state_dict(sd)
    x, pos = random_embeds(6), position_ids_from(0, 6)
    assert torch.allclose(gqa(x, pos)[0], mha(x, pos)[0], atol=1e-5)


# ----------------------------------------------------------------------------- decoder


def test_causal_future_does_not_change_past():
    decoder = make_decoder()
    x = random_embeds(8)
    y = x.clone()
    y[:, 5:] += 1.0
    pos = position_ids_from(0, 8)
    assert torch.allclose(decoder(x, pos)[0][:, :5], decoder(y, pos)[0][:, :5], atol=1e-6)


def test_kv_cache_matches_full_forward():
    decoder = make_decoder()
    x = random_embeds(9)
    full, present_full = decoder(x, position_ids_from(0, 9), lora_scale=2.5)
    logits, cache = decoder(x[:, :5], position_ids_from(0, 5), lora_scale=2.5)  # prefill
    pieces = [logits]
    for t in range(5, 9):  # then one position at a time
        logits, cache = decoder(x[:, t : t + 1], position_ids_from(t, 1), cache, lora_scale=2.5)
        pieces.append(logits)
    assert (torch.cat(pieces, dim=1) - full).abs().max() < 1e-5
    k, v = cache[0]
    assert k.shape == (1, TINY.num_key_value_heads, 9, TINY.head_dim) == v.shape
    assert (k - present_full[0][0]).abs().max() < 1e-5


def test_lora_scale_zero_is_base_model():
    with_lora = make_decoder(seed=7)
    base = LlamaDecoder(TINY)
    base.load_state_dict(base_state_dict(with_lora))  # strict: no lora keys in a LoRA-free model
    x, pos = random_embeds(6), position_ids_from(0, 6)
    assert torch.equal(with_lora(x, pos, lora_scale=0.0)[0], base(x, pos)[0])
    assert (with_lora(x, pos, lora_scale=4.0)[0] - base(x, pos)[0]).abs().max() > 1e-2  # LoRA does something


def test_default_lora_scale_is_alpha_over_r():
    decoder = make_decoder()
    x, pos = random_embeds(4), position_ids_from(0, 4)
    assert torch.equal(decoder(x, pos)[0], decoder(x, pos, lora_scale=LORA.scaling)[0])


@pytest.mark.parametrize("scale", [4.0, 3.0, -1.5])
def test_merged_weights_equal_runtime_lora(scale):
    # float64: the two orders of summation differ only by round-off, which fp32 shows at ~1e-5.
    with_lora = make_decoder(seed=11).double()
    merged = LlamaDecoder(TINY).double()
    merged.load_state_dict({**base_state_dict(with_lora), **with_lora.merged_weights(scale)})
    assert set(with_lora.merged_weights(scale)) == {f"model.layers.{i}.self_attn.{p}.weight"
                                                    for i in range(2) for p in ("q_proj", "v_proj")}
    x, pos = random_embeds(6).double(), position_ids_from(0, 6)
    assert (with_lora(x, pos, lora_scale=scale)[0] - merged(x, pos)[0]).abs().max() < 1e-10


def test_merged_weight_formula():
    decoder = make_decoder(seed=2)
    q = decoder.model.layers[1].self_attn.q_proj
    expected = q.weight + 2.0 * q.lora_B @ q.lora_A
    assert torch.allclose(decoder.merged_weights(2.0)["model.layers.1.self_attn.q_proj.weight"], expected, atol=1e-6)


# ----------------------------------------------------------------------------- generation


def test_greedy_cache_equals_no_cache():
    decoder = make_decoder(seed=21)
    x = random_embeds(5, seed=4)
    cached = greedy_generate(decoder, x, max_new_tokens=16, stop_ids=(), lora_scale=3.0)
    slow = greedy_generate_uncached(decoder, x, max_new_tokens=16, stop_ids=(), lora_scale=3.0)
    assert cached == slow
    assert len(cached) == 16


def test_greedy_stops_at_stop_id_and_excludes_it():
    decoder = make_decoder(seed=21)
    x = random_embeds(5, seed=4)
    free = greedy_generate(decoder, x, max_new_tokens=16, stop_ids=())
    # Stop on the first token that is new at its position (so the prefix before it is well defined).
    k = next(i for i in range(1, len(free)) if free[i] not in free[:i])
    stopped = greedy_generate(decoder, x, max_new_tokens=16, stop_ids=(free[k],))
    assert stopped == free[:k]
    assert greedy_generate(decoder, x, max_new_tokens=3, stop_ids=()) == free[:3]
