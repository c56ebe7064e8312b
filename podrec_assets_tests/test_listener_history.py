"""The incremental listener history: a day's state, advanced from the day before, equals the from-scratch
computation over every day; days are refused when they would be counted twice."""

from __future__ import annotations

import random
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from podrec_assets.core import listener_history
from podrec_assets.core.schemas import LISTENER_HISTORY

DAY = date(2026, 5, 1)


def day_rows(day: date, rng: random.Random, users: int = 30, episodes: int = 12) -> pa.Table:
    pairs = {(f"u{rng.randrange(users):03d}", f"e{rng.randrange(episodes):02d}") for _ in range(rng.randint(0, 60))}
    rows = [
        {
            "user_id": u,
            "episode_id": e,
            "engagement": round(rng.uniform(-2, 6), 3),
            "completed": rng.random() < 0.3,
            "date": day,
        }
        for u, e in sorted(pairs)
    ]
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("user_id", pa.string()),
                ("episode_id", pa.string()),
                ("engagement", pa.float64()),
                ("completed", pa.bool_()),
                ("date", pa.date32()),
            ]
        ),
    )


def as_rows(table: pa.Table) -> list[dict]:
    rows = table.to_pylist()
    for row in rows:
        row["engagement"] = round(row["engagement"], 9)
    return rows


@pytest.mark.parametrize("seed", range(5))
def test_advancing_day_by_day_equals_the_state_from_scratch(seed):
    rng = random.Random(seed)
    days = [DAY + timedelta(days=n) for n in range(8)]
    daily = {day: day_rows(day, rng) for day in days}
    state = listener_history.empty_state()
    for day in days:
        state = listener_history.advance(state, daily[day], day)
        scratch = listener_history.accumulate(pa.concat_tables([daily[d] for d in days if d <= day]))
        assert state.schema == LISTENER_HISTORY
        assert as_rows(state) == as_rows(scratch), day


def test_the_state_holds_what_all_history_says():
    d1, d2, d3 = DAY, DAY + timedelta(days=1), DAY + timedelta(days=3)
    rows = [
        ("u1", "e1", 3.0, True, d1),
        ("u1", "e1", 0.5, False, d2),  # completed once stays completed
        ("u1", "e2", 1.0, False, d3),
        ("u2", "e1", -1.0, False, d2),
    ]
    table = pa.table(
        {
            "user_id": [r[0] for r in rows],
            "episode_id": [r[1] for r in rows],
            "engagement": [r[2] for r in rows],
            "completed": [r[3] for r in rows],
            "date": pa.array([r[4] for r in rows], pa.date32()),
        }
    )
    state = {(r["user_id"], r["episode_id"]): r for r in listener_history.accumulate(table).to_pylist()}
    assert state[("u1", "e1")] == {
        "user_id": "u1",
        "episode_id": "e1",
        "first_date": d1,
        "last_date": d2,
        "days_engaged": 2,
        "engagement": 3.5,
        "completed": True,
    }
    assert state[("u1", "e2")]["completed"] is False and state[("u2", "e1")]["engagement"] == -1.0
    shaped = listener_history.as_daily_rows(listener_history.accumulate(table))
    assert shaped.column_names == ["user_id", "episode_id", "engagement", "completed", "date"]
    assert sorted(zip(*(shaped[c].to_pylist() for c in ("user_id", "episode_id", "completed", "date"))))[0] == (
        "u1",
        "e1",
        True,
        d2,
    )


