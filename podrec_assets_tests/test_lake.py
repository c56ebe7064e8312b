"""The Delta lake resource: one day replaced per write, every day of a range read."""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa

from podrec_assets.resources.lake import LakeResource


def _rows(n: int, tag: str) -> pa.Table:
    return pa.table({"key": [f"{tag}-{i}" for i in range(n)], "value": list(range(n))})


def test_write_replaces_one_day_and_range_reads_every_day(tmp_path):
    lake = LakeResource(root=str(tmp_path))
    first = date(2026, 3, 1)
    for n in range(4):
        lake.write_partition("t", first + timedelta(days=n), _rows(n + 1, f"d{n}"), run_id=f"r{n}")
    lake.write_partition("t", first + timedelta(days=1), _rows(5, "again"), run_id="r9")
    table = lake.read_days("t", first, first + timedelta(days=3))
    per_day = {}
    for d in table.column("date").to_pylist():
        per_day[d] = per_day.get(d, 0) + 1
    assert per_day == {
        first: 1,
        first + timedelta(days=1): 5,
        first + timedelta(days=2): 3,
        first + timedelta(days=3): 4,
    }
    assert set(lake.read_day("t", first + timedelta(days=1)).column("run_id").to_pylist()) == {"r9"}
    assert lake.read_days("t", first + timedelta(days=1), first + timedelta(days=2)).num_rows == 8
