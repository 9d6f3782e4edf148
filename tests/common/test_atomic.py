"""The one atomic writer: a failed write leaves the old file and no temporary behind."""

from __future__ import annotations

import pandas as pd
import pytest

from hwnas.common.atomic import atomic_copy, atomic_write, atomic_write_df, atomic_write_text


def test_replaces_whole_file(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_failure_keeps_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(p, boom)
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_dataframe_by_suffix(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    atomic_write_df(df, tmp_path / "t.parquet")
    atomic_write_df(df, tmp_path / "t.csv")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), df)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), df)


def test_copy(tmp_path):
    (tmp_path / "src").write_bytes(b"\x00\x01weights")
    atomic_copy(tmp_path / "src", tmp_path / "dst")
    assert (tmp_path / "dst").read_bytes() == b"\x00\x01weights"
