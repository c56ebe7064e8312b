"""The state podrec serve replicas share, in Redis: each model version's lists and listener state, live updates.

Why Redis and not MongoDB: a `/recommend` is one round trip reading one small value (the listener's list) plus
their live seen set, and the fold-in rewrites a listener's list and state atomically (MULTI) with the Kafka offsets
it applied — Redis does both in well under a millisecond on loopback and scales out by sharding keys per listener.
Everything in it can be rebuilt from the lake and Kafka, so it keeps no files. It must not evict (``noeviction``):
a lost state or offset would silently double-apply or forget events, so a full Redis fails writes loudly instead;
size it at ~2.6 GB per version per 1M listeners, two versions during a swap.

Keys, per model version ``V`` ("<day>@<hash of that day's files>"), each expiring ``ttl_s`` after it is written:

- ``podrec:v:V:list:<user>``  JSON: the listener's ranked items, the episodes never to show them (``hide``), whether
  it is the batch list or a live one, when it was computed.
- ``podrec:v:V:state:<user>`` JSON: the rows of user_episode_daily a live list depends on (``core.online.state_rows``)
  and the event ids folded into them since the batch (an event delivered twice is applied once).
- ``podrec:v:V:seen:<user>``  SET of episodes touched since the batch: added when POST /events accepts an event,
  before the fold-in recomputes the list, so `exclude_seen` hides them at once.
- ``podrec:v:V:offsets``      HASH partition -> next user-events offset applied to V (written with the states).
- ``podrec:v:V:meta``         HASH describing V, with a ``publish_id`` that changes whenever V is (re)written; written
  last, so a version with meta is complete. Fold-ins commit only while the publish id they read is still there
  (WATCH), so a write of the version by another replica is never overwritten with stale state.

A replica that swaps to a newer version gives the old one's keys a short grace (``retire``), so Redis holds about
one version, two during a swap.
"""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timezone
from typing import Callable, Iterable

import numpy as np
import orjson
import pandas as pd

ITEM_FIELDS = ("episode_id", "rank", "final_score", "reason", "because_episode_id", "als_score", "content_score")


class StoreUnavailable(RuntimeError):
    """Redis did not answer; the message says where and how to start it."""


class StaleVersion(RuntimeError):
    """The version was rewritten (or lost) since the fold-in read it: its work is dropped and redone."""


def _chunks(iterable, size: int):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def base(version: str) -> str:
    return f"podrec:v:{version}"


def list_key(version: str, user: str) -> str:
    return f"{base(version)}:list:{user}"


def state_key(version: str, user: str) -> str:
    return f"{base(version)}:state:{user}"


def seen_key(version: str, user: str) -> str:
    return f"{base(version)}:seen:{user}"


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


def list_documents(recs: pd.DataFrame, hide: dict, live: bool, computed_at: datetime | None = None) -> dict[str, bytes]:
    """One JSON document per user from rows of final_recommendations (any order; ranks kept)."""
    if recs.empty:
        return {}
    stamp = (computed_at or datetime.now(timezone.utc)).isoformat()
    ordered = recs.sort_values(["user_id", "rank"], kind="mergesort")
    users = ordered["user_id"].to_numpy()
    cuts = np.flatnonzero(users[1:] != users[:-1]) + 1
    columns = {name: ordered[name].to_numpy() for name in ITEM_FIELDS}
    docs = {}
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(users)]):
        user = users[start]
        items = [
            {
                "episode_id": columns["episode_id"][i],
                "rank": int(columns["rank"][i]),
                "score": float(columns["final_score"][i]),
                "reason": columns["reason"][i],
                "because_episode_id": columns["because_episode_id"][i] or None,
                "als_score": _number(columns["als_score"][i]),
                "content_score": _number(columns["content_score"][i]),
            }
            for i in range(start, stop)
        ]
        docs[user] = orjson.dumps(
            {
                "items": items,
                "hide": sorted(hide.get(user, ())),
                "live": live,
                "cold_start": all(item["reason"] == "popular" for item in items),
                "computed_at": stamp,
            }
        )
    return docs


