"""user_events against a real broker (Apache Kafka): every valid event lands once, malformed ones in dead_letters,
late events, exactly-once (twice and after a killed run) and the retention guard.

The module runs its own broker (not the session's): the retention test deletes records from `user-events`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

from podrec_assets.core.engagement import weights_from_settings
from podrec_assets.defs.events.assets import user_episode_daily, user_events
from podrec_assets.defs.events.kafka_day import RetentionError, read_user_events_day
from podrec_assets.local.services import LocalStack
from podrec_assets.resources import LakeResource, build_resources
from podrec_assets.settings import load_settings
from podrec_assets.sources.simulator import simulate_history
from podrec_assets_tests.conftest import make_env
from podrec_assets_tests.test_events_core import reference_engagement

DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]
TOPICS = ["space", "hockey", "cooking", "politics", "music"]
DATA_COLUMNS = [
    "event_id",
    "ts",
    "user_id",
    "episode_id",
    "event",
    "device",
    "rating",
    "position_sec",
    "from_sec",
    "to_sec",
    "played_pct",
    "kafka_partition",
    "kafka_offset",
]


def publish_catalog(kafka, count: int = 30) -> None:
    messages = []
    for i in range(count):
        published = datetime(2026, 2, 25, tzinfo=timezone.utc) + timedelta(hours=6 * i)
        value = {
            "episode_id": f"evt-ep{i:03d}",
            "podcast_id": f"show-{TOPICS[i % 5]}",
            "podcast_title": TOPICS[i % 5],
            "episode_title": f"episode {i}",
            "description": "",
            "audio_url": "file:///dev/null",
            "language": "en",
            "published_at": published.isoformat().replace("+00:00", "Z"),
            "duration_sec": 900.0 + 60 * i,
            "categories": [TOPICS[i % 5]],
            "source": "demo",
        }
        messages.append((value["episode_id"].encode(), json.dumps(value).encode(), int(published.timestamp() * 1000)))
    kafka.produce("episode-metadata", messages)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    env = make_env(tmp_path_factory.mktemp("events-home"), PODREC_MALFORMED_SHARE="0.02")
    settings = load_settings(env)
    stack = LocalStack(settings)
    stack.start_kafka()
    try:
        resources = build_resources(settings)
        publish_catalog(resources["kafka"])
        simulated = simulate_history(settings, DAYS, users=1500, events_per_user_day=8, seed=11, late_share=0.01)
        yield {"env": env, "settings": settings, "resources": resources, "simulated": simulated}
    finally:
        stack.stop()


def materialize_user_events(resources, day: date, engine: str = "local") -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [user_events],
        partition_key=day.isoformat(),
        resources={name: resources[name] for name in ("kafka", "lake", "spark")},
        run_config={"ops": {"user_events": {"config": {"engine": engine}}}},
    )


def day_rows(lake, day: date):
    return lake.read_day("user_events", day, columns=DATA_COLUMNS).sort_by("event_id")


def dead_letters(lake, day: date) -> list[dict]:
    table = lake.read_day("dead_letters", day)
    return [r for r in table.to_pylist() if r["topic"] == "user-events"]


@pytest.fixture(scope="module")
def materialized(world):
    """Every simulated day plus the next one (where the last day's too-late events arrive)."""
    days = sorted({date.fromisoformat(d) for d in world["simulated"]["valid_by_day"]} | {DAYS[-1] + timedelta(days=1)})
    results = {}
    for day in days:
        result = materialize_user_events(world["resources"], day)
        assert result.success
        results[day] = {
            e.materialization.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
    return results


def test_every_valid_event_lands_once_in_its_day(world, materialized):
    lake, simulated = world["resources"]["lake"], world["simulated"]
    for day in DAYS:
        rows = day_rows(lake, day)
        valid = simulated["valid_by_day"][day.isoformat()]
        too_late = simulated["late_beyond_lateness"].get(day.isoformat(), 0)
        assert rows.num_rows == valid - too_late, day
        assert len(set(rows.column("event_id").to_pylist())) == rows.num_rows  # no duplicates
        assert pc.all(pc.equal(pc.cast(rows.column("ts"), "date32"), day)).as_py()
        assert materialized[day]["user_events"]["rows"].value == rows.num_rows
    assert sum(simulated["late_within_lateness"].values()) > 0  # the late path was exercised


def test_late_events_within_lateness_land_later_ones_are_reported(world, materialized):
    simulated = world["simulated"]
    for day in DAYS:
        next_day = day + timedelta(days=1)
        too_late_rows = [
            d for d in dead_letters(world["resources"]["lake"], next_day) if d["reason"].startswith("too_late")
        ]
        from_this_day = [d for d in too_late_rows if d["reason"].startswith(f"too_late: event of {day}")]
        assert len(from_this_day) == simulated["late_beyond_lateness"].get(day.isoformat(), 0)
        assert materialized[next_day]["user_events"]["too_late_events"].value == len(too_late_rows)
    assert sum(m["user_events"]["late_events_accepted"].value for m in materialized.values()) > 0


def test_every_malformed_kind_ends_in_dead_letters_with_its_reason(world, materialized):
    lake, simulated = world["resources"]["lake"], world["simulated"]
    counts: dict[str, int] = {}
    for day in materialized:
        for row in dead_letters(lake, day):
            kind = row["reason"].split(":", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
            assert row["raw_payload"] is not None and row["kafka_offset"] >= 0
    expected = {k: v for k, v in simulated["malformed"].items() if v}
    assert set(expected) == {
        "invalid_json",
        "missing_field",
        "wrong_type",
        "unknown_episode",
        "future_timestamp",
        "duplicate_event_id",
    }
    for kind, count in expected.items():
        assert counts.get(kind, 0) == count, kind
    assert counts.get("too_late", 0) == sum(simulated["late_beyond_lateness"].values())
    metadata = materialized[DAYS[0]]["dead_letters/user_events"]
    assert metadata["rows"].value == len(dead_letters(lake, DAYS[0]))


def test_materializing_a_day_twice_gives_identical_rows(world, materialized):
    lake = world["resources"]["lake"]
    before = day_rows(lake, DAYS[1])
    version = lake.version("user_events")
    metadata = materialized[DAYS[1]]["user_events"]
    result = materialize_user_events(world["resources"], DAYS[1])
    again = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }["user_events"]
    assert lake.version("user_events") == version + 1
    assert day_rows(lake, DAYS[1]).equals(before)
    assert again["offset_ranges"].value == metadata["offset_ranges"].value
    assert day_rows(lake, DAYS[0]).num_rows > 0 and day_rows(lake, DAYS[2]).num_rows > 0  # other days untouched


def test_spark_kafka_source_reads_the_same_day_as_the_local_engine(world, materialized):
    """engine=spark reads the day through Spark's Kafka source over the same per-partition offset ranges; the
    validated rows and dead letters it stores are exactly the local engine's."""
    lake = world["resources"]["lake"]
    day = DAYS[2]
    local_rows, local_dead = day_rows(lake, day), dead_letters(lake, day)
    local = materialized[day]["user_events"]
    try:
        result = materialize_user_events(world["resources"], day, engine="spark")
        spark = {
            e.materialization.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }["user_events"]
    finally:
        stop_spark()
    assert result.success
    assert spark["kafka_reader"].value == "spark" and local["kafka_reader"].value == "kafka-python"
    assert spark["offset_ranges"].value == local["offset_ranges"].value
    assert spark["offsets_read"].value == local["offsets_read"].value > 5_000
    assert spark["rows"].value == local_rows.num_rows
    assert day_rows(lake, day).equals(local_rows)

    def strip(rows):  # a future_timestamp reason also says when the run ran ("/ now ..."): not part of the verdict
        return sorted(
            (r["kafka_partition"], r["kafka_offset"], r["reason"].split(" / now ")[0], r["raw_payload"]) for r in rows
        )

    assert strip(dead_letters(lake, day)) == strip(local_dead) and local_dead


def stop_spark() -> None:
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


KILL_SCRIPT = """
import sys
from datetime import date
from podrec_assets.defs.events.kafka_day import read_user_events_day
from podrec_assets.resources import LakeResource, build_resources
from podrec_assets.settings import get_settings
r = build_resources(get_settings())
print("ready", flush=True)
read_user_events_day(r["kafka"], r["lake"], date.fromisoformat(sys.argv[1]), "killed-run")
print("finished", flush=True)
"""


def test_a_run_killed_mid_write_leaves_the_day_intact(world, materialized, tmp_path):
    lake = world["resources"]["lake"]
    day = DAYS[2]
    before = day_rows(lake, day)
    partition_dir = Path(lake.table_uri("user_events")) / f"date={day.isoformat()}"
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, **world["env"]}
    killed_mid_write = 0
    for attempt in range(10):
        version = lake.version("user_events")
        files_before = set(os.listdir(partition_dir))
        process = subprocess.Popen(
            [sys.executable, str(script), day.isoformat()],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and process.poll() is None:
                if set(os.listdir(partition_dir)) - files_before:  # data file written, commit maybe not yet
                    os.kill(process.pid, signal.SIGKILL)
                    break
                time.sleep(0.001)
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
        assert day_rows(lake, day).equals(before), f"attempt {attempt}: the day changed after a kill"
        if lake.version("user_events") == version:
            killed_mid_write += 1
            if killed_mid_write >= 1:
                break
    assert killed_mid_write >= 1, "never managed to kill the run between its data write and its commit"
    read_user_events_day(world["resources"]["kafka"], lake, day, "rerun")
    assert day_rows(lake, day).equals(before)


def test_user_episode_daily_local_matches_the_reference(world, materialized, monkeypatch):
    lake = world["resources"]["lake"]
    for key, value in world["env"].items():
        monkeypatch.setenv(key, value)
    from podrec_assets.settings import get_settings

    get_settings.cache_clear()
    try:
        result = dg.materialize(
            [user_episode_daily],
            partition_key=DAYS[0].isoformat(),
            resources={"lake": lake, "spark": world["resources"]["spark"]},
            run_config={"ops": {"user_episode_daily": {"config": {"engine": "local"}}}},
        )
    finally:
        get_settings.cache_clear()
    assert result.success
    daily = lake.read_day("user_episode_daily", DAYS[0]).to_pylist()
    events = lake.read_day("user_events", DAYS[0]).to_pylist()
    expected = reference_engagement(events, weights_from_settings(world["settings"]))
    assert len(daily) == len(expected)
    for row in daily:
        assert row["engagement"] == pytest.approx(expected[(row["user_id"], row["episode_id"])], abs=1e-9)
    assert sum(r["event_count"] for r in daily) == len(events)


def test_follow_mode_streams_now_stamped_valid_events_at_the_rate(world):
    from podrec_assets.sources.simulator import simulate_follow

    kafka = world["resources"]["kafka"]
    before = kafka.end_offsets("user-events")
    started_ms = int(time.time() * 1000)
    result = simulate_follow(world["settings"], users=50, rate=400, seed=3, duration_s=1.5)
    ended_ms = int(time.time() * 1000)
    after = kafka.end_offsets("user-events")
    records = kafka.read_range("user-events", {p: (before[p], after[p]) for p in after})
    assert len(records) == result["messages"] and 400 <= result["messages"] <= 400 * 1.6 + 1
    known = {f"evt-ep{i:03d}" for i in range(30)}
    for record in records:
        event = json.loads(record.value)
        assert started_ms <= record.timestamp_ms <= ended_ms  # stamped now, not on a past day
        assert (
            event["episode_id"] in known
            and event["user_id"].startswith("u")
            and record.key == event["user_id"].encode()
        )
        assert 0.0 <= event["from_sec"] <= event["to_sec"] and 0.0 <= event["played_pct"] <= 1.0
        assert (event["rating"] is not None) == (event["event"] == "rate")


def test_retention_guard_refuses_to_replace_a_day_with_less(world, materialized, tmp_path):
    """Runs last: it deletes records (DeleteRecords), so the log start really moves."""
    from kafka import TopicPartition

    kafka, lake = world["resources"]["kafka"], world["resources"]["lake"]
    day = DAYS[1]
    before = day_rows(lake, day)
    version = lake.version("user_events")
    by_partition: dict[int, list[int]] = {}
    for partition, offset in zip(
        before.column("kafka_partition").to_pylist(), before.column("kafka_offset").to_pylist()
    ):
        by_partition.setdefault(partition, []).append(offset)
    partition, offsets = max(by_partition.items(), key=lambda item: len(item[1]))
    cut = sorted(offsets)[len(offsets) // 2]  # drop the first half of the day on one partition
    admin = kafka.admin()
    try:
        admin.delete_records({TopicPartition("user-events", partition): cut})
    finally:
        admin.close()
    with pytest.raises(RetentionError, match=r"no longer holds the start of 2026-03-02.*Refusing to replace"):
        read_user_events_day(kafka, lake, day, "after-retention")
    result = dg.materialize(
        [user_events],
        partition_key=day.isoformat(),
        raise_on_error=False,
        resources={"kafka": kafka, "lake": lake, "spark": world["resources"]["spark"]},
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "Refusing to replace" in str(failure.message) or "Refusing to replace" in str(failure.cause)
    assert lake.version("user_events") == version
    assert day_rows(lake, day).equals(before)
    # a day that has no data yet is still read (what is left of it), and says it may be truncated
    empty_lake = LakeResource(root=str(tmp_path / "empty-lake"))
    metadata = read_user_events_day(kafka, empty_lake, day, "fresh")
    assert partition in metadata["possibly_truncated_partitions"]
    assert 0 < empty_lake.day_row_count("user_events", day) < before.num_rows


def test_a_wiped_broker_never_replaces_a_stored_day_with_less(world, materialized):
    """Runs after the retention test: the broker is stopped, its data directory deleted and started empty (topics
    recreated, offsets from 0). Re-reading a stored day must refuse and keep the day."""
    import shutil

    kafka, lake, settings = world["resources"]["kafka"], world["resources"]["lake"], world["settings"]
    day = DAYS[0]
    before, version = day_rows(lake, day), lake.version("user_events")
    stack = LocalStack(settings)
    stack.stop()
    shutil.rmtree(settings.services_dir / "kafka-data")
    stack.start_kafka()
    publish_catalog(kafka, 3)  # a few new records: offsets restart low, below what the day was read from
    kafka.produce(
        "user-events", [(b"u1", b"{}", int(datetime(2026, 3, 1, 12, tzinfo=timezone.utc).timestamp() * 1000))]
    )
    with pytest.raises(RetentionError, match=r"holds fewer records .* wiped or the topic recreated.*Refusing"):
        read_user_events_day(kafka, lake, day, "after-wipe")
    result = dg.materialize(
        [user_events],
        partition_key=day.isoformat(),
        raise_on_error=False,
        resources={"kafka": kafka, "lake": lake, "spark": world["resources"]["spark"]},
    )
    assert not result.success
    assert lake.version("user_events") == version and day_rows(lake, day).equals(before)
