"""Fixtures of the supernet tests: the tiny space swapped in, toy data, a private $HWNAS_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest
from supernet_helpers import make_toy_data, tiny_space_for


@pytest.fixture
def tiny_space(monkeypatch: pytest.MonkeyPatch):
    """The ``mobilenetv3`` space on a tiny frame (the real decisions and supernet), for one test."""
    yield from tiny_space_for(monkeypatch)


@pytest.fixture
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_data(tmp_path_factory.mktemp("data") / "toy")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("HWNAS_HOME", str(h))
    return h
