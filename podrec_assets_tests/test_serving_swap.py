"""The MongoDB serving copy never disagrees with Delta silently, and readers never see a half-written or doubled day.

Faults are injected for real against the session's MongoDB server: the writing process is killed with SIGKILL at
each step of a day's write (after the inserts, before the swap; after the swap, before the clean-up), and a write
whose MongoDB is down leaves Delta ahead. The serving check must say so, and a re-run must repair it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from datetime import date

import pandas as pd
import pyarrow as pa
import pytest

from podrec_assets.defs.checks import serving_copy_problems
from podrec_assets.resources import LakeResource, MongoResource
from podrec_assets.resources.unavailable import ServerUnavailable

TABLE = "final_recommendations"

WRITER = r"""
import json, sys, time
from datetime import date
from pymongo import monitoring
from podrec_assets.resources import MongoResource

uri, database, bucket_users, day, run_id, users, stop_at = sys.argv[1:]

class StopBefore(monitoring.CommandListener):
    # called in the writing thread before the command is sent: the process hangs there until it is killed
    def started(self, event):
        if event.command_name == stop_at and (stop_at != "update" or event.command.get("update") == "serving_days"):
            print("stopped before " + stop_at, flush=True)
            time.sleep(3600)
    def succeeded(self, event): pass
    def failed(self, event): pass

