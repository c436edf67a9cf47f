"""ALARM-P's `connector` graph (alarm/export_perceiver.py) in onnxruntime-web (Node), fp32 and int4,
against the PyTorch reference run ALARM's way: every input zero-padded to the longest and each
conditional encoder's keys masked at its own length (alarm/fusion.py `fuse`), while the graph gets
the unpadded real frames and no mask. The tiny ALARM-P's perceivers (make_tiny_alarm.P_SIZES: three
different shapes, shared blocks run twice) are built from its config and state alone, no encoder.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict

import numpy as np
import onnx
import pytest
import torch
from onnx import compose

import make_tiny_alarm as tiny
from alarm.export_fusion import fusion_input_name
from alarm.export_perceiver import (connector_input_names, connector_input_widths, export_perceiver,
                                    int4_perceiver_reference)
from alarm.fusion import pad_outputs
from alarm.perceiver import MultiPerceiverConfig, MultiPerceiverFusion
from salmonn.onnx_decoder import save_model
from salmonn.ort_bridge import OrtSession, node_available
from test_alarm_onnx import TOL, close

pytestmark = pytest.mark.skipif(not node_available(), reason="node + onnxruntime-web not installed")

PREFIX = "model.audio_fusion.fusion_model."
PRECISIONS = ("fp32", "int4")
# per input frames: Whisper's adapter rows and each conditional encoder's real frames, unequal
LENGTH_SETS = [
    {"whisper": 17, "w2vbert": 33, "muq": 32, "sslam": 32},  # ~1.3 s as the encoders count it
    {"whisper": 5, "w2vbert": 1, "muq": 12, "sslam": 3},
    {"whisper": 1, "w2vbert": 2, "muq": 0, "sslam": 2},  # no MuQ frame: ALARM masks every key
]


@pytest.fixture(scope="module")
def fusion() -> MultiPerceiverFusion:
    cfg = tiny.alarm_p_hf_config(tiny.SIZES, tiny.P_SIZES)
    module = MultiPerceiverFusion.from_config(MultiPerceiverConfig.from_alarm(cfg["audio_fusion_config"]))
    state = tiny.multiperceiver_state(tiny.SIZES, tiny.P_SIZES, tiny.Init(5), PREFIX)
    module.load_state_dict({k[len(PREFIX):]: v for k, v in state.items()}, strict=True)
    return module.eval()


def inputs(fusion: MultiPerceiverFusion, lengths: Dict[str, int], seed: int) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    widths = connector_input_widths(fusion)
    return {e: torch.randn(1, lengths[e], widths[e], generator=g) for e in fusion.cfg.encoders}


@torch.no_grad()
def alarm_way(fusion: MultiPerceiverFusion, outputs: Dict[str, torch.Tensor]) -> np.ndarray:
    """AudioFusion: pad to the longest, then the fusion with each encoder's own length as mask."""
    lengths = {e: torch.tensor([x.shape[1]]) for e, x in outputs.items()}
    padded = fusion(pad_outputs(outputs), lengths)
    main = outputs[fusion.cfg.main_encoder].shape[1]
    return padded[:, : fusion.cfg.leading_rows + main].numpy()  # Whisper's padding rows are not the graph's


def check_ops(fusion: MultiPerceiverFusion, model: onnx.ModelProto, precision: str) -> None:
    ops = Counter(n.op_type for n in model.graph.node)
    if precision == "int4":
        # every Linear as MatMulNBits, the shared blocks' weights packed once for all their uses
        linears = sum(1 for m in fusion.modules() if isinstance(m, torch.nn.Linear))
        packed = {n.input[1] for n in model.graph.node if n.op_type == "MatMulNBits"}
        assert len(packed) == linears and ops["Identity"] == 0
    else:
        assert ops["MatMulNBits"] == 0
    assert [i.name for i in model.graph.input] == connector_input_names(fusion) == [
        "adapted_whisper", "adapted_w2vbert", "adapted_muq", "adapted_sslam"]


def test_connector_graphs_equal_the_padded_and_masked_reference(fusion, tmp_path):
    """fp32 within 1e-5 of the reference, int4 within 1e-3 of the reference holding its weights."""
    graphs = {}
    for precision in PRECISIONS:
        model = export_perceiver(fusion, precision)
        check_ops(fusion, model, precision)
        graphs[precision] = compose.add_prefix(model, f"{precision}_")
    # both graphs side by side in one model: one onnxruntime session (Node's start dominates this test)
    path = tmp_path / "connectors.onnx"
    save_model(compose.merge_models(graphs["fp32"], graphs["int4"], io_map=[]), path)
    references = {"fp32": fusion, "int4": int4_perceiver_reference(fusion)}
    with OrtSession(path) as session:
        for i, lengths in enumerate(LENGTH_SETS):
            outputs = inputs(fusion, lengths, seed=i)
            feeds = {f"{p}_{fusion_input_name(e)}": x.numpy() for p in PRECISIONS for e, x in outputs.items()}
            got = session.run(feeds)
            for precision, reference in references.items():
                out, expected = got[f"{precision}_audio_tokens"], alarm_way(reference, outputs)
                assert out.shape == expected.shape == (1, fusion.cfg.leading_rows + lengths["whisper"], 32)
                err = close(out, expected)
                assert err < (1e-5 if precision == "fp32" else TOL["int4"]), (precision, lengths, err)
            # the fake quantization really changed the numbers the int4 graph computes with
            assert close(alarm_way(fusion, outputs), alarm_way(references["int4"], outputs)) > 1e-4
