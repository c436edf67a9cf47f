"""A tiny random MuQ encoder with the real key names (for tests and tiny bundles).

The tiny config goes through MuQConfig.from_hf_config like the real config.json: conv_dim 8,
encoder_dim 32, 4 heads, 3 layers (so ALARM-CA's layers [4, 8, 12] become [1, 2, 3] in tiny
models), ffn 64, depthwise kernel 7. The mel front end is fixed by MuQ (128 mels, n_fft 2048,
hop 240), so it is real-sized. Weights are random with small spread; LayerNorm / BatchNorm
affine terms around 1 / 0 and BatchNorm running statistics away from (0, 1) so that they matter.
"""

from __future__ import annotations

from typing import Any, Dict

import torch
from torch import Tensor

from .muq import MuQConfig, MuQEncoder

TINY_MUQ_LAYERS = (1, 2, 3)


def tiny_muq_hf_config() -> Dict[str, Any]:
    return {
        "label_rate": 25, "num_codebooks": 1, "codebook_dim": 4, "codebook_size": 16,
        "features": ["melspec_2048"], "hop_length": 240, "n_mels": 128, "conv_dim": 8, "encoder_dim": 32,
        "encoder_depth": 3, "is_flash": False, "use_rvq_target": True, "rvq_n_codebooks": 2,
        "rvq_multi_layer_num": 1,
        "stat": {"melspec_2048_mean": 6.768444971712967, "melspec_2048_std": 18.417922652295623},
        "w2v2_config": {"num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "swish",
                        "conv_depthwise_kernel_size": 7, "position_embeddings_type": "rotary",
                        "rotary_embedding_base": 10000, "layer_norm_eps": 1e-5, "num_conv_pos_embeddings": 8,
                        "num_conv_pos_embedding_groups": 4},
    }


def tiny_muq_config() -> MuQConfig:
    return MuQConfig.from_hf_config(tiny_muq_hf_config())


def _random_like(name: str, value: Tensor, g: torch.Generator) -> Tensor:
    if name.endswith("num_batches_tracked"):
        return torch.tensor(100, dtype=value.dtype)
    if name.endswith("inv_freq"):
        return value.clone()  # derived from the config, as in the real checkpoint
    if name.endswith("running_var"):
        return 0.5 + torch.rand(value.shape, generator=g)
    if name.endswith("running_mean"):
        return 0.2 * torch.randn(value.shape, generator=g)
    noise = torch.randn(value.shape, generator=g)
    norm_like = ("norm" in name or ".bn" in name) and value.dim() == 1
    if norm_like:
        return (1.0 if name.endswith("weight") else 0.0) + 0.1 * noise
    if value.dim() == 1:
        return 0.05 * noise
    fan_in = value[0].numel()
    return noise / fan_in ** 0.5


def tiny_muq_state(seed: int = 0) -> Dict[str, Tensor]:
    """Random state for the tiny config with exactly MuQEncoder's keys."""
    g = torch.Generator().manual_seed(seed)
    template = MuQEncoder(tiny_muq_config()).state_dict()
    return {name: _random_like(name, value, g) for name, value in template.items()}


def tiny_muq_encoder(seed: int = 0) -> MuQEncoder:
    encoder = MuQEncoder(tiny_muq_config())
    encoder.load_state_dict(tiny_muq_state(seed), strict=True)
    return encoder.eval()
