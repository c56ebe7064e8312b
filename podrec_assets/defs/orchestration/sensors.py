"""One sensor per Kafka topic: new offsets -> the day partitions they belong to -> ingest runs.

A tick compares the topic's end offsets with the cursor (the offsets already handed to ingest runs),
finds the days of the new records cheaply (exact timestamps for a small range, ``offsets_for_times``
bisection for a large one), requests one run per day with a run key that is stable for that
(day, end offsets), records the lag on the topic asset, and only then moves the cursor. Every Kafka
client lives for one tick: the embedded broker answers empty fetches at once, so an idle consumer
would spin a core.
"""

import json
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Sequence

import dagster as dg

from podrec_assets.core.days import day_start_ms
from podrec_assets.defs.orchestration.kafka_days import days_by_bisection, days_from_timestamps
from podrec_assets.defs.orchestration.topics import topic_asset_key
from podrec_assets.defs.partitions import daily_partitions
from podrec_assets.resources.kafka import KafkaResource
from podrec_assets.resources.unavailable import ServerUnavailable

HEARTBEAT_S = 600  # an unchanged topic is still observed this often, so the lag shown is never stale


@dataclass
class TopicCursor:
    offsets: dict[int, int] = field(default_factory=dict)  # per partition: next offset not yet handed to a run
    observed_at: float = 0.0

    @classmethod
    def parse(cls, raw: str | None) -> "TopicCursor | None":
        if not raw:
            return None
        data = json.loads(raw)
        return cls({int(p): int(o) for p, o in data.get("offsets", {}).items()}, float(data.get("observed_at", 0.0)))

    def dump(self) -> str:
        return json.dumps(
            {"offsets": {str(p): o for p, o in sorted(self.offsets.items())}, "observed_at": self.observed_at}
        )


@dataclass
class TopicScan:
    log_start: dict[int, int]
    log_end: dict[int, int]
    days: set[date]
    method: str
    outside_range: int = 0


def scan_topic(
    kafka: KafkaResource, topic: str, since: dict[int, int] | None, first_day: date, last_day: date, scan_limit: int
) -> TopicScan | None:
    """End offsets and the days of the records after ``since`` (None when the topic does not exist)."""
    from kafka import TopicPartition

    consumer = kafka.consumer()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            return None
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        log_start = {tp.partition: o for tp, o in consumer.beginning_offsets(tps).items()}
        log_end = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
        ranges = {}
        for p in log_end:
            start = max(log_start[p], (since or {}).get(p, log_start[p]))
            if log_end[p] > start:
                ranges[p] = (start, log_end[p])
        days: set[date] = set()
        if not ranges:
            return TopicScan(log_start, log_end, days, "none")
        if all(stop - start <= scan_limit for start, stop in ranges.values()):
            consumer.close()
            records = kafka.read_range(topic, ranges)
            days, outside = days_from_timestamps((r.timestamp_ms for r in records), first_day, last_day)
            return TopicScan(log_start, log_end, days, "timestamps", outside)
        for p, (start, stop) in ranges.items():
            tp = TopicPartition(topic, p)

            def offset_at(day: date, tp=tp, end=log_end[p]) -> int:
                found = consumer.offsets_for_times({tp: day_start_ms(day)}).get(tp)
                return found.offset if found is not None else end

            days |= days_by_bisection(offset_at, start, stop, first_day, last_day)
        return TopicScan(log_start, log_end, days, "offsets_for_times")
    finally:
        consumer.close()


def partition_range() -> tuple[date, date]:
    keys = daily_partitions.get_partition_keys()
    return date.fromisoformat(keys[0]), date.fromisoformat(keys[-1])


