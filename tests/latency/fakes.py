"""Shared fakes of the latency tests: one fake runner, fake latencies, tiny ONNX models."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from hwnas.latency.keys import LayerKey
from hwnas.latency.runners import Runner, Stats
from hwnas.latency.table import LatencyTable
from hwnas.latency.target import SOURCE_MEASURED, Target

OVERHEAD_MS = 0.25  # what the fake runtime charges per call
# Block names as the latency table writes them: "|" must not reach a remote path.
NAMES = ("ir_k3_s1_m48_c8_nre_noskip|8x16x16", "conv_k3_s1_c16_nre_noskip|16x8x8")


def fake_ms(key: LayerKey) -> float:
    """A made-up, deterministic latency per key."""
    return 0.05 + (zlib.crc32(str(key).encode()) % 1000) / 1000


class FakeRunner(Runner):
    """A runner on an imaginary device: a layer costs its key's ``fake_ms`` plus the
    overhead; any other model (the empty graph, a whole network) costs the overhead.

    Records every call (``calls``) and the layer keys it measured (``measured``);
    each model must be a real ONNX file.
    """

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.measured: list[str] = []

    def _measure(
        self, models: Mapping[str, Path], *, runs: int, warmup: int, threads: int
    ) -> dict[str, Stats]:
        self.calls.append(
            {"names": list(models), "runs": runs, "warmup": warmup, "threads": threads}
        )
        out = {}
        for name, path in models.items():
            onnx.checker.check_model(onnx.load(path))
            try:
                ms = fake_ms(LayerKey.parse(name)) + OVERHEAD_MS
                self.measured.append(name)
            except ValueError:
                ms = OVERHEAD_MS
            out[name] = Stats(ms, ms * 0.95, ms * 1.05, runs)
        return out

    def protocol(self, threads: int = 1) -> dict:
        return {"clock": "fake", "threads": threads}

    def device_info(self) -> dict:
        return {"cpu": "imaginary", "runtime": "fake", "runtime_version": "0"}


class HashTarget(Target):
    """A fitted-style target: made-up latencies (a CRC of the key) and a per-call overhead."""

    name = "hash"
    provenance: dict = {}

    def __init__(self, overhead: float = 0.37) -> None:
        super().__init__()
        self._over = overhead
        self.looked_up = 0

    @property
    def overhead_ms(self) -> float:
        return self._over

    def lookup(self, keys: Sequence[LayerKey]) -> list[tuple[float, str]]:
        self.looked_up += len(keys)
        return [
            ((zlib.crc32(str(k).encode()) % 10_000) / 1000 + 0.01, SOURCE_MEASURED) for k in keys
        ]

    def describe(self) -> dict:
        return {"name": self.name, "kind": "modelled"}


def conv_model(path: Path, chs: int, res: int, seed: int) -> Path:
    """A 3x3 convolution with a free batch dimension, built with onnx.helper."""
    rng = np.random.default_rng(seed)
    w = helper.make_tensor(
        "w",
        TensorProto.FLOAT,
        [chs, chs, 3, 3],
        rng.standard_normal(chs * chs * 9).astype(np.float32).tolist(),
    )
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node, helper.make_node("Relu", ["y"], ["z"])],
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", chs, res, res])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", chs, res, res])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def sane(s: Stats, runs: int) -> None:
    """Statistics of at least ``runs`` timed runs, ordered p10 <= median <= p90."""
    assert s.n >= runs
    assert 0 <= s.p10 <= s.median <= s.p90


def table_writer(path: str, offset: int, n_keys: int, chunk: int) -> None:
    """A process filling a table from a snapshot taken at its start (every write must merge).

    Lives here, not in a test module, so that a spawned process can import it.
    """
    t = LatencyTable.load(path)
    keys = [LayerKey("block", "ir", 16, 8 + offset + i, 16, mid_chs=48) for i in range(n_keys)]
    for i in range(0, n_keys, chunk):
        t.update(
            {
                k: Stats(1.0 + offset + i + j, 0.9 + offset + i + j, 1.2 + offset + i + j, 50)
                for j, k in enumerate(keys[i : i + chunk])
            },
            provenance={f"writer{offset}": i},
        )
