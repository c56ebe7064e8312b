"""Reading the incremental state assets (``listener_history``): what needs all history reads one partition of
state and a bounded window of days, never every day since the first (core/listener_history.py)."""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa

from podrec_assets.core import listener_history as history
from podrec_assets.core.schemas import LISTENER_HISTORY
from podrec_assets.defs.partitions import DayWindow
from podrec_assets.resources.lake import LakeResource
from podrec_assets.settings import Settings, get_settings

LISTENER_HISTORY_TABLE = "listener_history"


def listening_windows(settings: Settings) -> tuple[DayWindow, DayWindow]:
    """(user_episode_daily read day by day, listener_history's one partition before them) for a day's fusion.

    The window reaches back from D over the earliest day fused (D minus the alpha validation days, D-1 for the
    metrics) and that day's history window or the serving fold-in's ALS window, whichever is longer."""
    days = max(settings.fusion_validation_days, 1) + max(settings.history_days, settings.als_window_days)
    return DayWindow(-(days - 1)), DayWindow(-days, -days)


RECENT_LISTENING, LISTENING_BEFORE = listening_windows(get_settings())  # the lineage of the assets that read them


def state_through(
    lake: LakeResource, day: date, first_day: date, stored_before: date | None = None
) -> tuple[pa.Table, str]:
    """The listener history through ``day`` and where it came from.

    Normally one stored partition: listener_history[day]. Where that day is not stored (not materialized yet, or
    being re-run), or is stale (a day of user_episode_daily it covers was rewritten after it), the newest current
    stored partition before it is advanced over the days of user_episode_daily after it (from the first partition
    when none is), so the answer never depends on the order days ran in, nor on a late correction: only the cost
    does. ``stored_before``: use only partitions before that day (a re-run of D must not build on D).
    """
    limit = stored_before - timedelta(days=1) if stored_before else day
    base_day = _newest_current_state(lake, first_day, limit)
    if base_day is not None:
        state = lake.read_day(LISTENER_HISTORY_TABLE, base_day, columns=list(LISTENER_HISTORY.names))
        start, source = base_day + timedelta(days=1), f"listener_history[{base_day}]"
    else:
        state, start, source = history.empty_state(), first_day, "no stored listener_history"
    if start > day:
        return state, source
    daily = lake.read_days("user_episode_daily", start, day, columns=history.DAILY_COLUMNS)
    if daily.num_columns == 0:
        return state, source
    span = f"{start}" if start == day else f"{start}..{day}"
    return history.advance(state, daily, day), f"{source} + user_episode_daily[{span}]"


def _newest_current_state(lake: LakeResource, first_day: date, limit: date) -> date | None:
    """The newest stored listener_history day in first_day..limit written after every user_episode_daily day it
    covers (a state older than a rewrite of one of its days would miss the correction)."""
    states = lake.written_ms(LISTENER_HISTORY_TABLE)
    daily = sorted(lake.written_ms("user_episode_daily").items())
    for candidate in sorted((d for d in states if first_day <= d <= limit), reverse=True):
        newest_input = max((ms for d, ms in daily if d <= candidate), default=0)
        if states[candidate] >= newest_input:
            return candidate
    return None


def listening_through(lake: LakeResource, day: date, settings: Settings, heard: bool = True) -> pa.Table:
    """Rows that say what every day of user_episode_daily through ``day`` says (user_id, episode_id, engagement,
    completed, date): the window's own rows, and before them the state's pairs (dated before the window, engagement
    0, so no window-based reader counts them) for who was ever seen and what was ever completed or heard.
    ``heard=False``: of the pairs before the window, only what fusion uses (``listener_history.seen_and_completed``)."""
    recent_days, before_days = listening_windows(settings)
    first, _ = recent_days.days(day, first=settings.start_day)
    before, _ = before_days.days(day)
    state, _ = state_through(lake, before, settings.start_day)
    earlier = history.as_daily_rows(state if heard else history.seen_and_completed(state))
    recent = lake.read_days("user_episode_daily", first, day, columns=list(earlier.column_names))
    if recent.num_columns == 0 or recent.num_rows == 0:
        return earlier
    return pa.concat_tables([earlier, recent.select(earlier.column_names).cast(earlier.schema)])
