"""SALMONN's connector: fuse Whisper + BEATs frames and turn each 17-frame window into one LLM token.

    speech [B, 1500, 1280] --ln_speech--+
                                        +-- concat features -> [B, 1500, 2048]
    audio  [B, Na,   768]  --ln_audio---+   (the shorter one zero-padded at the end; in practice BEATs)
    -> windows of 17 frames, stride 17 -> [B * 88, 17, 2048]   (1500 frames; the last 4 are dropped)
    -> window-level Q-Former: one learned query per window     -> [B * 88, 1, 768]
    -> speech_llama_proj                                       -> [B, 88, llm_hidden]

The Q-Former is BERT-shaped (SALMONN builds it from `bert-base-uncased` with 2 layers and
cross-attention in every layer). Only the query path is used: no word or position embeddings, and
in each layer the query goes through self-attention, cross-attention to its window, and the
*query* FFN (`intermediate_query` / `output_query`); every sub-block is post-LN like BERT.

Parameter names equal the SALMONN checkpoint keys (`speech_Qformer.bert...`, `ln_speech`, ...),
so the connector part of `salmonn_v1.pth` / `salmonn_7b_v0.pth` loads with strict=True once the
keys in `CONNECTOR_IGNORED_KEYS` are dropped (see `connector_state_dict_from_salmonn`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def window_frames_for(seconds_per_window: float = 0.333333, total_frames: int = 1500,
                      total_seconds: float = 30.0) -> int:
    """Window length in encoder frames, as SALMONN computes it: round(1500 * 0.333333 / 30) = 17."""
    return round(total_frames * seconds_per_window / total_seconds)


@dataclass(frozen=True)
class ConnectorConfig:
    speech_width: int = 1280  # Whisper large-v2 d_model
    audio_width: int = 768  # BEATs encoder_embed_dim
    qformer_hidden: int = 768  # bert-base
    qformer_layers: int = 2
    qformer_heads: int = 12
    qformer_ffn: int = 3072
    layer_norm_eps: float = 1e-12  # BERT's LayerNorm eps (ln_speech / ln_audio use torch's 1e-5)
    window_frames: int = 17  # window_frames_for(0.333333)
    stride_frames: int = 17  # window_frames_for(0.333333): windows do not overlap
    num_query_tokens: int = 1
    llm_hidden: int = 4096  # Vicuna-7B; 5120 for 13B

    @property
    def encoder_width(self) -> int:
        """Width of the fused frames the Q-Former cross-attends to."""
        return self.speech_width + self.audio_width


# ----------------------------------------------------------------------------------------------
# Checkpoint keys

# Keys of the SALMONN checkpoint under the connector's prefixes that the reference does not use:
# BERT's position-id buffer, its word/position embeddings, the text-path FFN of every layer
# (`intermediate` / `output`, unused because there are no text tokens) and the LM head. SALMONN
# deletes most of these before saving, but tolerate them in case a checkpoint holds them.
CONNECTOR_IGNORED_KEYS = (
    r"speech_Qformer\.bert\.embeddings\.position_ids",
    r"speech_Qformer\.bert\.embeddings\.word_embeddings\.weight",
    r"speech_Qformer\.bert\.embeddings\.position_embeddings\.weight",
    r"speech_Qformer\.bert\.encoder\.layer\.\d+\.intermediate\.dense\.(weight|bias)",
    r"speech_Qformer\.bert\.encoder\.layer\.\d+\.output\.dense\.(weight|bias)",
    r"speech_Qformer\.bert\.encoder\.layer\.\d+\.output\.LayerNorm\.(weight|bias)",
    r"speech_Qformer\.cls\..*",
)
CONNECTOR_KEY_PREFIXES = (
    "speech_query_tokens", "speech_Qformer.", "ln_speech.", "ln_audio.", "speech_llama_proj.",
)


def connector_state_dict_from_salmonn(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Pick the connector's tensors out of a SALMONN checkpoint's `model` dict (LoRA etc. are left
    to other loaders), dropping `CONNECTOR_IGNORED_KEYS`."""
    ignored = re.compile("|".join(f"(?:{p})" for p in CONNECTOR_IGNORED_KEYS))
    return {
        k: v for k, v in state.items()
        if k.startswith(CONNECTOR_KEY_PREFIXES) and not ignored.fullmatch(k)
    }