def state_documents(rows: pd.DataFrame, event_ids: dict[str, list] | None = None) -> dict[str, bytes]:
    """One JSON document per user: {"rows": [[episode_id, "YYYY-MM-DD", engagement, completed], ...],
    "event_ids": [ids folded since the batch]}."""
    event_ids = event_ids or {}
    if rows.empty:
        return {user: orjson.dumps({"rows": [], "event_ids": list(ids)}) for user, ids in event_ids.items()}
    ordered = rows.sort_values(["user_id", "date", "episode_id"], kind="mergesort")
    users = ordered["user_id"].to_numpy()
    cuts = np.flatnonzero(users[1:] != users[:-1]) + 1
    eids = ordered["episode_id"].to_numpy()
    days = [d.isoformat() for d in pd.to_datetime(ordered["date"]).dt.date]
    engagement = ordered["engagement"].to_numpy(dtype=float)
    completed = ordered["completed"].fillna(False).to_numpy(dtype=bool)
    docs = {
        users[start]: orjson.dumps(
            {
                "rows": [[eids[i], days[i], float(engagement[i]), bool(completed[i])] for i in range(start, stop)],
                "event_ids": list(event_ids.get(users[start], ())),
            }
        )
        for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(users)])
    }
    for user, ids in event_ids.items():  # a listener whose every row aged out keeps the ids folded today
        docs.setdefault(user, orjson.dumps({"rows": [], "event_ids": list(ids)}))
    return docs


def state_frame(docs: dict[str, bytes | None]) -> tuple[pd.DataFrame, dict[str, set]]:
    """The rows of state documents (users without one contribute nothing) and each user's folded event ids."""
    users, eids, days, engagement, completed = [], [], [], [], []
    folded: dict[str, set] = {}
    for user, doc in docs.items():
        parsed = orjson.loads(doc) if doc else {"rows": [], "event_ids": []}
        folded[user] = set(parsed["event_ids"])
        for eid, day, value, done in parsed["rows"]:
            users.append(user)
            eids.append(eid)
            days.append(date.fromisoformat(day))
            engagement.append(value)
            completed.append(done)
    rows = pd.DataFrame(
        {"user_id": users, "episode_id": eids, "engagement": engagement, "completed": completed, "date": days}
    ).astype({"engagement": float, "completed": bool})
    return rows, folded


def hidden_episodes(rows: pd.DataFrame, day: date, history_days: int) -> dict[str, set]:
    """Per user, what fusion never recommends: completed ever, or touched in the history window ending ``day``."""
    if rows.empty:
        return {}
    days = pd.to_datetime(rows["date"]).dt.date
    recent = days > day - pd.Timedelta(days=history_days).to_pytimedelta()
    keep = rows[recent.to_numpy() | rows["completed"].fillna(False).to_numpy(dtype=bool)]
    return keep.groupby("user_id")["episode_id"].agg(set).to_dict()


