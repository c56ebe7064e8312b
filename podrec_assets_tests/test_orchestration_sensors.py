"""Kafka topic sensors against the real broker: new data, no data, more data, broker down, cursor kept."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from podrec_assets.core.days import day_start_ms
from podrec_assets.defs.orchestration.kafka_days import days_by_bisection, days_from_timestamps
from podrec_assets.defs.orchestration.sensors import TopicCursor, build_topic_sensor, evaluate_topic
from podrec_assets.defs.orchestration.topics import topic_asset_key
from podrec_assets.local.processes import free_port
from podrec_assets.resources import KafkaResource

TARGET = dg.AssetKey("user_events")
D1, D2 = date(2026, 3, 1), date(2026, 3, 2)


def at(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc).timestamp() * 1000)


@pytest.fixture
def topic(resources) -> str:
    """A fresh two-partition topic per test (so offsets start at 0)."""
    from kafka.admin import NewTopic

    name = f"test-sensor-{uuid.uuid4().hex[:8]}"
    admin = resources["kafka"].admin()
    try:
        # old event times kept; Kafka refuses records stamped over an hour ahead unless the topic allows it, and
        # one test needs a record of a day after today's partition
        configs = {"retention.ms": "-1", "message.timestamp.after.max.ms": str(30 * 86_400_000)}
        admin.create_topics([NewTopic(name, 2, 1, topic_configs=configs)])
    finally:
        admin.close()
    return name


def produce(kafka: KafkaResource, topic: str, stamps: list[tuple[int, int]]) -> None:
    """(partition, timestamp_ms) records, values are small JSON documents."""
    producer = kafka.producer()
    try:
        for partition, ts in stamps:
            producer.send(topic, value=json.dumps({"ts": ts}).encode(), partition=partition, timestamp_ms=ts)
        producer.flush()
    finally:
        producer.close()


def tick(kafka, topic, cursor=None, instance=None, scan_limit=20000, targets=(TARGET,)):
    context = dg.build_sensor_context(instance=instance or dg.DagsterInstance.ephemeral(), cursor=cursor)
    return evaluate_topic(context, kafka, topic, list(targets), scan_limit)


def observation(result: dg.SensorResult) -> dict:
    found = [e for e in result.asset_events if isinstance(e, dg.AssetObservation)]
    assert len(found) == 1
    return {k: getattr(v, "value", v) for k, v in found[0].metadata.items()}


def test_new_records_request_exactly_their_days_with_stable_keys_and_lag(resources, topic):
    kafka = resources["kafka"]
    produce(kafka, topic, [(0, at(D1, 3)), (0, at(D1, 9)), (1, at(D1, 23)), (1, at(D2, 1)), (1, at(D2, 5))])

    first = tick(kafka, topic)
    assert sorted(r.partition_key for r in first.run_requests) == ["2026-03-01", "2026-03-02"]
    assert all(r.asset_selection == [TARGET] for r in first.run_requests)
    lag = observation(first)
    assert (lag["lag_total"], lag["lag/p0"], lag["lag/p1"]) == (5, 2, 3)
    assert lag["day_search"] == "timestamps"
    assert TopicCursor.parse(first.cursor).offsets == {0: 2, 1: 3}
    materialized = [e for e in first.asset_events if isinstance(e, dg.AssetMaterialization)]
    assert materialized and materialized[0].asset_key == topic_asset_key(topic)

    again = tick(kafka, topic)  # the same tick evaluated twice (e.g. after a crash) gives the same run keys
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests]

    # no new data: nothing requested, cursor unchanged, no new observation inside the heartbeat
    idle = tick(kafka, topic, cursor=first.cursor)
    assert idle.run_requests == [] and "No new records" in idle.skip_reason.skip_message
    assert TopicCursor.parse(idle.cursor).offsets == {0: 2, 1: 3}
    assert not [e for e in idle.asset_events if isinstance(e, dg.AssetObservation)]

    # one late record for D2: only D2, with a run key different from the first D2 run
    produce(kafka, topic, [(0, at(D2, 12))])
    more = tick(kafka, topic, cursor=idle.cursor)
    assert [r.partition_key for r in more.run_requests] == ["2026-03-02"]
    assert more.run_requests[0].run_key not in {r.run_key for r in first.run_requests}
    assert observation(more)["lag_total"] == 1
    assert TopicCursor.parse(more.cursor).offsets == {0: 3, 1: 3}


def test_bisection_finds_the_same_days_as_reading_timestamps(resources, topic):
    kafka = resources["kafka"]
    days = [date(2026, 2, 1) + timedelta(days=n) for n in range(0, 20, 3)]
    produce(kafka, topic, [(n % 2, at(d, h)) for n, d in enumerate(days) for h in (1, 7, 22)])
    exact = tick(kafka, topic)
    bisected = tick(kafka, topic, scan_limit=0)
    assert observation(bisected)["day_search"] == "offsets_for_times"
    assert [r.partition_key for r in bisected.run_requests] == [r.partition_key for r in exact.run_requests]
    assert [r.partition_key for r in exact.run_requests] == [d.isoformat() for d in days]
    # from a cursor in the middle, only the days of the newer records
    middle = TopicCursor({0: 6, 1: 6}).dump()
    assert {r.partition_key for r in tick(kafka, topic, cursor=middle, scan_limit=0).run_requests} == {
        r.partition_key for r in tick(kafka, topic, cursor=middle).run_requests
    }


def test_first_tick_skips_days_already_materialized(resources, topic):
    kafka = resources["kafka"]
    produce(kafka, topic, [(0, at(D1, 3)), (1, at(D2, 3))])
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(TARGET, partition=D1.isoformat()))
    result = tick(kafka, topic, instance=instance)
    assert [r.partition_key for r in result.run_requests] == [D2.isoformat()]


def test_records_outside_the_partitions_are_not_requested(resources, topic):
    kafka = resources["kafka"]
    future = datetime.now(timezone.utc).date() + timedelta(days=5)
    produce(kafka, topic, [(0, at(date(2025, 6, 1), 3)), (0, at(future, 3)), (1, at(D1, 3))])
    result = tick(kafka, topic)
    assert [r.partition_key for r in result.run_requests] == [D1.isoformat()]
    assert observation(result)["records_outside_partitions"] == 2


def test_without_a_consumer_asset_only_lag_is_observed_and_the_cursor_stays(resources, topic):
    kafka = resources["kafka"]
    produce(kafka, topic, [(0, at(D1, 3))])
    result = tick(kafka, topic, targets=())
    assert result.run_requests == [] and observation(result)["lag_total"] == 1
    assert TopicCursor.parse(result.cursor).offsets == {0: 0, 1: 0}


def test_broker_down_skips_with_the_address_and_keeps_the_cursor():
    port = free_port()
    dead = KafkaResource(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=1500)
    sensor = build_topic_sensor("user-events", [TARGET], interval_s=30, scan_limit=100)
    cursor = TopicCursor({0: 7, 1: 9, 2: 11}).dump()
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), cursor=cursor, resources={"kafka": dead})
    data = sensor.evaluate_tick(context)
    assert not data.run_requests
    assert f"127.0.0.1:{port}" in data.skip_message and "unreachable" in data.skip_message
    assert data.cursor in (None, cursor)  # None: the daemon keeps the stored cursor


def test_sensor_definition_runs_by_default_and_targets_the_ingest_asset():
    sensor = build_topic_sensor("user-events", [TARGET], interval_s=30, scan_limit=100)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.name == "kafka_user_events_sensor"


def test_day_search_helpers_agree_with_a_reference():
    first, last = date(2026, 1, 1), date(2026, 1, 31)
    stamps = sorted(day_start_ms(date(2026, 1, d)) + h * 3_600_000 for d in (2, 2, 5, 9, 9, 9, 30) for h in (1,))
    stamps = [day_start_ms(date(2026, 1, d)) + 3_600_000 for d in (2, 2, 5, 9, 9, 9, 30)]

    def offset_at(day: date) -> int:
        t = day_start_ms(day)
        return next((i for i, s in enumerate(stamps) if s >= t), len(stamps))

    for start in range(len(stamps)):
        for stop in range(start + 1, len(stamps) + 1):
            expected, _ = days_from_timestamps(stamps[start:stop], first, last)
            assert days_by_bisection(offset_at, start, stop, first, last) == expected, (start, stop)
