"""`user_events` (+ its dead letters) from Kafka and `user_episode_daily` on DuckDB or Spark.

user_events[D] reads D's offset range of `user-events` (offsets_for_times of D's start and of D's end
plus the allowed lateness), validates (core/events.py), keeps the first message per event_id and replaces
D's Delta partition in one commit: re-running D, or re-running after a killed run, gives the same rows.
If the broker no longer holds the start of D (retention) and D already has rows, the run fails instead
of replacing them with less.
"""


import json
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

import dagster as dg
from dagster_pyspark import LazyPySparkResource

from podrec_assets.core.dead_letters import DEAD_LETTERS_TABLE, dead_letter_table
from podrec_assets.core.engagement import INPUT_COLUMNS, aggregate_duckdb, aggregate_spark, weights_from_settings
from podrec_assets.core.events import Catalog, parse_ts, split_day
from podrec_assets.defs.partitions import daily_partitions, partition_day
from podrec_assets.resources.kafka import KafkaResource, day_bounds_ms
from podrec_assets.resources.lake import LakeResource
from podrec_assets.settings import get_settings

EVENTS_TOPIC = "user-events"
CATALOG_TOPIC = "episode-metadata"
USER_EVENTS = "user_events"
USER_EPISODE_DAILY = "user_episode_daily"
DEAD_LETTERS_KEY = dg.AssetKey(["dead_letters", "user_events"])
KAFKA_EVENTS_KEY = dg.AssetKey(["kafka", "user_events"])


class RetentionError(RuntimeError):
    """The broker lost the start of a day that already has data: re-reading would replace it with less."""


def episode_catalog(kafka: KafkaResource, lake: LakeResource, day: date) -> Catalog:
    """Episodes known by the end of ``day`` (+ lateness): Delta `episodes` up to D, plus the topic."""
    known: set[str] = set()
    if lake.exists("episodes"):
        known.update(lake.read_days("episodes", date(1970, 1, 1), day, columns=["episode_id"]).column("episode_id").to_pylist())
    _, _, late_ms = day_bounds_ms(day, kafka.lateness_minutes)
    ends = kafka.end_offsets(CATALOG_TOPIC)
    for record in kafka.read_range(CATALOG_TOPIC, {p: (0, end) for p, end in ends.items()}):
        try:
            payload = json.loads(record.value)
            if isinstance(payload.get("episode_id"), str) and parse_ts(str(payload["published_at"])).timestamp() * 1000 < late_ms:
                known.add(payload["episode_id"])
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            continue  # a bad catalog message is the episodes asset's dead letter, not ours
    return Catalog(frozenset(known))


def day_offsets(kafka: KafkaResource, topic: str, day: date) -> dict[str, dict[int, int]]:
    """Per partition: log start/end, D's start and stop, the first offset of D+1 (midnight) and the
    previous day's stop (D's start + lateness); absent timestamps resolve to the log end."""
    start_ms, end_ms, late_ms = day_bounds_ms(day, kafka.lateness_minutes)
    previous_stop_ms = start_ms + kafka.lateness_minutes * 60_000
    return kafka.offsets_at_times(topic, {"start": start_ms, "midnight": end_ms, "stop": late_ms,
                                          "previous_stop": previous_stop_ms})


def read_user_events_day(kafka: KafkaResource, lake: LakeResource, day: date, run_id: str,
                         write: bool = True) -> dict[str, Any]:
    """Read, validate and (when ``write``) store one day; returns the materialization metadata."""
    started = time.perf_counter()
    offsets = day_offsets(kafka, EVENTS_TOPIC, day)
    truncated = sorted(p for p, first in offsets["log_start"].items() if first > 0 and offsets["start"][p] <= first)
    existing = lake.day_row_count(USER_EVENTS, day) if truncated else 0
    if truncated and existing:
        detail = ", ".join(f"partition {p}: log starts at offset {offsets['log_start'][p]}" for p in truncated)
        raise RetentionError(
            f"user_events[{day}]: the broker no longer holds the start of {day} on topic {EVENTS_TOPIC!r} ({detail}; "
            f"older records were deleted by retention), and the Delta partition already has {existing} rows "
            f"(table version {lake.version(USER_EVENTS)}). Refusing to replace them with less. The stored partition "
            "is kept as it is; re-reading this day needs a broker that still holds it.")
    ranges = {p: (offsets["start"][p], max(offsets["start"][p], offsets["stop"][p])) for p in offsets["start"]}
    wanted = sum(b - a for a, b in ranges.values())
    records = kafka.read_range(EVENTS_TOPIC, ranges, timeout_s=120 + wanted / 2000)  # generous: a slow disk is not an error
    read_s = time.perf_counter() - started
    catalog = episode_catalog(kafka, lake, day)
    split = split_day(EVENTS_TOPIC, day, records, catalog, offsets["previous_stop"], offsets["midnight"],
                      timedelta(minutes=kafka.lateness_minutes), datetime.now(timezone.utc))
    metadata: dict[str, Any] = {
        "rows": split.row_count, "dead_letters": len(split.dead_letters), "offsets_read": len(records),
        "offset_ranges": {f"p{p}": f"{a}..{b}" for p, (a, b) in sorted(ranges.items())},
        "late_events_accepted": split.late_accepted, "too_late_events": split.too_late,
        "other_day_records": split.other_days, "dead_letter_reasons": split.reasons,
        "catalog_episodes": len(catalog.episode_ids), "lateness_minutes": kafka.lateness_minutes,
        "possibly_truncated_partitions": truncated,
    }
    if write:
        written = lake.write_partition(USER_EVENTS, day, split.table(), run_id)
        dead = lake.write_partition(DEAD_LETTERS_TABLE, day, dead_letter_table(split.dead_letters), run_id,
                                    where={"topic": EVENTS_TOPIC})
        metadata.update(delta_version=written["delta_version"], dead_letters_delta_version=dead["delta_version"],
                        table_uri=written["table_uri"])
    seconds = time.perf_counter() - started
    metadata.update(read_seconds=round(read_s, 3), seconds=round(seconds, 3),
                    events_per_second=round(len(records) / seconds, 1) if seconds else 0.0)
    return metadata


