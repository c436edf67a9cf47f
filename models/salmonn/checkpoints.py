"""Load SALMONN's official checkpoints into the reference modules, by their real key names.

SALMONN is put together from four downloads (see /work/shared/brief/salmonn.md):

    whisper   HF `openai/whisper-large-v2` directory   config.json + model.safetensors / pytorch_model.bin
    beats     `BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt`   torch.save({'cfg': dict, 'model': state_dict})
    vicuna    HF LLaMA directory (Vicuna-13B v1.1 / 7B v1.5)      config.json + shards + index json
    salmonn   `salmonn_v1.pth` / `salmonn_7b_v0.pth`              torch.save({'model': trained tensors})

Each `load_*` function returns (config, state dict in the reference module's own key names), cast to
float32. Every loader is strict in the same way:
  * a checkpoint key that is neither used nor on that loader's explicit skip list -> CheckpointError;
  * a key the module needs that the checkpoint lacks                             -> CheckpointError;
  * a tensor whose shape differs from the module built from the config          -> CheckpointError.
Messages name the file, the checkpoint's key and the expected / actual shapes. No dimension is a
constant here: everything comes from the config files or from tensor shapes, so the tiny checkpoints
of `make_tiny_checkpoints.py` (same layouts, small sizes) go through exactly the same code.

`build_reference` puts it all together into ready-to-run reference modules.

Pickle safety: `.pt` / `.pth` / `.bin` files are pickles. `torch_load` first lists what the pickle
would import and refuses anything beyond tensors, storages, dtypes and OrderedDict (plain Python
values need no import), unless the caller passes `allow_pickle=True` for a file they trust.
"""

from __future__ import annotations

import contextlib
import json
import pickletools
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from . import safetensors_io
from .beats import BeatsConfig, BeatsEncoder, fold_weight_norm
from .connector import ConnectorConfig, SalmonnConnector, window_frames_for
from .llama import LlamaConfig, LlamaDecoder, LoraConfig, rotary_inv_freq
from .whisper import WhisperConfig, WhisperEncoder

PathLike = Union[str, Path]
StateDict = Dict[str, Tensor]


class CheckpointError(Exception):
    """A checkpoint does not match the expected layout (names the file, the key and the shapes)."""


# ==============================================================================================
# Reading files


# What a pickled state dict may name: tensor rebuild functions, storage classes, dtypes, OrderedDict.
# (torch.load in torch 1.13 ignores a custom `pickle_module`, and its `weights_only` mode cannot
# even read a float, so the pickle is screened before torch.load sees it.)
ALLOWED_PICKLE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch.nn.parameter", "Parameter"),
    ("torch", "Size"),
    ("torch", "Tensor"),
    ("torch", "float64"), ("torch", "float32"), ("torch", "float16"), ("torch", "bfloat16"),
    ("torch", "int64"), ("torch", "int32"), ("torch", "int16"), ("torch", "int8"),
    ("torch", "uint8"), ("torch", "bool"),
}


def _is_allowed_global(module: str, name: str) -> bool:
    storage_class = module == "torch" and name.endswith("Storage")  # FloatStorage, HalfStorage, ...
    return storage_class or (module, name) in ALLOWED_PICKLE_GLOBALS


def _pickle_imports(data: bytes) -> Iterator[Tuple[str, str]]:
    """(module, name) of every class or function a pickle would import.

    Only GLOBAL / INST name their target in the opcode itself. STACK_GLOBAL (protocol 4+, which
    torch.save does not use by default) takes it from the stack; we do not trace the stack, so it
    is reported as a name that no allow list contains.
    """
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            yield module, name
        elif opcode.name == "STACK_GLOBAL":
            yield "<STACK_GLOBAL>", "<pickle protocol 4+>"


def _screen_pickle(path: Path) -> None:
    """Refuse a torch.save file whose pickle would import anything beyond ALLOWED_PICKLE_GLOBALS."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: legacy (pre-1.6) torch.save format cannot be screened; "
                              "pass allow_pickle=True only if you trust it")
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(names) != 1:
            raise CheckpointError(f"{path}: not a torch.save archive (no single */data.pkl)")
        data = archive.read(names[0])
    refused = sorted({f"{m}.{n}" for m, n in _pickle_imports(data) if not _is_allowed_global(m, n)})
    if refused:
        raise CheckpointError(
            f"{path}: refusing to unpickle {', '.join(refused)}; the file holds Python objects beyond "
            "tensors and plain data. Pass allow_pickle=True only if you trust it."
        )


def torch_load(path: PathLike, allow_pickle: bool = False) -> Any:
    """torch.load onto the CPU; without `allow_pickle`, only files whose pickle names nothing but
    tensors, storages, dtypes and OrderedDict (besides plain Python values) are loaded."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if not allow_pickle:
        _screen_pickle(path)
    # weights_only=False: the screen above (or the caller) vouches for the file; newer torch would
    # otherwise apply its own, different, allow list
    return torch.load(path, map_location="cpu", weights_only=False)


