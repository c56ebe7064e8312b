"""The Dash app's only data access: the pages' queries over the Delta tables (through the DuckDB copy of
``dash_app/mirror.py``), the MongoDB serving copy (``dash_app/serving_copy.py``), the engagement figures
(``dash_app/engagement.py``) and pipeline health (``dash_app/health.py``).

- MongoDB is read only by indexed point queries (one user's documents): they take milliseconds and are
  always fresh, so they are not cached. When MongoDB is down the pages say so and read the same rows from
  Delta (the source of truth) instead.
- Every query is parameterised (``?``); user input is never pasted into SQL.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from dash_app.engagement import EngagementQueries
from dash_app.health import PipelineHealth
from dash_app.mirror import LakeMirror
from dash_app.serving_copy import MongoUnavailable, ServingCopy
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets.settings import Settings


@dataclass
class Recommendations:
    """One user's recommendation lists, newest day first, and where they were read from."""

    user_id: str
    rows: pd.DataFrame  # every stored day: date, rank, episode_id, scores, reason, because_episode_id, ...
    source: str  # "mongo" or "delta"
    mongo_error: str | None = None

    @property
    def latest_date(self) -> str | None:
        return None if self.rows.empty else str(self.rows["date"].max())

    def latest(self) -> pd.DataFrame:
        if self.rows.empty:
            return self.rows
        return self.rows[self.rows["date"].astype(str) == self.latest_date].sort_values("rank")


