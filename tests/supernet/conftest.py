"""Fixtures of the supernet tests: the tiny space swapped in, toy data, a private $HWNAS_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest
from supernet_helpers import TINY_SKELETON, make_toy_data

from hwnas.space import searchspace
from hwnas.space.skeletons import SKELETONS


@pytest.fixture
def tiny_space(monkeypatch: pytest.MonkeyPatch):
    """The ``mobilenetv3`` space on a tiny frame (the real decisions and supernet), for one test."""
    monkeypatch.setitem(SKELETONS, "mobilenetv3", TINY_SKELETON)
    searchspace._space.cache_clear()
    searchspace._smallest.cache_clear()
    yield searchspace.get_space("mobilenetv3")
    searchspace._space.cache_clear()
    searchspace._smallest.cache_clear()


@pytest.fixture
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_data(tmp_path_factory.mktemp("data") / "toy")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("HWNAS_HOME", str(h))
    return h
