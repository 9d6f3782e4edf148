"""Benchmark: where the round-to-round spread of a whole-network measurement comes from.

    HWNAS_HOME=DIR flock /tmp/hwnas-core0.lock taskset -c 0 nice -n -15 \\
        .venv/bin/python bench/noise_floor.py {timeseries,sessions,options} [--seconds 180] [--n 6] [--tag T]

``timeseries``: the first two networks ``validate --seed 0`` draws, exported once, one
onnxruntime session each (the protocol's options, one thread), run continuously for
``--seconds``: blocks of ``--block`` warm ``session.run`` (each run timed on the wall clock
and the thread CPU clock), and after every block three probes timed on the thread CPU clock:
``chain`` (a dependent chain of integer adds, one a cycle: its time is 1 / clock frequency,
whatever the cache or the other hyperthread does), ``fma`` (independent AVX2 FMAs: throughput,
which a busy sibling hyperthread on the host takes a share of) and ``mem`` (a 64 MB read: the
memory bandwidth left by other tenants), with steal time (``/proc/stat``), involuntary context
switches and minor page faults. Says whether a network's time drifts, jumps between levels or
spikes, and whether it follows the probes.

``sessions``: ``--n`` networks, ``--rounds`` interleaved rounds. In each round every network
is measured as validation measures it (a fresh session, ``--warmup`` + ``--runs``, median)
and, right after, on a session built once before the first round (same count), with the
``chain`` probe before each. Compares the spread of the rounds (max / min - 1) of the two,
of the clocks, of statistics (median, minimum, 20% trimmed mean), the warm-up curve of a fresh
session (every run kept) and per-round medians divided by the chain probe (frequency removed).

``options``: ``--n`` networks, ``--rounds`` interleaved rounds, each round every network under
each onnxruntime session variant (the protocol's options; no memory arena; no memory pattern;
basic graph optimisation; intra-op spinning off): the level against the protocol's options
and the spread of each variant's rounds.

Writes ``bench/results/noise_floor_<mode>[_tag].json``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwnas.common.atomic import atomic_write_text
from hwnas.latency.runners.protocol import cpu_model, make_session
from hwnas.latency.validation import validation_archs

RESULTS = Path(__file__).resolve().parent / "results"
PROBE_C = r"""
#include <stdint.h>
#include <immintrin.h>
uint64_t chain(uint64_t n) {  /* 8 dependent adds per iteration: 8 cycles */
  uint64_t x = 0;
  for (uint64_t i = 0; i < n; i++)
    __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\t"
                     "add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0" : "+r"(x));
  return x;
}
float fma_tp(uint64_t n) {  /* 8 independent FMA chains: the core's FMA throughput */
  __m256 m = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
  __m256 a0 = m, a1 = b, a2 = m, a3 = b, a4 = m, a5 = b, a6 = m, a7 = b;
  for (uint64_t i = 0; i < n; i++) {
    a0 = _mm256_fmadd_ps(a0, m, b); a1 = _mm256_fmadd_ps(a1, m, b);
    a2 = _mm256_fmadd_ps(a2, m, b); a3 = _mm256_fmadd_ps(a3, m, b);
    a4 = _mm256_fmadd_ps(a4, m, b); a5 = _mm256_fmadd_ps(a5, m, b);
    a6 = _mm256_fmadd_ps(a6, m, b); a7 = _mm256_fmadd_ps(a7, m, b);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  float out[8]; _mm256_storeu_ps(out, s); return out[0];
}
"""
CHAIN_N = 250_000  # 2 M cycles: ~0.7 ms
FMA_N = 500_000  # 4 M FMAs at 2 a cycle: ~0.7 ms


class Probes:
    """The chain, fma and mem probes (ms of thread CPU time each)."""

    def __init__(self, tmp: Path) -> None:
        src, lib = tmp / "probe.c", tmp / "probe.so"
        src.write_text(PROBE_C)
        subprocess.run(["gcc", "-O2", "-mavx2", "-mfma", "-shared", "-fPIC", "-o", str(lib),
                        str(src)], check=True)
        self.lib = ctypes.CDLL(str(lib))
        self.lib.chain.argtypes = [ctypes.c_uint64]
        self.lib.chain.restype = ctypes.c_uint64
        self.lib.fma_tp.argtypes = [ctypes.c_uint64]
        self.lib.fma_tp.restype = ctypes.c_float
        self.buf = np.ones((64 << 20) // 4, dtype=np.float32)

    def _t(self, f) -> float:
        t0 = time.thread_time_ns()
        f()
        return (time.thread_time_ns() - t0) / 1e6

    def chain(self) -> float:
        return min(self._t(lambda: self.lib.chain(CHAIN_N)) for _ in range(3))

    def all(self) -> dict:
        return {
            "chain_ms": self.chain(),
            "fma_ms": min(self._t(lambda: self.lib.fma_tp(FMA_N)) for _ in range(3)),
            "mem_ms": self._t(lambda: np.add.reduce(self.buf)),
        }


def steal() -> int:
    """Steal jiffies of the cores this process may run on."""
    cpus = {f"cpu{c}" for c in os.sched_getaffinity(0)}
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f and f[0] in cpus:
            total += int(f[8])
    return total


def counters() -> dict:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"steal": steal(), "nivcsw": ru.ru_nivcsw, "minflt": ru.ru_minflt}


def export(archs, folder: Path, runtime: str = "onnxruntime") -> list[Path]:
    import torch

    from hwnas.space import build, export_onnx, export_tflite

    out = []
    for i, a in enumerate(archs):
        torch.manual_seed(0)
        model = build(a, num_classes=1000)
        if runtime == "tflite":
            out.append(export_tflite(a, folder / f"n{i}.tflite", model=model, resolution=224))
        else:
            out.append(export_onnx(a, folder / f"n{i}.onnx", resolution=224, model=model))
    return out


def make_call(path: Path, runtime: str):
    """One warm inference of ``path``: ``session.run`` on fixed inputs, or LiteRT ``invoke``."""
    rng = np.random.default_rng(0)
    if runtime == "tflite":
        from hwnas.latency.runners.litert import tflite_call

        return tflite_call(path, 1, rng)
    sess = make_session(path, 1)
    feeds = {i.name: rng.standard_normal([d if isinstance(d, int) and d > 0 else 1
                                          for d in i.shape]).astype(np.float32)
             for i in sess.get_inputs()}

    def call() -> None:
        sess.run(None, feeds)

    return call


def timed(call, runs: int) -> tuple[list[float], list[float]]:
    """``runs`` calls, each on the wall clock and the thread CPU clock (ms)."""
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        call()
        c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
        wall.append((w1 - w0) / 1e6)
        cpu.append((c1 - c0) / 1e6)
    return wall, cpu


def spread(values) -> float:
    v = np.asarray(values, dtype=float)
    return float(v.max() / v.min() - 1)


def trimmed(x, cut: float = 0.2) -> float:
    s = np.sort(np.asarray(x, dtype=float))
    k = int(len(s) * cut)
    return float(s[k: len(s) - k].mean())


def timeseries(args, folder: Path, probes: Probes) -> dict:
    paths = export(validation_archs(args.space, 2, 0), folder, args.runtime)
    calls = [make_call(p, args.runtime) for p in paths]
    for c in calls:
        timed(c, 20)  # warm
    blocks = []
    t_start = time.perf_counter()
    while time.perf_counter() - t_start < args.seconds:
        before = counters()
        row: dict = {"t": time.perf_counter() - t_start}
        for i, c in enumerate(calls):
            row[f"wall{i}"], row[f"cpu{i}"] = timed(c, args.block)
        row.update(probes.all())
        after = counters()
        row.update({k: after[k] - before[k] for k in after})
        blocks.append(row)
    out: dict = {"blocks": len(blocks), "block_runs": args.block}
    chain = np.array([b["chain_ms"] for b in blocks])
    fma = np.array([b["fma_ms"] for b in blocks])
    mem = np.array([b["mem_ms"] for b in blocks])
    for i in range(len(calls)):
        cpu_med = np.array([np.median(b[f"cpu{i}"]) for b in blocks])
        wall_med = np.array([np.median(b[f"wall{i}"]) for b in blocks])
        all_cpu = np.concatenate([b[f"cpu{i}"] for b in blocks])
        # consecutive block medians' relative change: spikes vs drift
        rel = cpu_med / np.median(cpu_med) - 1
        out[f"net{i}"] = {
            "median_ms": float(np.median(all_cpu)),
            "block_median_p5_p50_p95": np.percentile(cpu_med, [5, 50, 95]).tolist(),
            "block_median_spread": spread(cpu_med),
            "block_median_rel_sd": float(np.std(rel)),
            "lag1_autocorr": float(np.corrcoef(cpu_med[:-1], cpu_med[1:])[0, 1]),
            "wall_over_cpu_median": float(np.median(wall_med / cpu_med)),
            "corr_chain": float(np.corrcoef(cpu_med, chain)[0, 1]),
            "corr_fma": float(np.corrcoef(cpu_med, fma)[0, 1]),
            "corr_mem": float(np.corrcoef(cpu_med, mem)[0, 1]),
            "corr_other_net": float(np.corrcoef(
                cpu_med, [np.median(b[f"cpu{1 - i}"]) for b in blocks])[0, 1]),
            "sd_after_chain_ratio": float(np.std(cpu_med / chain / np.median(cpu_med / chain))),
            "run_p1_p50_p99": np.percentile(all_cpu, [1, 50, 99]).tolist(),
        }
    for name, v in (("chain", chain), ("fma", fma), ("mem", mem)):
        out[f"probe_{name}"] = {"p5_p50_p95": np.percentile(v, [5, 50, 95]).tolist(),
                                "spread": spread(v), "rel_sd": float(np.std(v / np.median(v)))}
    out["chain_ghz_p5_p50_p95"] = (8 * CHAIN_N / np.percentile(chain, [95, 50, 5]) / 1e6).tolist()
    out["steal_jiffies"] = int(sum(b["steal"] for b in blocks))
    out["nivcsw"] = int(sum(b["nivcsw"] for b in blocks))
    out["minflt"] = int(sum(b["minflt"] for b in blocks))
    out["series"] = [{k: (float(np.median(v)) if isinstance(v, list) else v)
                      for k, v in b.items()} for b in blocks]
    return out


def sessions_mode(args, folder: Path, probes: Probes) -> dict:
    paths = export(validation_archs(args.space, args.n, 0), folder, args.runtime)
    kept = [make_call(p, args.runtime) for p in paths]
    for c in kept:
        timed(c, args.warmup)
    per: list[dict] = [{"fresh_cpu": [], "fresh_wall": [], "kept_cpu": [], "kept_wall": [],
                        "chain": []} for _ in paths]
    for _ in range(args.rounds):
        for i, p in enumerate(paths):
            per[i]["chain"].append(probes.chain())
            c = make_call(p, args.runtime)
            w, t = timed(c, args.warmup + args.runs)  # warm-up runs kept: the warm-up curve
            per[i]["fresh_wall"].append(w)
            per[i]["fresh_cpu"].append(t)
            del c
            w, t = timed(kept[i], args.runs)
            per[i]["kept_wall"].append(w)
            per[i]["kept_cpu"].append(t)
    raw = [{k: np.round(v, 4).tolist() for k, v in net.items()} for net in per]
    return {"stats": analyse(per, args.warmup), "raw": raw}


def analyse(per: list[dict], warmup: int) -> dict:
    """Spreads of single rounds, and how two disjoint halves of the rounds agree per protocol."""
    stats: dict = {}
    for kind in ("fresh", "kept"):
        for clock in ("cpu", "wall"):
            rounds = [[r[warmup:] if kind == "fresh" else r for r in net[f"{kind}_{clock}"]]
                      for net in per]
            for stat, fn in (("median", np.median), ("min", np.min), ("trim20", trimmed)):
                sp = [spread([fn(r) for r in net]) for net in rounds]
                stats[f"round_spread_{kind}_{clock}_{stat}"] = float(np.median(sp))
    sp = [spread([np.median(r[warmup:]) / ch for r, ch in zip(net["fresh_cpu"], net["chain"],
                                                             strict=True)]) for net in per]
    stats["round_spread_fresh_cpu_median_over_chain"] = float(np.median(sp))
    curve = np.array([r for net in per for r in net["fresh_cpu"]])
    norm = curve / np.median(curve[:, warmup:], axis=1, keepdims=True)
    stats["warmup_curve_median"] = np.median(norm, axis=0)[: warmup + 10].round(4).tolist()
    ratio = [np.median(f[warmup:]) / np.median(k) for net in per
             for f, k in zip(net["fresh_cpu"], net["kept_cpu"], strict=True)]
    stats["fresh_over_kept_p5_p50_p95"] = np.percentile(ratio, [5, 50, 95]).tolist()
    stats["chain_spread_all"] = spread([c for net in per for c in net["chain"]])
    # Protocols: K rounds of R runs (fresh session each), per-round median, then the min or the
    # median over rounds. Two disjoint sets of K rounds of one network give two measurements;
    # |A / B - 1| over networks and splits is the protocol's own disagreement.
    n_rounds = len(per[0]["fresh_cpu"])
    rng = np.random.default_rng(0)
    protos: dict = {}
    avail = len(per[0]["kept_cpu"][0])
    for runs in sorted({r for r in (10, 20, 60) if r < avail} | {avail}):
        for k in (1, 2, 3, 4, 6):
            if 2 * k > n_rounds:
                continue
            for across in ("min", "median"):
                dis = []
                for net in per:
                    meds = np.array([np.median(r[warmup: warmup + runs]) for r in net["fresh_cpu"]])
                    for _ in range(20):
                        idx = rng.permutation(n_rounds)
                        a, b = meds[idx[:k]], meds[idx[k: 2 * k]]
                        f = np.min if across == "min" else np.median
                        dis.append(abs(f(a) / f(b) - 1))
                protos[f"{k}x{runs}_{across}"] = {"median": float(np.median(dis)),
                                                  "p90": float(np.percentile(dis, 90)),
                                                  "within_5pct": float(np.mean(np.array(dis) <= 0.05))}
    stats["protocol_disagreement"] = protos
    return stats


VARIANTS = {
    "protocol": {},
    "no_arena": {"enable_cpu_mem_arena": False},
    "no_mem_pattern": {"enable_mem_pattern": False},
    "opt_basic": {"graph_optimization_level": "ORT_ENABLE_BASIC"},
    "no_spinning": {"config": ("session.intra_op.allow_spinning", "0")},
}


def variant_call(path: Path, change: dict):
    """``session.run`` of ``path`` on fixed inputs, the protocol's session options but ``change``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for k, v in change.items():
        if k == "config":
            opts.add_session_config_entry(*v)
        elif k == "graph_optimization_level":
            opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, v)
        else:
            setattr(opts, k, v)
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([d if isinstance(d, int) and d > 0 else 1
                                          for d in i.shape]).astype(np.float32)
             for i in sess.get_inputs()}
    return lambda: sess.run(None, feeds)


