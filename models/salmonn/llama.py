"""LLaMA / Vicuna decoder with runtime-scaled LoRA, as SALMONN uses it.

Plain PyTorch reference, written for reading. What matters for matching the original:

* Parameter names are Hugging Face LLaMA's (`model.embed_tokens.weight`,
  `model.layers.N.self_attn.q_proj.weight`, ..., `model.norm.weight`, `lm_head.weight`),
  so a Vicuna state dict loads with `strict=True` (see `load_hf_state_dict`).
* RMSNorm is computed in fp32 and cast back, rotary embeddings use HF's `rotate_half`
  layout (first half / second half of each head, not interleaved pairs).
* SALMONN puts LoRA (r=8, alpha=32) on q_proj and v_proj. We keep A and B separate and
  take the scale as a forward argument, because the maintainers recommend changing it at
  inference time ("activation tuning": alpha 24..32 instead of 32, i.e. scale 3..4).
  `lora_scale=0` is exactly the base Vicuna model.
* The model consumes `inputs_embeds`, not token ids: SALMONN splices 88 audio embeddings
  between prompt-token embeddings (see prompt.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


# ----------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters, named as in HF `config.json`. Defaults are Vicuna-7B's."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_hf_config(cls, d: Mapping) -> "LlamaConfig":
        """Build from a parsed HF `config.json`. Older configs (Vicuna v1.1) lack
        `num_key_value_heads` and `rope_theta`; they mean "no GQA" and 10000."""
        return cls(
            vocab_size=int(d["vocab_size"]),
            hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]),
            num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=int(d["num_attention_heads"]),
            num_key_value_heads=int(d.get("num_key_value_heads") or d["num_attention_heads"]),
            rms_norm_eps=float(d["rms_norm_eps"]),
            rope_theta=float(d.get("rope_theta") or 10000.0),
            max_position_embeddings=int(d["max_position_embeddings"]),
        )


@dataclass(frozen=True)
class LoraConfig:
    """SALMONN's adapter: peft LoRA on q_proj and v_proj, r=8, alpha=32."""

    r: int = 8
    alpha: float = 32.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    @property
    def scaling(self) -> float:
        """peft's default factor alpha / r (4.0 for SALMONN)."""
        return self.alpha / self.r


# ----------------------------------------------------------------------------- building blocks


class RMSNorm(nn.Module):
    """x / rms(x) * weight, with the statistics in fp32 (fp16 squares overflow)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class LoraLinear(nn.Module):
    """Bias-free linear layer with an optional low-rank update applied at run time.

    y = x W^T + scale * (x A^T) B^T, with A: [r, in] and B: [out, r].
    The state-dict keys are `weight`, `lora_A`, `lora_B`, so the base weight keeps its HF name.
    """

    def __init__(self, in_features: int, out_features: int, rank: Optional[int] = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.normal_(self.weight, std=0.02)
        if rank is None:
            # Registered as None (like a missing bias): absent from the state dict.
            self.register_parameter("lora_A", None)
            self.register_parameter("lora_B", None)
        else:
            self.lora_A = nn.Parameter(torch.empty(rank, in_features))
            nn.init.normal_(self.lora_A, std=0.02)
            # B starts at zero (as in peft), so a fresh adapter is a no-op.
            self.lora_B = nn.Parameter(torch.zeros(out_features, rank))

    @property
    def has_lora(self) -> bool:
        return self.lora_A is not None

    def forward(self, x: torch.Tensor, lora_scale: float = 0.0) -> torch.Tensor:
        y = F.linear(x, self.weight)
        if self.has_lora and lora_scale != 0.0:
            y = y + lora_scale * F.linear(F.linear(x, self.lora_A), self.lora_B)
        return y

    def merged_weight(self, lora_scale: float) -> torch.Tensor:
        """W + scale * B A: the single matrix that gives the same output as forward()."""
        if not self.has_lora:
            return self.weight.detach().clone()
        # Fold in at least fp32 so fp16 weights do not lose the small update to round-off.
        work = torch.promote_types(self.weight.dtype, torch.float32)
        delta = self.lora_B.to(work) @ self.lora_A.to(work)
        return (self.weight.to(work) + lora_scale * delta).to(self.weight.dtype).detach()


def rotary_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """inv_freq[i] = 1 / theta^(2i / head_dim), i = 0 .. head_dim/2 - 1 (fp32)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim
    return 1.0 / (theta**exponents)


def rotary_cos_sin(position_ids: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [B, T, head_dim] for the given absolute positions.

    HF layout: the angle for frequency i is used at both index i and i + head_dim/2.
    """
    angles = position_ids.float()[..., None] * inv_freq  # [B, T, head_dim/2]
    angles = torch.cat([angles, angles], dim=-1)  # [B, T, head_dim]
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] on the last axis (x1, x2 = the two halves)."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, heads, T, head_dim] by the per-position angles (cos/sin [B, T, head_dim])."""
    cos = cos[:, None].to(x.dtype)  # broadcast over heads
    sin = sin[:, None].to(x.dtype)
    return x * cos + rotate_half(x) * sin


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, kv_heads, S, D] -> [B, kv_heads * n_rep, S, D]; query head h uses kv head h // n_rep."""
    if n_rep == 1:
        return x
    b, kv_heads, s, d = x.shape
    return x[:, :, None].expand(b, kv_heads, n_rep, s, d).reshape(b, kv_heads * n_rep, s, d)


