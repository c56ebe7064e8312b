"""The incremental listener history: a day's state, advanced from the day before, equals the from-scratch
computation over every day; days are refused when they would be counted twice."""

from __future__ import annotations

import random
from datetime import date, timedelta

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
    with pytest.raises(ValueError, match="expected only"):
        listener_history.advance(state, first, DAY + timedelta(days=1))  # D's rows offered as D+1's
    # an empty day carries the state over unchanged
    assert listener_history.advance(state, first.slice(0, 0), DAY + timedelta(days=1)).equals(state)