monitoring.register(StopBefore())
mongo = MongoResource(uri=uri, database=database, list_bucket_users=int(bucket_users))
docs = ({"user_id": f"u{u:05d}", "rank": r, "episode_id": f"ep{r}"} for u in range(int(users)) for r in range(1, 11))
written = mongo.replace_day("final_recommendations", date.fromisoformat(day), docs, run_id, batch_size=500)
print(json.dumps(written), flush=True)
"""


def documents(users: int, tag: str):
    return [{"user_id": f"u{u:05d}", "rank": r, "episode_id": f"{tag}{r}"} for u in range(users) for r in range(1, 11)]


def served(mongo: MongoResource, day: date) -> list[dict]:
    """The rows a reader gets for the day: the swapped-in write only (buckets of users unpacked to rows)."""
    return mongo.served_rows(TABLE, day)


def buckets(mongo: MongoResource, users: int) -> int:
    """Documents a day of ``users`` lists takes."""
    return math.ceil(users / mongo.list_bucket_users)


def write_both(lake: LakeResource, mongo: MongoResource, day: date, run_id: str, users: int, tag: str) -> None:
    docs = documents(users, tag)
    table = pa.table(
        {
            "user_id": [d["user_id"] for d in docs],
            "rank": pa.array([d["rank"] for d in docs], pa.int32()),
            "episode_id": [d["episode_id"] for d in docs],
        }
    )
    written = lake.write_partition(TABLE, day, table, run_id)
    mongo.replace_day(TABLE, day, docs, run_id, delta_version=written["delta_version"])


@pytest.fixture
def stores(resources, tmp_path):
    mongo = MongoResource(
        uri=resources["mongo"].uri, database=f"swap_{os.getpid()}_{tmp_path.name[-8:]}", list_bucket_users=25
    )
    yield LakeResource(root=str(tmp_path / "lake")), mongo
    mongo.client().drop_database(mongo.database)


@pytest.mark.parametrize("stop_at", ["update", "delete"])
def test_a_writer_killed_mid_write_leaves_readers_one_whole_day(stores, stop_at):
    """SIGKILL after every insert but before the swap: readers keep the old day. After the swap but before the old
    documents are deleted: readers get the new day, not both. A re-run leaves exactly one day."""
    lake, mongo = stores
    day = date(2026, 5, 1)
    write_both(lake, mongo, day, "run-old", 300, "old")
    assert len(served(mongo, day)) == 3000
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, mongo.uri, mongo.database, "25", day.isoformat(), "run-new", "400", stop_at],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == f"stopped before {stop_at}"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    stored = mongo.db()[TABLE].count_documents({"date": day.isoformat()})
    assert stored == buckets(mongo, 300) + buckets(mongo, 400)  # both writes are in the collection: work left behind
    seen = served(mongo, day)
    runs = {d["run_id"] for d in seen}
    if stop_at == "update":
        assert len(seen) == 3000 and runs == {"run-old"}
        assert serving_copy_problems(lake, mongo, TABLE, day)[0] == []  # Delta and MongoDB still agree (old day)
    else:
        assert len(seen) == 4000 and runs == {"run-new"}
        assert sorted((d["user_id"], d["rank"]) for d in seen) == sorted(
            (d["user_id"], d["rank"]) for d in documents(400, "")
        )
        problems, _ = serving_copy_problems(lake, mongo, TABLE, day)  # Delta still holds the old run: said loudly
        assert any("run run-new" in p and "run-old" in p for p in problems)
    # the re-run of the day repairs everything: one write left, what Delta holds
    write_both(lake, mongo, day, "run-rerun", 350, "re")
    assert mongo.db()[TABLE].count_documents({"date": day.isoformat()}) == buckets(mongo, 350)
    assert len(served(mongo, day)) == 3500
    assert {d["run_id"] for d in served(mongo, day)} == {"run-rerun"}
    assert serving_copy_problems(lake, mongo, TABLE, day)[0] == []


def test_mongodb_down_leaves_delta_ahead_and_the_check_says_so(stores):
    """A run whose MongoDB is unreachable commits Delta and fails on MongoDB: readers keep the previous write, the
    check names both runs, and the re-run repairs it."""
    from podrec_assets.local.processes import free_port

    lake, mongo = stores
    day = date(2026, 5, 2)
    write_both(lake, mongo, day, "run-1", 200, "a")
    down = MongoResource(
        uri=f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        database=mongo.database,
        server_selection_timeout_ms=500,
    )
    with pytest.raises(
        ServerUnavailable, match=r"MongoDB: no server answers at 127\.0\.0\.1:\d+ .*podrec services start"
    ):
        write_both(lake, down, day, "run-2", 250, "b")
    assert set(lake.read_day(TABLE, day, columns=["run_id"]).column("run_id").to_pylist()) == {"run-2"}
    assert {d["run_id"] for d in served(mongo, day)} == {"run-1"} and len(served(mongo, day)) == 2000
    problems, facts = serving_copy_problems(lake, mongo, TABLE, day)
    assert any("run run-1" in p and "run-2" in p for p in problems)
    assert any("8 documents holding 2000 rows" in p and "Delta has 2500 rows" in p for p in problems)
    assert facts["delta_rows"] == 2500 and facts["served_rows"] == 2000
    write_both(lake, mongo, day, "run-3", 250, "c")
    assert serving_copy_problems(lake, mongo, TABLE, day)[0] == []
    # a day Delta holds but MongoDB never served is a difference too
    lake.write_partition(TABLE, date(2026, 5, 3), pa.table({"user_id": ["u1"]}), "run-x")
    assert serving_copy_problems(lake, mongo, TABLE, date(2026, 5, 3))[0] == [
        "MongoDB serves no write of 2026-05-03 (Delta has 1 rows)"
    ]
    assert json.dumps(facts)  # metadata is plain JSON


def test_only_the_newest_days_stay_served_and_an_older_backfill_is_not_written(stores):
    """keep_days=2: writing a third day removes the oldest from MongoDB (Delta keeps it); a backfill of a day older
    than both kept days writes nothing to MongoDB, and the serving check does not call that a difference."""
    lake, full = stores
    mongo = MongoResource(uri=full.uri, database=full.database, keep_days=2, list_bucket_users=5)
    days = [date(2026, 6, d) for d in (1, 2, 3)]
    for n, day in enumerate(days):
        write_both(lake, mongo, day, f"run-{n}", 20, f"d{n}")
    assert sorted(mongo.served_days(TABLE)) == ["2026-06-02", "2026-06-03"]
    assert mongo.db()[TABLE].count_documents({"date": "2026-06-01"}) == 0
    assert lake.day_row_count(TABLE, days[0]) == 200  # the lake keeps every day
    assert len(served(mongo, days[1])) == 200 and len(served(mongo, days[2])) == 200
    assert serving_copy_problems(lake, mongo, TABLE, days[0]) == (
        [],
        {
            "delta_rows": 200,
            "delta_run_ids": "run-0",
            "not_served": "older than the 2 days MongoDB keeps (from 2026-06-02)",
        },
    )
    before = mongo.db()[TABLE].count_documents({})
    written = mongo.replace_day(TABLE, days[0], documents(30, "late"), "run-late")
    assert written["skipped"] and written["inserted"] == 0
    assert mongo.db()[TABLE].count_documents({}) == before and sorted(mongo.served_days(TABLE)) == [
        "2026-06-02",
        "2026-06-03",
    ]
    # a fresh day moves the window on; the same day rewritten stays one write
    write_both(lake, mongo, date(2026, 6, 4), "run-4", 10, "d4")
    write_both(lake, mongo, date(2026, 6, 4), "run-5", 12, "d5")
    assert sorted(mongo.served_days(TABLE)) == ["2026-06-03", "2026-06-04"]
    assert mongo.db()[TABLE].count_documents({"date": "2026-06-04"}) == buckets(mongo, 12)
    assert len(served(mongo, date(2026, 6, 4))) == 120
    assert serving_copy_problems(lake, mongo, TABLE, date(2026, 6, 4))[0] == []
    # neighbours are no ranked list a newer day replaces: every day of them stays
    for day in days:
        mongo.replace_day("similarities", day, [{"new_episode_id": f"n{day.day}", "rank": 1}], "run-s")
    assert sorted(mongo.served_days("similarities")) == [d.isoformat() for d in days]


def test_a_missing_server_is_named_with_where_and_how_to_start_it(tmp_path):
    """Inside an asset, a server that does not answer gives the project's message, not a bare driver error."""
    import dagster as dg

    from podrec_assets.defs.events.assets import user_events
    from podrec_assets.local.processes import free_port
    from podrec_assets.resources import KafkaResource
    from podrec_assets.resources.spark import spark_resource
    from podrec_assets.settings import load_settings

    port = free_port()
    kafka = KafkaResource(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=1000)
    result = dg.materialize(
        [user_events],
        partition_key="2026-05-01",
        raise_on_error=False,
        resources={
            "kafka": kafka,
            "lake": LakeResource(root=str(tmp_path / "lake")),
            "spark": spark_resource(load_settings({})),
        },
    )
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    text = str(error.message) + str(error.cause.message if error.cause else "")
    assert f"Kafka: no server answers at 127.0.0.1:{port}" in text and "podrec services start" in text
    secret = MongoResource(
        uri=f"mongodb://admin:s3cret@127.0.0.1:{port}/?directConnection=true", server_selection_timeout_ms=300
    )
    with pytest.raises(ServerUnavailable) as raised:
        secret.served_days("final_recommendations")
    assert f"127.0.0.1:{port}" in str(raised.value) and "s3cret" not in str(raised.value)


