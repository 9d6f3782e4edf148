"""Fixtures of the runner tests: two tiny models under table-style names."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import NAMES, conv_model


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "models"
    folder.mkdir()
    return {
        NAMES[0]: conv_model(folder / "a.onnx", 8, 16, 0),
        NAMES[1]: conv_model(folder / "b.onnx", 16, 8, 1),
    }