class DataAccess:
    """Everything the pages read. Thread-safe: Dash serves callbacks from several threads."""

    def __init__(
        self,
        settings: Settings,
        lake: LakeResource | None = None,
        mongo: MongoResource | None = None,
        version_check_s: float = 2.0,
        mongo_timeout_ms: int = 1000,
        dagster_timeout_s: float = 1.5,
        background_refresh: bool = True,
    ):
        self.settings = settings
        self.lake = lake or LakeResource(root=settings.lake_root, storage_options_json=settings.lake_storage_options)
        self.mongo = mongo or MongoResource(
            uri=settings.mongo_url, database=settings.mongo_db, server_selection_timeout_ms=mongo_timeout_ms
        )
        self.mirror = LakeMirror(self.lake, version_check_s, background_refresh, on_reload=self._table_reloaded)
        self.health = PipelineHealth(settings, self.mirror, dagster_timeout_s)
        self.serving = ServingCopy(self.mongo)
        self._engagement = EngagementQueries(self.mirror, self._with_titles)

    def _table_reloaded(self, name: str) -> None:
        if name in ("user_events", "dead_letters"):
            self.precompute_engagement()

    def warm_up(self) -> None:
        """Load every table and the lookup indexes now, so the first visitor does not wait for them."""
        self.mirror.load_all()
        self._user_index()
        self._titles()
        self.precompute_engagement()
        self.metrics()
        self.alpha_summary()

    def table_is_empty(self, name: str) -> bool:
        return self.mirror.table_is_empty(name)

    def pipeline_health(self, ttl_s: float = 10.0) -> dict:
        return self.health.get(ttl_s)

    @property
    def dagster_url(self) -> str:
        return self.health.url

    # ------------------------------------------------------------------ MongoDB (dash_app/serving_copy.py)
    def mongo_error(self) -> str | None:
        """None when MongoDB answers; else a one-line reason (never waits on a server that is down)."""
        return self.serving.error()

    # ------------------------------------------------------------------ users and recommendations
    def _user_index(self) -> list[str]:
        def build() -> list[str]:
            frame = self.mirror.query(
                "SELECT DISTINCT user_id FROM final_recommendations UNION SELECT DISTINCT user_id FROM "
                "user_episode_daily",
                tables=("final_recommendations", "user_episode_daily"),
            )
            return sorted(frame["user_id"].dropna().tolist())

        return self.mirror.memoised("user_index", ("final_recommendations", "user_episode_daily"), build)

    def search_users(self, prefix: str, limit: int = 12) -> list[str]:
        """User ids starting with ``prefix`` (binary search over a sorted index; no 50k-entry dropdown)."""
        prefix = (prefix or "").strip()
        if not prefix:
            return []
        index = self._user_index()
        start = bisect.bisect_left(index, prefix)
        found = []
        for user_id in index[start : start + limit]:
            if not user_id.startswith(prefix):
                break
            found.append(user_id)
        return found

    def user_count(self) -> int:
        return len(self._user_index())

    def user_exists(self, user_id: str) -> bool:
        index = self._user_index()
        i = bisect.bisect_left(index, user_id)
        return i < len(index) and index[i] == user_id

    def sample_users(self, n: int = 5) -> list[str]:
        index = self._user_index()
        if not index:
            return []
        step = max(1, len(index) // n)
        return index[::step][:n]

    def recommendations(self, user_id: str, days: int = 14) -> Recommendations:
        """The user's stored lists (latest ``days`` days), from MongoDB, or from Delta when MongoDB is down."""
        try:
            rows = pd.DataFrame(self.serving.list_of("final_recommendations", user_id, days))
            rows = rows.drop(columns=["write_id"], errors="ignore")
            if not rows.empty:
                rows = rows.sort_values(["date", "rank"], ascending=[False, True], kind="mergesort")
                rows = rows.reset_index(drop=True)
            return Recommendations(user_id, self._with_titles(rows, "episode_id", "because_episode_id"), "mongo")
        except MongoUnavailable as exc:
            rows = self.mirror.query(
                "SELECT * EXCLUDE (run_id, created_at) FROM final_recommendations WHERE user_id = ? "
                "AND date >= (SELECT max(date) FROM final_recommendations WHERE user_id = ?) - ?::INTEGER "
                "ORDER BY date DESC, rank",
                [user_id, user_id, days - 1],
                tables=("final_recommendations",),
                lookup=True,
            )
            rows = rows.assign(date=rows["date"].astype(str)) if not rows.empty else rows
            return Recommendations(
                user_id, self._with_titles(rows, "episode_id", "because_episode_id"), "delta", str(exc)
            )

    def listening_history(self, user_id: str, limit: int = 50) -> pd.DataFrame:
        """The user's engagement per (day, episode), newest first, with titles."""
        rows = self.mirror.query(
            "SELECT date, episode_id, engagement, event_count, max_played_pct, completed, last_event_at "
            "FROM user_episode_daily WHERE user_id = ? ORDER BY date DESC, engagement DESC LIMIT ?",
            [user_id, limit],
            tables=("user_episode_daily",),
            lookup=True,
        )
        return self._with_titles(rows, "episode_id")

    # ------------------------------------------------------------------ episodes
    def _titles(self) -> dict[str, tuple[str, str]]:
        def build() -> dict[str, tuple[str, str]]:
            frame = self.mirror.query(
                "SELECT episode_id, arg_max(episode_title, date) AS title, arg_max(podcast_title, date) AS show "
                "FROM episodes GROUP BY episode_id",
                tables=("episodes",),
            )
            return {r.episode_id: (r.title or r.episode_id, r.show or "") for r in frame.itertuples(index=False)}

        return self.mirror.memoised("titles", ("episodes",), build)

    def categories(self) -> dict[str, list[str]]:
        """episode_id -> its categories (the newest row of each episode)."""

        def build() -> dict[str, list[str]]:
            frame = self.mirror.query(
                "SELECT episode_id, arg_max(categories, date) AS categories FROM episodes GROUP BY episode_id",
                tables=("episodes",),
            )
            return {r.episode_id: list(r.categories) if r.categories is not None else [] for r in frame.itertuples()}

        return self.mirror.memoised("categories", ("episodes",), build)

    def _with_titles(self, frame: pd.DataFrame, *id_columns: str) -> pd.DataFrame:
        if frame.empty:
            return frame
        titles = self._titles()
        frame = frame.copy()
        for column in id_columns:
            if column not in frame.columns:
                continue
            prefix = column.removesuffix("_id")
            frame[f"{prefix}_title"] = [
                titles.get(v, (v, ""))[0] if isinstance(v, str) and v else None for v in frame[column]
            ]
            frame[f"{prefix}_show"] = [
                titles.get(v, (v, ""))[1] if isinstance(v, str) and v else None for v in frame[column]
            ]
        return frame

    def search_episodes(self, text: str, limit: int = 25) -> pd.DataFrame:
        """Episodes whose title or show contains ``text`` (case-insensitive), newest first."""
        text = (text or "").strip()
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        return self.mirror.query(
            "SELECT episode_id, arg_max(episode_title, date) AS episode_title, arg_max(podcast_title, date) AS "
            "podcast_title, "
            "max(published_at) AS published_at FROM episodes "
            "WHERE episode_title ILIKE ? ESCAPE '\\' OR podcast_title ILIKE ? ESCAPE '\\' OR episode_id = ? "
            "GROUP BY episode_id ORDER BY published_at DESC LIMIT ?",
            [pattern, pattern, text, limit],
            tables=("episodes",),
            lookup=True,
        )

    def episode(self, episode_id: str) -> dict | None:
        frame = self.mirror.query(
            "SELECT * EXCLUDE (kafka_partition, kafka_offset) FROM episodes WHERE episode_id = ? ORDER BY date "
            "DESC LIMIT 1",
            [episode_id],
            tables=("episodes",),
            lookup=True,
        )
        return None if frame.empty else frame.iloc[0].to_dict()

    def transcript(self, episode_id: str) -> dict | None:
        frame = self.mirror.query(
            "SELECT * EXCLUDE (date, run_id, created_at) "  # older lakes lack the text_source columns: no names here
            "FROM transcripts WHERE episode_id = ? ORDER BY date DESC, created_at DESC LIMIT 1",
            [episode_id],
            tables=("transcripts",),
            lookup=True,
        )
        if frame.empty:
            return None
        row = frame.iloc[0].to_dict()
        segments = row.get("segments")
        row["segments"] = [dict(s) for s in segments] if segments is not None else []
        if not row["segments"] and row.get("text"):  # an HTML or plain-text publisher transcript has no times
            row["segments"] = [{"start": None, "end": None, "text": row["text"]}]
        return row

    def neighbours(self, episode_id: str) -> pd.DataFrame:
        """The episode's most similar episodes (its latest similarities partition), best first."""
        rows = self.mirror.query(
            "SELECT historical_episode_id AS episode_id, rank, cosine_similarity, model, date FROM similarities "
            "WHERE new_episode_id = ? AND date = (SELECT max(date) FROM similarities WHERE new_episode_id = ?) "
            "ORDER BY rank",
            [episode_id, episode_id],
            tables=("similarities",),
            lookup=True,
        )
        return self._with_titles(rows, "episode_id")

    def similar_later(self, episode_id: str, limit: int = 10) -> pd.DataFrame:
        """Episodes published later that found this one among their neighbours."""
        rows = self.mirror.query(
            "SELECT new_episode_id AS episode_id, max(cosine_similarity) AS cosine_similarity FROM similarities "
            "WHERE historical_episode_id = ? GROUP BY new_episode_id ORDER BY cosine_similarity DESC LIMIT ?",
            [episode_id, limit],
            tables=("similarities",),
            lookup=True,
        )
        return self._with_titles(rows, "episode_id")

    def episode_audience(self, episode_id: str) -> dict:
        """Listeners, engagement and completion rate of one episode (one GROUP BY per table version)."""

        def build() -> dict[str, dict]:
            frame = self.mirror.query(
                "SELECT episode_id, count(DISTINCT user_id) AS listeners, sum(engagement) AS engagement, "
                "avg(CASE WHEN completed THEN 1.0 ELSE 0.0 END) AS completion_rate FROM user_episode_daily GROUP "
                "BY episode_id",
                tables=("user_episode_daily",),
            )
            return {r["episode_id"]: r for r in frame.to_dict("records")}

        found = self.mirror.memoised("audience", ("user_episode_daily",), build)
        return found.get(
            episode_id, {"episode_id": episode_id, "listeners": 0, "engagement": 0.0, "completion_rate": 0.0}
        )

    def recent_episodes(self, limit: int = 12) -> pd.DataFrame:
        return self.search_episodes("", limit)

    # ------------------------------------------------------------------ engagement (dash_app/engagement.py)
    def events_window(self, window: str) -> tuple[datetime | None, datetime | None, str]:
        return self._engagement.window(window)

    def engagement(self, window: str) -> dict[str, pd.DataFrame | Any]:
        return self._engagement.summary(window)

    def precompute_engagement(self) -> None:
        """Fill the cache for every window (after start-up or a new user_events version)."""
        self._engagement.precompute()

    # ------------------------------------------------------------------ model quality
    def metrics(self) -> pd.DataFrame:
        return self.mirror.query(
            "SELECT date, model, metric, k, value, users_evaluated FROM recommendation_metrics ORDER BY date, "
            "model, metric",
            tables=("recommendation_metrics",),
        )

    def alpha_summary(self) -> pd.DataFrame:
        """Per day: mean alpha used by fusion and the share of each reason among recommendations."""
        return self.mirror.query(
            "SELECT date, avg(alpha) AS mean_alpha, min(alpha) AS min_alpha, max(alpha) AS max_alpha, "
            "avg(CASE WHEN reason = 'hybrid' THEN 1.0 ELSE 0 END) AS hybrid, avg(CASE WHEN reason = 'als' THEN "
            "1.0 ELSE 0 END) AS als, "
            "avg(CASE WHEN reason = 'content' THEN 1.0 ELSE 0 END) AS content, avg(CASE WHEN reason = 'popular' "
            "THEN 1.0 ELSE 0 END) AS popular, "
            "count(*) AS rows, count(DISTINCT user_id) AS users FROM final_recommendations GROUP BY date ORDER BY date",
            tables=("final_recommendations",),
        )

    # ------------------------------------------------------------------ misc
    def close(self) -> None:
        self.mirror.close()
        self.serving.close()


_current: DataAccess | None = None


def configure(settings: Settings, **kwargs: Any) -> DataAccess:
    """Create the process's DataAccess (called by the app factory, never at import)."""
    global _current
    if _current is not None:
        _current.close()
    _current = DataAccess(settings, **kwargs)
    return _current


def current() -> DataAccess:
    if _current is None:
        raise RuntimeError("dash_app.data.configure(settings) has not been called; start the app with create_app().")
    return _current
