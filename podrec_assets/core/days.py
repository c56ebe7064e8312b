"""Day partitions as Kafka sees them: the one place that turns a UTC day into epoch milliseconds and back."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime

DAY_MS = 86_400_000


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, dtime.min, tzinfo=timezone.utc)


def day_start_ms(day: date) -> int:
    return int(day_start(day).timestamp() * 1000)


def day_of_ms(timestamp_ms: int) -> date:
    """The UTC day of an epoch-millisecond timestamp."""
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=timestamp_ms)).date()


def day_bounds_ms(day: date, lateness_minutes: int = 0) -> tuple[int, int, int]:
    """(day start, day end, day end + lateness) as epoch milliseconds, UTC."""
    start = day_start_ms(day)
    return start, start + DAY_MS, start + DAY_MS + lateness_minutes * 60_000