def test_a_day_is_never_taken_in_twice_or_from_another_day():
    rng = random.Random(1)
    first = day_rows(DAY, rng)
    state = listener_history.advance(listener_history.empty_state(), first, DAY)
    with pytest.raises(ValueError, match="already holds"):
        listener_history.advance(state, day_rows(DAY, rng), DAY)  # D again on a state that holds D
    with pytest.raises(ValueError, match="already holds"):
        listener_history.advance(state, first, DAY + timedelta(days=1))  # D's rows again, on the way to D+1
    later = day_rows(DAY + timedelta(days=2), rng)
    with pytest.raises(ValueError, match="a later day"):
        listener_history.advance(state, later, DAY + timedelta(days=1))  # a day after the one asked for
    # several days at once (a catch-up over a missing state day) equal the from-scratch state
    gap = [day_rows(DAY + timedelta(days=n), rng) for n in (1, 2, 3)]
    caught_up = listener_history.advance(state, pa.concat_tables(gap), DAY + timedelta(days=3))
    assert as_rows(caught_up) == as_rows(listener_history.accumulate(pa.concat_tables([first, *gap])))
    # an empty day carries the state over unchanged
    assert listener_history.advance(state, first.slice(0, 0), DAY + timedelta(days=1)).equals(state)


def _write_daily(lake, day: date, table: pa.Table) -> None:
    from podrec_assets.core.schemas import USER_EPISODE_DAILY, to_table

    rows = [{**r, "event_count": 1, "max_played_pct": 0.5} for r in table.drop(["date"]).to_pylist()]
    lake.write_partition("user_episode_daily", day, to_table(rows, USER_EPISODE_DAILY), "test")


