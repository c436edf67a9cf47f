"""A random LLaMA decoder for tests: every weight drawn, LoRA B too (a fresh adapter would be a no-op)."""

from __future__ import annotations

import torch

from salmonn.llama import LlamaConfig, LlamaDecoder, LoraConfig, RMSNorm

SMALL = LlamaConfig(
    vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=256,
)
"""Four layers, grouped-query attention (4 query heads over 2 kv heads), LoRA-able."""


def random_decoder(config: LlamaConfig = SMALL, lora: LoraConfig | None = LoraConfig(r=4, alpha=16), seed: int = 0) -> LlamaDecoder:
    torch.manual_seed(seed)
    decoder = LlamaDecoder(config, lora)
    with torch.no_grad():
        for p in decoder.parameters():
            p.normal_(0, 0.3)
        for norm in [m for m in decoder.modules() if isinstance(m, RMSNorm)]:
            norm.weight.uniform_(0.5, 1.5)
    return decoder.eval()