def _read_json(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_tensor_file(path: Path, allow_pickle: bool) -> StateDict:
    """One weights file (.safetensors, or a pickled state dict such as pytorch_model.bin)."""
    if path.suffix == ".safetensors":
        try:
            return safetensors_io.load_file(path)
        except (safetensors_io.SafetensorsError, OSError) as e:
            raise CheckpointError(str(e)) from None
    state = torch_load(path, allow_pickle)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor)")
    return dict(state)


@dataclass
class WeightFiles:
    """The tensors of one checkpoint, which may be spread over several shard files."""

    tensors: StateDict
    files: Dict[str, str]  # checkpoint key -> the file it was read from
    source: str  # what to name in messages about keys that are absent

    def where(self, key: str) -> str:
        return self.files.get(key, self.source)


# Layouts of a Hugging Face model directory, in the order they are tried: (index file, single file).
HF_WEIGHT_LAYOUTS = (
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
)


def _read_sharded(index_path: Path, allow_pickle: bool) -> WeightFiles:
    """Shards listed by an HF index json ({"weight_map": {key: shard file name}})."""
    weight_map: Dict[str, str] = _read_json(index_path).get("weight_map") or {}
    if not weight_map:
        raise CheckpointError(f"{index_path}: no weight_map")
    tensors: StateDict = {}
    files: Dict[str, str] = {}
    for shard_name in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard_name
        for key, tensor in _read_tensor_file(shard_path, allow_pickle).items():
            if weight_map.get(key) != shard_name:
                listed = weight_map.get(key, "nowhere")
                raise CheckpointError(f"{shard_path}: key {key!r} is listed in {index_path.name} as in {listed}")
            tensors[key] = tensor
            files[key] = str(shard_path)
    for key, shard_name in weight_map.items():
        if key not in tensors:
            raise CheckpointError(f"{index_path.parent / shard_name}: missing key {key!r} (listed in {index_path.name})")
    return WeightFiles(tensors, files, str(index_path))


def read_hf_weights(directory: PathLike, allow_pickle: bool = False) -> WeightFiles:
    """All tensors of an HF model directory: sharded or single, safetensors or pickle."""
    directory = Path(directory)
    for index_name, single_name in HF_WEIGHT_LAYOUTS:
        if (directory / index_name).is_file():
            return _read_sharded(directory / index_name, allow_pickle)
        if (directory / single_name).is_file():
            path = directory / single_name
            tensors = _read_tensor_file(path, allow_pickle)
            return WeightFiles(tensors, {k: str(path) for k in tensors}, str(path))
    tried = ", ".join(name for layout in HF_WEIGHT_LAYOUTS for name in layout)
    raise CheckpointError(f"{directory}: no weights found (looked for {tried})")


# ==============================================================================================
# Checking a state dict against a module


@contextlib.contextmanager
def _on_meta_device() -> Iterator[None]:
    """Build modules with shape-only ('meta') tensors: no memory, no init cost, even for 13B.

    Works by swapping nn.Module.register_parameter / register_buffer for the duration (the trick
    HF accelerate's init_empty_weights uses), so it is not thread-safe.
    """
    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer

    def meta_parameter(module: nn.Module, name: str, param: Optional[nn.Parameter]) -> None:
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def meta_buffer(module: nn.Module, name: str, tensor: Optional[Tensor], persistent: bool = True) -> None:
        # non-persistent buffers (derived constants such as MuQ's DFT basis) are in no checkpoint:
        # they keep the values the module computed
        keep = tensor is None or not persistent
        register_buffer(module, name, tensor if keep else tensor.to("meta"), persistent)

    nn.Module.register_parameter = meta_parameter  # type: ignore[assignment]
    nn.Module.register_buffer = meta_buffer  # type: ignore[assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[assignment]
        nn.Module.register_buffer = register_buffer  # type: ignore[assignment]


def _shape(t: Tensor) -> List[int]:
    return list(t.shape)


