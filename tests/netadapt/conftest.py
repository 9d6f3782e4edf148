"""Shared settings for the NetAdapt tests: a tiny network on a few hundred 16x16 images."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from netadapt_helpers import TINY_OVERRIDES, TINY_YAML


@pytest.fixture
def tiny_raw(tmp_path: Path) -> dict:
    """The example run.yaml as a dict, shrunk, writing under ``tmp_path``."""
    raw = yaml.safe_load(TINY_YAML.read_text())
    raw.update(TINY_OVERRIDES)
    raw["out"] = str(tmp_path / "out")
    return raw
