"""`user_events` (+ its dead letters) from Kafka and `user_episode_daily` on DuckDB or Spark.

user_events[D] reads D's offset range of `user-events` (offsets_for_times of D's start and of D's end
plus the allowed lateness), validates (core/events.py), keeps the first message per event_id and replaces
D's Delta partition in one commit: re-running D, or re-running after a killed run, gives the same rows.
If the broker no longer holds the start of D (retention) and D already has rows, the run fails instead
of replacing them with less. With engine=spark, Spark's Kafka source reads exactly the same offset ranges
and Spark's Delta connector reads and writes user_episode_daily; the rows are the same either way.
"""

import json
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

import dagster as dg

from podrec_assets.core.days import day_bounds_ms
from podrec_assets.core.dead_letters import dead_letter_table
from podrec_assets.core.engagement import INPUT_COLUMNS, aggregate_duckdb, aggregate_spark, weights_from_settings
from podrec_assets.core.events import Catalog, parse_ts, split_day
from podrec_assets.core.registry import DEAD_LETTERS_TABLE, EPISODE_METADATA_TOPIC, USER_EVENTS_TOPIC
from podrec_assets.defs.partitions import daily_partitions, partition_day
from podrec_assets.resources.kafka import KafkaResource
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.spark import SparkResource
from podrec_assets.settings import get_settings

USER_EVENTS = "user_events"
USER_EPISODE_DAILY = "user_episode_daily"
DEAD_LETTERS_KEY = dg.AssetKey(["dead_letters", "user_events"])
KAFKA_EVENTS_KEY = dg.AssetKey(["kafka", "user_events"])


class RetentionError(RuntimeError):
    """The broker lost records of a day that already has data (retention, or a wiped broker): re-reading would
    replace it with less."""


def episode_catalog(kafka: KafkaResource, lake: LakeResource, day: date) -> Catalog:
    """Episodes known by the end of ``day`` (+ lateness): Delta `episodes` up to D, plus the topic."""
    known: set[str] = set()
    if lake.exists("episodes"):
        known.update(
            lake.read_days("episodes", date(1970, 1, 1), day, columns=["episode_id"]).column("episode_id").to_pylist()
        )
    _, _, late_ms = day_bounds_ms(day, kafka.lateness_minutes)
    ends = kafka.end_offsets(EPISODE_METADATA_TOPIC)
    for record in kafka.read_range(EPISODE_METADATA_TOPIC, {p: (0, end) for p, end in ends.items()}):
        try:
            payload = json.loads(record.value)
            if (
                isinstance(payload.get("episode_id"), str)
                and parse_ts(str(payload["published_at"])).timestamp() * 1000 < late_ms
            ):
                known.add(payload["episode_id"])
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            continue  # a bad catalog message is the episodes asset's dead letter, not ours
    return Catalog(frozenset(known))


def read_user_events_day(
    kafka: KafkaResource, lake: LakeResource, day: date, run_id: str, write: bool = True, spark: Any = None
) -> dict[str, Any]:
    """Read, validate and (when ``write``) store one day; returns the materialization metadata.

    ``spark``: a SparkSession to read the day's offset ranges with Spark's Kafka source (engine=spark);
    validation and the Delta write are the same whichever reads."""
    started = time.perf_counter()
    day_range = kafka.day_range(USER_EVENTS_TOPIC, day)
    existing = lake.day_row_count(USER_EVENTS, day)
    reason = day_range.why_rereading_loses(existing, lake.day_top_offsets(USER_EVENTS, day) if existing else {})
    if reason:
        raise RetentionError(
            f"user_events[{day}]: {reason} (broker {kafka.bootstrap_servers}). Refusing to replace the {existing} "
            f"stored rows (table version {lake.version(USER_EVENTS)}) with less; they are kept as they are. Restore "
            "the broker's data, or replay the day into the topic, then re-run."
        )
    records = kafka.read_records(day_range, spark)
    read_s = time.perf_counter() - started
    catalog = episode_catalog(kafka, lake, day)
    split = split_day(
        USER_EVENTS_TOPIC,
        day,
        records,
        catalog,
        day_range.previous_stop,
        day_range.midnight,
        timedelta(minutes=kafka.lateness_minutes),
        datetime.now(timezone.utc),
    )
    metadata: dict[str, Any] = {
        "rows": split.row_count,
        "dead_letters": len(split.dead_letters),
        "offsets_read": len(records),
        "offset_ranges": day_range.range_metadata(),
        "kafka_reader": "spark" if spark is not None else "kafka-python",
        "late_events_accepted": split.late_accepted,
        "too_late_events": split.too_late,
        "other_day_records": split.other_days,
        "dead_letter_reasons": split.reasons,
        "catalog_episodes": len(catalog.episode_ids),
        "lateness_minutes": kafka.lateness_minutes,
        "possibly_truncated_partitions": day_range.possibly_truncated,
    }
    if write:
        written = lake.write_partition(USER_EVENTS, day, split.table(), run_id)
        dead = lake.write_partition(
            DEAD_LETTERS_TABLE, day, dead_letter_table(split.dead_letters), run_id, where={"topic": USER_EVENTS_TOPIC}
        )
        metadata.update(
            delta_version=written["delta_version"],
            dead_letters_delta_version=dead["delta_version"],
            table_uri=written["table_uri"],
        )
    seconds = time.perf_counter() - started
    metadata.update(
        read_seconds=round(read_s, 3),
        seconds=round(seconds, 3),
        events_per_second=round(len(records) / seconds, 1) if seconds else 0.0,
    )
    return metadata