class ServingStore:
    """Synchronous access for the loader and the fold-in (the API reads with redis.asyncio, same keys)."""

    def __init__(self, url: str, ttl_s: int, where: str = ""):
        import redis

        self.url = url
        self.ttl_s = int(ttl_s)
        self.where = where or url
        self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=3)

    def unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(
            f"Redis at {self.where} did not answer ({type(exc).__name__}: {exc}). Start it with "
            "`podrec services start` (embedded, 127.0.0.1), or point PODREC_REDIS_URL at a running Redis."
        )

    def ping(self) -> bool:
        import redis

        try:
            return bool(self.client.ping())
        except (redis.RedisError, OSError):
            return False

    def is_complete(self, version: str) -> bool:
        return bool(self.client.exists(f"{base(version)}:meta"))

    def publish_id(self, version: str) -> str | None:
        """The id of the version's current write; None when the store does not hold the version (complete)."""
        value = self.client.hget(f"{base(version)}:meta", "publish_id")
        return value.decode() if value is not None else None

    def retire(self, version: str, grace_s: int = 600) -> int:
        """Let a version's keys expire after ``grace_s`` (replicas still on it finish); returns the keys found."""
        found = 0
        for batch in _chunks(self.client.scan_iter(match=f"{base(version)}:*", count=10_000), 10_000):
            pipe = self.client.pipeline(transaction=False)
            for key in batch:
                pipe.expire(key, grace_s)
            pipe.execute()
            found += len(batch)
        return found

    def publish(
        self,
        version: str,
        chunks: Callable[[], Iterable[tuple[dict[str, bytes], dict[str, bytes]]]],
        meta: dict,
        progress: Callable[[str], None] | None = None,
        wait_s: float = 600.0,
    ) -> bool:
        """Write a version's lists and states, chunk by chunk (``chunks()`` yields (lists, states) documents of a
        slice of listeners, so memory stays bounded), then its meta.

        One replica writes (a lock per version; only it builds the documents); the others wait until the meta is
        there. Returns True when this call wrote it, False when it was complete already or another replica wrote it.
        """
        if self.is_complete(version):
            return False
        lock = f"{base(version)}:lock"
        if not self.client.set(lock, b"1", nx=True, ex=int(wait_s)):
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if self.is_complete(version):
                    return False
                time.sleep(0.25)
            raise TimeoutError(f"another replica did not finish writing model {version} within {wait_s:.0f}s")
        started = time.monotonic()
        users = 0
        for lists, states in chunks():
            values = [(list_key(version, u), doc) for u, doc in lists.items()]
            values += [(state_key(version, u), doc) for u, doc in states.items()]
            for begin in range(0, len(values), 20_000):
                pipe = self.client.pipeline(transaction=False)
                for key, doc in values[begin : begin + 20_000]:
                    pipe.set(key, doc, ex=self.ttl_s)
                pipe.execute()
            users += len(lists)
            self.client.expire(lock, int(wait_s))  # still writing
            if progress:
                progress(f"model {version}: lists of {users:,} listeners written ({time.monotonic() - started:.0f}s)")
        meta = {**meta, "users": users, "write_seconds": round(time.monotonic() - started, 1)}
        pipe = self.client.pipeline(transaction=True)
        # live state of an earlier write of this version (the store lost its meta) does not belong to this one
        pipe.delete(f"{base(version)}:offsets")
        pipe.hset(
            f"{base(version)}:meta", mapping={**{k: str(v) for k, v in meta.items()}, "publish_id": uuid.uuid4().hex}
        )
        pipe.expire(f"{base(version)}:meta", self.ttl_s)
        pipe.delete(lock)
        pipe.execute()
        return True

    def states(self, version: str, users: list[str]) -> dict[str, bytes | None]:
        values = self.client.mget([state_key(version, u) for u in users]) if users else []
        return dict(zip(users, values))

    def offsets(self, version: str) -> dict[int, int]:
        return {int(p): int(o) for p, o in self.client.hgetall(f"{base(version)}:offsets").items()}

    def write_live(
        self,
        version: str,
        publish_id: str,
        lists: dict[str, bytes],
        states: dict[str, bytes],
        seen: dict[str, Iterable[str]],
        offsets: dict[int, int],
    ) -> None:
        """Listeners' new lists, states and seen episodes with the offsets they include, in one transaction that
        commits only if the version is still the write ``publish_id`` names (else StaleVersion, nothing written)."""
        import redis

        meta = f"{base(version)}:meta"
        pipe = self.client.pipeline(transaction=True)
        try:
            pipe.watch(meta)
            current = pipe.hget(meta, "publish_id")
            if current is None or current.decode() != publish_id:
                raise StaleVersion(f"model {version} was rewritten since this fold-in read it")
            pipe.multi()
            self._live_commands(pipe, version, lists, states, seen, offsets)
            pipe.expire(meta, self.ttl_s)
            pipe.execute()
        except redis.WatchError:
            raise StaleVersion(f"model {version} was rewritten while this fold-in wrote it") from None
        finally:
            pipe.reset()

    def _live_commands(self, pipe, version, lists, states, seen, offsets) -> None:
        for user, doc in lists.items():
            pipe.set(list_key(version, user), doc, ex=self.ttl_s)
        for user, doc in states.items():
            pipe.set(state_key(version, user), doc, ex=self.ttl_s)
        for user, episodes in seen.items():
            episodes = list(episodes)
            if episodes:
                pipe.sadd(seen_key(version, user), *episodes)
                pipe.expire(seen_key(version, user), self.ttl_s)
        if offsets:
            pipe.hset(f"{base(version)}:offsets", mapping={str(p): str(o) for p, o in offsets.items()})
            pipe.expire(f"{base(version)}:offsets", self.ttl_s)

    def close(self) -> None:
        self.client.close()
