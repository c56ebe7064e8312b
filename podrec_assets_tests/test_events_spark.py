"""engine=local (DuckDB, delta-rs) and engine=spark (Spark SQL with Spark's own Delta reader and writer) give
identical user_episode_daily for the same day; Spark reads Delta at a pinned version. One Spark session (local[2])
for the module."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from podrec_assets.core.engagement import aggregate_duckdb, aggregate_spark, conform, weights_from_settings
from podrec_assets.core.events import Catalog, split_day
from podrec_assets.defs.events.assets import user_episode_daily
from podrec_assets.resources import LakeResource
from podrec_assets.resources.spark import spark_resource
from podrec_assets.settings import load_settings
from podrec_assets.sources.event_messages import SimulationStats, generate_day
from podrec_assets.sources.listening import Episode, ListeningModel

DAYS = [date(2026, 4, 1), date(2026, 4, 2)]
COLUMNS = ["user_id", "episode_id", "engagement", "event_count", "max_played_pct", "completed", "last_event_at"]


@dataclass
class Rec:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """user_events for two days, built from simulated messages through the real validation."""
    lake = LakeResource(root=str(tmp_path_factory.mktemp("events-spark-lake")))
    start = int(datetime(2026, 3, 20, tzinfo=timezone.utc).timestamp() * 1000)
    episodes = [Episode(f"ep{i:02d}", start + i * 3_600_000, 600.0 + 30 * i, (f"topic{i % 4}",)) for i in range(24)]
    model = ListeningModel(episodes, 800, 5, 3)
    for day in DAYS:
        messages = generate_day(model, day, 8, 5, 0.0, 0.0, timedelta(hours=1), SimulationStats(), 1 << 62)
        records = [Rec(m.partition, n, m.ts_ms, m.key, m.value) for n, m in enumerate(messages)]
        split = split_day(
            "user-events",
            day,
            records,
            Catalog(frozenset(e.episode_id for e in episodes)),
            {},
            {},
            timedelta(hours=1),
            datetime(2026, 6, 1, tzinfo=timezone.utc),
        )
        lake.write_partition("user_events", day, split.table(), "fixture")
    return lake


@pytest.fixture(scope="module")
def spark():
    resource = spark_resource(load_settings({"PODREC_SPARK_MASTER": "local[2]"}))
    yield resource
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


def daily_rows(lake, day, version=None):
    return lake.read_day("user_episode_daily", day, columns=COLUMNS, version=version).sort_by(
        [("user_id", "ascending"), ("episode_id", "ascending")]
    )


def test_duckdb_and_spark_give_identical_user_episode_daily(lake, spark):
    runs = {}
    for engine in ("local", "spark"):
        before = lake.version("user_episode_daily")
        result = dg.materialize(
            [user_episode_daily],
            partition_key=DAYS[0].isoformat(),
            resources={"lake": lake, "spark": spark},
            run_config={"ops": {"user_episode_daily": {"config": {"engine": engine}}}},
        )
        assert result.success
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["engine"].value == engine
        written = metadata["delta_version"].value
        assert written == (0 if before is None else before + 1)  # the day is one commit, whichever engine writes
        runs[engine] = (
            daily_rows(lake, DAYS[0]),
            metadata,
            lake.table("user_episode_daily").history(1)[0],
            result.run_id,
        )
    local, spark_rows = runs["local"][0], runs["spark"][0]
    assert local.num_rows > 500
    assert local.equals(spark_rows), "DuckDB and Spark disagree"
    for name in ("rows", "users", "episodes", "completed_pairs", "mean_engagement", "user_events_delta_version"):
        assert runs["local"][1][name].value == runs["spark"][1][name].value, name
    # Spark's write replaced the day by predicate, like delta-rs's: an overwrite with a replaceWhere on the date
    commit = runs["spark"][2]
    assert commit["operation"] == "WRITE" and commit["operationParameters"]["mode"] == "Overwrite"
    assert "2026-04-01" in str(commit["operationParameters"])
    assert set(lake.read_day("user_episode_daily", DAYS[0], columns=["run_id"]).column("run_id").to_pylist()) == {
        runs["spark"][3]
    }
    # every event of the day is counted once
    day_events = lake.read_day("user_events", DAYS[0])
    assert sum(local.column("event_count").to_pylist()) == day_events.num_rows
    # a later delta-rs write next to Spark's: the other day is added, Spark's day is untouched
    assert dg.materialize(
        [user_episode_daily],
        partition_key=DAYS[1].isoformat(),
        resources={"lake": lake, "spark": spark},
        run_config={"ops": {"user_episode_daily": {"config": {"engine": "local"}}}},
    ).success
    assert daily_rows(lake, DAYS[0]).equals(spark_rows) and daily_rows(lake, DAYS[1]).num_rows > 500


def test_spark_reads_delta_natively_at_the_pinned_version(lake, spark):
    """Spark's Delta reader time-travels: at the version a run recorded it sees that version's rows, not newer ones."""
    weights = weights_from_settings(load_settings({}))
    session = spark.spark_session
    pinned = lake.version("user_events")
    expected = aggregate_duckdb(lake.read_day("user_events", DAYS[1], version=pinned), weights)
    # a later commit replaces the day with a tenth of its events
    day = lake.read_day("user_events", DAYS[1])
    lake.write_partition(
        "user_events",
        DAYS[1],
        day.slice(0, day.num_rows // 10).drop_columns(["date", "run_id", "created_at"]),
        "shrunk",
    )
    assert lake.version("user_events") == pinned + 1
    at_pinned = aggregate_spark(
        session, lake.spark_read_days(session, "user_events", DAYS[1], DAYS[1], pinned), weights
    )
    assert conform(at_pinned.toArrow()).equals(expected) and expected.num_rows > 500
    latest = lake.spark_read_days(session, "user_events", DAYS[1], DAYS[1], pinned + 1)
    assert latest.count() == day.num_rows // 10
    assert set(r["run_id"] for r in latest.select("run_id").distinct().collect()) == {"shrunk"}
    # only the asked-for days come back
    both = lake.spark_read_days(session, "user_events", DAYS[0], DAYS[1], pinned)
    assert {r["date"] for r in both.select("date").distinct().collect()} == set(DAYS)
