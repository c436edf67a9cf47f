"""Qwen3 decoder: an independent per-op formulation, cache consistency, config parsing."""

from __future__ import annotations

import math

import pytest
import torch

from alarm.qwen3 import Qwen3Config, Qwen3Decoder

CFG = Qwen3Config(vocab_size=97, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                  num_attention_heads=6, num_key_value_heads=2, head_dim=10, rope_theta=5e6)


def randomized(cfg: Qwen3Config, seed: int = 0) -> Qwen3Decoder:
    torch.manual_seed(seed)
    m = Qwen3Decoder(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))  # norm weights matter in the check
            else:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1]))
    return m


def independent_logits(m: Qwen3Decoder, x: torch.Tensor) -> torch.Tensor:
    """Qwen3 written out op by op for one sequence [T, H], with its own loops and rotary form:
    per head, rotate (q_i, q_{i+D/2}) pairs by angle pos * theta^(-2i/D) as a complex product."""
    cfg = m.config
    sd = {k: v.double() for k, v in m.state_dict().items()}
    eps, hd, nh, nkv = cfg.rms_norm_eps, cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
    x = x.double()
    t = x.shape[0]

    def rms(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return v / torch.sqrt((v * v).mean(-1, keepdim=True) + eps) * w

    half = hd // 2
    freqs = cfg.rope_theta ** (-torch.arange(half, dtype=torch.float64) * 2 / hd)
    rot = torch.polar(torch.ones(t, half, dtype=torch.float64), torch.arange(t, dtype=torch.float64)[:, None] * freqs)

    def rope(v: torch.Tensor) -> torch.Tensor:  # [T, D]
        c = torch.complex(v[:, :half], v[:, half:]) * rot
        return torch.cat([c.real, c.imag], dim=-1)

    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        h = rms(x, sd[p + "input_layernorm.weight"])
        q = h @ sd[p + "self_attn.q_proj.weight"].T
        k = h @ sd[p + "self_attn.k_proj.weight"].T
        v = h @ sd[p + "self_attn.v_proj.weight"].T
        heads = []
        for head in range(nh):
            g = head // (nh // nkv)  # the kv head this query head shares
            qh = rope(rms(q[:, head * hd:(head + 1) * hd], sd[p + "self_attn.q_norm.weight"]))
            kh = rope(rms(k[:, g * hd:(g + 1) * hd], sd[p + "self_attn.k_norm.weight"]))
            vh = v[:, g * hd:(g + 1) * hd]
            s = qh @ kh.T / math.sqrt(hd)
            s = s + torch.triu(torch.full((t, t), float("-inf"), dtype=torch.float64), diagonal=1)
            heads.append(torch.softmax(s, dim=-1) @ vh)
        x = x + torch.cat(heads, dim=-1) @ sd[p + "self_attn.o_proj.weight"].T
        h = rms(x, sd[p + "post_attention_layernorm.weight"])
        gate = h @ sd[p + "mlp.gate_proj.weight"].T
        x = x + ((gate * torch.sigmoid(gate)) * (h @ sd[p + "mlp.up_proj.weight"].T)) @ sd[p + "mlp.down_proj.weight"].T
    x = rms(x, sd["model.norm.weight"])
    return x @ sd["model.embed_tokens.weight"].T  # tied head


def test_matches_independent_formulation() -> None:
    m = randomized(CFG)
    ids = torch.randint(0, CFG.vocab_size, (1, 9), generator=torch.Generator().manual_seed(1))
    logits, _ = m(m.embed(ids), torch.arange(9)[None])
    want = independent_logits(m, m.embed(ids)[0])
    assert torch.allclose(logits[0].double(), want, atol=1e-4, rtol=1e-4)


def test_qk_norm_is_wired() -> None:
    m = randomized(CFG)
    ids = torch.arange(6)[None]
    before, _ = m(m.embed(ids), torch.arange(6)[None])
    with torch.no_grad():
        m.model.layers[0].self_attn.k_norm.weight.mul_(2.0)
    after, _ = m(m.embed(ids), torch.arange(6)[None])
    assert not torch.allclose(before, after, atol=1e-3)


def test_cached_steps_equal_one_pass() -> None:
    m = randomized(CFG, seed=3)
    x = torch.randn(1, 11, CFG.hidden_size)
    full, _ = m(x, torch.arange(11)[None])
    part, cache = m(x[:, :7], torch.arange(7)[None])
    steps = [part]
    for t in range(7, 11):
        out, cache = m(x[:, t:t + 1], torch.tensor([[t]]), cache)
        steps.append(out)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    k, v = cache[0]
    assert k.shape == (1, CFG.num_key_value_heads, 11, CFG.head_dim) == v.shape  # grouped KV cache


def test_untied_head_and_keys() -> None:
    cfg = Qwen3Config(**{**CFG.__dict__, "tie_word_embeddings": False})
    m = Qwen3Decoder(cfg)
    assert "lm_head.weight" in m.state_dict()
    assert "lm_head.weight" not in Qwen3Decoder(CFG).state_dict()
    keys = set(Qwen3Decoder(CFG).state_dict())
    assert {"model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight"} <= keys
    assert Qwen3Decoder(CFG).state_dict()["model.layers.0.self_attn.q_norm.weight"].shape == (CFG.head_dim,)


def test_config_from_hf() -> None:
    d = {"vocab_size": 151936, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
         "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "rms_norm_eps": 1e-6,
         "rope_theta": 5000000, "tie_word_embeddings": True, "attention_bias": False, "rope_scaling": None}
    cfg = Qwen3Config.from_hf_config(d)
    assert cfg == Qwen3Config()  # the defaults are Qwen3-4B-Thinking-2507's
    with pytest.raises(ValueError, match="rope_scaling"):
        Qwen3Config.from_hf_config({**d, "rope_scaling": {"type": "yarn", "factor": 4.0}})
    with pytest.raises(ValueError, match="attention_bias"):
        Qwen3Config.from_hf_config({**d, "attention_bias": True})


def test_lora_scale_refused() -> None:
    m = randomized(CFG)
    with pytest.raises(ValueError, match="LoRA"):
        m(torch.zeros(1, 1, CFG.hidden_size), torch.zeros(1, 1, dtype=torch.long), None, 1.0)
