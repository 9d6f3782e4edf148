"""Latency tables: keys, provenance, read-only snapshots, atomic writes, concurrency, bad files."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from fakes import table_writer

from hwnas.latency import table as table_mod
from hwnas.latency.keys import LayerKey, layer_keys
from hwnas.latency.runners import Stats
from hwnas.latency.table import (
    FORMAT_VERSION,
    META_FILE,
    TABLE_FILE,
    LatencyTable,
    TableError,
)
from hwnas.space.references import reference

KEYS = layer_keys(reference("mobilenetv3_small"), 64)
WRITERS = 2
KEYS_PER_WRITER = 120
CHUNK = 10


def _stats(i: int) -> Stats:
    return Stats(1.0 + i, 0.9 + i, 1.2 + i, 50)


def _fresh(tmp_path: Path) -> LatencyTable:
    return LatencyTable.create(tmp_path / "t", {"device": "test"})


def test_entries_are_keyed_by_layer_key_text(tmp_path: Path) -> None:
    t = _fresh(tmp_path).update({k: _stats(i) for i, k in enumerate(KEYS)})
    back = LatencyTable.load(t.path)
    assert set(back) == {str(k) for k in KEYS}
    assert back[KEYS[0]] == back[str(KEYS[0])] == _stats(0)
    assert KEYS[1] in back and str(KEYS[1]) in back and 3 not in back
    assert back.medians(KEYS[:3]).tolist() == [1.0, 2.0, 3.0]
    frame = back.to_frame()
    assert list(frame.columns) == ["key", "median", "p10", "p90", "n"]
    assert all(LayerKey.parse(k) in KEYS for k in frame.key)


def test_provenance_carries_format_and_dates(tmp_path: Path) -> None:
    t = _fresh(tmp_path).update(
        provenance={"runtime": "onnxruntime"}, defaults={"overhead_ms": 0.2}
    )
    p = LatencyTable.load(t.path).provenance
    assert p["format"] == "hwnas-latency-table" and p["format_version"] == FORMAT_VERSION
    assert p["device"] == "test" and p["runtime"] == "onnxruntime" and p["overhead_ms"] == 0.2
    assert p["created"] and p["updated"]
    # defaults never overwrite a value that is there
    t2 = t.update(defaults={"overhead_ms": 9.0})
    assert t2.overhead_ms == 0.2


def test_loaded_table_is_read_only(tmp_path: Path) -> None:
    t = _fresh(tmp_path).update({KEYS[0]: _stats(0)})
    with pytest.raises(TypeError):
        t[str(KEYS[0])] = _stats(1)  # type: ignore[index]
    t.provenance["device"] = "changed"
    assert t.provenance["device"] == "test"
    t2 = t.update({KEYS[1]: _stats(1)})
    assert len(t) == 1 and len(t2) == 2  # a snapshot never changes


def test_update_validates_keys_and_values(tmp_path: Path) -> None:
    t = _fresh(tmp_path)
    with pytest.raises(ValueError, match="malformed latency key"):
        t.update({"not a key": _stats(0)})
    with pytest.raises(ValueError, match="finite and >= 0"):
        t.update({KEYS[0]: Stats(-1.0, 0.0, 0.0, 5)})
    assert len(LatencyTable.load(t.path)) == 0


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = _fresh(tmp_path).update({KEYS[0]: _stats(0)})
    before = (t.path / TABLE_FILE).read_bytes(), (t.path / META_FILE).read_text()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(table_mod.pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        t.update({KEYS[1]: _stats(1)})
    assert ((t.path / TABLE_FILE).read_bytes(), (t.path / META_FILE).read_text()) == before
    assert sorted(p.name for p in t.path.iterdir()) == sorted([".lock", META_FILE, TABLE_FILE])
    assert len(LatencyTable.load(t.path)) == 1


def test_two_processes_filling_one_table_lose_nothing(tmp_path: Path) -> None:
    t = _fresh(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=table_writer, args=(str(t.path), w * 1000, KEYS_PER_WRITER, CHUNK))
        for w in range(WRITERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    back = LatencyTable.load(t.path)
    assert len(back) == WRITERS * KEYS_PER_WRITER
    assert all(f"writer{w * 1000}" in back.provenance for w in range(WRITERS))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="no such folder"):
        LatencyTable.load(tmp_path / "nope")


def test_create_refuses_an_existing_table(tmp_path: Path) -> None:
    t = _fresh(tmp_path)
    with pytest.raises(TableError, match="exists already"):
        LatencyTable.create(t.path, {})
    assert LatencyTable.open(t.path, {"device": "other"}).provenance["device"] == "test"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "corrupt JSON"),
        ('{"format": "something-else", "format_version": 1}', "is not an hwnas latency table"),
        ("[1, 2]", "is not an hwnas latency table"),
        ('{"format": "hwnas-latency-table", "format_version": 99}', "format version 99 is newer"),
        ('{"format": "hwnas-latency-table", "format_version": "x"}', "unknown format version 'x'"),
    ],
)
def test_bad_provenance_files(tmp_path: Path, content: str, match: str) -> None:
    t = _fresh(tmp_path)
    (t.path / META_FILE).write_text(content)
    with pytest.raises(TableError, match=match) as e:
        LatencyTable.load(t.path)
    assert str(t.path / META_FILE) in str(e.value) and "\n" not in str(e.value)


def test_corrupt_parquet(tmp_path: Path) -> None:
    t = _fresh(tmp_path).update({KEYS[0]: _stats(0)})
    (t.path / TABLE_FILE).write_bytes(b"PAR1 garbage")
    with pytest.raises(TableError, match="corrupt parquet") as e:
        LatencyTable.load(t.path)
    assert str(t.path / TABLE_FILE) in str(e.value) and "\n" not in str(e.value)


def test_foreign_parquet(tmp_path: Path) -> None:
    t = _fresh(tmp_path)
    pd.DataFrame({"key": ["a"], "median": [1.0]}).to_parquet(t.path / TABLE_FILE)
    with pytest.raises(TableError, match="is not an hwnas latency table"):
        LatencyTable.load(t.path)


def test_newer_parquet_version(tmp_path: Path) -> None:
    t = _fresh(tmp_path).update({KEYS[0]: _stats(0)})
    tbl = pq.read_table(t.path / TABLE_FILE)
    marker = json.dumps({"format": "hwnas-latency-table", "format_version": 7}).encode()
    pq.write_table(tbl.replace_schema_metadata({b"hwnas": marker}), t.path / TABLE_FILE)
    with pytest.raises(TableError, match="format version 7"):
        LatencyTable.load(t.path)


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name != ".lock"}


@pytest.mark.parametrize(
    "row, match",
    [
        ({"median": float("nan")}, r"key 'stem_k3_s2_c16_nhs\|3x64x64' has times nan"),
        ({"p10": -0.5}, r"key 'stem_k3_s2_c16_nhs\|3x64x64' has times .* finite and >= 0"),
        ({"p90": float("inf")}, r"has times"),
        ({"n": 0}, r"has n=0"),
        ({"key": "not a key"}, r"malformed key 'not a key'"),
    ],
)
def test_loading_revalidates_every_row(tmp_path: Path, row: dict, match: str) -> None:
    t = _fresh(tmp_path).update({k: _stats(i) for i, k in enumerate(KEYS[:3])})
    frame = t.to_frame()
    for col, value in row.items():
        frame[col] = frame[col].astype(object) if col == "key" else frame[col]
        frame.loc[0, col] = value
    # write the bad row with the table's own writer (bypassing its checks), marker included
    entries = {
        k: Stats(m, a, b, n) for k, m, a, b, n in frame.itertuples(index=False, name=None)
    }
    table_mod._write(t.path, entries, t.provenance)
    before = _files(t.path)
    with pytest.raises(TableError, match=match) as e:
        LatencyTable.load(t.path)
    assert str(t.path / TABLE_FILE) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(TableError, match=match):
        t.update({KEYS[5]: _stats(5)})  # a write re-reads the disk first: refused too
    assert _files(t.path) == before  # nothing changed on disk


@pytest.mark.parametrize("value", ["abc", -1.0, float("nan"), True, [1]])
def test_overhead_must_be_a_finite_number(tmp_path: Path, value: object) -> None:
    t = _fresh(tmp_path).update({KEYS[0]: _stats(0)})
    meta = t.path / META_FILE
    doc = json.loads(meta.read_text())
    doc["overhead_ms"] = value
    meta.write_text(json.dumps(doc))
    with pytest.raises(TableError, match=r"provenance.json: overhead_ms must be a finite number"):
        LatencyTable.load(t.path)


def test_missing_parquet_with_entries_is_an_error_not_a_rebuild(tmp_path: Path) -> None:
    t = _fresh(tmp_path).update({k: _stats(i) for i, k in enumerate(KEYS[:4])})
    (t.path / TABLE_FILE).unlink()
    before = _files(t.path)
    with pytest.raises(TableError, match=r"table.parquet: missing, but provenance.json records 4"):
        LatencyTable.load(t.path)
    with pytest.raises(TableError, match="missing"):
        t.update({KEYS[5]: _stats(5)})
    assert _files(t.path) == before
