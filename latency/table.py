"""Latency tables: measured statistics per layer key, with provenance, on disk.

A table is a folder::

    table.parquet     one row per layer key: key, median, p10, p90, n (ms)
    provenance.json   format, format version, device, runtime and version,
                      threads, dates, method, per-call overhead, runner, validation
    .lock             taken while the table is read or written

Every write takes the lock, re-reads both files, merges the new entries into
what is on disk, and replaces each file atomically (temporary file in the same
folder, ``fsync``, :func:`os.replace`). Two processes filling one table at
once therefore lose nothing, and a reader never sees half a file. A loaded
:class:`LatencyTable` is a read-only snapshot (a ``Mapping`` from key text to
:class:`~hwnas.latency.runners.Stats`); :meth:`LatencyTable.update` writes and
returns a new snapshot.

>>> import tempfile
>>> from hwnas.latency.runners import Stats
>>> t = LatencyTable.create(tempfile.mkdtemp() + "/t", {"device": "doc"})
>>> t = t.update({"stem_k3_s2_c16_nhs|3x224x224": Stats(1.0, 0.9, 1.2, 50)})
>>> t["stem_k3_s2_c16_nhs|3x224x224"].median, len(LatencyTable.load(t.path))
(1.0, 1)
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from hwnas.common.atomic import atomic_write, atomic_write_text
from hwnas.common.errors import HwnasError

from .keys import LayerKey
from .runners.base import Stats

FORMAT = "hwnas-latency-table"
FORMAT_VERSION = 1
TABLE_FILE = "table.parquet"
META_FILE = "provenance.json"
LOCK_FILE = ".lock"
COLUMNS = ("key", "median", "p10", "p90", "n")
LOCK_TIMEOUT_S = 600.0  # a writer holds the lock for one merge (well under a second per 10k rows)
_META_KEY = b"hwnas"  # parquet schema metadata naming the format


class TableError(HwnasError):
    """A table file is missing, corrupt, foreign or too new (one-line message with its path)."""


def now_iso() -> str:
    """UTC time, seconds, ISO 8601 (provenance dates)."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _key_text(key: str | LayerKey) -> str:
    return str(key) if isinstance(key, LayerKey) else key


class LatencyTable(Mapping[str, Stats]):
    """A read-only snapshot of a table folder. Keys are ``str(LayerKey)``.

    ``table[key]`` accepts a :class:`LayerKey` or its text.
    """

    def __init__(self, path: Path, entries: dict[str, Stats], provenance: dict) -> None:
        self._path = Path(path)
        self._entries = entries
        self._prov = provenance

    # --- mapping -------------------------------------------------------
    def __getitem__(self, key: str | LayerKey) -> Stats:
        return self._entries[_key_text(key)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (str, LayerKey)) and _key_text(key) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"LatencyTable({str(self._path)!r}, {len(self)} entries)"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def provenance(self) -> dict:
        """A copy of the provenance (editing it changes nothing on disk)."""
        return copy.deepcopy(self._prov)

    @property
    def overhead_ms(self) -> float | None:
        """Per-call overhead measured with the first fill (None before any; checked on load)."""
        v = self._prov.get("overhead_ms")
        return None if v is None else float(v)

    def medians(self, keys: list[str | LayerKey]) -> np.ndarray:
        return np.array([self._entries[_key_text(k)].median for k in keys], dtype=float)

    def missing(self, keys: list[LayerKey]) -> list[LayerKey]:
        """The keys (first occurrences, in order) that the table lacks."""
        return [k for k in dict.fromkeys(keys) if str(k) not in self._entries]

    def to_frame(self) -> Any:
        import pandas as pd

        rows = [(k, s.median, s.p10, s.p90, s.n) for k, s in self._entries.items()]
        return pd.DataFrame(rows, columns=list(COLUMNS))

    # --- files ---------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read the table folder ``path``; :class:`TableError` if it is no valid table."""
        path = Path(path)
        if not (path / META_FILE).is_file():
            what = "no such folder" if not path.exists() else f"no {META_FILE}"
            raise TableError(f"latency table {path}: {what}")
        with _locked(path, write=False):
            return cls(path, *_read(path))

    @classmethod
    def create(cls, path: str | Path, provenance: Mapping[str, Any]) -> LatencyTable:
        """A new empty table at ``path`` (the folder is made); error if one exists."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with _locked(path, write=True):
            if (path / META_FILE).exists():
                raise TableError(f"latency table {path} exists already")
            prov = {**dict(provenance), "created": now_iso()}
            _write(path, {}, prov)
            return cls(path, {}, _read(path)[1])

    @classmethod
    def open(cls, path: str | Path, provenance: Mapping[str, Any]) -> LatencyTable:
        """Load the table at ``path``, creating it with ``provenance`` if absent."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with _locked(path, write=True):
            if not (path / META_FILE).exists():
                _write(path, {}, {**dict(provenance), "created": now_iso()})
            return cls(path, *_read(path))

    def reload(self) -> LatencyTable:
        return LatencyTable.load(self._path)

    def update(
        self,
        entries: Mapping[str | LayerKey, Stats] | None = None,
        provenance: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> LatencyTable:
        """Merge ``entries`` and ``provenance`` into the files; return the new snapshot.

        Under the lock, what is on disk is re-read first, so entries another
        process wrote meanwhile are kept. ``defaults`` are provenance values
        set only where the file has none (e.g. the overhead of the first fill).
        """
        new = {}
        for k, s in (entries or {}).items():
            text = _key_text(k)
            if not isinstance(k, LayerKey):
                LayerKey.parse(text)  # ValueError names a malformed key
            new[text] = _checked(text, s)
        with _locked(self._path, write=True):
            disk, prov = _read(self._path)
            disk.update(new)
            for k, v in (defaults or {}).items():
                if prov.get(k) is None:
                    prov[k] = v
            prov.update(provenance or {})
            prov["updated"] = now_iso()
            _write(self._path, disk, prov)
            return LatencyTable(self._path, disk, prov)


# --- internals -----------------------------------------------------------
def _checked(key: str, s: Stats) -> Stats:
    vals = (s.median, s.p10, s.p90)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in vals):
        raise HwnasError(f"entry {key!r}: times must be finite and >= 0, got {s}")
    if int(s.n) < 1:
        raise HwnasError(f"entry {key!r}: n must be >= 1, got {s.n}")
    return Stats(float(s.median), float(s.p10), float(s.p90), int(s.n))