def causal_mask(query_len: int, past_len: int, device: torch.device) -> torch.Tensor:
    """Bool [T, past+T]: query i (absolute index past+i) may see keys 0..past+i."""
    return torch.ones(query_len, past_len + query_len, dtype=torch.bool, device=device).tril(diagonal=past_len)


# ----------------------------------------------------------------------------- transformer


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig, lora: Optional[LoraConfig]) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        assert self.num_heads % self.num_kv_heads == 0, "query heads must be a multiple of kv heads"
        targets = lora.target_modules if lora else ()
        rank = lora.r if lora else None

        def proj(name: str, n_in: int, n_out: int) -> LoraLinear:
            return LoraLinear(n_in, n_out, rank if name in targets else None)

        hidden = config.hidden_size
        self.q_proj = proj("q_proj", hidden, self.num_heads * self.head_dim)
        self.k_proj = proj("k_proj", hidden, self.num_kv_heads * self.head_dim)
        self.v_proj = proj("v_proj", hidden, self.num_kv_heads * self.head_dim)
        self.o_proj = proj("o_proj", self.num_heads * self.head_dim, hidden)

    def _split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, heads, self.head_dim).transpose(1, 2)  # [B, heads, T, D]

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        past: Optional[tuple[torch.Tensor, torch.Tensor]],
        lora_scale: float,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, _ = x.shape
        q = self._split_heads(self.q_proj(x, lora_scale), self.num_heads)
        k = self._split_heads(self.k_proj(x, lora_scale), self.num_kv_heads)
        v = self._split_heads(self.v_proj(x, lora_scale), self.num_kv_heads)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)  # cached keys are stored already rotated

        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v)
        past_len = k.shape[2] - t

        n_rep = self.num_heads // self.num_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # [B, H, T, past+T]
        mask = causal_mask(t, past_len, x.device)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        probs = F.softmax(scores.float(), dim=-1).to(q.dtype)  # softmax in fp32, as HF does
        out = (probs @ v).transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
        return self.o_proj(out, lora_scale), present


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(.))."""

    def __init__(self, config: LlamaConfig, lora: Optional[LoraConfig]) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, lora)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        past: Optional[tuple[torch.Tensor, torch.Tensor]],
        lora_scale: float,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attn_out, present = self.self_attn(self.input_layernorm(x), cos, sin, past, lora_scale)
        x = x + attn_out
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, present


class LlamaBody(nn.Module):
    """The part HF calls `model`: embeddings, layers and final norm."""

    def __init__(self, config: LlamaConfig, lora: Optional[LoraConfig]) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, lora) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class LlamaDecoder(nn.Module):
    """Causal LM over input embeddings, with a KV cache and runtime LoRA scale.

    Build with `lora=None` to load a plain HF checkpoint strictly; with a LoraConfig the
    state dict additionally holds `...{q,v}_proj.lora_A` / `lora_B` (see `lora_key_from_peft`).
    """

    def __init__(self, config: LlamaConfig, lora: Optional[LoraConfig] = None) -> None:
        super().__init__()
        self.config = config
        self.lora = lora
        self.model = LlamaBody(config, lora)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def inv_freq(self, device: Optional[torch.device] = None) -> torch.Tensor:
        """Rotary frequencies, always fp32 and recomputed (not a buffer, so `.half()` cannot
        degrade them; HF checkpoints that store `rotary_emb.inv_freq` are checked, then dropped)."""
        return rotary_inv_freq(self.config.head_dim, self.config.rope_theta).to(device)

    @property
    def default_lora_scale(self) -> float:
        return self.lora.scaling if self.lora else 0.0

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids [B, T] -> embeddings [B, T, H]."""
        return self.model.embed_tokens(token_ids)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Optional[KVCache] = None,
        lora_scale: Optional[float] = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """inputs_embeds [B, T, H], position_ids [B, T] -> (logits [B, T, V], present).

        present[i] = (k, v), each [B, kv_heads, past + T, head_dim], keys already rotated.
        lora_scale None means the adapter's alpha / r; 0 disables LoRA.
        """
        if lora_scale is None:
            lora_scale = self.default_lora_scale
        cos, sin = rotary_cos_sin(position_ids, self.inv_freq(position_ids.device))
        x = inputs_embeds
        present: KVCache = []
        for i, layer in enumerate(self.model.layers):
            past = past_key_values[i] if past_key_values is not None else None
            x, layer_present = layer(x, cos, sin, past, lora_scale)
            present.append(layer_present)
        logits = self.lm_head(self.model.norm(x))
        return logits, present

    # --------------------------------------------------------------------- weights

    def lora_projections(self) -> Iterable[tuple[str, LoraLinear]]:
        """(state-dict prefix, module) for every projection that carries LoRA."""
        for name, module in self.named_modules():
            if isinstance(module, LoraLinear) and module.has_lora:
                yield name, module

    def merged_weights(self, lora_scale: Optional[float] = None) -> dict[str, torch.Tensor]:
        """{'model.layers.N.self_attn.q_proj.weight': W + scale * B A, ...} for LoRA targets.

        A converter can bake these into a plain checkpoint; with them, a LoRA-free decoder
        reproduces this one at that (fixed) scale.
        """
        if lora_scale is None:
            lora_scale = self.default_lora_scale
        return {f"{name}.weight": module.merged_weight(lora_scale) for name, module in self.lora_projections()}

    def load_hf_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
        """Load HF LLaMA weights (plus our lora_A/lora_B keys if present).

        Drops `*.rotary_emb.inv_freq` buffers that older checkpoints store, after checking
        that they equal what we compute (a different theta would silently change the model).
        """
        kept = {}
        for key, value in state_dict.items():
            if key.endswith("rotary_emb.inv_freq"):
                if not torch.allclose(value.float().cpu(), self.inv_freq(), rtol=1e-3, atol=0.0):
                    raise ValueError(f"{key} differs from inv_freq computed with theta={self.config.rope_theta}")
                continue
            kept[key] = value
        return self.load_state_dict(kept, strict=strict)


