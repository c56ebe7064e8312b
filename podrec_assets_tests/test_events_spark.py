"""engine=local (DuckDB) and engine=spark (Spark SQL via dagster-pyspark, Delta files by list) give identical
user_episode_daily for the same day. One Spark session (local[2]) for the module."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from podrec_assets.core.engagement import aggregate_duckdb, aggregate_spark, weights_from_settings
from podrec_assets.core.events import Catalog, split_day
from podrec_assets.defs.events.assets import user_episode_daily
from podrec_assets.resources import LakeResource
from podrec_assets.resources.spark import spark_resource
from podrec_assets.settings import load_settings
from podrec_assets.sources.simulator import Episode, ListeningModel, SimulationStats, generate_day

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
        split = split_day("user-events", day, records, Catalog(frozenset(e.episode_id for e in episodes)), {}, {},
                          timedelta(hours=1), datetime(2026, 6, 1, tzinfo=timezone.utc))
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


def test_duckdb_and_spark_give_identical_user_episode_daily(lake, spark):
    weights = weights_from_settings(load_settings({}))
    runs = {}
    for engine in ("local", "spark"):
        result = dg.materialize([user_episode_daily], partition_key=DAYS[0].isoformat(), resources={"lake": lake, "spark": spark},
                                run_config={"ops": {"user_episode_daily": {"config": {"engine": engine}}}})
        assert result.success
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["engine"].value == engine
        runs[engine] = (lake.read_day("user_episode_daily", DAYS[0], columns=COLUMNS), metadata)
    local, spark_rows = runs["local"][0], runs["spark"][0]
    assert local.num_rows > 500
    assert local.equals(spark_rows), "DuckDB and Spark disagree"
    assert runs["local"][1]["user_events_delta_version"].value == runs["spark"][1]["user_events_delta_version"].value
    # only the day's files were read, and every event of the day is counted once
    day_events = lake.read_day("user_events", DAYS[0])
    assert sum(local.column("event_count").to_pylist()) == day_events.num_rows
    # the second day on its own, straight through core, on the pinned version's file list
    version = lake.version("user_events")
    uris = lake.file_uris_for_days("user_events", DAYS[1], DAYS[1], version)
    from_spark = aggregate_spark(spark.spark_session, uris, weights)
    from_duckdb = aggregate_duckdb(lake.read_day("user_events", DAYS[1], version=version), weights)
    assert from_spark.equals(from_duckdb)
    assert from_spark.num_rows > 500