# ----------------------------------------------------------------------------------------------
# Q-Former (query path of a BERT layer with cross-attention)


class BertSelfAttention(nn.Module):
    """Multi-head attention of `queries` over `context` (the same tensor for self-attention)."""

    def __init__(self, hidden: int, heads: int, context_width: int) -> None:
        super().__init__()
        if hidden % heads != 0:
            raise ValueError("qformer_hidden must be divisible by qformer_heads")
        self.heads = heads
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(context_width, hidden)
        self.value = nn.Linear(context_width, hidden)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)  # [B, H, T, Dh]

    def forward(self, queries: Tensor, context: Tensor) -> Tensor:
        q = self._split_heads(self.query(queries))
        k = self._split_heads(self.key(context))
        v = self._split_heads(self.value(context))
        # BERT divides the logits (not q) by sqrt(head_dim); no mask: every frame is attended
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        out = torch.softmax(scores, dim=-1) @ v  # [B, H, Tq, Dh]
        b, _, t, _ = out.shape
        return out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)


class BertSelfOutput(nn.Module):
    """Projection + residual + post-LayerNorm after an attention block."""

    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)  # BERT's capitalised name, kept for the keys

    def forward(self, attended: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(attended) + residual)


class BertAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, context_width: int, eps: float) -> None:
        super().__init__()
        # BERT calls the attention proper `self`; the keys need that name (`attention.self.query`)
        self.self = BertSelfAttention(hidden, heads, context_width)
        self.output = BertSelfOutput(hidden, eps)

    def forward(self, queries: Tensor, context: Tensor) -> Tensor:
        return self.output(self.self(queries, context), queries)


class BertIntermediate(nn.Module):
    def __init__(self, hidden: int, ffn: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, ffn)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))  # bert-base's hidden_act "gelu" is the exact erf GELU


