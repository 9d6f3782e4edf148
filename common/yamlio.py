"""Reading users' YAML files safely, and one formatter for pydantic errors.

:func:`load_yaml` uses a ``SafeLoader`` that also refuses what can blow up
or mislead: aliases (``*x``; a few lines of nested aliases expand to
gigabytes), nesting deeper than :data:`MAX_DEPTH`, files over
:data:`MAX_BYTES`, and duplicate keys (the last one would silently win).
It returns the data and the 1-based line of every key path, so
:func:`validation_message` can point at ``run.yaml line 7: goal: ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import HwnasError
from .units import shorten

MAX_BYTES = 1 << 20  # a run.yaml or config.yaml is a few hundred bytes
MAX_DEPTH = 32  # deepest nesting any hwnas file has is 3


class _Loader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not accepted", ev.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        if self._depth > MAX_DEPTH:
            raise yaml.constructor.ConstructorError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set = set()
        for k, _ in node.value:
            key = self.construct_object(k, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", k.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _line_map(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """1-based line of every key path in a composed YAML document (iterative: no recursion limit)."""
    out: dict[tuple, int] = {}
    stack = [(node, path)]
    while stack:
        n, p = stack.pop()
        out.setdefault(p, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = (*p, str(k.value))
                out[key] = k.start_mark.line + 1
                stack.append((v, key))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((v, (*p, str(i))) for i, v in enumerate(n.value))
    return out


def parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """The data of a YAML document and the line of each key path; one-line HwnasError otherwise."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise HwnasError(f"{source}{where}: not valid YAML ({problem})") from None
    except RecursionError:
        raise HwnasError(f"{source}: not valid YAML (nested too deeply)") from None
    return data, (_line_map(node) if node is not None else {})


def load_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Read ``path`` and :func:`parse_yaml` it; unreadable, huge or binary files are one-line errors."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise HwnasError(f"{path}: {path.stat().st_size} bytes is too large for a settings file "
                             f"(at most {MAX_BYTES})")
        raw = path.read_bytes()
    except OSError as e:
        raise HwnasError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HwnasError(f"{path}: not a text file (not UTF-8); expected a YAML settings file") from None
    return parse_yaml(text, str(path))


def _fields_of(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names accepted at the mapping holding ``loc``'s last key."""
    for key in loc[:-1]:
        f = model.model_fields.get(str(key))
        ann = getattr(f, "annotation", None) if f else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def validation_message(err: ValidationError, model: type[BaseModel], source: str,
                       lines: dict[tuple, int] | None = None) -> str:
    """One line for the first problem of ``err``: ``source line N: field: what (got value)``."""
    lines = lines or {}
    e = err.errors()[0]
    loc = tuple(str(p) for p in e["loc"])
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
    where = f"{source} line {line}" if line and source else source
    field = ".".join(loc)
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = f"unknown field (accepted: {', '.join(_fields_of(model, loc))})"
    elif e["type"] == "missing":
        msg = "required field is missing"
    value = e.get("input")
    said = (e["type"] in ("missing", "extra_forbidden") or isinstance(value, dict)
            or "got" in msg or repr(value) in msg)
    shown = "" if said else f" (got {shorten(value)})"
    named = f"{field}: " if field and not msg.startswith(field.split(".")[-1]) else ""
    prefix = f"{where}: " if where else ""
    return f"{prefix}{named}{msg}{shown}"
