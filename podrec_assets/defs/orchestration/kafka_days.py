"""Which day partitions a range of new Kafka records belongs to, without scanning the topic.

Two ways, both Dagster-free: a small range is read and its record timestamps are bucketed exactly; a
large one is bisected with ``offsets_for_times`` (the earliest offset whose timestamp is >= t), which
is monotone in t, so the days touching an offset range cost O(log days + new days) broker round trips.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Callable, Iterable

from podrec_assets.core.days import day_of_ms


def days_from_timestamps(timestamps_ms: Iterable[int], first_day: date, last_day: date) -> tuple[set[date], int]:
    """Exact: the days (within the partition range) of the given record timestamps, and how many fell outside."""
    days: set[date] = set()
    outside = 0
    for ts in timestamps_ms:
        day = day_of_ms(ts)
        if first_day <= day <= last_day:
            days.add(day)
        else:
            outside += 1
    return days, outside


def days_by_bisection(
    offset_at: Callable[[date], int], start: int, stop: int, first_day: date, last_day: date
) -> set[date]:
    """Days d in [first_day, last_day] whose offsets [offset_at(d), offset_at(d+1)) meet [start, stop).

    ``offset_at(d)`` is the earliest offset with timestamp >= the start of d (the log end when none), as
    Kafka's ``offsets_for_times`` answers. Exact when timestamps grow with offsets; a late record is
    attributed to the day whose records surround it.
    """
    if stop <= start:
        return set()
    cache: dict[date, int] = {}

    def at(day: date) -> int:
        if day not in cache:
            cache[day] = offset_at(day)
        return cache[day]

    n_days = (last_day - first_day).days + 1
    # smallest index i with at(first_day + i + 1) > start: the first day whose range can reach `start`
    lo, hi = 0, n_days
    while lo < hi:
        mid = (lo + hi) // 2
        if at(first_day + timedelta(days=mid + 1)) > start:
            hi = mid
        else:
            lo = mid + 1
    days: set[date] = set()
    i = lo
    while i < n_days:
        day = first_day + timedelta(days=i)
        begin, end = at(day), at(day + timedelta(days=1))
        if begin >= stop:
            break
        if end > begin and end > start:
            days.add(day)
        i += 1
    return days