def test_an_empty_day_is_a_consistent_serving_copy(stores):
    """A day with no rows (e.g. ALS with nothing left to recommend on a tiny first day) records no run in Delta;
    its empty serving write agrees with it, and a non-empty Delta day against that empty write does not."""
    lake, mongo = stores
    day = date(2026, 5, 7)
    write_both(lake, mongo, day, "run-empty", 0, "e")
    assert lake.day_row_count(TABLE, day) == 0
    assert serving_copy_problems(lake, mongo, TABLE, day)[0] == []
    lake.write_partition(TABLE, day, pa.table({"user_id": ["u1"], "rank": pa.array([1], pa.int32())}), "run-late")
    problems, _ = serving_copy_problems(lake, mongo, TABLE, day)
    assert any("run run-empty" in p and "run-late" in p for p in problems)


def test_a_user_list_is_read_from_its_bucket_newest_day_first(stores):
    """list_of reads one bucket document per served day: the user's rows by rank, newest day first; every row of a
    day is in exactly one bucket; missing values come back as None; an unknown user gets nothing."""
    lake, mongo = stores
    for n, day in enumerate([date(2026, 7, 1), date(2026, 7, 2)]):
        write_both(lake, mongo, day, f"run-{n}", 120, f"d{n}-")
    pointer = mongo.served_days(TABLE)["2026-07-02"]
    assert pointer["buckets"] == buckets(mongo, 120) == mongo.db()[TABLE].count_documents({"date": "2026-07-02"})
    rows = mongo.list_of(TABLE, "u00042")
    assert [(r["date"], r["rank"], r["episode_id"]) for r in rows] == [
        *[("2026-07-02", r, f"d1-{r}") for r in range(1, 11)],
        *[("2026-07-01", r, f"d0-{r}") for r in range(1, 11)],
    ]
    assert {r["run_id"] for r in mongo.list_of(TABLE, "u00042", days=1)} == {"run-1"}
    assert mongo.list_of(TABLE, "nobody") == []
    owners = [u for doc in mongo.db()[TABLE].find({"date": "2026-07-02"}) for u in doc["user_id"]]
    assert sorted(owners) == [f"u{u:05d}" for u in range(120)]  # each user in one bucket, once
    frame = pd.DataFrame({"user_id": ["b", "a", "a"], "rank": [1, 2, 1], "score": [0.5, float("nan"), 1.0]})
    mongo.replace_day(TABLE, date(2026, 7, 3), frame, "run-nan")
    assert mongo.list_of(TABLE, "a", days=1) == [
        {
            "user_id": "a",
            "rank": 1,
            "score": 1.0,
            "date": "2026-07-03",
            "run_id": "run-nan",
            "model_version": None,
            "write_id": mongo.served_days(TABLE)["2026-07-03"]["write_id"],
        },
        {
            "user_id": "a",
            "rank": 2,
            "score": None,
            "date": "2026-07-03",
            "run_id": "run-nan",
            "model_version": None,
            "write_id": mongo.served_days(TABLE)["2026-07-03"]["write_id"],
        },
    ]


