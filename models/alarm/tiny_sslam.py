"""A tiny random SSLAM encoder with the real key names (for tests and the tiny ALARM-CA bundle).

Same structure as ta012/SSLAM_AS2M_Finetuned (post-LN EAT blocks, 16x16 patches over 128 mel
bins, CLS token, fixed sin-cos positions, fine-tuned head keys in the checkpoint) at width 32.
It keeps 12 blocks so that ALARM-CA's layer indexes [3, 7, 11] apply unchanged; a block is
about 12.7k values at this width. max_length 96 (768 table rows) still covers a 1024-frame
chunk's 64 time patches.
"""

from __future__ import annotations

from typing import Any, Dict

import torch
from torch import Tensor

from .sslam import SSLAMConfig, checkpoint_shapes, ignored_checkpoint_keys, sincos_positions

TINY_HF_CONFIG: Dict[str, Any] = {
    "architectures": ["EATModel"], "model_type": "eat",
    "embed_dim": 32, "depth": 12, "num_heads": 2, "patch_size": 16, "stride": 16, "in_chans": 1,
    "mel_bins": 128, "max_length": 96, "num_classes": 5, "model_variant": "finetune",
    "mlp_ratio": 4.0, "qkv_bias": True, "drop_rate": 0.0, "attn_drop_rate": 0.0,
    "activation_dropout": 0.0, "post_mlp_drop": 0.0, "start_drop_path_rate": 0.0,
    "end_drop_path_rate": 0.0, "layer_norm_first": False, "norm_eps": 1e-6, "norm_affine": True,
    "fixed_positions": True, "img_size": [1024, 128],
}


def tiny_sslam_config() -> SSLAMConfig:
    """The tiny config, read through the same `from_hf_config` as the real config.json."""
    return SSLAMConfig.from_hf_config(TINY_HF_CONFIG)


def tiny_sslam_state(seed: int, with_ignored: bool = False) -> Dict[str, Tensor]:
    """Random weights for every key of SSLAMEncoder(tiny_sslam_config()) (plus, with_ignored, the
    checkpoint's fc_norm / head keys as the real remote-code model holds them). LayerNorm gains
    near 1, everything else ~ N(0, 1 / fan_in) or small; the position table is EAT's sin-cos."""
    cfg = tiny_sslam_config()
    g = torch.Generator().manual_seed(seed)
    shapes = dict(checkpoint_shapes(cfg))
    if with_ignored:
        shapes.update(ignored_checkpoint_keys(cfg))
    state: Dict[str, Tensor] = {}
    for key, shape in shapes.items():
        if key.endswith("fixed_positional_encoder.positions"):
            state[key] = sincos_positions(cfg)
        elif "norm" in key.rsplit(".", 2)[-2] and key.endswith(".weight"):
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            state[key] = 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[-1] if len(shape) == 2 else int(torch.tensor(shape[1:]).prod())
            state[key] = torch.randn(shape, generator=g) / fan_in ** 0.5
    return state