class EngineConfig(dg.Config):
    engine: str = (
        ""  # "local" (kafka-python / DuckDB) or "spark" (Spark's Kafka source / Spark SQL); empty: PODREC_ENGINE
    )


def engine_of(config: EngineConfig) -> str:
    engine = config.engine or get_settings().engine
    if engine not in ("local", "spark"):
        raise dg.Failure(f"engine must be 'local' or 'spark', not {engine!r}", allow_retries=False)
    return engine


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            USER_EVENTS,
            group_name="events",
            deps=[KAFKA_EVENTS_KEY, dg.AssetKey(["kafka", "episode_metadata"])],
            description="Valid listening events whose event time falls on the day (bronze), one row per event_id.",
            kinds={"delta", "kafka"},
        ),
        dg.AssetSpec(
            DEAD_LETTERS_KEY,
            group_name="events",
            deps=[KAFKA_EVENTS_KEY],
            description="user-events messages of the day that failed validation, with the reason.",
            kinds={"delta"},
        ),
    ],
    partitions_def=daily_partitions,
    can_subset=False,
)
def user_events(
    context: dg.AssetExecutionContext,
    config: EngineConfig,
    kafka: KafkaResource,
    lake: LakeResource,
    spark: SparkResource,
):
    day = partition_day(context)
    engine = engine_of(config)
    try:
        metadata = read_user_events_day(
            kafka, lake, day, context.run_id, spark=spark.spark_session if engine == "spark" else None
        )
    except RetentionError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    reasons = metadata.pop("dead_letter_reasons")
    table = "| reason | count |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in reasons.items())
    yield dg.MaterializeResult(
        asset_key=USER_EVENTS,
        metadata={
            **{k: v for k, v in metadata.items() if k not in ("dead_letters_delta_version",)},
            "offset_ranges": dg.MetadataValue.json(metadata["offset_ranges"]),
            "possibly_truncated_partitions": dg.MetadataValue.json(metadata["possibly_truncated_partitions"]),
            "dagster/row_count": metadata["rows"],
        },
    )
    yield dg.MaterializeResult(
        asset_key=DEAD_LETTERS_KEY,
        metadata={
            "rows": metadata["dead_letters"],
            "dagster/row_count": metadata["dead_letters"],
            "reasons": dg.MetadataValue.md(table),
            "delta_version": metadata.get("dead_letters_delta_version"),
        },
    )


def engagement_summary(table) -> dict[str, Any]:
    """What a day of user_episode_daily looks like, for the materialization's metadata (columnar, no row loop)."""
    import pyarrow.compute as pc

    return {
        "users": pc.count_distinct(table["user_id"]).as_py(),
        "episodes": pc.count_distinct(table["episode_id"]).as_py(),
        "completed_pairs": pc.sum(table["completed"].cast("int64")).as_py() or 0,
        "mean_engagement": round(pc.mean(table["engagement"]).as_py() or 0.0, 4),
    }


@dg.asset(
    partitions_def=daily_partitions,
    deps=[USER_EVENTS],
    group_name="events",
    kinds={"delta", "duckdb", "spark"},
    description="Per (user, episode) engagement of the day; weights from PODREC_WEIGHT_* (see core/engagement.py).",
)
def user_episode_daily(
    context: dg.AssetExecutionContext, config: EngineConfig, lake: LakeResource, spark: SparkResource
) -> dg.MaterializeResult:
    """The day's events at the user_events version of this run, aggregated by DuckDB (written by delta-rs) or by
    Spark SQL (read and written by Spark's Delta connector); either way the day is replaced in one commit."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    settings = get_settings()
    day = partition_day(context)
    engine = engine_of(config)
    weights = weights_from_settings(settings)
    version = lake.version(USER_EVENTS)
    if version is None:
        raise dg.Failure(
            f"user_episode_daily[{day}]: the user_events table does not exist yet; materialize user_events[{day}] first"
        )
    started = time.perf_counter()
    if engine == "local":
        dataset = lake.table(USER_EVENTS, version).to_pyarrow_dataset()
        day_filter = ds.field("date") == pa.scalar(day, type=pa.date32())
        table = aggregate_duckdb(dataset.scanner(columns=INPUT_COLUMNS, filter=day_filter).to_reader(), weights)
        written = lake.write_partition(USER_EPISODE_DAILY, day, table, context.run_id)
    else:
        session = spark.spark_session
        frame = aggregate_spark(session, lake.spark_read_days(session, USER_EVENTS, day, day, version), weights)
        written = lake.spark_write_partition(USER_EPISODE_DAILY, day, frame, context.run_id)
        table = lake.read_day(
            USER_EPISODE_DAILY,
            day,
            columns=["user_id", "episode_id", "engagement", "completed"],
            version=written["delta_version"],
        )
    seconds = time.perf_counter() - started
    return dg.MaterializeResult(
        metadata={
            "rows": written["rows"],
            "dagster/row_count": written["rows"],
            "engine": engine,
            "user_events_delta_version": version,
            "delta_version": written["delta_version"],
            **engagement_summary(table),
            "weights": dg.MetadataValue.json(weights),
            "aggregate_seconds": round(seconds, 3),
        }
    )