def test_list_documents_hold_python_values_and_none_for_any_missing_one():
    """Numbers become Python numbers one bucket at a time; a missing value is None whatever the column's dtype
    (numpy float, pandas' nullable integer and boolean, text), and an integer stays an integer."""
    from podrec_assets.resources.mongo import list_documents, rows_of_list_document

    frame = pd.DataFrame(
        {
            "user_id": ["b", "a", "a", "c"],
            "rank": [1, 2, 1, 1],
            "score": [0.5, float("nan"), 1.0, 2.0],
            "count": pd.array([3, None, 1, 2], dtype="Int64"),
            "flag": pd.array([True, None, False, True], dtype="boolean"),
            "reason": ["x", None, "y", "z"],
        }
    )
    documents = list(list_documents(frame, "user_id", 2, {"date": "2026-07-03"}))
    rows = sorted(
        (row for doc in documents for row in rows_of_list_document(doc, "user_id")),
        key=lambda r: (r["user_id"], r["rank"]),
    )
    assert [(r["user_id"], r["rank"]) for r in rows] == [("a", 1), ("a", 2), ("b", 1), ("c", 1)]
    assert [r["score"] for r in rows] == [1.0, None, 0.5, 2.0]
    assert [r["count"] for r in rows] == [1, None, 3, 2] and all(type(r["rank"]) is int for r in rows)
    assert all(type(r["count"]) is int for r in rows if r["count"] is not None)
    assert [r["flag"] for r in rows] == [False, None, True, True]
    assert [r["reason"] for r in rows] == ["y", None, "x", "z"]
