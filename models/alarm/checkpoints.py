"""Strict loaders for ALARM's two downloads (same rules as salmonn/checkpoints.py: an unknown key,
a missing key or a wrong shape stops with the file and the key's name).

    qwen3   HF `Qwen/Qwen3-4B-Thinking-2507` folder: config.json + model-0000N-of-0000M.safetensors
            + model.safetensors.index.json (or one model.safetensors). Tied embeddings: no
            `lm_head.weight` (tolerated only when equal to the embedding).
    alarm   HF folder of `Blinorot/AL-Whisper-Instruct-R` (Qwen3AudioWrappedForCausalLM
            .save_pretrained): config.json (model_type "qwen3_audio") + safetensors shard(s).
            It holds the whole model, so its keys are:
              model.embed_tokens.weight, model.layers.N.*, model.norm.weight, [lm_head.weight]
                  a copy of the frozen Qwen3 (train.py loads Qwen3's state dict into it);
                  ALARM embeds the prompt text with this embed_tokens (loaded here), while the
                  decoder itself runs from the Qwen3 folder (vLLM on the original checkpoint),
                  so the layers are only checked (names, shapes) from the headers, never read;
              model.audio_encoder.encoders.whisper.encoder.*   HF WhisperEncoder of
                  openai/whisper-large-v3 (frozen): conv1/2, embed_positions, layers.N.*, layer_norm;
              model.audio_adapter.adapters.whisper.*   layer_fusion.layer_weights,
                  adapter.input_proj.*, adapter.downsampler.N.{0,2}.* (BatchNorm: weight, bias,
                  running_mean, running_var, num_batches_tracked), llm_proj.*;
              model.audio_start_emb, model.audio_end_emb   [1, hidden_size].
            "sum" fusion and "identity" postprocessing have no parameters, so no
            model.audio_fusion.* / model.audio_postprocessing.* keys are expected.
            Fused models (ALARM-CA) hold, generically, per encoder <enc> of the config
              model.audio_encoder.encoders.<enc>.encoder.*   the object ALARM assigns to the
                  encoder wrapper's `self.encoder` (alarm/model.py ENCODERS builds it); keys of
                  modules that never run (the entry's `ignored_checkpoint_keys`) are checked by
                  name and shape and not read;
              model.audio_adapter.adapters.<enc>.*   as above;
              model.audio_fusion.fusion_model.*   CrossAttentionFusion (alarm/fusion.py), or
                  ALARM-P's MultiPerceiverFusion (alarm/perceiver.py: perceiver.<enc>.*,
                  out_proj.<enc>.*, cond_start_emb, cond_end_emb); ALARM-P's identity adapters
                  have only layer_fusion.layer_weights.

The Whisper width/depth are not in ALARM's config.json (the code hard-codes whisper-large-v3):
`load_alarm` takes a WhisperConfig, large-v3's by default, and checks every tensor against it;
the other encoders' configs likewise (`encoder_configs`, default: each one's released config).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from salmonn import safetensors_io
from salmonn.checkpoints import (
    CheckpointError,
    _cast,
    _check_against,
    _Collected,
    _on_meta_device,
    _Problems,
    _read_json,
    _shape,
    instantiate,
)
from salmonn.whisper import WhisperConfig

from .model import ENCODERS, AlarmAudio, AlarmConfig
from .qwen3 import Qwen3Config, Qwen3Decoder
from .whisper_v3 import WHISPER_LARGE_V3

PathLike = Union[str, Path]
StateDict = Dict[str, Tensor]

ALARM_ADAPTER_PREFIX = "model.audio_adapter.adapters."
ALARM_FUSION_PREFIX = "model.audio_fusion.fusion_model."
ALARM_SEPARATORS = ("model.audio_start_emb", "model.audio_end_emb")
EMBED_KEY = "model.embed_tokens.weight"
LM_HEAD_KEY = "lm_head.weight"


class SafetensorsFolder(NamedTuple):
    """Where each key lives, from the headers only (nothing is read yet)."""

    entries: Dict[str, safetensors_io.TensorEntry]
    files: Dict[str, Path]
    source: str

    def load(self, keys: Iterable[str]) -> StateDict:
        by_file: Dict[Path, List[str]] = {}
        for key in keys:
            by_file.setdefault(self.files[key], []).append(key)
        out: StateDict = {}
        for path, names in by_file.items():
            out.update(safetensors_io.load_file(path, names))
        return out


def _shape_of(entry: safetensors_io.TensorEntry) -> List[int]:
    return list(entry.shape)


def read_safetensors_folder(directory: PathLike) -> SafetensorsFolder:
    """Headers of an HF folder's `model.safetensors.index.json` shards or its `model.safetensors`.
    A key in a shard that the index puts elsewhere, or listed but absent, is an error."""
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    single = directory / "model.safetensors"
    try:
        if index.is_file():
            weight_map: Dict[str, str] = _read_json(index).get("weight_map") or {}
            if not weight_map:
                raise CheckpointError(f"{index}: no weight_map")
            entries: Dict[str, safetensors_io.TensorEntry] = {}
            files: Dict[str, Path] = {}
            for shard in sorted(set(weight_map.values())):
                path = directory / shard
                if not path.is_file():
                    raise CheckpointError(f"{path}: no such file (listed in {index.name})")
                for key, entry in safetensors_io.read_header(path)[0].items():
                    if weight_map.get(key) != shard:
                        raise CheckpointError(f"{path}: key {key!r} is listed in {index.name} as in {weight_map.get(key, 'nowhere')}")
                    entries[key], files[key] = entry, path
            for key, shard in weight_map.items():
                if key not in entries:
                    raise CheckpointError(f"{directory / shard}: missing key {key!r} (listed in {index.name})")
            return SafetensorsFolder(entries, files, str(index))
        if single.is_file():
            header = safetensors_io.read_header(single)[0]
            return SafetensorsFolder(dict(header), {k: single for k in header}, str(single))
    except safetensors_io.SafetensorsError as e:
        raise CheckpointError(str(e)) from None
    raise CheckpointError(f"{directory}: no model.safetensors.index.json or model.safetensors")


# ==============================================================================================
# Qwen3 (HF folder)


def load_qwen3(directory: PathLike, dtype: torch.dtype = torch.float32) -> Tuple[Qwen3Config, StateDict]:
    """HF Qwen3 folder -> (Qwen3Config, Qwen3Decoder state dict in HF's key names), cast to dtype."""
    directory = Path(directory)
    cfg = Qwen3Config.from_hf_config(_read_json(directory / "config.json"))
    folder = read_safetensors_folder(directory)
    with _on_meta_device():
        module = Qwen3Decoder(cfg)
    expected = module.state_dict()
    problems = _Problems()
    wanted = [k for k in folder.entries if not (cfg.tie_word_embeddings and k == LM_HEAD_KEY)]
    got = _Collected()
    for key, tensor in folder.load(wanted).items():
        got.add(key, _cast(tensor, dtype), key, str(folder.files[key]))
    if cfg.tie_word_embeddings and LM_HEAD_KEY in folder.entries:
        head = _cast(folder.load([LM_HEAD_KEY])[LM_HEAD_KEY], dtype)
        embed = got.state.get(EMBED_KEY)
        if embed is None or head.shape != embed.shape or not torch.equal(head, embed):
            problems.add(f"{folder.files[LM_HEAD_KEY]}: key {LM_HEAD_KEY!r} differs from {EMBED_KEY!r} "
                         "but config.json ties the word embeddings")
    _check_against(expected, got, lambda k: k, folder.source, problems)
    problems.raise_if_any(f"Qwen3 checkpoint {directory}")
    return cfg, got.state


def build_qwen3(directory: PathLike, dtype: torch.dtype = torch.float32) -> Qwen3Decoder:
    cfg, state = load_qwen3(directory, dtype)
    with _on_meta_device():
        module = Qwen3Decoder(cfg)
    return instantiate(module, state)


# ==============================================================================================
# ALARM's own checkpoint


class AlarmParts(NamedTuple):
    config: AlarmConfig
    audio_state: StateDict  # AlarmAudio keys
    embed_tokens: Tensor  # [vocab, hidden]: ALARM embeds prompt text with its own copy


def encoder_prefix(encoder: str) -> str:
    """Where ALARM's checkpoint keeps one encoder's own module."""
    return f"model.audio_encoder.encoders.{encoder}.encoder."


class AudioKeys:
    """ALARM checkpoint keys <-> AlarmAudio keys for one config (prefix mapping)."""

    def __init__(self, encoders: Iterable[str]) -> None:
        self.prefixes: List[Tuple[str, str]] = [(encoder_prefix(e), f"encoders.{e}.") for e in encoders]
        self.prefixes += [(ALARM_ADAPTER_PREFIX, "adapters."), (ALARM_FUSION_PREFIX, "fusion.")]

    def ours(self, key: str) -> Optional[str]:
        """ALARM checkpoint key -> AlarmAudio key, or None for a key outside the audio side."""
        for theirs, ours in self.prefixes:
            if key.startswith(theirs):
                return ours + key[len(theirs):]
        if key in ALARM_SEPARATORS:
            return key[len("model."):]
        return None

    def checkpoint(self, ours: str) -> str:
        for theirs, mine in self.prefixes:
            if ours.startswith(mine):
                return theirs + ours[len(mine):]
        return "model." + ours


def ignored_keys(cfg: AlarmConfig, encoder_configs: Mapping[str, Any]) -> Dict[str, Tuple[int, ...]]:
    """Checkpoint keys of encoder modules that never run in ALARM -> their shapes."""
    out: Dict[str, Tuple[int, ...]] = {}
    for name in cfg.encoders:
        for key, shape in ENCODERS[name].ignored_checkpoint_keys(encoder_configs[name]).items():
            out[encoder_prefix(name) + key] = tuple(shape)
    return out


def load_alarm(
    directory: PathLike, whisper: WhisperConfig = WHISPER_LARGE_V3, dtype: torch.dtype = torch.float32,
    encoder_configs: Optional[Mapping[str, Any]] = None,
) -> AlarmParts:
    """ALARM checkpoint folder -> its config, the audio side's state dict and embed_tokens.

    The LLM copy's other tensors, and the encoders' never-run modules, are checked by name and
    shape from the headers only."""
    directory = Path(directory)
    raw_cfg = _read_json(directory / "config.json")
    try:
        cfg = AlarmConfig.from_hf_config(raw_cfg)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{directory / 'config.json'}: {e}") from None
    folder = read_safetensors_folder(directory)
    problems = _Problems()

    with _on_meta_device():
        audio = AlarmAudio(cfg, whisper, encoder_configs)
        llm = Qwen3Decoder(cfg.llm)
    # shapes only: the LLM copy's layers, and the modules of the encoders that never run
    shape_only = {k: _shape(v) for k, v in llm.state_dict().items()}
    shape_only.update({k: list(v) for k, v in ignored_keys(cfg, audio.encoder_configs).items()})
    names = AudioKeys(cfg.encoders)

    audio_keys: Dict[str, str] = {}  # ours -> checkpoint key
    for key, entry in folder.entries.items():
        ours = names.ours(key)
        if key in shape_only:
            if _shape_of(entry) != shape_only[key]:
                problems.add(f"{folder.files[key]}: key {key!r} has shape {_shape_of(entry)}, "
                             f"expected shape {shape_only[key]}")
        elif ours is not None:
            audio_keys[ours] = key
        elif key == LM_HEAD_KEY and cfg.llm.tie_word_embeddings:
            if _shape_of(entry) != [cfg.llm.vocab_size, cfg.llm.hidden_size]:
                problems.add(f"{folder.files[key]}: key {key!r} has shape {_shape_of(entry)}, "
                             f"expected shape {[cfg.llm.vocab_size, cfg.llm.hidden_size]}")
        else:
            problems.add(f"{folder.files[key]}: unknown key {key!r} (shape {_shape_of(entry)})")
    for key, want in shape_only.items():
        if key not in folder.entries:
            problems.add(f"{folder.source}: missing key {key!r} (expected shape {want})")

    got = _Collected()
    loaded = folder.load(audio_keys.values())
    for ours, key in audio_keys.items():
        got.add(ours, _cast(loaded.pop(key), dtype), key, str(folder.files[key]))
    _check_against(audio.state_dict(), got, names.checkpoint, folder.source, problems)
    problems.raise_if_any(f"ALARM checkpoint {directory}")
    embed = _cast(folder.load([EMBED_KEY])[EMBED_KEY], dtype)
    return AlarmParts(cfg, got.state, embed)


def build_alarm_audio(directory: PathLike, whisper: WhisperConfig = WHISPER_LARGE_V3,
                      dtype: torch.dtype = torch.float32,
                      encoder_configs: Optional[Mapping[str, Any]] = None) -> Tuple[AlarmAudio, Tensor]:
    """(ready AlarmAudio in eval mode, ALARM's embed_tokens weight)."""
    parts = load_alarm(directory, whisper, dtype, encoder_configs)
    with _on_meta_device():
        audio = AlarmAudio(parts.config, whisper, encoder_configs)
    return instantiate(audio, parts.audio_state), parts.embed_tokens


def encoder_config_from_file(encoder: str, path: PathLike) -> Any:
    """One encoder's config from its own HF config.json (whisper-large-v3's, facebook/w2v-bert-2.0's,
    ta012/SSLAM_AS2M_Finetuned's, OpenMuQ/MuQ-large-msd-iter's), through that module's reader."""
    from .muq import MuQConfig
    from .sslam import SSLAMConfig
    from .w2vbert import W2VBertConfig

    readers = {"whisper": WhisperConfig.from_hf_config, "w2vbert": W2VBertConfig.from_hf_config,
               "sslam": SSLAMConfig.from_hf_config, "muq": MuQConfig.from_hf_config}
    if encoder not in readers:
        raise CheckpointError(f"{path}: no config reader for encoder {encoder!r} (known: {sorted(readers)})")
    try:
        return readers[encoder](_read_json(Path(path)))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None


def whisper_config_from_file(path: PathLike) -> WhisperConfig:
    """A WhisperConfig from an HF Whisper config.json (e.g. openai/whisper-large-v3's)."""
    with open(path, encoding="utf-8") as f:
        return WhisperConfig.from_hf_config(json.load(f))


class AlarmReference(NamedTuple):
    """The PyTorch reference of a single-encoder ALARM model: what a bundle is converted from."""

    audio: AlarmAudio
    embed_tokens: Tensor  # ALARM's own copy [vocab, hidden]: the prompt text's embeddings
    decoder: Qwen3Decoder


def build_reference(qwen3_dir: PathLike, alarm_dir: PathLike, whisper_config: Optional[PathLike] = None,
                    encoder_configs: Optional[Mapping[str, Any]] = None) -> AlarmReference:
    """Both downloads through the strict loaders (fp32); whisper_config: an HF Whisper config.json
    (default: whisper-large-v3's numbers, which ALARM's code hard-codes); encoder_configs: the
    other encoders' configs by name (default: their released ones)."""
    whisper = WHISPER_LARGE_V3 if whisper_config is None else whisper_config_from_file(whisper_config)
    audio, embed = build_alarm_audio(alarm_dir, whisper, encoder_configs=encoder_configs)
    decoder = build_qwen3(qwen3_dir).eval()
    if embed.shape != decoder.model.embed_tokens.weight.shape:
        raise CheckpointError(f"{alarm_dir}: embed_tokens {list(embed.shape)} differs in shape from the Qwen3 "
                              f"checkpoint's {list(decoder.model.embed_tokens.weight.shape)}")
    return AlarmReference(audio.eval(), embed, decoder)
