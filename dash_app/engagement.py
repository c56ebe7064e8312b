"""The Engagement page's queries: events over time, event mix, devices, top episodes, new vs returning listeners
and dead letters, over the DuckDB copy of `user_events` and `dead_letters` (``dash_app/mirror.py``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

import pandas as pd

from dash_app.mirror import LakeMirror
from podrec_assets.core import registry

# Engagement windows: label -> (length, time bucket)
WINDOWS: dict[str, tuple[timedelta | None, str]] = {
    "15m": (timedelta(minutes=15), "1 minute"),
    "1h": (timedelta(hours=1), "1 minute"),
    "6h": (timedelta(hours=6), "10 minutes"),
    "24h": (timedelta(hours=24), "1 hour"),
    "7d": (timedelta(days=7), "6 hours"),
    "30d": (timedelta(days=30), "1 day"),
    "all": (None, "1 day"),
}


class EngagementQueries:
    """One window's engagement figures; results are memoised by the mirror per table version."""

    def __init__(self, mirror: LakeMirror, with_titles: Callable[..., pd.DataFrame]):
        self._mirror = mirror
        self._with_titles = with_titles

    def window(self, window: str) -> tuple[datetime | None, datetime | None, str]:
        """(start, end, bucket) of a window ending at the newest event in the lake."""
        length, bucket = WINDOWS[window]
        frame = self._mirror.query("SELECT min(ts) AS first, max(ts) AS last FROM user_events", tables=("user_events",))
        last = frame["last"].iloc[0]
        if pd.isna(last):
            return None, None, bucket
        end = pd.Timestamp(last).to_pydatetime()
        start = pd.Timestamp(frame["first"].iloc[0]).to_pydatetime() if length is None else end - length
        return start, end, bucket

    def summary(self, window: str) -> dict[str, pd.DataFrame | Any]:
        start, end, bucket = self.window(window)
        if start is None:
            return {"start": None, "end": None}
        t = ("user_events",)
        between = "ts >= ? AND ts <= ?"
        span = [start, end]
        over_time = self._mirror.query(
            f"SELECT time_bucket(INTERVAL '{bucket}', ts) AS bucket, event, count(*) AS events FROM user_events "
            f"WHERE {between} GROUP BY ALL ORDER BY bucket",
            span,
            tables=t,
        )
        mix = self._mirror.query(
            f"SELECT event, count(*) AS events FROM user_events WHERE {between} GROUP BY ALL ORDER BY events DESC",
            span,
            tables=t,
        )
        devices = self._mirror.query(
            f"SELECT coalesce(device, 'unknown') AS device, count(*) AS events, count(DISTINCT user_id) AS users "
            f"FROM user_events WHERE {between} GROUP BY ALL ORDER BY events DESC",
            span,
            tables=t,
        )
        top = self._mirror.query(
            f"SELECT episode_id, count(*) AS events, count(DISTINCT user_id) AS listeners, "
            f"count(*) FILTER (WHERE event = 'complete') AS completes, count(*) FILTER (WHERE event = 'like') AS likes "
            f"FROM user_events WHERE {between} GROUP BY ALL ORDER BY listeners DESC, events DESC LIMIT 10",
            span,
            tables=t,
        )
        totals = self._mirror.query(
            f"SELECT count(*) AS events, count(DISTINCT user_id) AS users, count(DISTINCT episode_id) AS episodes "
            f"FROM user_events WHERE {between}",
            span,
            tables=t,
        )
        self._first_days()
        new_returning = self._mirror.query(
            f"WITH active AS (SELECT DISTINCT CAST(ts AS DATE) AS day, user_id FROM user_events WHERE {between}) "
            "SELECT a.day, count(*) FILTER (WHERE f.first_day = a.day) AS new_users, "
            "count(*) FILTER (WHERE f.first_day < a.day) AS returning_users "
            "FROM active a JOIN user_first_day f USING (user_id) GROUP BY a.day ORDER BY a.day",
            span,
            tables=t,
        )
        dead = self._mirror.query(
            "WITH ev AS (SELECT date, count(*) AS n FROM user_events GROUP BY date), "
            "dl AS (SELECT date, topic, count(*) AS n FROM dead_letters GROUP BY date, topic) "
            "SELECT coalesce(dl.date, ev.date) AS date, coalesce(dl.topic, ?) AS topic, "
            "coalesce(dl.n, 0) AS dead_letters, "
            "coalesce(ev.n, 0) AS events, coalesce(dl.n, 0) / greatest(coalesce(ev.n, 0) + coalesce(dl.n, 0), 1) "
            "AS rate "
            "FROM dl FULL OUTER JOIN ev ON dl.date = ev.date ORDER BY date",
            (registry.USER_EVENTS_TOPIC,),
            tables=("user_events", "dead_letters"),
        )
        reasons = self._mirror.query(
            "SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason ORDER BY n DESC LIMIT 8",
            tables=("dead_letters",),
        )
        return {
            "start": start,
            "end": end,
            "bucket": bucket,
            "over_time": over_time,
            "mix": mix,
            "devices": devices,
            "top": self._with_titles(top, "episode_id"),
            "totals": totals.iloc[0].to_dict(),
            "new_returning": new_returning,
            "dead_letters": dead,
            "dead_letter_reasons": reasons,
        }

    def _first_days(self) -> None:
        """DuckDB table user_first_day (each user's first event day), rebuilt once per user_events version."""

        def build() -> bool:
            self._mirror.connection().execute(
                "CREATE OR REPLACE TABLE user_first_day AS SELECT user_id, min(CAST(ts AS DATE)) AS first_day "
                "FROM user_events GROUP BY user_id"
            )
            return True

        self._mirror.memoised("user_first_day", ("user_events",), build)

    def precompute(self) -> None:
        """Fill the cache for every window (after start-up or a new user_events version)."""
        for window in WINDOWS:
            self.summary(window)
