"""Folding listening events into listeners' live state and lists: one batch of parsed events, one Redis write.

Events become rows of user_episode_daily with the batch's own SQL (``core.engagement``); each listener's list is
recomputed by ``core.online.live_lists`` (fold-in, ALS candidates, content, α) and written with their state, seen
episodes and the Kafka offsets, fenced by the version's publish id (``ServingStore.write_live``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa

from podrec_assets.core import engagement, online
from podrec_assets.serving import store as keys
from podrec_assets.serving.model import ServedModel
from podrec_assets.serving.store import ServingStore
from podrec_assets.settings import Settings


def state_keep_days(settings: Settings) -> int:
    return max(settings.history_days, settings.als_window_days)


def events_frame(events: list[dict]) -> pa.Table:
    """Parsed events as the columns the engagement SQL reads."""
    return pa.table(
        {
            "user_id": pa.array([e["user_id"] for e in events], pa.string()),
            "episode_id": pa.array([e["episode_id"] for e in events], pa.string()),
            "event": pa.array([e["event"] for e in events], pa.string()),
            "rating": pa.array([e["rating"] for e in events], pa.int64()),
            "played_pct": pa.array([e["played_pct"] for e in events], pa.float64()),
            "ts": pa.array([e["ts"] for e in events], pa.timestamp("us", tz="UTC")),
        }
    )


def live_rows(events: list[dict], weights: dict) -> pd.DataFrame:
    """Events as rows of user_episode_daily, one per (user, episode, day), by the batch's SQL."""
    by_day: dict = {}
    for event in events:
        by_day.setdefault(event["ts"].date(), []).append(event)
    frames = []
    for day, day_events in sorted(by_day.items()):
        table = engagement.aggregate_duckdb(events_frame(day_events), weights, threads=1)
        frames.append(table.to_pandas().assign(date=day))
    return pd.concat(frames, ignore_index=True)[online.DAILY_COLUMNS]


def fold_events(
    settings: Settings,
    store: ServingStore,
    model: ServedModel,
    publish_id: str,
    events: list[dict],
    offsets: dict[int, int],
    now: datetime | None = None,
) -> dict:
    """Apply parsed events to their listeners' state and lists in the store (one fenced transaction).

    Only events after the model's day and not in the future count (earlier ones are the batch's; a far-future
    time is a producer's clock error); an event id already folded into the listener's state is skipped, so a
    redelivered event is applied once. Each listener's list is for the day of their newest event.
    """
    now = now or datetime.now(timezone.utc)
    horizon = now + timedelta(minutes=5)
    fresh = [e for e in events if model.day < e["ts"].date() and e["ts"] <= horizon]
    if not fresh:
        store.write_live(model.version, publish_id, {}, {}, {}, offsets)
        return {"events": 0, "users": 0, "duplicates": 0}
    users = sorted({e["user_id"] for e in fresh})
    stored, folded = keys.state_frame(store.states(model.version, users))
    new_events, duplicates = [], 0
    for e in fresh:
        if e["event_id"] in folded.setdefault(e["user_id"], set()):
            duplicates += 1
            continue
        folded[e["user_id"]].add(e["event_id"])
        new_events.append(e)
    if not new_events:
        store.write_live(model.version, publish_id, {}, {}, {}, offsets)
        return {"events": 0, "users": 0, "duplicates": duplicates}
    touched = sorted({e["user_id"] for e in new_events})
    stored = stored[stored["user_id"].isin(touched)]
    new_rows = live_rows(new_events, engagement.weights_from_settings(settings))
    merged = pd.concat([stored, new_rows], ignore_index=True)
    merged = (
        merged.groupby(["user_id", "episode_id", "date"], as_index=False, sort=False)
        .agg(engagement=("engagement", "sum"), completed=("completed", "max"))
        .astype({"completed": bool})
    )
    newest: dict[str, object] = {}
    for e in new_events:
        newest[e["user_id"]] = max(newest.get(e["user_id"], e["ts"].date()), e["ts"].date())
    lists, states = {}, {}
    by_day: dict = {}
    for user, day in newest.items():
        by_day.setdefault(day, []).append(user)
    for day, day_users in by_day.items():  # usually one: today
        rows = merged[merged["user_id"].isin(day_users)]
        recs = online.live_lists(model.served, rows, day)
        state = online.state_rows(rows, day, state_keep_days(settings))
        hide = keys.hidden_episodes(state, day, settings.history_days)
        lists.update(keys.list_documents(recs, hide, live=True))
        states.update(keys.state_documents(state, {u: sorted(folded[u]) for u in day_users}))
    seen: dict[str, set] = {}
    for e in new_events:
        seen.setdefault(e["user_id"], set()).add(e["episode_id"])
    store.write_live(model.version, publish_id, lists, states, seen, offsets)
    return {"events": len(new_events), "users": len(touched), "duplicates": duplicates}