def evaluate_topic(
    context: dg.SensorEvaluationContext,
    kafka: KafkaResource,
    topic: str,
    targets: Sequence[dg.AssetKey],
    scan_limit: int,
) -> dg.SensorResult | dg.SkipReason:
    """One tick of a topic sensor (module-level so tests call it with a real broker)."""
    from kafka.errors import KafkaError

    cursor = TopicCursor.parse(context.cursor)
    first_day, last_day = partition_range()
    try:
        scan = scan_topic(kafka, topic, cursor.offsets if cursor else None, first_day, last_day, scan_limit)
    except (KafkaError, OSError, TimeoutError, ServerUnavailable) as exc:
        kept = cursor.dump() if cursor else "none yet"
        return dg.SkipReason(
            f"Kafka broker at {kafka.bootstrap_servers} is unreachable ({type(exc).__name__}: {exc}); "
            f"cursor kept ({kept})."
        )
    if scan is None:
        return dg.SkipReason(f"Kafka topic {topic!r} does not exist on {kafka.bootstrap_servers} yet.")

    handed = {p: (cursor.offsets.get(p, scan.log_start[p]) if cursor else scan.log_start[p]) for p in scan.log_end}
    lag = {p: max(0, scan.log_end[p] - handed[p]) for p in scan.log_end}
    days = sorted(scan.days)
    if cursor is None and targets:
        # first tick: days some run already materialized (a backfill, the demo) are not requested again
        done = context.instance.get_materialized_partitions(targets[0])
        days = [d for d in days if d.isoformat() not in done]
    changed = cursor is None or any(scan.log_end[p] != cursor.offsets.get(p) for p in scan.log_end)

    signature = ",".join(f"{p}={o}" for p, o in sorted(scan.log_end.items()))
    run_requests = (
        [
            dg.RunRequest(
                run_key=f"{topic}:{day.isoformat()}:{signature}",
                partition_key=day.isoformat(),
                asset_selection=list(targets),
                tags={"podrec/trigger": f"kafka:{topic}"},
            )
            for day in days
        ]
        if targets
        else []
    )

    now = time.time()
    metadata: dict[str, Any] = {
        "topic": topic,
        "bootstrap": kafka.bootstrap_servers,
        "lag_total": sum(lag.values()),
        "end_offset_total": sum(scan.log_end.values()),
        "partitions": len(scan.log_end),
        "new_days": ", ".join(d.isoformat() for d in sorted(scan.days)) or "none",
        "requested_days": ", ".join(d.isoformat() for d in days) or "none",
        "day_search": scan.method,
        "records_outside_partitions": scan.outside_range,
    }
    for p in sorted(scan.log_end):
        metadata[f"lag/p{p}"] = lag[p]
        metadata[f"end_offset/p{p}"] = scan.log_end[p]
    events: list[Any] = []
    previous_observation = cursor.observed_at if cursor else 0.0
    if changed or now - previous_observation >= HEARTBEAT_S:
        events.append(dg.AssetObservation(asset_key=topic_asset_key(topic), metadata=metadata))
        previous_observation = now
    if changed and sum(lag.values()) > 0:
        # new messages arrived: the topic (an external asset) was updated; its freshness follows this
        events.append(
            dg.AssetMaterialization(
                asset_key=topic_asset_key(topic),
                metadata={"new_messages": sum(lag.values()), "new_days": metadata["new_days"]},
            )
        )
    # without a consumer asset nothing is handed off, so the lag keeps counting what nobody read
    offsets = dict(scan.log_end) if targets else dict(handed)
    new_cursor = TopicCursor(offsets, previous_observation)
    skip = (
        None
        if run_requests
        else (
            f"No new records on {topic}."
            if not any(lag.values())
            else f"{sum(lag.values())} new records on {topic}; no day partition to request."
        )
    )
    return dg.SensorResult(run_requests=run_requests, asset_events=events, cursor=new_cursor.dump(), skip_reason=skip)


def sensor_name(topic: str) -> str:
    return f"kafka_{topic.replace('-', '_')}_sensor"


def build_topic_sensor(
    topic: str, targets: Sequence[dg.AssetKey], interval_s: int, scan_limit: int
) -> dg.SensorDefinition:
    targets = list(targets)

    @dg.sensor(
        name=sensor_name(topic),
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=targets or None,
        description=f"Watches Kafka {topic!r}; requests day partitions of "
        f"{', '.join(k.to_user_string() for k in targets) or 'nothing (no consumer asset yet)'} "
        "for the days of new records, and observes the lag on the topic asset.",
    )
    def _topic_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource):
        return evaluate_topic(context, kafka, topic, targets, scan_limit)

    return _topic_sensor
