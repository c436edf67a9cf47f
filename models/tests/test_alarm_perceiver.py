"""ALARM-P's perceiver fusion vs a written-out float64 formulation, its key names, strict loader."""
import math
import pathlib
import sys
from typing import Dict

import pytest
import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from alarm.perceiver import MultiPerceiverFusion, PerceiverConfig, load_strict  # noqa: E402
from alarm.perceiver import multiperceiver_from_alarm as from_alarm  # noqa: E402

torch.manual_seed(0)
CONFIGS = {"w2vbert": PerceiverConfig(input_dim=12, num_latents=3, latent_dim=8, cross_heads=2,
                                      self_heads=2, self_blocks=3, layers_per_block=2),
           "sslam": PerceiverConfig(input_dim=6, num_latents=2, latent_dim=8, cross_heads=2,
                                    self_heads=4, self_blocks=2, layers_per_block=1, widening=2)}


def make() -> MultiPerceiverFusion:
    fusion = MultiPerceiverFusion(10, "whisper", CONFIGS)
    with torch.no_grad():
        for p in fusion.parameters():
            p.normal_(0, 0.5)
    return fusion.eval()


def layer_norm(x, w, b):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def attention(xq, xkv, s: Dict[str, torch.Tensor], p: str, heads: int, valid: int):
    lin = lambda x, n: x @ s[f"{p}{n}.weight"].T + s[f"{p}{n}.bias"]
    q, k, v = lin(xq, "q_proj"), lin(xkv, "k_proj"), lin(xkv, "v_proj")
    dh = q.shape[-1] // heads
    out = []
    for h in range(heads):
        qh, kh, vh = (t[:, h * dh:(h + 1) * dh] for t in (q, k, v))
        logits = (qh @ kh.T) / math.sqrt(dh)
        logits[:, valid:] = -math.inf  # padded frames get no weight
        w = torch.exp(logits - logits.max(-1, keepdim=True).values)
        out.append((w / w.sum(-1, keepdim=True)) @ vh)
    return lin(torch.cat(out, -1), "o_proj")


def mlp(x, s, p):
    h = layer_norm(x, s[p + "0.weight"], s[p + "0.bias"]) @ s[p + "1.weight"].T + s[p + "1.bias"]
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    return h @ s[p + "3.weight"].T + s[p + "3.bias"]


def perceiver64(x, s, p, cfg: PerceiverConfig, valid: int):
    lat = s[p + "latent_provider._query"]
    for block in range(cfg.self_blocks):
        if block < cfg.cross_layers:
            c = p + "cross_attn_1."
            q = layer_norm(lat, s[c + "0.module.q_norm.weight"], s[c + "0.module.q_norm.bias"])
            kv = layer_norm(x, s[c + "0.module.kv_norm.weight"], s[c + "0.module.kv_norm.bias"])
            lat = lat + attention(q, kv, s, c + "0.module.attention.", cfg.cross_heads, valid)
            lat = lat + mlp(lat, s, c + "1.module.")
        for i in range(cfg.layers_per_block):
            l = f"{p}self_attn_1.{i}."
            n = layer_norm(lat, s[l + "0.module.norm.weight"], s[l + "0.module.norm.bias"])
            lat = lat + attention(n, n, s, l + "0.module.attention.", cfg.self_heads, n.shape[0])
            lat = lat + mlp(lat, s, l + "1.module.")
    return lat


def test_fusion_matches_float64_formulation():
    fusion = make()
    T = 9
    outputs = {"whisper": torch.randn(1, 5, 10), "w2vbert": torch.randn(1, T, 12), "sslam": torch.randn(1, T, 6)}
    lengths = {"whisper": torch.tensor([5]), "w2vbert": torch.tensor([7]), "sslam": torch.tensor([T])}
    got = fusion(outputs, lengths)
    s = {k: v.double() for k, v in fusion.state_dict().items()}
    rows = [s["cond_start_emb"]]
    for name, cfg in CONFIGS.items():
        lat = perceiver64(outputs[name][0].double(), s, f"perceiver.{name}.", cfg, int(lengths[name]))
        rows.append(lat @ s[f"out_proj.{name}.weight"].T + s[f"out_proj.{name}.bias"])
    rows += [s["cond_end_emb"], outputs["whisper"][0].double()]
    want = torch.cat(rows)
    assert got.shape == (1, fusion.fused_length(5), 10) == (1, 5 + 5 + 2, 10)
    assert torch.allclose(got[0].double(), want, atol=1e-4), (got[0].double() - want).abs().max()
    # padding really is ignored: changing padded frames changes nothing
    outputs["w2vbert"][:, 7:] = 100.0
    assert torch.allclose(fusion(outputs, lengths), got, atol=1e-6)


