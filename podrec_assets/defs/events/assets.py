"""`user_events` (+ its dead letters) from Kafka and `user_episode_daily` on DuckDB or Spark.

user_events[D] reads D's offset range of `user-events` (offsets_for_times of D's start and of D's end
plus the allowed lateness), validates (core/events.py), keeps the first message per event_id and replaces
D's Delta partition in one commit: re-running D, or re-running after a killed run, gives the same rows.
If the broker no longer holds the start of D (retention) and D already has rows, the run fails instead
of replacing them with less. With engine=spark, Spark's Kafka source reads exactly the same offset ranges
and Spark's Delta connector reads and writes user_episode_daily; the rows are the same either way.
"""

import time
from typing import Any

import dagster as dg
import pyarrow.compute as pc

from podrec_assets.core.engagement import INPUT_COLUMNS, aggregate_duckdb, aggregate_spark, weights_from_settings
from podrec_assets.defs.events.kafka_day import USER_EPISODE_DAILY, USER_EVENTS, RetentionError, read_user_events_day
from podrec_assets.defs.partitions import PREVIOUS_DAY, daily_partitions, partition_day
from podrec_assets.defs.state import LISTENER_HISTORY_TABLE, state_through
from podrec_assets.resources.kafka import KafkaResource
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.spark import SparkResource
from podrec_assets.settings import get_settings

DEAD_LETTERS_KEY = dg.AssetKey(["dead_letters", "user_events"])
KAFKA_EVENTS_KEY = dg.AssetKey(["kafka", "user_events"])


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


@dg.asset(
    partitions_def=daily_partitions,
    deps=[
        dg.AssetDep(USER_EPISODE_DAILY),
        dg.AssetDep(LISTENER_HISTORY_TABLE, partition_mapping=PREVIOUS_DAY.mapping),  # state[D] = state[D-1] + day D
    ],
    group_name="events",
    kinds={"delta", "duckdb"},
    description="Incremental state: one row per (listener, episode) ever engaged with through D (first and last "
    "day, days engaged, summed engagement, completed ever), built from D-1's state and D's user_episode_daily, so "
    "what needs all history reads one partition (core/listener_history.py). A missing D-1 is caught up from the "
    "newest stored day before it.",
)
def listener_history(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """state[D-1] + user_episode_daily[D] (a missing D-1 is caught up from the newest stored day before it)."""
    settings = get_settings()
    day = partition_day(context)
    started = time.perf_counter()
    state, built_from = state_through(lake, day, settings.start_day, stored_before=day)
    context.log.info(f"listener_history[{day}] from {built_from}")
    written = lake.write_partition(LISTENER_HISTORY_TABLE, day, state, context.run_id)
    return dg.MaterializeResult(
        metadata={
            "rows": written["rows"],
            "dagster/row_count": written["rows"],
            "listeners": len(pc.unique(state["user_id"])) if state.num_rows else 0,
            "completed_pairs": int(pc.sum(state["completed"]).as_py() or 0) if state.num_rows else 0,
            "built_from": built_from,
            "delta_version": written["delta_version"],
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
