"""The house rules of docs/architecture.md, checked on the source tree.

- imports point down the floors: common < space < latency < proxy < supernet <
  {search, netadapt}; siblings on one floor never import each other;
- no module over MAX_LINES lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# floor of each package (import only from lower floors, or your own package)
FLOORS = {"common": 0, "space": 1, "latency": 2, "proxy": 3, "supernet": 4, "search": 5,
          "netadapt": 5}
MAX_LINES = 420  # "no module over ~400 lines"


def _modules() -> list[tuple[str, Path]]:
    return [(pkg, f) for pkg in FLOORS if (ROOT / pkg).is_dir()
            for f in sorted((ROOT / pkg).rglob("*.py"))]


def _hwnas_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            m = re.match(r"hwnas\.(\w+)", name)
            if m:
                out.append((node.lineno, m.group(1)))
    return out


def test_imports_point_down_the_floors() -> None:
    bad = []
    for pkg, f in _modules():
        for line, other in _hwnas_imports(f):
            if other != pkg and other in FLOORS and FLOORS[other] >= FLOORS[pkg]:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports hwnas.{other}")
    assert not bad, "\n".join(bad)


def test_no_module_is_too_long() -> None:
    long = [f"{f.relative_to(ROOT)}: {n} lines" for _, f in _modules()
            if (n := f.read_text().count("\n")) > MAX_LINES]
    assert not long, "\n".join(long)


def test_every_package_is_installed() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    missing = [pkg for pkg in FLOORS if (ROOT / pkg).is_dir() and f'"hwnas.{pkg}" = "{pkg}"' not in text]
    assert not missing, f"add to pyproject.toml package-dir: {missing}"