class _Problems:
    """Collects every mismatch so that one error lists them all."""

    MAX_LINES = 20

    def __init__(self) -> None:
        self.lines: List[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def raise_if_any(self, what: str) -> None:
        if not self.lines:
            return
        shown = self.lines[: self.MAX_LINES]
        if len(self.lines) > self.MAX_LINES:
            shown.append(f"... and {len(self.lines) - self.MAX_LINES} more")
        if len(self.lines) == 1:
            raise CheckpointError(shown[0])  # each line already names its file
        raise CheckpointError(f"{what}: {len(self.lines)} problems\n  " + "\n  ".join(shown))


@dataclass
class _Collected:
    """Tensors in our key names, with where each came from (for messages)."""

    state: StateDict = field(default_factory=dict)
    checkpoint_key: Dict[str, str] = field(default_factory=dict)  # our key -> checkpoint key
    file: Dict[str, str] = field(default_factory=dict)  # our key -> file

    def add(self, ours: str, tensor: Tensor, checkpoint_key: str, file: str) -> None:
        self.state[ours] = tensor
        self.checkpoint_key[ours] = checkpoint_key
        self.file[ours] = file


def _compile(patterns: Sequence[str]) -> "re.Pattern[str]":
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def _check_against(
    expected: Mapping[str, Tensor],
    got: _Collected,
    checkpoint_key_of: Callable[[str], str],
    source: str,
    problems: _Problems,
) -> None:
    """Missing keys, unknown keys, shape and kind (float / integer) mismatches."""
    for key, want in expected.items():
        if key not in got.state:
            problems.add(f"{source}: missing key {checkpoint_key_of(key)!r} (expected shape {_shape(want)})")
            continue
        have = got.state[key]
        where = f"{got.file[key]}: key {got.checkpoint_key[key]!r}"
        if _shape(have) != _shape(want):
            problems.add(f"{where} has shape {_shape(have)}, expected shape {_shape(want)}")
        elif have.is_floating_point() != want.is_floating_point():
            problems.add(f"{where} has dtype {have.dtype}, expected a {want.dtype} tensor")
    for key, have in got.state.items():
        if key not in expected:
            problems.add(f"{got.file[key]}: unknown key {got.checkpoint_key[key]!r} (shape {_shape(have)})")


def _cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    """Floating tensors to `dtype` (fp16 / bf16 shards -> fp32); integer tensors unchanged."""
    return t.to(dtype) if t.is_floating_point() else t


def instantiate(module: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    """Fill a module built on the meta device with the (already checked) tensors of `state`.

    The tensors are used as they are (no copy), so the peak memory is one copy of the weights.
    Parameters are frozen (requires_grad False) and the module is put in eval mode.
    """
    for key, tensor in state.items():
        owner_name, _, attr = key.rpartition(".")
        owner = module.get_submodule(owner_name)
        if attr in owner._parameters:
            setattr(owner, attr, nn.Parameter(tensor, requires_grad=False))
        elif attr in owner._buffers:
            setattr(owner, attr, tensor)
        else:
            raise CheckpointError(f"{type(module).__name__} has no parameter or buffer {key!r}")
    left = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{type(module).__name__}: no tensor given for {left}")
    return module.eval()


# ==============================================================================================
# Whisper encoder (HF openai/whisper-large-v2)

WHISPER_ENCODER_PREFIX = "model.encoder."
# The decoder half of Whisper, unused by SALMONN. (`proj_out` is tied to the decoder's token
# embedding; HF usually does not save it, but tolerate it.)
WHISPER_SKIPPED_PREFIXES = ("model.decoder.", "proj_out.")


def _whisper(path: PathLike, dtype: torch.dtype, allow_pickle: bool) -> Tuple[WhisperConfig, StateDict, nn.Module]:
    directory = Path(path)
    cfg = WhisperConfig.from_hf_config(_read_json(directory / "config.json"))
    weights = read_hf_weights(directory, allow_pickle)
    got, problems = _Collected(), _Problems()
    for key in list(weights.tensors):
        tensor = weights.tensors.pop(key)  # pop: the original dtype copy can go as soon as it is cast
        if key.startswith(WHISPER_ENCODER_PREFIX):
            got.add(key[len(WHISPER_ENCODER_PREFIX):], _cast(tensor, dtype), key, weights.where(key))
        elif not key.startswith(WHISPER_SKIPPED_PREFIXES):
            problems.add(f"{weights.where(key)}: unknown key {key!r} (shape {_shape(tensor)})")
    with _on_meta_device():
        module = WhisperEncoder(cfg)
    _check_against(module.state_dict(), got, lambda k: WHISPER_ENCODER_PREFIX + k, weights.source, problems)
    problems.raise_if_any(f"Whisper checkpoint {directory}")
    return cfg, got.state, module


def load_whisper_encoder(
    path: PathLike, dtype: torch.dtype = torch.float32, allow_pickle: bool = False,
) -> Tuple[WhisperConfig, StateDict]:
    """HF Whisper directory -> (WhisperConfig, WhisperEncoder state dict).

    Keeps `model.encoder.*` (prefix stripped), skips the decoder (`WHISPER_SKIPPED_PREFIXES`).
    """
    cfg, state, _ = _whisper(path, dtype, allow_pickle)
    return cfg, state


# ==============================================================================================
# BEATs

# The AudioSet classifier of the fine-tuned checkpoint; SALMONN uses features only.
BEATS_SKIPPED_KEYS = (r"predictor\.weight", r"predictor\.bias")
# The positional convolution is saved weight-normalised (torch weight_norm with dim=2).
BEATS_POS_CONV = "encoder.pos_conv.0.weight"
BEATS_WEIGHT_G = BEATS_POS_CONV + "_g"
BEATS_WEIGHT_V = BEATS_POS_CONV + "_v"
_BEATS_SHARED_BIAS = re.compile(r"encoder\.layers\.\d+\.self_attn\.relative_attention_bias\.weight")


def _beats_parts(path: Path, allow_pickle: bool) -> Tuple[Dict[str, Any], StateDict]:
    ckpt = torch_load(path, allow_pickle)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("cfg"), dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: expected a dict with 'cfg' (dict) and 'model' (state dict)")
    return ckpt["cfg"], dict(ckpt["model"])


def _fold_pos_conv(path: Path, model: StateDict, expected: Mapping[str, Tensor],
                   dtype: torch.dtype, got: _Collected, problems: _Problems) -> None:
    """weight_g [1, 1, K] and weight_v [C, C / groups, K] -> weight = g * v / ||v||."""
    if BEATS_POS_CONV in model:  # already folded by someone: take it as it is
        return
    want_v = _shape(expected[BEATS_POS_CONV])
    want_g = [1, 1, want_v[2]]
    g, v = model.pop(BEATS_WEIGHT_G, None), model.pop(BEATS_WEIGHT_V, None)
    for key, tensor, want in ((BEATS_WEIGHT_G, g, want_g), (BEATS_WEIGHT_V, v, want_v)):
        if tensor is None:
            problems.add(f"{path}: missing key {key!r} (expected shape {want})")
        elif _shape(tensor) != want:
            problems.add(f"{path}: key {key!r} has shape {_shape(tensor)}, expected shape {want}")
    if g is not None and v is not None and _shape(g) == want_g and _shape(v) == want_v:
        folded = fold_weight_norm(g.to(torch.float32), v.to(torch.float32), dim=2)
        got.add(BEATS_POS_CONV, folded.to(dtype), f"{BEATS_WEIGHT_G} + {BEATS_WEIGHT_V}", str(path))


def _check_shared_bias(path: Path, model: StateDict, problems: _Problems) -> None:
    """BEATs shares one relative position table between all layers; the reference does too."""
    tables = [(k, t) for k, t in model.items() if _BEATS_SHARED_BIAS.fullmatch(k)]
    for key, table in tables[1:]:
        if _shape(table) == _shape(tables[0][1]) and not torch.equal(table, tables[0][1]):
            problems.add(f"{path}: key {key!r} differs from {tables[0][0]!r}, but the layers share one table")


def _beats(path: PathLike, dtype: torch.dtype, allow_pickle: bool) -> Tuple[BeatsConfig, StateDict, nn.Module]:
    path = Path(path)
    raw_cfg, model = _beats_parts(path, allow_pickle)
    try:
        cfg = BeatsConfig.from_cfg(raw_cfg)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad 'cfg': {e}") from None
    with _on_meta_device():
        module = BeatsEncoder(cfg)
    expected = module.state_dict()

    got, problems = _Collected(), _Problems()
    skipped = _compile(BEATS_SKIPPED_KEYS)
    _fold_pos_conv(path, model, expected, dtype, got, problems)
    _check_shared_bias(path, model, problems)
    for key, tensor in model.items():
        if not skipped.fullmatch(key):
            got.add(key, _cast(tensor, dtype), key, str(path))
    _check_against(expected, got, lambda k: k, str(path), problems)
    problems.raise_if_any(f"BEATs checkpoint {path}")
    return cfg, got.state, module


def load_beats(
    pt_path: PathLike, dtype: torch.dtype = torch.float32, allow_pickle: bool = False,
) -> Tuple[BeatsConfig, StateDict]:
    """BEATs .pt ({'cfg', 'model'}) -> (BeatsConfig, BeatsEncoder state dict).

    The weight-normalised `encoder.pos_conv.0.weight_g / weight_v` are folded into `weight`;
    the classifier (`BEATS_SKIPPED_KEYS`) is dropped.
    """
    cfg, state, _ = _beats(pt_path, dtype, allow_pickle)
    return cfg, state


# ==============================================================================================
# LLaMA / Vicuna (HF layout)

# Rotary frequencies that older HF LLaMA checkpoints store as a buffer; the reference computes
# them (their values are checked against rope_theta before they are dropped).
LLAMA_SKIPPED_KEYS = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)


def llama_key(checkpoint_key: str) -> str:
    """HF LLaMA key -> reference LlamaDecoder key. The reference keeps HF's names
    (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, ..., `lm_head.weight`),
    so this is the identity; it exists to make that decision explicit."""
    return checkpoint_key


def _check_inv_freq(key: str, tensor: Tensor, cfg: LlamaConfig, where: str, problems: _Problems) -> None:
    want = rotary_inv_freq(cfg.head_dim, cfg.rope_theta)
    if _shape(tensor) != _shape(want):
        problems.add(f"{where}: key {key!r} has shape {_shape(tensor)}, expected shape {_shape(want)}")
    elif not torch.allclose(tensor.float(), want, rtol=1e-3, atol=0.0):
        problems.add(f"{where}: key {key!r} does not match rope_theta={cfg.rope_theta}")


def _llama(directory: PathLike, dtype: torch.dtype, allow_pickle: bool) -> Tuple[LlamaConfig, StateDict, nn.Module]:
    directory = Path(directory)
    cfg = LlamaConfig.from_hf_config(_read_json(directory / "config.json"))
    weights = read_hf_weights(directory, allow_pickle)
    got, problems = _Collected(), _Problems()
    skipped = _compile(LLAMA_SKIPPED_KEYS)
    for key in list(weights.tensors):
        tensor = weights.tensors.pop(key)  # pop: each fp16 tensor can go as soon as it is cast
        if skipped.fullmatch(key):
            _check_inv_freq(key, tensor, cfg, weights.where(key), problems)
        else:
            got.add(llama_key(key), _cast(tensor, dtype), key, weights.where(key))
    with _on_meta_device():
        module = LlamaDecoder(cfg)
    _check_against(module.state_dict(), got, lambda k: k, weights.source, problems)
    problems.raise_if_any(f"LLaMA checkpoint {directory}")
    return cfg, got.state, module


def load_llama(
    directory: PathLike, dtype: torch.dtype = torch.float32, allow_pickle: bool = False,
) -> Tuple[LlamaConfig, StateDict]:
    """HF LLaMA directory (single file or shards, .bin or .safetensors) -> (LlamaConfig, state dict).

    fp16 shards are cast to `dtype`; a layer split across shards is fine (keys are read one by one);
    `rotary_emb.inv_freq` buffers are checked against rope_theta and dropped.
    """
    cfg, state, _ = _llama(directory, dtype, allow_pickle)
    return cfg, state


# ==============================================================================================
# SALMONN's own checkpoint: connector + LoRA

SALMONN_LORA_PREFIX = "llama_model.base_model.model."
# peft 0.3.0 keys adapters by name ('default'); peft 0.2 had no adapter name. Both are accepted.
_SALMONN_LORA_KEY = re.compile(
    r"llama_model\.base_model\.model\.model\.layers\.(\d+)\.self_attn\.([a-z]+_proj)"
    r"\.lora_([AB])(?:\.default)?\.weight"
)
SALMONN_CONNECTOR_PREFIXES = ("speech_query_tokens", "speech_Qformer.", "ln_speech.", "ln_audio.", "speech_llama_proj.")
SALMONN_SKIPPED_KEYS = (
    # buffers, saved because SALMONN saves every buffer along with the trained parameters
    r"speech_Qformer\.bert\.embeddings\.position_ids",
    r"llama_model\.base_model\.model\.model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",
    # BERT parts that SALMONN sets to None before training (no text input, no LM head), so the
    # released files lack them; tolerated should a checkpoint still hold them
    r"speech_Qformer\.bert\.embeddings\.word_embeddings\.weight",
    r"speech_Qformer\.bert\.embeddings\.position_embeddings\.weight",
    r"speech_Qformer\.bert\.encoder\.layer\.\d+\.intermediate\.dense\.(?:weight|bias)",
    r"speech_Qformer\.bert\.encoder\.layer\.\d+\.output\.dense\.(?:weight|bias)",
    r"speech_Qformer\.bert\.encoder\.layer\.\d+\.output\.LayerNorm\.(?:weight|bias)",
    r"speech_Qformer\.cls\..+",
)
_QFORMER_LAYER = re.compile(r"speech_Qformer\.bert\.encoder\.layer\.(\d+)\.")

LoraPairs = Dict[int, Dict[str, Tuple[Tensor, Tensor]]]  # layer -> projection -> (A [r, in], B [out, r])


def peft_lora_key(layer: int, projection: str, matrix: str) -> str:
    """The key SALMONN's .pth uses for LoRA matrix 'A' or 'B' (peft 0.3.0 naming)."""
    return f"{SALMONN_LORA_PREFIX}model.layers.{layer}.self_attn.{projection}.lora_{matrix}.default.weight"


def reference_lora_key(layer: int, projection: str, matrix: str) -> str:
    """The reference LlamaDecoder's name for the same tensor."""
    return f"model.layers.{layer}.self_attn.{projection}.lora_{matrix}"


@dataclass
class SalmonnTrainables:
    """The trained parts of SALMONN: connector weights and LoRA matrices."""

    connector_config: ConnectorConfig
    connector_state: StateDict  # SalmonnConnector's keys (= the checkpoint's)
    lora: LoraPairs  # {layer: {'q_proj': (A, B), 'v_proj': (A, B)}}
    lora_rank: int

    @property
    def lora_targets(self) -> Tuple[str, ...]:
        return tuple(sorted(self.lora[0])) if self.lora else ()

    def lora_config(self, alpha: float = 32.0) -> LoraConfig:
        return LoraConfig(r=self.lora_rank, alpha=alpha, target_modules=self.lora_targets)

    def lora_state_dict(self) -> StateDict:
        """LoRA matrices under the reference LlamaDecoder's names."""
        out: StateDict = {}
        for layer, projections in sorted(self.lora.items()):
            for projection, (a, b) in sorted(projections.items()):
                out[reference_lora_key(layer, projection, "A")] = a
                out[reference_lora_key(layer, projection, "B")] = b
        return out


def _require(state: StateDict, key: str, path: Path, purpose: str) -> Tensor:
    if key not in state:
        raise CheckpointError(f"{path}: missing key {key!r} (needed to infer {purpose})")
    return state[key]


def infer_connector_config(
    state: StateDict, path: Path, qformer_heads: int, window_frames: int, stride_frames: int, layer_norm_eps: float,
) -> ConnectorConfig:
    """Connector dimensions from tensor shapes; heads, windows and eps cannot be seen in shapes."""
    speech_width = _require(state, "ln_speech.weight", path, "the speech width").shape[0]
    audio_width = _require(state, "ln_audio.weight", path, "the audio width").shape[0]
    query = _require(state, "speech_query_tokens", path, "the Q-Former width")  # [1, n_query, hidden]
    proj = _require(state, "speech_llama_proj.weight", path, "the LLM width")  # [llm_hidden, hidden]
    ffn_key = "speech_Qformer.bert.encoder.layer.0.intermediate_query.dense.weight"
    ffn = _require(state, ffn_key, path, "the Q-Former FFN width").shape[0]  # [ffn, hidden]
    layers = 1 + max(int(m.group(1)) for m in map(_QFORMER_LAYER.match, state) if m)
    if query.dim() != 3:
        raise CheckpointError(f"{path}: key 'speech_query_tokens' has shape {_shape(query)}, expected [1, n, hidden]")
    hidden = query.shape[2]
    if hidden % qformer_heads != 0:
        raise CheckpointError(f"{path}: Q-Former width {hidden} is not divisible by qformer_heads={qformer_heads}")
    return ConnectorConfig(
        speech_width=speech_width, audio_width=audio_width, qformer_hidden=hidden, qformer_layers=layers,
        qformer_heads=qformer_heads, qformer_ffn=ffn, layer_norm_eps=layer_norm_eps,
        window_frames=window_frames, stride_frames=stride_frames, num_query_tokens=query.shape[1],
        llm_hidden=proj.shape[0],
    )


def _collect_lora(path: Path, raw: Dict[Tuple[int, str, str], Tensor], problems: _Problems) -> Tuple[LoraPairs, int]:
    """Pair up A and B per (layer, projection); all layers must carry the same projections."""
    lora: LoraPairs = {}
    rank = 0
    sites = sorted({(layer, projection) for layer, projection, _ in raw})
    for layer, projection in sites:
        a, b = raw.get((layer, projection, "A")), raw.get((layer, projection, "B"))
        for matrix, tensor in (("A", a), ("B", b)):
            if tensor is None:
                problems.add(f"{path}: missing key {peft_lora_key(layer, projection, matrix)!r}")
        if a is None or b is None:
            continue
        rank = rank or a.shape[0]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != rank or b.shape[1] != rank:
            problems.add(
                f"{path}: key {peft_lora_key(layer, projection, 'A')!r} / 'lora_B' have shapes "
                f"{_shape(a)} / {_shape(b)}, expected [{rank}, in] / [out, {rank}]"
            )
        lora.setdefault(layer, {})[projection] = (a, b)
    targets = {tuple(sorted(p)) for p in lora.values()}
    if len(targets) > 1:
        problems.add(f"{path}: layers carry LoRA on different projections: {sorted(targets)}")
    if lora and sorted(lora) != list(range(len(lora))):
        problems.add(f"{path}: LoRA layers are not 0..{len(lora) - 1}: {sorted(lora)}")
    return lora, rank


def _check_lora_against_llama(path: Path, trainables: SalmonnTrainables, llama: LlamaConfig, problems: _Problems) -> None:
    """Every LoRA matrix the LlamaDecoder expects is there, with its shape."""
    with _on_meta_device():
        module = LlamaDecoder(llama, trainables.lora_config())
    expected = {k: t for k, t in module.state_dict().items() if ".lora_" in k}
    got = _Collected()
    for layer, projections in trainables.lora.items():
        for projection, pair in projections.items():
            for matrix, tensor in zip("AB", pair):
                key = reference_lora_key(layer, projection, matrix)
                got.add(key, tensor, peft_lora_key(layer, projection, matrix), str(path))

    def checkpoint_key(ours: str) -> str:  # 'model.layers.3.self_attn.q_proj.lora_A'
        m = re.fullmatch(r"model\.layers\.(\d+)\.self_attn\.([a-z]+_proj)\.lora_([AB])", ours)
        return peft_lora_key(int(m.group(1)), m.group(2), m.group(3)) if m else ours

    _check_against(expected, got, checkpoint_key, str(path), problems)


def load_salmonn_trainables(
    pth_path: PathLike,
    qformer_heads: int = 12,
    window_frames: int = window_frames_for(0.333333),
    stride_frames: int = window_frames_for(0.333333),
    layer_norm_eps: float = 1e-12,
    llama_config: Optional[LlamaConfig] = None,
    dtype: torch.dtype = torch.float32,
    allow_pickle: bool = False,
) -> SalmonnTrainables:
    """SALMONN .pth ({'model': state dict}) -> connector config + state and LoRA pairs.

    Connector sizes are read from tensor shapes. What shapes cannot tell is passed in:
    `qformer_heads` (12, bert-base, for the real checkpoints), the window / stride in encoder
    frames (17 = round(1500 * 0.333333 / 30)) and BERT's LayerNorm eps. The LoRA rank is the
    first dimension of lora_A. With `llama_config`, the LoRA matrices are also checked against
    that LLaMA (layer count, widths); without it only their pairing and rank are checked.
    """
    path = Path(pth_path)
    ckpt = torch_load(path, allow_pickle)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: expected a dict with 'model' (state dict)")
    state: StateDict = dict(ckpt["model"])

    problems = _Problems()
    skipped = _compile(SALMONN_SKIPPED_KEYS)
    connector = _Collected()
    lora_raw: Dict[Tuple[int, str, str], Tensor] = {}
    for key, tensor in state.items():
        lora_match = _SALMONN_LORA_KEY.fullmatch(key)
        if skipped.fullmatch(key):
            continue
        if lora_match:
            layer, projection, matrix = int(lora_match.group(1)), lora_match.group(2), lora_match.group(3)
            lora_raw[(layer, projection, matrix)] = _cast(tensor, dtype)
        elif key.startswith(SALMONN_CONNECTOR_PREFIXES):
            connector.add(key, _cast(tensor, dtype), key, str(path))
        else:
            problems.add(f"{path}: unknown key {key!r} (shape {_shape(tensor)})")

    cfg = infer_connector_config(connector.state, path, qformer_heads, window_frames, stride_frames, layer_norm_eps)
    with _on_meta_device():
        module = SalmonnConnector(cfg)
    _check_against(module.state_dict(), connector, lambda k: k, str(path), problems)
    if not lora_raw:
        problems.add(f"{path}: no LoRA weights (expected keys like {peft_lora_key(0, 'q_proj', 'A')!r})")
    lora, rank = _collect_lora(path, lora_raw, problems)
    trainables = SalmonnTrainables(cfg, connector.state, lora, rank)
    if llama_config is not None:
        _check_lora_against_llama(path, trainables, llama_config, problems)
        if cfg.llm_hidden != llama_config.hidden_size:
            problems.add(f"{path}: speech_llama_proj outputs {cfg.llm_hidden} features, "
                         f"the LLM's hidden_size is {llama_config.hidden_size}")
    problems.raise_if_any(f"SALMONN checkpoint {path}")
    return trainables


# ==============================================================================================
# Everything together


@dataclass(frozen=True)
class SalmonnConfigs:
    whisper: WhisperConfig
    beats: BeatsConfig
    connector: ConnectorConfig
    llama: LlamaConfig
    lora: LoraConfig


class ReferenceModules(NamedTuple):
    """Loaded reference modules (eval mode, frozen, float32) and their configs."""

    whisper: WhisperEncoder
    beats: BeatsEncoder
    connector: SalmonnConnector
    llm: LlamaDecoder
    configs: SalmonnConfigs


def _check_widths(whisper: WhisperConfig, beats: BeatsConfig, connector: ConnectorConfig, pth: Path) -> None:
    problems = _Problems()
    if connector.speech_width != whisper.d_model:
        problems.add(f"ln_speech has width {connector.speech_width}, Whisper's d_model is {whisper.d_model}")
    if connector.audio_width != beats.encoder_embed_dim:
        problems.add(f"ln_audio has width {connector.audio_width}, BEATs' encoder_embed_dim is {beats.encoder_embed_dim}")
    problems.raise_if_any(f"SALMONN checkpoint {pth} does not fit the encoders")


def build_reference(
    whisper_dir: PathLike,
    beats_pt: PathLike,
    llama_dir: PathLike,
    salmonn_pth: PathLike,
    lora_alpha: float = 32.0,
    qformer_heads: int = 12,
    allow_pickle: bool = False,
) -> ReferenceModules:
    """Load all four checkpoints into reference modules (float32, CPU, eval mode).

    `lora_alpha` sets the LLM's default LoRA scale (alpha / rank; SALMONN trains with 32, its demos
    use 24..32 at inference); `LlamaDecoder.forward(lora_scale=...)` still overrides it per call.
    `qformer_heads` cannot be read from the weights (12 for the real SALMONN, bert-base);
    the value is stored in `configs.connector`. Memory: one float32 copy of every weight
    (13B: ~52 GB for the LLM alone).
    """
    whisper_cfg, whisper_state, whisper = _whisper(whisper_dir, torch.float32, allow_pickle)
    beats_cfg, beats_state, beats = _beats(beats_pt, torch.float32, allow_pickle)
    llama_cfg, llama_state, _ = _llama(llama_dir, torch.float32, allow_pickle)
    trainables = load_salmonn_trainables(
        salmonn_pth, qformer_heads=qformer_heads, llama_config=llama_cfg, allow_pickle=allow_pickle,
    )
    _check_widths(whisper_cfg, beats_cfg, trainables.connector_config, Path(salmonn_pth))

    lora_cfg = trainables.lora_config(alpha=float(lora_alpha))
    with _on_meta_device():
        connector = SalmonnConnector(trainables.connector_config)
        llm = LlamaDecoder(llama_cfg, lora_cfg)
    configs = SalmonnConfigs(whisper_cfg, beats_cfg, trainables.connector_config, llama_cfg, lora_cfg)
    return ReferenceModules(
        whisper=instantiate(whisper, whisper_state),
        beats=instantiate(beats, beats_state),
        connector=instantiate(connector, trainables.connector_state),
        llm=instantiate(llm, {**llama_state, **trainables.lora_state_dict()}),
        configs=configs,
    )
