"""Resolve what a run.yaml names: the input network and its weights.

Everything here only reads; it runs before the output folder is made, so a
bad input stops the refine with one line and nothing written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from hwnas.common.errors import HwnasError
from hwnas.common.units import shorten
from hwnas.space.notation import NotationError
from hwnas.space.spec import Arch

from .config import InputSpec


@dataclass
class ResolvedInput:
    """The network a refine starts from.

    Attributes:
        arch: its architecture (not yet normalised).
        weights: path of a state_dict, or None when it must be trained first.
        label: how the input was named, for the summary.
    """

    arch: Arch
    weights: Path | None
    label: str


def resolve_input(spec: InputSpec) -> ResolvedInput:
    """Arch and weights file of ``spec``; one-line ValueError for anything missing."""
    if spec.run is not None:
        run = Path(spec.run)
        best = run / "best.json"
        if not best.is_file():
            raise HwnasError(f"input.run: {run} is not a finished search run (no best.json in it)")
        try:
            info = json.loads(best.read_text())
            arch = Arch.from_str(info["arch"])
        except (json.JSONDecodeError, KeyError, TypeError, NotationError) as e:
            raise HwnasError(f"input.run: {best} has no readable arch ({e})") from None
        weights = run / "best.pt"
        if not weights.is_file():
            raise HwnasError(f"input.run: weights file {weights} is missing")
        return ResolvedInput(arch, weights, f"run {run}")
    if spec.reference is not None:
        from hwnas.space.references import reference

        try:
            arch = reference(spec.reference, spec.width)
        except ValueError as e:
            raise HwnasError(f"input.reference: {e}") from None
        label = f"reference {arch.name}"
    else:
        try:
            arch = Arch.from_str(str(spec.arch))
        except ValueError as e:
            raise HwnasError(f"input.arch: {e}") from None
        label = "arch string"
    weights = None
    if spec.weights is not None:
        weights = Path(spec.weights)
        if not weights.is_file():
            raise HwnasError(f"input.weights: weights file {weights} is missing")
    return ResolvedInput(arch, weights, label)


def load_weights(path: Path, model: torch.nn.Module) -> None:
    """Load a state_dict file into ``model`` strictly; one-line HwnasError on any problem.

    Only tensors are read (``weights_only=True``): a file that holds other
    Python objects is refused, never unpickled. Non-finite weights are refused
    too: training from them fails later with a misleading message.
    """
    import pickle

    if path.stat().st_size == 0:
        raise HwnasError(f"input.weights: {path} is empty; expected a torch state_dict (.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise HwnasError(f"input.weights: {path} is not a plain state_dict of tensors (it holds "
                         "other Python objects, which hwnas never loads)") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is one user error
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise HwnasError(f"input.weights: cannot read {path}: {shorten(first, 160)}") from None
    if not isinstance(state, dict):
        raise HwnasError(f"input.weights: {path}: expected a state_dict, got {type(state).__name__}")
    bad = [k for k, v in state.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise HwnasError(f"input.weights: {path} has non-finite values (NaN or inf) in "
                         f"{bad[0]}{f' and {len(bad) - 1} more tensors' if len(bad) > 1 else ''}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        detail = lines[1] if len(lines) > 1 else lines[0]
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        raise HwnasError(f"input.weights: weights {path} do not fit the input network: "
                         f"{detail}") from None
