"""The LiteRT (TensorFlow Lite) interpreter as a timed call, for the local and ssh runners.

``ai-edge-litert`` is Google's PyPI package of the TFLite interpreter (the
runtime Android apps ship); :func:`tflite_call` is the ``.tflite``
counterpart of :func:`hwnas.latency.runners.protocol.bound_call`.

This module imports nothing from hwnas: the ssh runner copies it to a board
beside ``protocol.py`` (as ``hwnas_litert.py``), where the protocol program
finds it (``--runtime tflite``).
"""

from __future__ import annotations

from pathlib import Path

RUNTIME_NAME = "tflite (LiteRT interpreter)"  # how device descriptions name this runtime


def tflite_call(model: str | bytes | Path, threads: int, rng):
    """A no-argument function running a ``.tflite`` model once with the LiteRT interpreter.

    The interpreter (``ai_edge_litert``, with its default XNNPACK delegate,
    as ``benchmark_model`` uses by default) gets ``threads`` threads; inputs
    are set once, outputs stay in the interpreter's own buffers, so a call
    times ``invoke`` alone.
    """
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, bytes):
        interp = Interpreter(model_content=model, num_threads=threads)
    else:
        interp = Interpreter(model_path=str(model), num_threads=threads)
    interp.allocate_tensors()
    for inp in interp.get_input_details():
        shape = [int(d) if d > 0 else 1 for d in inp["shape"]]
        interp.set_tensor(inp["index"], rng.standard_normal(shape).astype(inp["dtype"]))

    def call() -> None:
        interp.invoke()

    call.keep = interp  # type: ignore[attr-defined]
    return call


def tflite_version() -> str:
    """The LiteRT (``ai-edge-litert``) version, or ``unknown``."""
    from importlib import metadata

    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return "unknown"


def runtime_fields() -> dict:
    """The ``runtime`` and ``runtime_version`` entries of a device description."""
    return {"runtime": RUNTIME_NAME, "runtime_version": tflite_version()}
