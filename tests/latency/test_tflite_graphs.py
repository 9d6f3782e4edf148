"""Per-layer TFLite models: the same numbers as the torch layer and the key's ONNX graph
(same weights), the same ops as the exported network, and measurable by the tflite runner."""

from __future__ import annotations

import collections

import numpy as np
import onnxruntime as ort
import pytest
import tflite
import torch
from ai_edge_litert.interpreter import Interpreter
from test_graphs import KEYS, load_weights, torch_layer

from hwnas.latency.graphs import key_model
from hwnas.latency.keys import LayerKey, layer_keys
from hwnas.latency.measurement import STANDARD, measure_arch, measure_keys
from hwnas.latency.runners import LocalRunner
from hwnas.latency.tflite_graphs import empty_tflite, key_tflite
from hwnas.space import build, get_space, reference
from hwnas.space.tflite_export import network_tflite

TOL = 1e-4  # max |tflite - reference| / max(1, max |reference|); measured: ~2e-6
SAMPLED_PER_SPACE = 40


def run_tflite(data: bytes, x_nchw: np.ndarray) -> np.ndarray:
    interp = Interpreter(model_content=data, num_threads=1)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x_nchw.transpose(0, 2, 3, 1).copy())
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out  # back to NCHW


def close(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape
    return float(np.abs(got - want).max()) / max(1.0, float(np.abs(want).max()))


def tflite_ops(data: bytes) -> collections.Counter[int]:
    model = tflite.Model.GetRootAs(data, 0)
    sub = model.Subgraphs(0)
    return collections.Counter(
        model.OperatorCodes(sub.Operators(i).OpcodeIndex()).BuiltinCode()
        for i in range(sub.OperatorsLength())
    )


def x_for(key: LayerKey) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((1, key.in_chs, key.res, key.res)).astype(np.float32)


@pytest.mark.parametrize("text", KEYS)
def test_key_model_computes_what_the_torch_layer_computes(text: str) -> None:
    """Every op, activation, SE gate, skip and head kind (the ONNX graphs' test keys)."""
    key = LayerKey.parse(text)
    module = torch_layer(key)
    load_weights(module, key_model(key, seed=3))  # the weights key_tflite(key, 3) holds too
    x = x_for(key)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert float(np.std(want)) > 1e-3
    assert close(run_tflite(key_tflite(key, seed=3), x), want) < TOL


@pytest.mark.parametrize("space", ["mobilenetv3", "mnasnet"])
def test_sampled_keys_of_each_space_equal_the_onnx_graph(space: str) -> None:
    rng = np.random.default_rng(11)
    sp = get_space(space)
    keys = sorted({k for _ in range(8) for k in layer_keys(sp.sample_random(rng), 64, 100)}, key=str)
    picked = [keys[i] for i in rng.choice(len(keys), min(SAMPLED_PER_SPACE, len(keys)), replace=False)]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    for key in picked:
        sess = ort.InferenceSession(key_model(key).SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        x = x_for(key)
        want = sess.run(None, {"input": x})[0]
        assert close(run_tflite(key_tflite(key), x), want) < TOL, str(key)


@pytest.mark.parametrize("name", ["mobilenetv3_large", "mnasnet_a1", "mobilenetv2"])
def test_layer_models_hold_the_ops_of_the_exported_network(name: str) -> None:
    arch = reference(name)

    want = tflite_ops(network_tflite(build(arch, num_classes=10), 32))
    got: collections.Counter[int] = collections.Counter()
    for key in layer_keys(arch, 32, 10):
        got.update(tflite_ops(key_tflite(key)))
    assert got == want


def test_weights_come_from_the_seed() -> None:
    key = LayerKey.parse(KEYS[7])
    assert key_tflite(key, 5) == key_tflite(key, 5) != key_tflite(key, 6)


def test_empty_model_returns_the_input_shape() -> None:
    data = empty_tflite(3, 16)
    assert tflite_ops(data) == {tflite.BuiltinOperator.SHAPE: 1}
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    interp.invoke()
    assert interp.get_tensor(interp.get_output_details()[0]["index"]).tolist() == [1, 16, 16, 3]
    with pytest.raises(ValueError, match="must be >= 1"):
        empty_tflite(0, 16)


def test_bad_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="activation must be"):
        key_tflite(LayerKey("block", "ir", 8, 4, 8, 3, 1, mid_chs=16, act="gelu"))


def test_the_tflite_runner_measures_layers_and_networks() -> None:
    runner = LocalRunner(runtime="tflite", min_time_ms=0.0, max_runs=5)
    keys = [LayerKey.parse(KEYS[7]), LayerKey.parse(KEYS[12])]
    stats, overhead = measure_keys(keys, runner, runs=3, warmup=1)
    assert set(stats) == set(keys) and overhead >= 0
    assert all(s.n >= 3 and s.median >= 0 for s in stats.values())
    arch = reference("mobilenetv3_small", width=0.5)
    for protocol in ("flushed", STANDARD):
        s = measure_arch(arch, 32, runner, runs=3, warmup=1, num_classes=10, protocol=protocol)
        assert s.n == 3 and s.median > 0


def test_host_tflite_target_fills_and_predicts() -> None:
    """The built-in tflite target measures its layers as .tflite models (it used to refuse)."""
    from hwnas.latency import load_target

    target = load_target("host-tflite")
    arch = reference("mobilenetv3_small", width=0.35)
    keys = layer_keys(arch, 16)
    assert target.fill(keys) == len(set(keys))
    assert target.provenance["runtime"].startswith("tflite")
    assert target.predict(arch, 16) > 0