def options_mode(args, folder: Path, probes: Probes) -> dict:
    paths = export(validation_archs(args.space, args.n, 0), folder)
    chosen = {v: VARIANTS[v] for v in (args.variants or VARIANTS)}
    meds = {v: [[] for _ in paths] for v in chosen}
    for _ in range(args.rounds):
        for i, p in enumerate(paths):
            for v, change in chosen.items():
                _, t = timed(variant_call(p, change), args.warmup + args.runs)
                meds[v][i].append(float(np.median(t[args.warmup:])))
    base = np.array([min(r) for r in meds["protocol"]])
    out = {}
    for v, per in meds.items():
        low = np.array([min(r) for r in per])
        out[v] = {"level_vs_protocol_p50": float(np.median(low / base)),
                  "level_vs_protocol_min_max": [float((low / base).min()), float((low / base).max())],
                  "round_spread_median": float(np.median([spread(r) for r in per]))}
    return {"stats": out, "per_net_round_medians_ms": meds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("timeseries", "sessions", "options"))
    p.add_argument("--space", default="mobilenetv3")
    p.add_argument("--seconds", type=float, default=180)
    p.add_argument("--block", type=int, default=20)
    p.add_argument("--n", type=int, default=6)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--runtime", choices=("onnxruntime", "tflite"), default="onnxruntime")
    p.add_argument("--variants", type=lambda t: t.split(","), default=None,
                   help=f"options mode: some of {','.join(VARIANTS)} (protocol first)")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hwnas-noise-") as tmp:
        probes = Probes(Path(tmp))
        fn = {"timeseries": timeseries, "sessions": sessions_mode, "options": options_mode}[args.mode]
        body = fn(args, Path(tmp), probes)
    doc = {
        "benchmark": f"noise_floor {args.mode}",
        "command": " ".join(["noise_floor.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "affinity": sorted(os.sched_getaffinity(0)),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "wall_s": time.perf_counter() - t0,
        **body,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"noise_floor_{args.mode}{'_' + args.tag if args.tag else ''}.json"
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k not in ("series", "raw", "per_net_round_medians_ms")},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
