"""The user documentation stays true to the code: the CLI reference is current,
every flag is documented, and relative links between docs resolve."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _reference_module():
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "cli_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_reference_is_current() -> None:
    ref = _reference_module()
    assert (DOCS / "cli.md").read_text() == ref.render(), (
        "docs/cli.md is stale: run .venv/bin/python docs/cli_reference.py")


@pytest.mark.parametrize("prog, module, factory", _reference_module().COMMANDS)
def test_every_flag_is_in_the_reference(prog: str, module: str, factory: str) -> None:
    ref = _reference_module()
    text = (DOCS / "cli.md").read_text()
    flags = ref.option_strings(ref.parser_of(module, factory))
    assert flags, prog
    missing = sorted(f for f in flags if f not in text)
    assert not missing, f"{prog}: {missing}"


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted((ROOT / "results").glob("*.md"))]


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (path.parent / target).exists():
            broken.append(target)
    assert not broken, f"{path.name}: {broken}"