class BertOutput(nn.Module):
    def __init__(self, hidden: int, ffn: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(ffn, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class QFormerLayer(nn.Module):
    """Query self-attention -> cross-attention to the window -> query FFN, each post-LN."""

    def __init__(self, cfg: ConnectorConfig) -> None:
        super().__init__()
        h, eps = cfg.qformer_hidden, cfg.layer_norm_eps
        self.attention = BertAttention(h, cfg.qformer_heads, h, eps)
        self.crossattention = BertAttention(h, cfg.qformer_heads, cfg.encoder_width, eps)
        self.intermediate_query = BertIntermediate(h, cfg.qformer_ffn)
        self.output_query = BertOutput(h, cfg.qformer_ffn, eps)

    def forward(self, queries: Tensor, frames: Tensor) -> Tensor:
        x = self.attention(queries, queries)
        x = self.crossattention(x, frames)
        return self.output_query(self.intermediate_query(x), x)


class QFormerEmbeddings(nn.Module):
    """Only BERT's embedding LayerNorm survives: the input is the learned query itself."""

    def __init__(self, cfg: ConnectorConfig) -> None:
        super().__init__()
        self.LayerNorm = nn.LayerNorm(cfg.qformer_hidden, eps=cfg.layer_norm_eps)

    def forward(self, query_embeds: Tensor) -> Tensor:
        return self.LayerNorm(query_embeds)


class QFormerEncoder(nn.Module):
    def __init__(self, cfg: ConnectorConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(QFormerLayer(cfg) for _ in range(cfg.qformer_layers))

    def forward(self, x: Tensor, frames: Tensor) -> Tensor:
        for layer in self.layer:
            x = layer(x, frames)
        return x


class QFormerBert(nn.Module):
    def __init__(self, cfg: ConnectorConfig) -> None:
        super().__init__()
        self.embeddings = QFormerEmbeddings(cfg)
        self.encoder = QFormerEncoder(cfg)

    def forward(self, query_embeds: Tensor, frames: Tensor) -> Tensor:
        return self.encoder(self.embeddings(query_embeds), frames)


class QFormer(nn.Module):
    """Wrapper that only exists so the keys read `speech_Qformer.bert.*` as in SALMONN."""

    def __init__(self, cfg: ConnectorConfig) -> None:
        super().__init__()
        self.bert = QFormerBert(cfg)

    def forward(self, query_embeds: Tensor, frames: Tensor) -> Tensor:
        return self.bert(query_embeds, frames)


# ----------------------------------------------------------------------------------------------
# Connector


def pad_frames_to(x: Tensor, length: int) -> Tensor:
    """Zero-pad [B, T, C] at the end of the time axis up to `length` frames."""
    return F.pad(x, (0, 0, 0, length - x.shape[1]))


def split_windows(x: Tensor, window: int, stride: int) -> Tensor:
    """[B, T, C] -> [B, n, window, C] with n = (T - window) // stride + 1; leftover frames at the
    end are dropped (the same windows as SALMONN's F.unfold, in the same order)."""
    n = (x.shape[1] - window) // stride + 1
    starts = torch.arange(n, device=x.device) * stride
    index = starts[:, None] + torch.arange(window, device=x.device)[None, :]  # [n, window]
    return x[:, index]


class SalmonnConnector(nn.Module):
    """(speech [B, Ts, speech_width], audio [B, Ta, audio_width]) -> [B, n_windows, llm_hidden].

    With Whisper's fixed 1500 frames and 17-frame windows, n_windows is always 88.
    """

    def __init__(self, cfg: ConnectorConfig = ConnectorConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.ln_speech = nn.LayerNorm(cfg.speech_width)  # torch's default eps 1e-5, as in SALMONN
        self.ln_audio = nn.LayerNorm(cfg.audio_width)
        self.speech_query_tokens = nn.Parameter(torch.zeros(1, cfg.num_query_tokens, cfg.qformer_hidden))
        self.speech_Qformer = QFormer(cfg)
        self.speech_llama_proj = nn.Linear(cfg.qformer_hidden, cfg.llm_hidden)

    def fuse(self, speech: Tensor, audio: Tensor) -> Tensor:
        """LayerNorm both streams, zero-pad the shorter at the end, concatenate features."""
        speech = self.ln_speech(speech)
        audio = self.ln_audio(audio)
        # A traced (ONNX) graph always pads the audio: BEATs gives <= 1496 frames for <= 30 s,
        # Whisper always 1500. Eager mode also covers the other case, as SALMONN does.
        if torch.jit.is_tracing() or audio.shape[1] <= speech.shape[1]:
            audio = pad_frames_to(audio, speech.shape[1])
        else:
            speech = pad_frames_to(speech, audio.shape[1])
        return torch.cat([speech, audio], dim=-1)

    def forward(self, speech: Tensor, audio: Tensor) -> Tensor:
        frames = self.fuse(speech, audio)  # [B, T, speech_width + audio_width]
        b = frames.shape[0]
        windows = split_windows(frames, self.cfg.window_frames, self.cfg.stride_frames)
        n = windows.shape[1]
        windows = windows.reshape(b * n, self.cfg.window_frames, frames.shape[2])

        queries = self.speech_query_tokens.expand(b * n, -1, -1)
        out = self.speech_Qformer(queries, windows)  # [B * n, num_query_tokens, hidden]
        out = self.speech_llama_proj(out)
        return out.reshape(b, -1, out.shape[-1])  # [B, n * num_query_tokens, llm_hidden]
