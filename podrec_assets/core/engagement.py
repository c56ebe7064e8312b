"""`user_episode_daily`: one SQL definition of a day's engagement, run by DuckDB or by Spark SQL.

One row per (user_id, episode_id) that had at least one valid event on the day:

- ``engagement`` = sum over the pair's events of the event's weight (settings ``PODREC_WEIGHT_*``):

  ======================  ==========================================================================
  event                   weight (defaults)
  ======================  ==========================================================================
  ``complete``            ``weight_complete`` (3)
  ``like``                ``weight_like`` (2)
  ``rate``                ``rating - 3`` (a 1 counts -2, a 5 counts +2, a 3 counts 0)
  ``play``                ``weight_play_high`` (3) when ``played_pct > play_high_pct`` (0.8);
                          ``weight_play_low`` (0.5) when ``played_pct < play_low_pct`` (0.2);
                          ``weight_play_mid`` (1) otherwise (boundaries 0.2 and 0.8 are mid)
  ``skip``                ``weight_skip`` (0.2)
  ``pause``               ``weight_pause`` (0)
  ======================  ==========================================================================

  ``played_pct`` is how far into the episode the listener got at the end of the event's span
  (``to_sec / duration``), so a play with ``played_pct > 0.8`` is a play that reached the last fifth.
  Engagement can be negative (low ratings); the ALS step decides how to treat that.
- ``event_count``: number of events; ``max_played_pct``: the furthest point reached;
  ``completed``: at least one ``complete`` event; ``last_event_at``: the latest event time.

Identical on both engines: weights are summed as DECIMAL(18,6) (exact, so the order in which the
engines add rows does not matter) and cast to DOUBLE at the end; rows are ordered by user, episode.
The SQL reads a relation named ``day_events``; each engine binds it to the same Delta snapshot
(DuckDB: the table's Arrow dataset at a version; Spark: its Delta reader at that version).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from podrec_assets.core.schemas import USER_EPISODE_DAILY

INPUT_COLUMNS = ["user_id", "episode_id", "event", "rating", "played_pct", "ts"]


def _decimal(value: float) -> str:
    return f"CAST({float(value)!r} AS DECIMAL(18, 6))"


def engagement_sql(weights: dict[str, float], source: str = "day_events") -> str:
    """The one statement both engines run; ``weights`` as returned by ``weights_from_settings``."""
    w = {name: _decimal(value) for name, value in weights.items() if name.startswith("weight_")}
    high, low = float(weights["play_high_pct"]), float(weights["play_low_pct"])
    return f"""
SELECT
  user_id,
  episode_id,
  CAST(SUM(CASE event
      WHEN 'complete' THEN {w["weight_complete"]}
      WHEN 'like' THEN {w["weight_like"]}
      WHEN 'rate' THEN CAST(rating - 3 AS DECIMAL(18, 6))
      WHEN 'skip' THEN {w["weight_skip"]}
      WHEN 'pause' THEN {w["weight_pause"]}
      WHEN 'play' THEN CASE
          WHEN played_pct > {high!r} THEN {w["weight_play_high"]}
          WHEN played_pct < {low!r} THEN {w["weight_play_low"]}
          ELSE {w["weight_play_mid"]} END
      ELSE CAST(0 AS DECIMAL(18, 6)) END) AS DOUBLE) AS engagement,
  CAST(COUNT(*) AS BIGINT) AS event_count,
  CAST(MAX(played_pct) AS DOUBLE) AS max_played_pct,
  MAX(CASE WHEN event = 'complete' THEN 1 ELSE 0 END) = 1 AS completed,
  MAX(ts) AS last_event_at
FROM {source}
GROUP BY user_id, episode_id
ORDER BY user_id, episode_id
""".strip()


def weights_from_settings(settings: Any) -> dict[str, float]:
    names = [
        "weight_complete",
        "weight_like",
        "weight_play_high",
        "weight_play_low",
        "weight_play_mid",
        "weight_skip",
        "weight_pause",
        "play_high_pct",
        "play_low_pct",
    ]
    return {name: float(getattr(settings, name)) for name in names}


def conform(table: pa.Table) -> pa.Table:
    """An engine's result as exactly the USER_EPISODE_DAILY schema (timestamps in UTC microseconds)."""
    columns = []
    for f in USER_EPISODE_DAILY:
        column = table.column(f.name)
        if pa.types.is_timestamp(column.type) and column.type.tz is None:
            column = column.cast(pa.timestamp("us")).cast(f.type)  # Spark hands back naive UTC
        columns.append(column.cast(f.type))
    return pa.Table.from_arrays(columns, schema=USER_EPISODE_DAILY)


def aggregate_duckdb(day_events: Any, weights: dict[str, float], threads: int | None = None) -> pa.Table:
    """Run the statement in an in-process DuckDB over an Arrow table/dataset/reader of the day's events."""
    import duckdb

    con = duckdb.connect()
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute("SET TimeZone = 'UTC'")
        con.register("day_events", day_events)
        result = con.sql(engagement_sql(weights)).to_arrow_table()
    finally:
        con.close()
    return conform(result)


def aggregate_spark(spark: Any, day_events: Any, weights: dict[str, float]) -> Any:
    """The statement in Spark SQL over a DataFrame of the day's events; the result stays a DataFrame (typed as
    USER_EPISODE_DAILY by the statement's casts), for Spark to write to Delta itself."""
    view = "day_events"
    day_events.select(*INPUT_COLUMNS).createOrReplaceTempView(view)
    return spark.sql(engagement_sql(weights, view))