@contextlib.contextmanager
def _locked(path: Path, *, write: bool) -> Iterator[None]:
    """The table's file lock; readers of a read-only folder go without it."""
    lock = FileLock(str(path / LOCK_FILE), timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        raise TableError(
            f"latency table {path}: locked by another process for over {LOCK_TIMEOUT_S:g} s "
            f"(lock file {path / LOCK_FILE})"
        ) from None
    except OSError as e:
        if write:
            raise TableError(f"latency table {path}: cannot write ({e.strerror})") from None
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _read(path: Path) -> tuple[dict[str, Stats], dict]:
    meta = path / META_FILE
    try:
        prov = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise TableError(f"latency table {meta}: unreadable ({e})") from None
    except json.JSONDecodeError as e:
        raise TableError(f"latency table {meta}: corrupt JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(prov, dict) or prov.get("format") != FORMAT:
        got = prov.get("format") if isinstance(prov, dict) else type(prov).__name__
        raise TableError(
            f"{meta} is not an hwnas latency table (format {got!r}, expected {FORMAT!r})"
        )
    _check_version(meta, prov.get("format_version"))
    _check_overhead(meta, prov.get("overhead_ms"))
    table = path / TABLE_FILE
    if not table.exists():
        recorded = prov.get("entries")
        if isinstance(recorded, int) and recorded > 0:
            raise TableError(
                f"latency table {table}: missing, but {meta.name} records {recorded} entries "
                "(restore the file, or delete the folder to measure again)"
            )
        return {}, prov
    try:
        tbl = pq.read_table(table)
    except (OSError, pa.ArrowException) as e:
        raise TableError(f"latency table {table}: corrupt parquet ({_one_line(e)})") from None
    marker = (tbl.schema.metadata or {}).get(_META_KEY)
    try:
        info = json.loads(marker) if marker else {}
    except ValueError:
        info = {}
    if info.get("format") != FORMAT:
        raise TableError(f"{table} is not an hwnas latency table (no {FORMAT!r} marker)")
    _check_version(table, info.get("format_version"))
    if tuple(tbl.column_names) != COLUMNS:
        raise TableError(
            f"latency table {table}: columns {tbl.column_names}, expected {list(COLUMNS)}"
        )
    cols = tbl.to_pydict()
    try:
        entries = {
            str(k): Stats(float(m), float(a), float(b), int(n))
            for k, m, a, b, n in zip(*(cols[c] for c in COLUMNS), strict=True)
        }
    except (TypeError, ValueError) as e:
        raise TableError(f"latency table {table}: bad values ({e})") from None
    if len(entries) != tbl.num_rows:
        raise TableError(f"latency table {table}: duplicate keys")
    for key, stats in entries.items():
        _check_row(table, key, stats)
    return entries, prov


def _check_overhead(meta: Path, value: object) -> None:
    """``overhead_ms`` is absent (before the first fill) or a finite number >= 0."""
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:  # type: ignore[arg-type]
        raise TableError(
            f"latency table {meta}: overhead_ms must be a finite number >= 0 (ms), got {value!r}"
        )


def _check_row(table: Path, key: str, s: Stats) -> None:
    """Every row is re-validated on load: a parsable key, finite times >= 0, n >= 1."""
    try:
        LayerKey.parse(key)
    except HwnasError:
        raise TableError(f"latency table {table}: malformed key {key!r}") from None
    if not all(math.isfinite(v) and v >= 0 for v in (s.median, s.p10, s.p90)):
        raise TableError(
            f"latency table {table}: key {key!r} has times {s.median}, {s.p10}, {s.p90} ms "
            "(median, p10, p90 must be finite and >= 0)"
        )
    if s.n < 1:
        raise TableError(f"latency table {table}: key {key!r} has n={s.n} (must be >= 1)")


def _check_version(where: Path, version: object) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TableError(
            f"{where}: unknown format version {version!r} (this hwnas reads {FORMAT_VERSION})"
        )
    if version > FORMAT_VERSION:
        raise TableError(
            f"{where}: format version {version} is newer than this hwnas reads ({FORMAT_VERSION}); "
            "upgrade hwnas"
        )


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


def _write(path: Path, entries: dict[str, Stats], prov: dict) -> None:
    prov = {**prov, "format": FORMAT, "format_version": FORMAT_VERSION, "entries": len(entries)}
    keys = list(entries)
    tbl = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "median": pa.array([entries[k].median for k in keys], pa.float64()),
            "p10": pa.array([entries[k].p10 for k in keys], pa.float64()),
            "p90": pa.array([entries[k].p90 for k in keys], pa.float64()),
            "n": pa.array([entries[k].n for k in keys], pa.int64()),
        }
    )
    marker = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION}).encode()
    tbl = tbl.replace_schema_metadata({_META_KEY: marker})
    atomic_write(path / TABLE_FILE, lambda f: pq.write_table(tbl, f))
    text = json.dumps(prov, indent=1, sort_keys=True) + "\n"
    atomic_write_text(path / META_FILE, text)