def test_the_asset_in_any_day_order_equals_the_state_from_scratch_and_follows_corrections(tmp_path, monkeypatch):
    """Through Dagster: each day's partition built from the day before equals the from-scratch state over every
    day, whatever order the days run in (a missing earlier day is caught up, never forgotten); a re-run of a day
    gives the same rows."""
    import dagster as dg

    from podrec_assets.defs.events.assets import listener_history as asset
    from podrec_assets.defs.state import listening_through
    from podrec_assets.resources.lake import LakeResource
    from podrec_assets.settings import get_settings

    first = get_settings().start_day
    days = [first + timedelta(days=n) for n in range(5)]
    lake = LakeResource(root=str(tmp_path / "lake"))
    rng = random.Random(3)
    daily = {day: day_rows(day, rng) for day in days}
    for day in days:
        _write_daily(lake, day, daily[day])

    def run(day: date, **kwargs):
        return dg.materialize([asset], partition_key=day.isoformat(), resources={"lake": lake}, **kwargs)

    def built_from(result) -> str:
        return result.asset_materializations_for_node("listener_history")[0].metadata["built_from"].value

    assert built_from(run(days[2])) == f"no stored listener_history + user_episode_daily[{days[0]}..{days[2]}]"
    assert built_from(run(days[0])) == f"no stored listener_history + user_episode_daily[{days[0]}]"
    assert built_from(run(days[1])) == f"listener_history[{days[0]}] + user_episode_daily[{days[1]}]"
    for day in days[3:]:
        assert built_from(run(day)) == f"listener_history[{day - timedelta(days=1)}] + user_episode_daily[{day}]"
    for day in days:
        scratch = listener_history.accumulate(pa.concat_tables([daily[d] for d in days if d <= day]))
        stored = lake.read_day("listener_history", day, columns=list(LISTENER_HISTORY.names))
        assert as_rows(stored.sort_by([("user_id", "ascending"), ("episode_id", "ascending")])) == as_rows(scratch)
    assert run(days[3]).success  # idempotent
    assert as_rows(lake.read_day("listener_history", days[3], columns=list(LISTENER_HISTORY.names))) == as_rows(
        listener_history.accumulate(pa.concat_tables([daily[d] for d in days[:4]]))
    )
    # a late correction of an old day: stored states from that day on are stale, so readers step back past them
    import time

    from podrec_assets.defs.state import state_through

    time.sleep(0.01)  # the rewrite's file is newer than every stored state (milliseconds)
    corrected = day_rows(days[1], random.Random(99))
    _write_daily(lake, days[1], corrected)
    daily[days[1]] = corrected
    state, source = state_through(lake, days[-1], first)
    assert source == f"listener_history[{days[0]}] + user_episode_daily[{days[1]}..{days[-1]}]"
    assert as_rows(state) == as_rows(listener_history.accumulate(pa.concat_tables([daily[d] for d in days])))
    assert built_from(run(days[1])) == f"listener_history[{days[0]}] + user_episode_daily[{days[1]}]"
    assert (
        state_through(lake, days[-1], first)[1]
        == f"listener_history[{days[1]}] + user_episode_daily[{days[2]}..{days[-1]}]"
    )

    # what fusion reads (one state partition + the window's days) says what all history says; short windows, so
    # the state partition is really read
    from podrec_assets.defs.state import listening_windows
    from podrec_assets.settings import load_settings

    settings = load_settings(
        {
            "PODREC_HOME": str(tmp_path),
            "PODREC_START_DATE": first.isoformat(),
            "PODREC_HISTORY_DAYS": "1",
            "PODREC_ALS_WINDOW_DAYS": "1",
            "PODREC_FUSION_VALIDATION_DAYS": "1",
        }
    )
    recent, before = listening_windows(settings)
    last = days[-1]
    assert before.days(last)[0] == days[-3] and recent.days(last) == (days[-2], last)
    seen = listening_through(lake, last, settings).to_pandas()
    everything = pa.concat_tables(list(daily.values())).to_pandas()
    assert set(seen["user_id"]) == set(everything["user_id"])
    completed = everything[everything["completed"]]
    assert set(zip(seen[seen["completed"]]["user_id"], seen[seen["completed"]]["episode_id"])) == set(
        zip(completed["user_id"], completed["episode_id"])
    )
    assert set(zip(seen["user_id"], seen["episode_id"])) == set(zip(everything["user_id"], everything["episode_id"]))
    recent_rows = seen[pd.to_datetime(seen["date"]).dt.date >= days[-2]]
    assert len(recent_rows) == sum(daily[d].num_rows for d in days[-2:])  # the window's own rows, unchanged

    # what fusion is given (heard=False): the same listeners, completed pairs and window rows, no pair only heard
    # before the window but one row for a listener who completed nothing; and the same lists as from everything
    used = listening_through(lake, last, settings, heard=False).to_pandas()
    before_window = pd.to_datetime(used["date"]).dt.date < days[-2]
    only_heard = used[before_window & ~used["completed"]]
    assert set(used["user_id"]) == set(seen["user_id"]) and only_heard["user_id"].is_unique
    assert len(only_heard) < len(seen[(pd.to_datetime(seen["date"]).dt.date < days[-2]) & ~seen["completed"]])
    assert set(zip(used[used["completed"]]["user_id"], used[used["completed"]]["episode_id"])) == set(
        zip(completed["user_id"], completed["episode_id"])
    )
    assert len(used[~before_window]) == len(recent_rows)
    from podrec_assets.core import fusion

    def lists_from(rows: pd.DataFrame) -> pd.DataFrame:
        episodes = sorted(set(everything["episode_id"]))
        vectors = np.random.default_rng(0).normal(size=(len(episodes), 8)).astype(np.float32)
        inputs = fusion.FusionInputs(
            day=last,
            als=pd.DataFrame({"user_id": [], "episode_id": [], "score": []}),
            daily=rows.assign(date=pd.to_datetime(rows["date"]).dt.date),
            vectors=pd.DataFrame({"episode_id": episodes, "vector": list(vectors)}),
            published=pd.Series(pd.Timestamp(first, tz="UTC"), index=episodes),
            history_days=1,
            min_engagement=0.5,
            popularity_half_life_days=3.0,
            content_candidates=20,
            content_neighbours=5,
        )
        made = fusion.recommend(fusion.prepare_day(inputs), fusion.AlphaCurve(0.5, 0.2, 3), 5)
        return made.sort_values(["user_id", "rank"]).reset_index(drop=True)

    assert lists_from(used).equals(lists_from(seen))
