"""Reading the incremental state assets (``listener_history``): what needs all history reads one partition of
state and a bounded window of days, never every day since the first (core/listener_history.py)."""

from __future__ import annotations

from datetime import date

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


class MissingHistory(RuntimeError):
    """listener_history of a day is absent although earlier listening exists: reading it as empty would forget it."""


def read_listener_history(lake: LakeResource, day: date, first_day: date) -> pa.Table:
    """listener_history[day]; empty before the first partition, and empty when no listening happened by then."""
    if day < first_day:
        return history.empty_state()
    state = lake.read_day(LISTENER_HISTORY_TABLE, day, columns=list(LISTENER_HISTORY.names))
    if state.num_rows:
        return state
    if any(d <= day for d in lake.days("user_episode_daily")):
        raise MissingHistory(
            f"listener_history[{day}] is missing while user_episode_daily holds days up to it: materialize "
            f"listener_history from {first_day} through {day} in day order (a backfill of it runs in order)"
        )
    return history.empty_state()


def listening_through(lake: LakeResource, day: date, settings: Settings) -> pa.Table:
    """Rows that say what every day of user_episode_daily through ``day`` says (user_id, episode_id, engagement,
    completed, date): the window's own rows, and before them the state's pairs (dated before the window, engagement
    0, so no window-based reader counts them) for who was ever seen and what was ever completed or heard."""
    recent_days, before_days = listening_windows(settings)
    first, _ = recent_days.days(day, first=settings.start_day)
    before, _ = before_days.days(day)
    earlier = history.as_daily_rows(read_listener_history(lake, before, settings.start_day))
    recent = lake.read_days("user_episode_daily", first, day, columns=list(earlier.column_names))
    if recent.num_columns == 0 or recent.num_rows == 0:
        return earlier
    return pa.concat_tables([earlier, recent.select(earlier.column_names).cast(earlier.schema)])
