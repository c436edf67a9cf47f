"""A tiny random w2v-BERT 2.0 encoder with the real key names, for tests and the tiny ALARM-CA.

The tiny config.json goes through `W2VBertConfig.from_hf_config` like the real one. Its sizes
keep every mechanism visible at short lengths: 2 heads of 16, relative distances clipped at 4 to
the left and 2 to the right (a few frames already reach both clips), a depthwise kernel of 5
(wider than one frame, causal padding matters), 4 layers so that ALARM-style layer picks such
as `TINY_W2VBERT_LAYERS` skip, repeat nothing and end on the last layer.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor

from .w2vbert import W2VBertConfig, W2VBertEncoder

TINY_W2VBERT_HF = {
    "model_type": "wav2vec2-bert", "hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2,
    "intermediate_size": 48, "feature_projection_input_dim": 160, "hidden_act": "swish", "layer_norm_eps": 1e-5,
    "position_embeddings_type": "relative_key", "left_max_position_embeddings": 4, "right_max_position_embeddings": 2,
    "conv_depthwise_kernel_size": 5, "add_adapter": False, "use_intermediate_ffn_before_adapter": False,
    "mask_time_prob": 0.05, "mask_feature_prob": 0.0,
}
TINY_W2VBERT_LAYERS = (1, 3, 4)


def tiny_w2vbert_config() -> W2VBertConfig:
    return W2VBertConfig.from_hf_config(TINY_W2VBERT_HF)


def tiny_w2vbert_state(seed: int) -> Dict[str, Tensor]:
    """Random weights for every key of `W2VBertEncoder(tiny_w2vbert_config())`: matrices scaled by
    1 / sqrt(fan in) (activations stay O(1) through the layers), norms near 1, biases and
    distance embeddings small but far from zero (so a wrong index or a skipped bias shows)."""
    g = torch.Generator().manual_seed(seed)
    state: Dict[str, Tensor] = {}
    for name, value in W2VBertEncoder(tiny_w2vbert_config()).state_dict().items():
        noise = torch.randn(value.shape, generator=g)
        if "norm" in name and name.endswith("weight"):
            state[name] = 1.0 + 0.1 * noise
        elif name.endswith("bias"):
            state[name] = 0.1 * noise
        elif "distance_embedding" in name:
            state[name] = 0.5 * noise
        else:
            fan_in = value[0].numel()  # Linear [out, in], Conv1d [out, in / groups, k]
            state[name] = noise / fan_in ** 0.5
    return state
