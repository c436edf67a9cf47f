#!/usr/bin/env python3
"""Builds the decoder graphs `npm run bench` measures, with the project's own graph builder.

    /usr/bin/python3 models/build_bench_models.py --out .bench-cache --model medium [--key STAMP]

One folder per model under --out (`npm run bench` calls this only when a folder is missing or its
`stamp` differs from the hash of the builder sources it passes as --key):

    <out>/<model>/bench.json                 geometry, LoRA scale, which files hold which variant
    <out>/<model>/onnx/embed_tokens{,_q4}.onnx, decoder_model_merged{,_q4}.onnx (+ .onnx_data*)
    <out>/<model>/peer/                      the same weights in transformers.js' text-only layout:
        config.json, generation_config.json, tokenizer.json, tokenizer_config.json,
        onnx/decoder_model_merged{,_q4}.onnx (+ .onnx_data, _data_1, ...): `input_ids` in, LoRA scale
        constant where the graph has one (onnx_decoder.text_only_decoder)

Models:
    tiny    the app's bundle (models/bundles/salmonn-tiny): its own graphs are used in place; only
            the peer layout is written here.
    medium  random weights (seed 0): hidden 1024, 8 layers, 8 heads (head_dim 128, 8 KV heads),
            intermediate 2816, vocab 32000, LoRA r8 on q_proj/v_proj; fp32 and int4.
    7b, 13b Vicuna-7B / -13B geometry, int4 only, no peer (7b-nolora: the 7B without its LoRA path,
            what a LoRA merged into the weights costs). Their int4 weights are random packed
            bytes and random scales made per tensor (never fp32: 7B would need 27 GB) and streamed
            into the external data files while the graph is built (onnx_decoder.ExternalDataWriter).
            Random rather than zero bytes: zeros can flatter a kernel's timing.
    qwen3-4b
            Qwen/Qwen3-4B-Thinking-2507's geometry (alarm/qwen3.Qwen3Config's defaults, ALARM's LLM):
            36 layers, hidden 2560, intermediate 9728, 32 query / 8 KV heads, head_dim 128, rope
            theta 5e6, rms eps 1e-6, vocab 151936, tied embeddings, no LoRA. int4 only, streamed like the 7B, through the graph ALARM's bundle exports (alarm/bundle.write_graphs:
            qwen3_flavor = per-head q/k RMSNorm, no lora_scale input; the tied head reads the
            embed_tokens graph's own data file, `shared_head`, listed among the decoder's data).
            Its prompts are ids of the Qwen3 tokenizer (the ALARM tiny bundle's, bench.json
            `tokenizer`). The embedding table is made in fp32 (1.6 GB) and quantized by
            build_embed_graph as the converter does; the linears never exist in fp32.
            Its peer (model_type qwen3) stores the table the tied head shares once
            (save_model(share_identical=True)): 2.5 GB in three 1 GiB chunks, which config.json's
            transformers.js_config.use_external_data_format counts.
    qwen3-medium
            a small Qwen3 (same flavor and export): hidden 1024, 8 layers, 16 query / 4 KV heads,
            head_dim 128, intermediate 3072, vocab 151936 (Qwen3's tokenizer), tied head, in
            memory, int4 only, with a peer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from alarm.qwen3 import Qwen3Config  # noqa: E402
from salmonn.int4 import BLOCK_SIZE  # noqa: E402
from salmonn.llama import LlamaConfig  # noqa: E402
from salmonn.onnx_decoder import (  # noqa: E402
    LLAMA,
    ExternalDataWriter,
    LlmFlavor,
    QuantizedLinear,
    build_decoder_model,
    build_embed_graph,
    embed_table_tensors,
    qwen3_flavor,
    save_model,
    text_only_decoder,
)

TINY_BUNDLE = HERE / "bundles" / "salmonn-tiny"
TOKENIZER_DIR = HERE / "tokenizer"
QWEN3_TOKENIZER_DIR = HERE / "bundles" / "alarm-tiny"  # Qwen3's tokenizer.json / tokenizer_config.json
SUFFIX = {"fp32": "", "int4": "_q4"}
LORA_RANK = 8
LORA_ALPHA = 32.0
LORA_TARGETS = ("q_proj", "v_proj")
EOS_TOKEN_ID = 2
BOS_TOKEN_ID = 1
# Qwen3-4B-Thinking-2507's config.json: bos <|endoftext|>, eos <|im_end|> (ids of the Qwen3 tokenizer).
QWEN3_BOS_TOKEN_ID = 151643
QWEN3_EOS_TOKEN_ID = 151645


@dataclass(frozen=True)
class RandomModel:
    config: LlamaConfig | Qwen3Config
    precisions: tuple[str, ...]
    peer: bool
    streamed: bool  # int4 bytes made directly (no fp32 weights in memory)
    lora: bool = True  # False: no LoRA path in the graph (what a LoRA merged into the weights costs)
    flavor: LlmFlavor = LLAMA  # qwen3_flavor(): q/k norm, tied head on the embed graph's data, no lora_scale
    max_positions: int | None = None  # rotary cache rows (default config.max_position_embeddings)
    tokenizer: Path = TOKENIZER_DIR
    no_peer: str = ""  # why there is no transformers.js twin (bench.json `noPeer`, shown in the table's notes)


RANDOM_MODELS = {
    "medium": RandomModel(LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                                      num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=4096),
                          ("fp32", "int4"), peer=True, streamed=False),
    "7b": RandomModel(LlamaConfig(max_position_embeddings=4096), ("int4",), peer=False, streamed=True),
    # The 7B without the LoRA path: the decode cost of a graph whose LoRA is merged into q|k|v.
    "7b-nolora": RandomModel(LlamaConfig(max_position_embeddings=4096), ("int4",), peer=False, streamed=True, lora=False),
    "13b": RandomModel(LlamaConfig(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                                   num_attention_heads=40, num_key_value_heads=40, max_position_embeddings=4096),
                       ("int4",), peer=False, streamed=True),
    # ALARM's LLM (Qwen3-4B-Thinking-2507: Qwen3Config's defaults); 4096 rotary rows like the 7B
    # (the bench's longest context), not the model's 262144.
    "qwen3-4b": RandomModel(Qwen3Config(), ("int4",), peer=True, streamed=True, lora=False,
                            flavor=qwen3_flavor(), max_positions=4096, tokenizer=QWEN3_TOKENIZER_DIR),
    # A Qwen3 small enough to run on wasm in minutes, with its peer: the 4B's flavor and head_dim,
    # the real vocabulary (Qwen3 tokenizer). int4 only: the fp32 table (622 MB) is over
    # MAX_TENSOR_BYTES, so build_embed_graph splits it, and a tied head needs it whole.
    "qwen3-medium": RandomModel(Qwen3Config(hidden_size=1024, intermediate_size=3072, num_hidden_layers=8,
                                            num_attention_heads=16, num_key_value_heads=4, head_dim=128,
                                            max_position_embeddings=4096),
                                ("int4",), peer=True, streamed=False, lora=False, flavor=qwen3_flavor(),
                                tokenizer=QWEN3_TOKENIZER_DIR),
}


def linear_shapes(config: LlamaConfig | Qwen3Config, flavor: LlmFlavor = LLAMA) -> dict[str, tuple[int, int]]:
    """[out, in] of every Linear weight (HF names), lm_head included unless the head is tied.
    q and o are heads * head_dim wide (= hidden for LLaMA; 4096 vs hidden 2560 for Qwen3-4B)."""
    h, i, kv = config.hidden_size, config.intermediate_size, config.num_key_value_heads * config.head_dim
    q = config.num_attention_heads * config.head_dim
    per_layer = {"self_attn.q_proj": (q, h), "self_attn.k_proj": (kv, h), "self_attn.v_proj": (kv, h),
                 "self_attn.o_proj": (h, q), "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h), "mlp.down_proj": (h, i)}
    shapes = {f"model.layers.{n}.{name}.weight": shape
              for n in range(config.num_hidden_layers) for name, shape in per_layer.items()}
    if not flavor.tie_word_embeddings:
        shapes["lm_head.weight"] = (config.vocab_size, h)
    return shapes


def small_shapes(config: LlamaConfig | Qwen3Config, lora: bool = True, flavor: LlmFlavor = LLAMA) -> dict[str, tuple[int, ...]]:
    """Norm weights (with Qwen3's per-head q/k norms, [head_dim]) and LoRA matrices: small fp32
    tensors in every precision."""
    h, kv = config.hidden_size, config.num_key_value_heads * config.head_dim
    out = {"q_proj": config.num_attention_heads * config.head_dim, "v_proj": kv}
    shapes: dict[str, tuple[int, ...]] = {"model.norm.weight": (h,)}
    for n in range(config.num_hidden_layers):
        shapes[f"model.layers.{n}.input_layernorm.weight"] = (h,)
        shapes[f"model.layers.{n}.post_attention_layernorm.weight"] = (h,)
        if flavor.qk_norm:
            shapes[f"model.layers.{n}.self_attn.q_norm.weight"] = (config.head_dim,)
            shapes[f"model.layers.{n}.self_attn.k_norm.weight"] = (config.head_dim,)
        for target in LORA_TARGETS if lora else ():
            shapes[f"model.layers.{n}.self_attn.{target}.lora_A"] = (LORA_RANK, h)
            shapes[f"model.layers.{n}.self_attn.{target}.lora_B"] = (out[target], LORA_RANK)
    return shapes


def small_tensor(key: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if key.endswith("norm.weight"):  # input/post_attention_layernorm, model.norm, q_norm, k_norm
        return (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
    return (0.02 * rng.standard_normal(shape)).astype(np.float32)


def random_weights(config: LlamaConfig | Qwen3Config, seed: int, lora: bool = True,
                   flavor: LlmFlavor = LLAMA) -> dict[str, np.ndarray]:
    """A full fp32 state dict (for models small enough to hold): normal(0, 0.02) linears."""
    rng = np.random.default_rng(seed)
    weights = {key: (0.02 * rng.standard_normal(shape, dtype=np.float32))
               for key, shape in linear_shapes(config, flavor).items()}
    weights.update({key: small_tensor(key, shape, rng) for key, shape in small_shapes(config, lora, flavor).items()})
    return weights


class RandomInt4Weights(Mapping):
    """A lazy state dict: each Linear weight is made on access as random int4 bytes + scales
    (QuantizedLinear), the small tensors as fp32. Nothing is kept, so memory stays at one tensor."""

    def __init__(self, config: LlamaConfig | Qwen3Config, seed: int, lora: bool = True, flavor: LlmFlavor = LLAMA) -> None:
        self.linears = linear_shapes(config, flavor)
        self.small = small_shapes(config, lora, flavor)
        self.seed = seed

    def __getitem__(self, key: str) -> object:
        rng = np.random.default_rng([self.seed, zlib.crc32(key.encode())])  # per key, order-free
        if key in self.linears:
            n, k = self.linears[key]
            n_blocks = -(-k // BLOCK_SIZE)
            packed = np.frombuffer(rng.bytes(n * n_blocks * BLOCK_SIZE // 2), dtype=np.uint8)
            scales = rng.uniform(0.5e-3, 2e-3, n * n_blocks).astype(np.float32)  # ~ normal(0, 0.02) weights
            return QuantizedLinear(packed.reshape(n, n_blocks, BLOCK_SIZE // 2), scales)
        if key in self.small:
            return small_tensor(key, self.small[key], rng)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self.linears or key in self.small

    def __iter__(self) -> Iterator[str]:
        yield from self.linears
        yield from self.small

    def __len__(self) -> int:
        return len(self.linears) + len(self.small)


def embedding_table(config: LlamaConfig | Qwen3Config, seed: int, streamed: bool) -> np.ndarray:
    """The random fp32 embedding table [vocab, hidden], normal(0, 0.02) (seed + 1 for the in-memory
    models, whose linears drew from `seed`'s generator)."""
    rng = np.random.default_rng(seed if streamed else seed + 1)
    return 0.02 * rng.standard_normal((config.vocab_size, config.hidden_size), dtype=np.float32)


def write_peer_folder(peer: Path, config: LlamaConfig | Qwen3Config, decoders: dict[str, tuple[Path, Path]],
                      lora_scale: float | None, flavor: LlmFlavor = LLAMA, tokenizer: Path = TOKENIZER_DIR) -> None:
    """transformers.js' layout: config, generation config, tokenizer, onnx/decoder_model_merged{suffix}
    (+ .onnx_data, _data_1, ...: 1 GiB files, transformers.js' chunk names).

    lora_scale: the constant for the decoder's lora_scale input; None for a Qwen3 graph (no such
    input). config.json's `transformers.js_config.use_external_data_format` counts each graph's
    data files ({file name: chunks}, how transformers.js 4.3 names them); scripts/bench/peer.ts
    reads it to hand every chunk over."""
    peer.mkdir(parents=True, exist_ok=True)
    chunks: dict[str, int] = {}
    for precision, (decoder_path, embed_path) in decoders.items():
        merged = text_only_decoder(onnx.load(str(decoder_path)), onnx.load(str(embed_path)), lora_scale)
        name = f"decoder_model_merged{SUFFIX[precision]}.onnx"
        # A tied head (Qwen3) reads the embedding table's bytes under its own name: stored once.
        written = save_model(merged, peer / "onnx" / name, share_identical=flavor.tie_word_embeddings)
        chunks[name] = len(written) - 1
        del merged
    qwen3 = flavor.qk_norm
    bos, eos = (QWEN3_BOS_TOKEN_ID, QWEN3_EOS_TOKEN_ID) if qwen3 else (BOS_TOKEN_ID, EOS_TOKEN_ID)
    hf_config = {
        "architectures": ["Qwen3ForCausalLM" if qwen3 else "LlamaForCausalLM"], "model_type": "qwen3" if qwen3 else "llama",
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size, "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads, "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim, "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps, "rope_theta": config.rope_theta, "hidden_act": "silu",
        "bos_token_id": bos, "eos_token_id": eos, "tie_word_embeddings": flavor.tie_word_embeddings,
        "torch_dtype": "float32", "use_cache": True,
    }
    if qwen3:  # SALMONN's peers keep their config byte for byte (one data file each)
        hf_config["transformers.js_config"] = {"use_external_data_format": chunks}
    (peer / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    generation = {"bos_token_id": bos, "eos_token_id": eos, "do_sample": False}
    (peer / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer / name, peer / name)


def geometry(config: LlamaConfig | Qwen3Config, max_positions: int, lora_scale: float) -> dict:
    return {
        "numLayers": config.num_hidden_layers, "hiddenSize": config.hidden_size, "numHeads": config.num_attention_heads,
        "numKvHeads": config.num_key_value_heads, "headDim": config.head_dim, "vocabSize": config.vocab_size,
        "intermediateSize": config.intermediate_size, "maxPositions": max_positions, "loraScale": lora_scale,
        "ropeTheta": float(config.rope_theta),
    }


def write_bench_json(folder: Path, model: str, geo: dict, graphs: dict[str, dict], peer: bool, key: str,
                     tokenizer: Path = TOKENIZER_DIR, llm: str = "llama", no_peer: str = "") -> None:
    """bench.json; `tokenizer` (relative to the repository) is the folder the jobs load the tokenizer from."""
    info = {"model": model, "llm": llm, "geometry": geo, "variants": graphs, "peer": "peer" if peer else None,
            "tokenizer": tokenizer.relative_to(HERE.parent).as_posix()}
    if no_peer:
        info["noPeer"] = no_peer
    (folder / "bench.json").write_text(json.dumps(info, indent=2) + "\n")
    (folder / "stamp").write_text(key + "\n")


def graph_entry(root: Path, decoder_files: list[Path], embed_files: list[Path]) -> dict:
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    return {"decoder": rel(decoder_files[0]), "decoderData": [p.name for p in decoder_files[1:]],
            "embed": rel(embed_files[0]), "embedData": [p.name for p in embed_files[1:]]}


def build_tiny(folder: Path, key: str) -> None:
    manifest = json.loads((TINY_BUNDLE / "manifest.json").read_text())
    llm, lora = manifest["architecture"]["llm"], manifest["architecture"]["lora"]
    config = LlamaConfig(vocab_size=llm["vocabSize"], hidden_size=llm["hiddenSize"],
                         intermediate_size=llm["intermediateSize"], num_hidden_layers=llm["numLayers"],
                         num_attention_heads=llm["numHeads"], num_key_value_heads=llm["numKvHeads"],
                         rms_norm_eps=llm["rmsNormEps"], rope_theta=llm["ropeTheta"],
                         max_position_embeddings=llm["maxPositions"])
    onnx_dir = TINY_BUNDLE / "onnx"
    decoders, graphs = {}, {}
    for precision, suffix in SUFFIX.items():
        decoder, embed = onnx_dir / f"decoder_model_merged{suffix}.onnx", onnx_dir / f"embed_tokens{suffix}.onnx"
        decoders[precision] = (decoder, embed)
        data = sorted(p.name for p in onnx_dir.glob(f"decoder_model_merged{suffix}.onnx_data*"))
        graphs[precision] = {"decoder": str(decoder.relative_to(HERE.parent)), "decoderData": data,
                             "embed": str(embed.relative_to(HERE.parent)), "embedData": [], "fromRepoRoot": True}
    write_peer_folder(folder / "peer", config, decoders, lora["defaultScale"])
    write_bench_json(folder, "tiny", geometry(config, llm["maxPositions"], lora["defaultScale"]), graphs, True, key)


def build_random(folder: Path, name: str, spec: RandomModel, key: str, seed: int) -> None:
    config, flavor = spec.config, spec.flavor
    # No lora_scale input (Qwen3): 0 is what the engine would feed a LoRA-less model; unused.
    lora_scale = LORA_ALPHA / LORA_RANK if flavor.lora_input else 0.0
    max_positions = spec.max_positions or config.max_position_embeddings
    onnx_dir = folder / "onnx"
    graphs, decoders = {}, {}
    weights: Mapping[str, object] = (RandomInt4Weights(config, seed, spec.lora, flavor) if spec.streamed
                                     else random_weights(config, seed, spec.lora, flavor))
    table = embedding_table(config, seed, spec.streamed)
    for precision in spec.precisions:
        suffix = SUFFIX[precision]
        embed_path = onnx_dir / f"embed_tokens{suffix}.onnx"
        embed_files = save_model(build_embed_graph(table, precision), embed_path)
        # Tied head (Qwen3): read the embed graph's table in place, as ALARM's bundle does
        # (alarm/bundle.write_graphs), so its bytes are not stored twice.
        shared = (embed_table_tensors(onnx.load(str(embed_path), load_external_data=False))
                  if flavor.tie_word_embeddings else None)
        if flavor.tie_word_embeddings and shared is None:
            raise ValueError(f"{name}: the embedding table was split into parts; a tied head needs it whole")
        decoder_path = onnx_dir / f"decoder_model_merged{suffix}.onnx"
        build = dict(lora_default_scale=lora_scale if flavor.lora_input else None, max_positions=max_positions,
                     flavor=flavor, shared_head=shared)
        if spec.streamed:
            writer = ExternalDataWriter(decoder_path)
            model = build_decoder_model(config, weights, precision, external_data=writer, **build)
            decoder_files = writer.finish(model)
        else:
            model = build_decoder_model(config, weights, precision, **build)
            decoder_files = save_model(model, decoder_path)
        del model
        graphs[precision] = graph_entry(folder, decoder_files, embed_files)
        if shared is not None:
            graphs[precision]["decoderData"] += sorted({t.location for t in shared.values()})
        decoders[precision] = (decoder_files[0], embed_files[0])
        print(f"{name} {precision}: {sum(p.stat().st_size for p in decoder_files) / 1e9:.2f} GB decoder", flush=True)
    if spec.peer:
        write_peer_folder(folder / "peer", config, decoders, lora_scale if flavor.lora_input else None, flavor,
                          spec.tokenizer)
    llm = "qwen3" if flavor.qk_norm else "llama"
    write_bench_json(folder, name, geometry(config, max_positions, lora_scale), graphs, spec.peer, key,
                     spec.tokenizer, llm, spec.no_peer)


def write_unfused_tiny_decoder(path: Path) -> None:
    """The tiny bundle's fp32 decoder built with fuse_qkv=False: separate q/k/v projections, LoRA
    paths and RotaryEmbedding nodes, the layout before the fusion (scripts/bench/breakdown.ts)."""
    import tempfile

    from salmonn.checkpoints import build_reference
    from salmonn.onnx_decoder import build_decoder_model
    from make_tiny_checkpoints import write_tiny_checkpoints

    with tempfile.TemporaryDirectory() as scratch:
        paths = write_tiny_checkpoints(Path(scratch), seed=0)
        heads = json.loads(paths.manifest_json.read_text())["not_in_the_weights"]["qformer_heads"]
        ref = build_reference(paths.whisper_dir, paths.beats_pt, paths.vicuna_dir, paths.salmonn_pth, qformer_heads=heads)
    model = build_decoder_model(ref.configs.llama, ref.llm.state_dict(), "fp32", lora_default_scale=ref.configs.lora.scaling,
                                max_positions=2048, fuse_qkv=False)
    save_model(model, path)


def write_hooks_pair(out: Path, model: str, precision: str, seed: int = 0) -> None:
    """Two decoders with the same random weights, for the cost of localization's hook
    (scripts/bench/hooks.ts): `decoder_plain` without and `decoder_hooks` with the `probe_hidden`
    output (probe_layer = the first layer localization probes), plus their embedding graph.
    model: tiny (the tiny bundle's geometry) or a RANDOM_MODELS entry; in-memory builds only."""
    from salmonn.localize import default_layers

    if model == "tiny":
        llm = json.loads((TINY_BUNDLE / "manifest.json").read_text())["architecture"]["llm"]
        config = LlamaConfig(vocab_size=llm["vocabSize"], hidden_size=llm["hiddenSize"],
                             intermediate_size=llm["intermediateSize"], num_hidden_layers=llm["numLayers"],
                             num_attention_heads=llm["numHeads"], num_key_value_heads=llm["numKvHeads"],
                             rms_norm_eps=llm["rmsNormEps"], rope_theta=llm["ropeTheta"],
                             max_position_embeddings=llm["maxPositions"])
    else:
        config = RANDOM_MODELS[model].config
    weights = random_weights(config, seed)
    table = 0.02 * np.random.default_rng(seed + 1).standard_normal((config.vocab_size, config.hidden_size), dtype=np.float32)
    out.mkdir(parents=True, exist_ok=True)
    save_model(build_embed_graph(table, precision), out / "embed_tokens.onnx")
    layer = default_layers(config.num_hidden_layers)[0]
    for name, probe_layer in (("decoder_plain", None), ("decoder_hooks", layer)):
        save_model(build_decoder_model(config, weights, precision, lora_default_scale=LORA_ALPHA / LORA_RANK,
                                       max_positions=config.max_position_embeddings, probe_layer=probe_layer),
                   out / f"{name}.onnx")
    (out / "geometry.json").write_text(json.dumps({
        "numLayers": config.num_hidden_layers, "numKvHeads": config.num_key_value_heads, "headDim": config.head_dim,
        "hiddenSize": config.hidden_size, "vocabSize": config.vocab_size, "maxPositions": config.max_position_embeddings,
        "probeLayer": layer, "precision": precision,
    }) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model", choices=["tiny", *RANDOM_MODELS])
    parser.add_argument("--key", default="manual", help="written to <out>/<model>/stamp when done")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unfused-tiny-decoder", type=Path, metavar="PATH",
                        help="only write the tiny decoder without the q|k|v fusion to PATH")
    parser.add_argument("--hooks-pair", type=Path, metavar="DIR",
                        help="only write --model's decoder with and without localization's hook to DIR (bench:hooks)")
    parser.add_argument("--precision", default="int4", choices=list(SUFFIX), help="for --hooks-pair")
    args = parser.parse_args()
    if args.hooks_pair:
        if args.model is None:
            parser.error("--hooks-pair needs --model")
        write_hooks_pair(args.hooks_pair, args.model, args.precision, args.seed)
        return
    if args.unfused_tiny_decoder:
        write_unfused_tiny_decoder(args.unfused_tiny_decoder)
        return
    if args.out is None or args.model is None:
        parser.error("--out and --model are required")
    folder = args.out / args.model
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if args.model == "tiny":
        build_tiny(folder, args.key)
    else:
        build_random(folder, args.model, RANDOM_MODELS[args.model], args.key, args.seed)


if __name__ == "__main__":
    main()