def test_key_names_follow_alarm():
    keys = set(make().state_dict())
    for k in ["cond_start_emb", "cond_end_emb", "out_proj.sslam.weight",
              "perceiver.w2vbert.latent_provider._query",
              "perceiver.w2vbert.cross_attn_1.0.module.q_norm.weight",
              "perceiver.w2vbert.cross_attn_1.0.module.kv_norm.bias",
              "perceiver.w2vbert.cross_attn_1.0.module.attention.k_proj.weight",
              "perceiver.w2vbert.cross_attn_1.1.module.3.bias",
              "perceiver.w2vbert.self_attn_1.1.0.module.attention.o_proj.bias",
              "perceiver.sslam.self_attn_1.0.1.module.1.weight"]:
        assert k in keys, k
    # shared blocks are reused in forward, registered once: no self_attn_n / cross_attn_n keys
    assert not any("attn_n" in k for k in keys)
    assert make().state_dict()["perceiver.w2vbert.cross_attn_1.0.module.attention.k_proj.weight"].shape == (8, 12)


def test_torch_state_dict_lists_a_module_registered_twice_under_both_names():
    # the nn.Module fact behind the note above: sharing by REGISTRATION would duplicate keys
    shared = nn.Linear(2, 2)
    m = nn.Module()
    m.a, m.b = shared, shared
    assert set(m.state_dict()) == {"a.weight", "a.bias", "b.weight", "b.bias"}
    assert len(list(m.parameters())) == 2


def test_strict_loader_names_the_bad_key():
    src = make()
    state = {"model.audio_fusion.fusion_model." + k: v for k, v in src.state_dict().items()}
    dst = MultiPerceiverFusion(10, "whisper", CONFIGS)
    load_strict(dst, state, "model.audio_fusion.fusion_model.")
    assert torch.equal(dst.cond_end_emb, src.cond_end_emb)
    k = "model.audio_fusion.fusion_model.perceiver.sslam.latent_provider._query"
    with pytest.raises(KeyError, match="unknown key model.audio_fusion.fusion_model.extra"):
        load_strict(dst, {**state, "model.audio_fusion.fusion_model.extra": torch.zeros(1)}, "model.audio_fusion.fusion_model.")
    with pytest.raises(KeyError, match="missing key " + k.replace(".", r"\.")):
        load_strict(dst, {n: v for n, v in state.items() if n != k}, "model.audio_fusion.fusion_model.")
    with pytest.raises(ValueError, match=k.replace(".", r"\.") + r" has shape \(3, 8\)"):
        load_strict(dst, {**state, k: torch.zeros(3, 8)}, "model.audio_fusion.fusion_model.")


ALARM_P_FUSION = {"fusion_type": "multiperceiver", "llm_embedding_dim": 16, "num_latents": [4, 3, 2],
                  "num_latent_channels": [8, 8, 8], "num_cross_attention_heads": [4, 4, 4],
                  "num_cross_attention_layers": [1, 1, 1], "first_cross_attention_layer_shared": [True] * 3,
                  "first_self_attention_block_shared": [True] * 3, "num_self_attention_heads": [4, 4, 4],
                  "num_self_attention_blocks": [3, 3, 3], "num_self_attention_layers_per_block": [2, 2, 2],
                  "main_encoder": "whisper", "conditional_encoders": ["w2vbert", "muq", "sslam"],
                  "conditional_embedding_dim": [12, 12, 6]}


def test_alarm_fusion_config_builds_one_perceiver_per_encoder_in_order():
    fusion = from_alarm(ALARM_P_FUSION)
    assert fusion.conditional == ["w2vbert", "muq", "sslam"]
    assert fusion.total_latents() == 9 and fusion.fused_length(5) == 16
    assert fusion.perceiver["sslam"].cfg.input_dim == 6 and fusion.perceiver["sslam"].cfg.self_blocks == 3
    with pytest.raises(ValueError, match="num_latents must list one value per conditional encoder"):
        from_alarm({**ALARM_P_FUSION, "num_latents": [4, 3]})
    with pytest.raises(ValueError, match="'crossattention' is not 'multiperceiver'"):
        from_alarm({**ALARM_P_FUSION, "fusion_type": "crossattention"})