@dg.multi_asset(
    specs=[
        dg.AssetSpec(USER_EVENTS, group_name="events", deps=[KAFKA_EVENTS_KEY, dg.AssetKey(["kafka", "episode_metadata"])],
                     description="Valid listening events whose event time falls on the day (bronze), one row per event_id.",
                     kinds={"delta", "kafka"}),
        dg.AssetSpec(DEAD_LETTERS_KEY, group_name="events", deps=[KAFKA_EVENTS_KEY],
                     description="user-events messages of the day that failed validation, with the reason.",
                     kinds={"delta"}),
    ],
    partitions_def=daily_partitions,
    can_subset=False,
)
def user_events(context: dg.AssetExecutionContext, kafka: KafkaResource, lake: LakeResource):
    day = partition_day(context)
    try:
        metadata = read_user_events_day(kafka, lake, day, context.run_id)
    except RetentionError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    reasons = metadata.pop("dead_letter_reasons")
    table = "| reason | count |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in reasons.items())
    yield dg.MaterializeResult(asset_key=USER_EVENTS, metadata={
        **{k: v for k, v in metadata.items() if k not in ("dead_letters_delta_version",)},
        "offset_ranges": dg.MetadataValue.json(metadata["offset_ranges"]),
        "possibly_truncated_partitions": dg.MetadataValue.json(metadata["possibly_truncated_partitions"]),
        "dagster/row_count": metadata["rows"],
    })
    yield dg.MaterializeResult(asset_key=DEAD_LETTERS_KEY, metadata={
        "rows": metadata["dead_letters"], "dagster/row_count": metadata["dead_letters"],
        "reasons": dg.MetadataValue.md(table), "delta_version": metadata.get("dead_letters_delta_version"),
    })


class EngagementConfig(dg.Config):
    engine: str = ""  # "local" (DuckDB) or "spark"; empty: PODREC_ENGINE


def aggregate_day(lake: LakeResource, day: date, engine: str, spark_session_factory, weights: dict[str, float]):
    """(table, input version, input rows) of user_episode_daily[day] on ``engine``, reading a pinned version."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    version = lake.version(USER_EVENTS)
    if version is None:
        raise RuntimeError(f"user_episode_daily[{day}]: the user_events table does not exist yet; materialize user_events[{day}] first")
    if engine == "local":
        dataset = lake.table(USER_EVENTS, version).to_pyarrow_dataset()
        day_filter = ds.field("date") == pa.scalar(day, type=pa.date32())
        rows = dataset.count_rows(filter=day_filter)
        table = aggregate_duckdb(dataset.scanner(columns=INPUT_COLUMNS, filter=day_filter).to_reader(), weights)
    elif engine == "spark":
        uris = lake.file_uris_for_days(USER_EVENTS, day, day, version)
        rows = None
        table = aggregate_spark(spark_session_factory(), uris, weights)
    else:
        raise ValueError(f"engine must be 'local' or 'spark', not {engine!r}")
    return table, version, rows


@dg.asset(
    partitions_def=daily_partitions,
    deps=[USER_EVENTS],
    group_name="events",
    kinds={"delta", "duckdb", "spark"},
    description="Per (user, episode) engagement of the day; weights from PODREC_WEIGHT_* (see core/engagement.py).",
)
def user_episode_daily(context: dg.AssetExecutionContext, config: EngagementConfig, lake: LakeResource,
                       spark: LazyPySparkResource) -> dg.MaterializeResult:
    settings = get_settings()
    day = partition_day(context)
    engine = config.engine or settings.engine
    weights = weights_from_settings(settings)
    started = time.perf_counter()
    table, version, _ = aggregate_day(lake, day, engine, lambda: spark.spark_session, weights)
    seconds = time.perf_counter() - started
    written = lake.write_partition(USER_EPISODE_DAILY, day, table, context.run_id)
    engagement = table.column("engagement").to_pylist()
    return dg.MaterializeResult(metadata={
        "rows": table.num_rows, "dagster/row_count": table.num_rows, "engine": engine,
        "user_events_delta_version": version, "delta_version": written["delta_version"],
        "users": len(set(table.column("user_id").to_pylist())), "episodes": len(set(table.column("episode_id").to_pylist())),
        "completed_pairs": sum(table.column("completed").to_pylist()),
        "mean_engagement": round(sum(engagement) / len(engagement), 4) if engagement else 0.0,
        "weights": dg.MetadataValue.json(weights), "aggregate_seconds": round(seconds, 3),
    })
