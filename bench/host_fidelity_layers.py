"""Diagnosis: where does a per-layer sum on ``host`` part from the whole network?

    HWNAS_HOME=DIR .venv/bin/python bench/host_fidelity_layers.py --space mobilenetv3 --n 12

For each of ``--n`` random networks (or the ``--worst K`` of a
``bench/results/host_fidelity_<space>.csv``), four numbers (ms, one thread):

- ``table``: the ``host`` prediction (layers measured alone, cache flushed
  before every run, plus one call overhead),
- ``warm_sum``: the same layers measured alone without the flush (the
  standard protocol's conditions), plus their overhead,
- ``whole``: the whole network, standard protocol (warm ``session.run``),
- ``whole_flushed``: the whole network, flushed protocol,

and the layout reorders onnxruntime's CPU provider inserts
(``ReorderInput``/``ReorderOutput``, NCHWc) in the optimised graphs: summed
over the layers alone vs in the whole network. Writes
``bench/results/host_fidelity_layers_<space>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pandas as pd

from hwnas.common.atomic import atomic_write_text
from hwnas.latency import LocalRunner, layer_keys, load_target
from hwnas.latency.graphs import key_model
from hwnas.latency.measurement import measure_arch, measure_keys
from hwnas.latency.runners.protocol import cpu_model
from hwnas.space import Arch, build, export_onnx
from hwnas.space.searchspace import get_space

RESULTS = Path(__file__).resolve().parent / "results"
REORDERS = ("ReorderInput", "ReorderOutput")


def optimised_ops(model: bytes | Path, folder: Path) -> Counter:
    """Op types of the graph onnxruntime runs (all optimisations, CPU provider)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    out = folder / "opt.onnx"
    opts.optimized_model_filepath = str(out)
    src = model if isinstance(model, bytes) else str(model)
    ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(str(out)).graph.node)


def diagnose(arch: Arch, target, folder: Path) -> dict:
    keys = layer_keys(arch)
    table = target.predict(arch)
    warm, over = measure_keys(keys, LocalRunner(flush_mb=0.0))
    warm_sum = sum(warm[k].median for k in keys) + over
    runner = target.runner
    whole = measure_arch(arch, runner=runner, protocol="standard").median
    whole_fl = measure_arch(arch, runner=runner, protocol="flushed").median
    lay = Counter()
    for k in keys:
        lay += optimised_ops(key_model(k).SerializeToString(), folder)
    net = export_onnx(arch, folder / "net.onnx", resolution=224, model=build(arch))
    whole_ops = optimised_ops(net, folder)
    return {
        "arch": arch.to_str(),
        "table": table,
        "warm_sum": warm_sum,
        "whole": whole,
        "whole_flushed": whole_fl,
        "err_table": table / whole - 1,
        "err_warm_sum": warm_sum / whole - 1,
        "reorders_layers": sum(lay[r] for r in REORDERS),
        "reorders_whole": sum(whole_ops[r] for r in REORDERS),
        "layers": len(keys),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenetv3")
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--worst", type=int, default=0, help="the K worst of host_fidelity_<space>.csv")
    args = p.parse_args(argv)
    target = load_target("host")
    if args.worst:
        rows = pd.read_csv(RESULTS / f"host_fidelity_{args.space}.csv")
        rows = rows.reindex(rows["error"].abs().sort_values(ascending=False).index)
        archs = [Arch.from_str(s) for s in rows["arch"].head(args.worst)]
    else:
        rng = np.random.default_rng(args.seed)
        archs = [get_space(args.space).sample_random(rng) for _ in range(args.n)]
    load_before = os.getloadavg()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, arch in enumerate(archs):
            r = diagnose(arch, target, Path(tmp))
            out.append(r)
            print(
                f"{i}: table {r['err_table']:+.1%}  warm-sum {r['err_warm_sum']:+.1%}  whole "
                f"{r['whole']:.2f} ms (flushed {r['whole_flushed']:.2f})  reorders layers "
                f"{r['reorders_layers']} / whole {r['reorders_whole']}",
                flush=True,
            )
    f = pd.DataFrame(out)
    doc = {
        "benchmark": "host_fidelity_layers",
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "mape_table": float(f["err_table"].abs().mean()),
        "mape_warm_sum": float(f["err_warm_sum"].abs().mean()),
        "bias_table": float(f["err_table"].mean()),
        "bias_warm_sum": float(f["err_warm_sum"].mean()),
        "rows": out,
    }
    tag = f"worst{args.worst}" if args.worst else f"seed{args.seed}"
    atomic_write_text(
        RESULTS / f"host_fidelity_layers_{args.space}_{tag}.json", json.dumps(doc, indent=1) + "\n"
    )
    print({k: v for k, v in doc.items() if k.startswith(("mape", "bias"))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
