"""Qwen3 decoder (the frozen LLM under ALARM: `Qwen/Qwen3-4B-Thinking-2507`), plain PyTorch.

What differs from LLaMA (salmonn/llama.py, whose building blocks are reused here):

* grouped KV heads (Qwen3-4B: 32 query heads, 8 key/value heads) and an explicit `head_dim`
  (128) that is NOT hidden_size / num_attention_heads (2560 / 32 = 80);
* per-head RMSNorm on queries and keys (`self_attn.q_norm`, `self_attn.k_norm`, weight
  [head_dim]), applied after the projection and BEFORE the rotary embedding;
* rope_theta from config.json (5,000,000 for the 2507 releases, 1,000,000 for the first Qwen3);
* `tie_word_embeddings` (true for Qwen3-4B): the LM head is the token embedding, and the HF
  folder then has no `lm_head.weight`; when false the head is its own matrix.
* no attention bias (`attention_bias` false in every Qwen3 dense config; True is refused).

Parameter names are HF `Qwen3ForCausalLM`'s (`model.embed_tokens.weight`,
`model.layers.N.self_attn.q_norm.weight`, ..., `model.norm.weight`, [`lm_head.weight`]).

The call signature matches salmonn's LlamaDecoder (`decoder(embeds, position_ids, cache, lora_scale)`
and `decoder.embed(ids)`), so salmonn/reasoning.py's `reason_greedy` drives it unchanged;
Qwen3 under ALARM has no LoRA, so `lora_scale` must be None or 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salmonn.llama import (
    KVCache,
    RMSNorm,
    apply_rotary,
    causal_mask,
    repeat_kv,
    rotary_cos_sin,
    rotary_inv_freq,
)

# Qwen3's special token ids (tokenizer.json of the Qwen3 family; see tests/test_alarm_tokens.py)
ENDOFTEXT_ID = 151643  # <|endoftext|>, also the pad token
IM_START_ID = 151644  # <|im_start|>
IM_END_ID = 151645  # <|im_end|>, the chat turn end = eos of the Thinking-2507 generation config
THINK_ID = 151667  # <think>
THINK_END_ID = 151668  # </think>
# generation_config.json of Qwen3-4B-Thinking-2507: eos_token_id [151645, 151643]
STOP_IDS = (IM_END_ID, ENDOFTEXT_ID)


@dataclass(frozen=True)
class Qwen3Config:
    """Hyper-parameters, named as in HF `config.json`. Defaults: Qwen3-4B-Thinking-2507."""

    vocab_size: int = 151936
    hidden_size: int = 2560
    intermediate_size: int = 9728
    num_hidden_layers: int = 36
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 5_000_000.0
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 262144

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")

    @classmethod
    def from_hf_config(cls, d: Mapping[str, Any]) -> "Qwen3Config":
        """Build from a parsed HF `config.json` (Qwen3's, or ALARM's `qwen3_audio` one, which
        carries the same LLM fields). Features this reference does not implement are refused."""
        if d.get("attention_bias"):
            raise ValueError("attention_bias=true is not a Qwen3 dense configuration this reference supports")
        if d.get("rope_scaling"):
            raise ValueError(f"rope_scaling {d['rope_scaling']!r} is not supported")
        if d.get("use_sliding_window"):
            raise ValueError("sliding-window attention is not supported")
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {d['hidden_act']!r} is not supported")
        heads = int(d["num_attention_heads"])
        return cls(
            vocab_size=int(d["vocab_size"]),
            hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]),
            num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(d.get("num_key_value_heads") or heads),
            head_dim=int(d.get("head_dim") or int(d["hidden_size"]) // heads),
            rms_norm_eps=float(d["rms_norm_eps"]),
            rope_theta=float(d["rope_theta"]),
            # transformers' PretrainedConfig default is True when the key is absent
            tie_word_embeddings=bool(d.get("tie_word_embeddings", True)),
            max_position_embeddings=int(d.get("max_position_embeddings", 262144)),
        )


class Qwen3Attention(nn.Module):
    """Grouped-query attention with per-head q/k RMSNorm before the rotary embedding."""

    def __init__(self, cfg: Qwen3Config) -> None:
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, cfg.hidden_size, bias=False)
        self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)

    def _heads(self, x: Tensor, heads: int) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, heads, self.head_dim)  # [B, T, heads, D]: the norm acts on D

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, past: Optional[tuple[Tensor, Tensor]],
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        b, t, _ = x.shape
        q = self.q_norm(self._heads(self.q_proj(x), self.num_heads)).transpose(1, 2)
        k = self.k_norm(self._heads(self.k_proj(x), self.num_kv_heads)).transpose(1, 2)
        v = self._heads(self.v_proj(x), self.num_kv_heads).transpose(1, 2)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)  # cached keys are stored normed and rotated
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v)
        past_len = k.shape[2] - t
        n_rep = self.num_heads // self.num_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # [B, H, T, past+T]
        scores = scores.masked_fill(~causal_mask(t, past_len, x.device), torch.finfo(scores.dtype).min)
        probs = F.softmax(scores.float(), dim=-1).to(q.dtype)
        out = (probs @ v).transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
        return self.o_proj(out), present


class Qwen3MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: Qwen3Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen3Layer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: Qwen3Config) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Qwen3Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = Qwen3MLP(cfg)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, past: Optional[tuple[Tensor, Tensor]]):
        attn_out, present = self.self_attn(self.input_layernorm(x), cos, sin, past)
        x = x + attn_out
        return x + self.mlp(self.post_attention_layernorm(x)), present


class Qwen3Body(nn.Module):
    """What HF calls `model`: embeddings, layers, final norm."""

    def __init__(self, cfg: Qwen3Config) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Qwen3Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Qwen3Decoder(nn.Module):
    """Causal LM over input embeddings with a KV cache. State-dict keys are HF's; with tied
    embeddings there is no `lm_head.weight` key (the head reads `model.embed_tokens.weight`)."""

    def __init__(self, cfg: Qwen3Config) -> None:
        super().__init__()
        self.config = cfg
        self.model = Qwen3Body(cfg)
        if cfg.tie_word_embeddings:
            self.register_module("lm_head", None)
        else:
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def head_weight(self) -> Tensor:
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def inv_freq(self, device: Optional[torch.device] = None) -> Tensor:
        return rotary_inv_freq(self.config.head_dim, self.config.rope_theta).to(device)

    def embed(self, token_ids: Tensor) -> Tensor:
        """Token ids [B, T] -> embeddings [B, T, H]."""
        return self.model.embed_tokens(token_ids)

    def hidden(self, inputs_embeds: Tensor, position_ids: Tensor,
               past_key_values: Optional[KVCache] = None) -> tuple[Tensor, KVCache]:
        """Final-norm hidden states [B, T, H] and the new cache."""
        cos, sin = rotary_cos_sin(position_ids, self.inv_freq(position_ids.device))
        x = inputs_embeds
        present: KVCache = []
        for i, layer in enumerate(self.model.layers):
            x, layer_present = layer(x, cos, sin, None if past_key_values is None else past_key_values[i])
            present.append(layer_present)
        return self.model.norm(x), present

    def forward(
        self,
        inputs_embeds: Tensor,
        position_ids: Tensor,
        past_key_values: Optional[KVCache] = None,
        lora_scale: Optional[float] = None,
    ) -> tuple[Tensor, KVCache]:
        """inputs_embeds [B, T, H], position_ids [B, T] -> (logits [B, T, V], present)."""
        if lora_scale:
            raise ValueError("Qwen3 under ALARM has no LoRA; lora_scale must be None or 0")
        h, present = self.hidden(inputs_embeds, position_ids, past_key_values)
        return F.linear(h, self.head_weight()), present