_PEFT_LORA_KEY = re.compile(r"(?:^|\.)(model\.layers\.\d+\.self_attn\.[a-z_]+_proj)\.(lora_[AB])(?:\.default)?\.weight$")


def lora_key_from_peft(key: str) -> Optional[str]:
    """Map a peft LoRA key to ours, or None if it is not a LoRA weight.

    'llama_model.base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight'
      -> 'model.layers.3.self_attn.q_proj.lora_A'   (peft 0.2 keys without '.default' too)
    """
    match = _PEFT_LORA_KEY.search(key)
    return f"{match.group(1)}.{match.group(2)}" if match else None


# ----------------------------------------------------------------------------- generation


def position_ids_from(start: int, length: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """[[start, start+1, ..., start+length-1]] as a [1, length] long tensor."""
    return torch.arange(start, start + length, device=device)[None]


@torch.no_grad()
def greedy_generate(
    decoder: LlamaDecoder,
    inputs_embeds: torch.Tensor,
    max_new_tokens: int,
    stop_ids: Iterable[int] = (2,),
    lora_scale: Optional[float] = None,
) -> list[int]:
    """Greedy decoding with the KV cache, for one sequence (inputs_embeds [1, T, H]).

    Returns the generated ids WITHOUT the stop id: generation ends when argmax is a stop id
    (SALMONN stops at 2, `</s>`) or after max_new_tokens ids. Callers that continue the
    conversation append `</s>` themselves (see prompt.followup_ids). Note for a cache-keeping
    caller: every returned id has been fed to the model except the last one when the
    max_new_tokens limit (not a stop id) ended generation.
    """
    stop = set(stop_ids)
    device = inputs_embeds.device
    prompt_len = inputs_embeds.shape[1]
    logits, cache = decoder(inputs_embeds, position_ids_from(0, prompt_len, device), None, lora_scale)
    generated: list[int] = []
    for step in range(max_new_tokens):
        next_id = int(logits[0, -1].argmax())
        if next_id in stop:
            break
        generated.append(next_id)
        if step == max_new_tokens - 1:
            break  # no need to run the model for a token we will not use
        next_embeds = decoder.embed(torch.tensor([[next_id]], device=device))
        positions = position_ids_from(prompt_len + step, 1, device)
        logits, cache = decoder(next_embeds, positions, cache, lora_scale)
    return generated


@torch.no_grad()
def greedy_generate_uncached(
    decoder: LlamaDecoder,
    inputs_embeds: torch.Tensor,
    max_new_tokens: int,
    stop_ids: Iterable[int] = (2,),
    lora_scale: Optional[float] = None,
) -> list[int]:
    """Same contract as greedy_generate, but re-runs the whole sequence every step.

    Quadratic and slow: it exists only so tests can show that the cache changes nothing.
    """
    stop = set(stop_ids)
    embeds = inputs_embeds
    generated: list[int] = []
    for _ in range(max_new_tokens):
        positions = position_ids_from(0, embeds.shape[1], embeds.device)
        logits, _ = decoder(embeds, positions, None, lora_scale)
        next_id = int(logits[0, -1].argmax())
        if next_id in stop:
            break
        generated.append(next_id)
        embeds = torch.cat([embeds, decoder.embed(torch.tensor([[next_id]], device=embeds.device))], dim=1)
    return generated
