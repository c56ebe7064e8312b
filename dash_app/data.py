"""The Dash app's only data access: Delta tables through DuckDB, the MongoDB serving copy, Dagster GraphQL.

Why it is built this way:
- Each Delta table is copied into one reused in-process DuckDB connection, sorted by its lookup key, the
  first time a page needs it and again only when the table's Delta version changes (checked at most every
  ``version_check_s``; the new copy is built in the background while pages keep reading the old one).
  Point lookups then skip row groups by zone maps instead of rescanning Parquet. The price is memory: the
  app holds a columnar copy of the tables it shows (fine for a serving node; see the README).
- Query results are memoised under (query, parameters, versions of the tables read): a new Delta commit
  changes the key, so a stale answer is never served and nothing has to be invalidated by hand.
- MongoDB is read only by indexed point queries (one user's documents): they take milliseconds and are
  always fresh, so they are not cached. When MongoDB is down the pages say so and read the same rows from
  Delta (the source of truth) instead.
- Every query is parameterised (``?``); user input is never pasted into SQL.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

import pandas as pd
import pyarrow as pa

from podrec_assets.core import registry, schemas
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets.resources.unavailable import ServerUnavailable
from podrec_assets.settings import Settings

# Delta tables the app reads: Arrow schema (for empty tables) and the sort key of the DuckDB copy.
TABLES: dict[str, tuple[pa.Schema, str]] = {
    name: (t.schema, t.mirror_order) for name, t in registry.TABLES.items() if t.mirror_order
}

# Assets shown on the pipeline-health page when Dagster cannot be asked (lake tables of the graph).
GRAPH_TABLES = [name for name, t in registry.TABLES.items() if t.in_graph]

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


def _common_columns(schema: pa.Schema) -> pa.Schema:
    return (
        schema.append(pa.field("date", pa.date32()))
        .append(pa.field("run_id", pa.string()))
        .append(pa.field("created_at", schemas.TS))
    )


class MongoUnavailable(RuntimeError):
    """The serving database could not be reached; callers fall back to Delta and show a banner."""


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


@dataclass
class _Memo:
    """A small LRU of query results."""

    capacity: int = 512
    items: OrderedDict = field(default_factory=OrderedDict)

    def get(self, key: Any) -> Any:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        return _MISSING

    def put(self, key: Any, value: Any) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.capacity:
            self.items.popitem(last=False)


_MISSING = object()


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
        self.version_check_s = version_check_s
        self.dagster_timeout_s = dagster_timeout_s
        self.background_refresh = background_refresh
        self._refreshing: set[str] = set()
        self._lock = threading.RLock()
        self._con = None
        self._loaded: dict[str, int | None] = {}  # table -> Delta version copied into DuckDB (None: absent)
        self._checked: dict[str, tuple[float, int | None]] = {}  # table -> (monotonic time, version seen)
        self._memo = _Memo(capacity=512)  # page-wide aggregates and derived indexes
        self._lookups = _Memo(capacity=4096)  # point queries (one user, one episode)
        self._mongo_state: tuple[float, str | None] = (0.0, None)  # (checked at, error or None)
        self._mongo_pinging = threading.Event()
        self._health: tuple[float, dict] | None = None

    # ------------------------------------------------------------------ DuckDB over Delta
    def _connection(self):
        if self._con is None:
            import duckdb

            self._con = duckdb.connect()
            self._con.execute("SET TimeZone='UTC'")
            self._con.execute("SET threads=2")
        return self._con

    def table_version(self, name: str) -> int | None:
        """The table's current Delta version (None when it does not exist yet), re-read at most every few s."""
        now = time.monotonic()
        seen = self._checked.get(name)
        if seen is not None and now - seen[0] < self.version_check_s:
            return seen[1]
        version = self.lake.version(name)
        self._checked[name] = (now, version)
        return version

    def _ensure(self, name: str) -> int | None:
        """The Delta version whose copy DuckDB table ``name`` holds (call under the lock).

        The first load is synchronous. Later versions are loaded in the background while queries keep
        reading the previous copy (results are memoised under the version actually read), then swapped in.
        """
        version = self.table_version(name)
        if name in self._loaded:
            loaded = self._loaded[name]
            if loaded == version:
                return loaded
            if self.background_refresh:
                self._refresh_in_background(name, version)
                return loaded
        self._load(self._connection(), name, version, name)
        self._loaded[name] = version
        return version

    def _load(self, con, name: str, version: int | None, target: str) -> None:
        schema, order = TABLES[name]
        if version is None:
            source = pa.Table.from_pylist([], schema=_common_columns(schema))
        else:
            source = self.lake.table(name, version).to_pyarrow_dataset()
        view = f"_incoming_{target}"
        con.register(view, source)
        try:
            con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM {view} ORDER BY {order}")
        finally:
            con.unregister(view)

    def _refresh_in_background(self, name: str, version: int | None) -> None:
        if name in self._refreshing:
            return
        self._refreshing.add(name)
        cursor = self._connection().cursor()  # its own connection to the same database, for another thread

        def work() -> None:
            staging = f"{name}__staging"
            try:
                self._load(cursor, name, version, staging)
                with self._lock:
                    if self._con is None:  # closed meanwhile
                        return
                    con = self._con
                    con.execute(f"DROP TABLE IF EXISTS {name}")
                    con.execute(f"ALTER TABLE {staging} RENAME TO {name}")
                    self._loaded[name] = version
                if name in ("user_events", "dead_letters"):
                    self.precompute_engagement()
            except Exception as exc:  # keep serving the old copy; the next check retries
                if self._con is None:
                    return
                print(f"podrec dash: reloading {name} v{version} failed: {exc}", flush=True)
            finally:
                cursor.close()
                self._refreshing.discard(name)

        threading.Thread(target=work, name=f"podrec-dash-load-{name}", daemon=True).start()

    def warm_up(self) -> None:
        """Load every table and the lookup indexes now, so the first visitor does not wait for them."""
        for name in TABLES:
            with self._lock:
                self._ensure(name)
        self._user_index()
        self._titles()
        self.precompute_engagement()
        self.metrics()
        self.alpha_summary()

    def query(
        self, sql: str, params: list | tuple = (), tables: tuple[str, ...] = (), lookup: bool = False
    ) -> pd.DataFrame:
        """Run parameterised SQL over the named tables; memoised per (sql, params, table versions).

        ``lookup=True`` marks a per-user/per-episode point query: those go to their own LRU so that browsing
        many users never evicts the page-wide aggregates.
        """
        with self._lock:
            versions = tuple(self._ensure(t) for t in tables)
            key = (sql, tuple(params), tables, versions)
            memo = self._lookups if lookup else self._memo
            hit = memo.get(key)
            if hit is not _MISSING:
                return hit
            cursor = self._connection().execute(sql, list(params))
            rows = cursor.fetchall()  # small results: records -> frame is ~3x cheaper than .df()
            frame = pd.DataFrame.from_records(rows, columns=[d[0] for d in cursor.description])
            memo.put(key, frame)
            return frame

    def memoised(self, name: str, tables: tuple[str, ...], build: Callable[[], Any], *args: Any) -> Any:
        """Memoise a derived Python value on the versions of the tables it reads."""
        with self._lock:
            versions = tuple(self._ensure(t) for t in tables)
            key = ("py", name, args, versions)
            hit = self._memo.get(key)
            if hit is not _MISSING:
                return hit
            value = build()
            self._memo.put(key, value)
            return value

    def table_is_empty(self, name: str) -> bool:
        return int(self.query(f"SELECT count(*) AS n FROM {name}", tables=(name,))["n"].iloc[0]) == 0

    # ------------------------------------------------------------------ MongoDB
    def mongo_error(self) -> str | None:
        """None when MongoDB answers a ping; else a one-line reason.

        Checked once synchronously, then refreshed in the background every 5 s so a page never waits on
        the server-selection timeout of a database that is down.
        """
        checked_at, error = self._mongo_state
        if checked_at == 0.0:
            self._ping_mongo()
            return self._mongo_state[1]
        if time.monotonic() - checked_at >= 5.0 and not self._mongo_pinging.is_set():
            self._mongo_pinging.set()
            threading.Thread(target=self._ping_mongo, name="podrec-dash-mongo-ping", daemon=True).start()
        return error

    def _ping_mongo(self) -> None:
        from pymongo.errors import PyMongoError

        try:
            self.mongo.client().admin.command("ping")
            error = None
        except PyMongoError as exc:
            error = f"MongoDB at {self._mongo_where()} is not reachable ({type(exc).__name__})"
        finally:
            self._mongo_pinging.clear()
        self._mongo_state = (time.monotonic(), error)

    def _mongo_where(self) -> str:
        uri = self.mongo.uri
        return uri.split("://", 1)[-1].split("@")[-1].split("/")[0]

    def _mongo_find(self, collection: str, flt: dict, sort: list, limit: int) -> list[dict]:
        error = self.mongo_error()
        if error:
            raise MongoUnavailable(error)
        from pymongo.errors import PyMongoError

        try:
            served = {
                "$and": [flt, self.mongo.served_filter(collection)]
            }  # only swapped-in days, never a half-written one
            cursor = self.mongo.db()[collection].find(served, {"_id": 0, "write_id": 0}).sort(sort).limit(limit)
            return list(cursor)
        except (PyMongoError, ServerUnavailable) as exc:
            self._mongo_state = (time.monotonic(), f"MongoDB query failed ({type(exc).__name__})")
            raise MongoUnavailable(self._mongo_state[1]) from exc

    # ------------------------------------------------------------------ users and recommendations
    def _user_index(self) -> list[str]:
        def build() -> list[str]:
            frame = self.query(
                "SELECT DISTINCT user_id FROM final_recommendations UNION SELECT DISTINCT user_id FROM "
                "user_episode_daily",
                tables=("final_recommendations", "user_episode_daily"),
            )
            return sorted(frame["user_id"].dropna().tolist())

        return self.memoised("user_index", ("final_recommendations", "user_episode_daily"), build)

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
            # one document per user and day holding the ranked list (older serving copies: one per row)
            limit = max(self.settings.top_n, 10) * days * 2
            docs = self._mongo_find("final_recommendations", {"user_id": user_id}, [("date", -1)], limit)
            rows = pd.DataFrame(
                [
                    {**{k: v for k, v in doc.items() if k != "items"}, **item}
                    for doc in docs
                    for item in (doc["items"] if "items" in doc else [{}])
                ]
            )
            if not rows.empty:
                rows = rows.sort_values(["date", "rank"], ascending=[False, True], kind="mergesort")
                keep = sorted(rows["date"].astype(str).unique(), reverse=True)[:days]
                rows = rows[rows["date"].astype(str).isin(keep)].reset_index(drop=True)
            return Recommendations(user_id, self._with_titles(rows, "episode_id", "because_episode_id"), "mongo")
        except MongoUnavailable as exc:
            rows = self.query(
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
        rows = self.query(
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
            frame = self.query(
                "SELECT episode_id, arg_max(episode_title, date) AS title, arg_max(podcast_title, date) AS show "
                "FROM episodes GROUP BY episode_id",
                tables=("episodes",),
            )
            return {r.episode_id: (r.title or r.episode_id, r.show or "") for r in frame.itertuples(index=False)}

        return self.memoised("titles", ("episodes",), build)

    def categories(self) -> dict[str, list[str]]:
        """episode_id -> its categories (the newest row of each episode)."""

        def build() -> dict[str, list[str]]:
            frame = self.query(
                "SELECT episode_id, arg_max(categories, date) AS categories FROM episodes GROUP BY episode_id",
                tables=("episodes",),
            )
            return {r.episode_id: list(r.categories) if r.categories is not None else [] for r in frame.itertuples()}

        return self.memoised("categories", ("episodes",), build)

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
        return self.query(
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
        frame = self.query(
            "SELECT * EXCLUDE (kafka_partition, kafka_offset) FROM episodes WHERE episode_id = ? ORDER BY date "
            "DESC LIMIT 1",
            [episode_id],
            tables=("episodes",),
            lookup=True,
        )
        return None if frame.empty else frame.iloc[0].to_dict()

    def transcript(self, episode_id: str) -> dict | None:
        frame = self.query(
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
        rows = self.query(
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
        rows = self.query(
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
            frame = self.query(
                "SELECT episode_id, count(DISTINCT user_id) AS listeners, sum(engagement) AS engagement, "
                "avg(CASE WHEN completed THEN 1.0 ELSE 0.0 END) AS completion_rate FROM user_episode_daily GROUP "
                "BY episode_id",
                tables=("user_episode_daily",),
            )
            return {r["episode_id"]: r for r in frame.to_dict("records")}

        found = self.memoised("audience", ("user_episode_daily",), build)
        return found.get(
            episode_id, {"episode_id": episode_id, "listeners": 0, "engagement": 0.0, "completion_rate": 0.0}
        )

    def recent_episodes(self, limit: int = 12) -> pd.DataFrame:
        return self.search_episodes("", limit)

    # ------------------------------------------------------------------ engagement
    def events_window(self, window: str) -> tuple[datetime | None, datetime | None, str]:
        """(start, end, bucket) of a window ending at the newest event in the lake."""
        length, bucket = WINDOWS[window]
        frame = self.query("SELECT min(ts) AS first, max(ts) AS last FROM user_events", tables=("user_events",))
        last = frame["last"].iloc[0]
        if pd.isna(last):
            return None, None, bucket
        end = pd.Timestamp(last).to_pydatetime()
        start = pd.Timestamp(frame["first"].iloc[0]).to_pydatetime() if length is None else end - length
        return start, end, bucket

    def engagement(self, window: str) -> dict[str, pd.DataFrame | Any]:
        start, end, bucket = self.events_window(window)
        if start is None:
            return {"start": None, "end": None}
        t = ("user_events",)
        between = "ts >= ? AND ts <= ?"
        span = [start, end]
        over_time = self.query(
            f"SELECT time_bucket(INTERVAL '{bucket}', ts) AS bucket, event, count(*) AS events FROM user_events "
            f"WHERE {between} GROUP BY ALL ORDER BY bucket",
            span,
            tables=t,
        )
        mix = self.query(
            f"SELECT event, count(*) AS events FROM user_events WHERE {between} GROUP BY ALL ORDER BY events DESC",
            span,
            tables=t,
        )
        devices = self.query(
            f"SELECT coalesce(device, 'unknown') AS device, count(*) AS events, count(DISTINCT user_id) AS users "
            f"FROM user_events WHERE {between} GROUP BY ALL ORDER BY events DESC",
            span,
            tables=t,
        )
        top = self.query(
            f"SELECT episode_id, count(*) AS events, count(DISTINCT user_id) AS listeners, "
            f"count(*) FILTER (WHERE event = 'complete') AS completes, count(*) FILTER (WHERE event = 'like') AS likes "
            f"FROM user_events WHERE {between} GROUP BY ALL ORDER BY listeners DESC, events DESC LIMIT 10",
            span,
            tables=t,
        )
        totals = self.query(
            f"SELECT count(*) AS events, count(DISTINCT user_id) AS users, count(DISTINCT episode_id) AS episodes "
            f"FROM user_events WHERE {between}",
            span,
            tables=t,
        )
        self._first_days()
        new_returning = self.query(
            f"WITH active AS (SELECT DISTINCT CAST(ts AS DATE) AS day, user_id FROM user_events WHERE {between}) "
            "SELECT a.day, count(*) FILTER (WHERE f.first_day = a.day) AS new_users, "
            "count(*) FILTER (WHERE f.first_day < a.day) AS returning_users "
            "FROM active a JOIN user_first_day f USING (user_id) GROUP BY a.day ORDER BY a.day",
            span,
            tables=t,
        )
        dead = self.query(
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
        reasons = self.query(
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
            self._connection().execute(
                "CREATE OR REPLACE TABLE user_first_day AS SELECT user_id, min(CAST(ts AS DATE)) AS first_day "
                "FROM user_events GROUP BY user_id"
            )
            return True

        self.memoised("user_first_day", ("user_events",), build)

    def precompute_engagement(self) -> None:
        """Fill the cache for every window (after start-up or a new user_events version)."""
        for window in WINDOWS:
            self.engagement(window)

    # ------------------------------------------------------------------ model quality
    def metrics(self) -> pd.DataFrame:
        return self.query(
            "SELECT date, model, metric, k, value, users_evaluated FROM recommendation_metrics ORDER BY date, "
            "model, metric",
            tables=("recommendation_metrics",),
        )

    def alpha_summary(self) -> pd.DataFrame:
        """Per day: mean alpha used by fusion and the share of each reason among recommendations."""
        return self.query(
            "SELECT date, avg(alpha) AS mean_alpha, min(alpha) AS min_alpha, max(alpha) AS max_alpha, "
            "avg(CASE WHEN reason = 'hybrid' THEN 1.0 ELSE 0 END) AS hybrid, avg(CASE WHEN reason = 'als' THEN "
            "1.0 ELSE 0 END) AS als, "
            "avg(CASE WHEN reason = 'content' THEN 1.0 ELSE 0 END) AS content, avg(CASE WHEN reason = 'popular' "
            "THEN 1.0 ELSE 0 END) AS popular, "
            "count(*) AS rows, count(DISTINCT user_id) AS users FROM final_recommendations GROUP BY date ORDER BY date",
            tables=("final_recommendations",),
        )

    # ------------------------------------------------------------------ pipeline health
    def pipeline_health(self, ttl_s: float = 10.0) -> dict:
        """Per-asset partitions and freshness, from Dagster when its webserver answers, else from the lake."""
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < ttl_s:
            return self._health[1]
        try:
            health = self._health_from_dagster()
        except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
            health = self._health_from_lake()
            health["dagster_error"] = (
                f"Dagster at {self.dagster_url} did not answer ({type(exc).__name__}); showing the lake's own "
                "timestamps."
            )
        self._health = (time.monotonic(), health)
        return health

    @property
    def dagster_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.dagster_port}/graphql"

    _HEALTH_QUERY = """
    query PodrecHealth {
      assetNodes {
        assetKey { path }
        groupName
        isPartitioned
        isObservable
        partitionStats { numMaterialized numPartitions numFailed numMaterializing }
        assetPartitionStatuses {
          __typename
          ... on TimePartitionStatuses { ranges { startKey endKey status } }
          ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
        }
        assetMaterializations(limit: 1) { timestamp partition }
        freshnessStatusInfo { freshnessStatus }
        assetObservations(limit: 1) {
          timestamp
          metadataEntries {
            label
            ... on IntMetadataEntry { intRepr }
            ... on FloatMetadataEntry { floatRepr }
            ... on TextMetadataEntry { text }
            ... on JsonMetadataEntry { jsonString }
          }
        }
      }
    }
    """

    def _health_from_dagster(self) -> dict:
        body = json.dumps({"query": self._HEALTH_QUERY}).encode()
        request = urllib.request.Request(self.dagster_url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.dagster_timeout_s) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise ValueError(payload["errors"][0].get("message", "GraphQL error"))
        assets, kafka = [], []
        for node in payload["data"]["assetNodes"]:
            key = "/".join(node["assetKey"]["path"])
            materialized, failed = set(), set()
            statuses = node.get("assetPartitionStatuses") or {}
            for r in statuses.get("ranges") or []:
                target = failed if r["status"] == "FAILED" else materialized if r["status"] == "MATERIALIZED" else None
                if target is not None:
                    target.update(_day_range(r["startKey"], r["endKey"]))
            materialized.update(statuses.get("materializedPartitions") or [])
            failed.update(statuses.get("failedPartitions") or [])
            last = (node.get("assetMaterializations") or [None])[0]
            observation = (node.get("assetObservations") or [None])[0]
            entry = {
                "asset": key,
                "group": node.get("groupName"),
                "materialized": sorted(materialized),
                "failed": sorted(failed),
                "last_update": _from_millis(last["timestamp"]) if last else None,
                "last_partition": last.get("partition") if last else None,
                "freshness": (node.get("freshnessStatusInfo") or {}).get("freshnessStatus"),
                "stats": node.get("partitionStats"),
            }
            if key.startswith("kafka/") or node.get("isObservable"):
                values = {}
                for m in (observation or {}).get("metadataEntries", []):
                    values[m["label"]] = m.get("intRepr") or m.get("floatRepr") or m.get("text") or m.get("jsonString")
                kafka.append(
                    {
                        "asset": key,
                        "observed_at": _from_millis(observation["timestamp"]) if observation else None,
                        "metadata": values,
                    }
                )
            else:
                assets.append(entry)
        return {"source": "dagster", "assets": assets, "kafka": kafka, "checked_at": datetime.now(timezone.utc)}

    def _health_from_lake(self) -> dict:
        assets = []
        for name in GRAPH_TABLES:
            version = self.table_version(name)
            entry = {
                "asset": name,
                "group": None,
                "materialized": [],
                "failed": [],
                "last_update": None,
                "last_partition": None,
                "freshness": None,
                "stats": None,
                "delta_version": version,
            }
            if version is not None:

                def build(name=name, version=version) -> tuple[list[str], Any]:
                    dataset = self.lake.table(name, version).to_pyarrow_dataset()
                    self._connection().register("_health", dataset)
                    try:
                        frame = (
                            self._connection()
                            .execute("SELECT DISTINCT date, max(created_at) OVER () AS last FROM _health")
                            .df()
                        )
                    finally:
                        self._connection().unregister("_health")
                    days = sorted(str(d)[:10] for d in frame["date"])
                    return days, (None if frame.empty else pd.Timestamp(frame["last"].iloc[0]).to_pydatetime())

                with self._lock:
                    key = ("health", name, version)
                    hit = self._memo.get(key)
                    if hit is _MISSING:
                        hit = build()
                        self._memo.put(key, hit)
                entry["materialized"], entry["last_update"] = hit
                entry["last_partition"] = hit[0][-1] if hit[0] else None
            assets.append(entry)
        return {"source": "lake", "assets": assets, "kafka": [], "checked_at": datetime.now(timezone.utc)}

    # ------------------------------------------------------------------ misc
    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
            self._loaded.clear()
        if self.mongo._client is not None:
            self.mongo._client.close()
            self.mongo._client = None


def _day_range(start_key: str, end_key: str) -> list[str]:
    try:
        start, end = date.fromisoformat(start_key[:10]), date.fromisoformat(end_key[:10])
    except ValueError:
        return [start_key, end_key]
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _from_millis(value: str | float | None) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(float(value) / 1000.0, tz=timezone.utc)


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
