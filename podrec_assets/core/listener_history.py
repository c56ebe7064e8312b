"""Each listener's whole history as incremental state: one row per (listener, episode) ever engaged with.

What a day needs from *all* history (the episodes a listener ever completed, which listeners exist at all, what a
listener has ever heard) used to be read from every day of ``user_episode_daily`` since the first, so a day's cost
grew with the length of history. ``listener_history[D]`` holds it as one partition derived from
``listener_history[D-1]`` and ``user_episode_daily[D]`` alone (``advance``); a day then reads one state partition and
a bounded window of days. ``accumulate`` is the from-scratch definition the state must always equal.

DuckDB runs in-process over Arrow tables: computation, no I/O.
"""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from podrec_assets.core.schemas import LISTENER_HISTORY

# user_episode_daily columns the state is built from (plus its ``date``)
DAILY_COLUMNS = ["user_id", "episode_id", "engagement", "completed", "date"]

_MERGE = """
SELECT user_id, episode_id,
       min(first_date) AS first_date, max(last_date) AS last_date,
       CAST(sum(days_engaged) AS BIGINT) AS days_engaged,
       CAST(sum(engagement) AS DOUBLE) AS engagement,
       bool_or(completed) AS completed
FROM ({rows}) AS rows
WHERE user_id IS NOT NULL AND episode_id IS NOT NULL
GROUP BY user_id, episode_id
ORDER BY user_id, episode_id
"""

_DAY_ROWS = """
SELECT user_id, episode_id, CAST(date AS DATE) AS first_date, CAST(date AS DATE) AS last_date,
       CAST(1 AS BIGINT) AS days_engaged, coalesce(engagement, 0.0) AS engagement,
       coalesce(completed, false) AS completed
FROM daily
"""

_STATE_ROWS = "SELECT user_id, episode_id, first_date, last_date, days_engaged, engagement, completed FROM previous"


def _run(sql: str, **tables: pa.Table) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET threads=2")
        for name, table in tables.items():
            con.register(name, table)
        result = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    return result.cast(LISTENER_HISTORY)


def _daily(rows: pa.Table) -> pa.Table:
    if rows.num_rows == 0 or not set(DAILY_COLUMNS) <= set(rows.column_names):
        return pa.table(
            {
                "user_id": pa.array([], pa.string()),
                "episode_id": pa.array([], pa.string()),
                "engagement": pa.array([], pa.float64()),
                "completed": pa.array([], pa.bool_()),
                "date": pa.array([], pa.date32()),
            }
        )
    return rows.select(DAILY_COLUMNS)


def empty_state() -> pa.Table:
    return LISTENER_HISTORY.empty_table()


def accumulate(daily: pa.Table) -> pa.Table:
    """The state from scratch: ``user_episode_daily`` rows of every day so far (with their ``date``)."""
    return _run(_MERGE.format(rows=_DAY_ROWS), daily=_daily(daily))


def advance(previous: pa.Table, daily: pa.Table, through: date) -> pa.Table:
    """The state through ``through`` from an earlier state (``previous``) and the ``user_episode_daily`` rows of the
    days after it up to ``through`` (``daily``; normally just day D on top of state[D-1]): equal to ``accumulate``
    over every day. Rows the state already holds a day of, or rows after ``through``, are refused: no day may be
    taken in twice."""
    import pyarrow.compute as pc

    daily = _daily(daily)
    previous = previous.select(LISTENER_HISTORY.names) if previous.num_rows else empty_state()
    if daily.num_rows:
        first, last = pc.min(daily["date"]).as_py(), pc.max(daily["date"]).as_py()
        if last > through:
            raise ValueError(f"listener_history through {through}: user_episode_daily rows of {last}, a later day")
        if previous.num_rows and pc.max(previous["last_date"]).as_py() >= first:
            raise ValueError(
                f"listener_history through {through}: the earlier state already holds {first} or a later day"
            )
    return _run(_MERGE.format(rows=f"{_STATE_ROWS} UNION ALL {_DAY_ROWS}"), previous=previous, daily=daily)


def seen_and_completed(state: pa.Table) -> pa.Table:
    """The state rows a day's fusion can use from before its window: every completed pair (never recommended again)
    and one row for each other listener (seen, so they get a list). A pair heard but not completed before the window
    changes no list, and those pairs are what grows with every day of history."""
    import numpy as np
    import pyarrow.compute as pc

    if not state.num_rows:
        return state
    rows = pa.array(np.arange(state.num_rows))
    first_of_user = pa.table({"user_id": state["user_id"], "row": rows}).group_by("user_id").aggregate([("row", "min")])
    keep = pc.or_(pc.fill_null(state["completed"], False), pc.is_in(rows, value_set=first_of_user["row_min"]))
    return state.filter(keep)


def as_daily_rows(state: pa.Table) -> pa.Table:
    """The state as ``user_episode_daily``-shaped rows (user_id, episode_id, engagement, completed, date = the
    pair's last day): for readers that ask of all history only who was ever seen, what was ever completed and
    heard. Their engagement is 0, so nothing recent-window-based (history, popularity) counts them."""
    return pa.table(
        {
            "user_id": state["user_id"],
            "episode_id": state["episode_id"],
            "engagement": pa.array([0.0] * state.num_rows, pa.float64()),
            "completed": state["completed"],
            "date": state["last_date"],
        }
    )
