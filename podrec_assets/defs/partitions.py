"""The daily partitioning every asset shares (UTC days, today's partition open for live data), and the windows of
upstream days an asset reads: each declared once, as both its lineage and the days its body reads."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

import dagster as dg

from podrec_assets.settings import get_settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=get_settings().start_date, timezone="UTC", end_offset=1)


def partition_day(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> date:
    """The day of the partition being materialized."""
    return date.fromisoformat(context.partition_key)


@dataclass(frozen=True)
class DayWindow:
    """Days D+start_offset .. D+end_offset of an upstream asset.

    ``mapping`` is the lineage (an ``AssetDep``'s partition mapping), ``days`` the range the body reads: one
    definition, so they cannot drift apart. Days before the first partition do not exist and are simply absent.
    """

    start_offset: int
    end_offset: int = 0

    @cached_property
    def mapping(self) -> dg.TimeWindowPartitionMapping:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # allow_nonexistent_upstream_partitions is marked beta
            return dg.TimeWindowPartitionMapping(
                start_offset=self.start_offset,
                end_offset=self.end_offset,
                allow_nonexistent_upstream_partitions=True,
            )

    def days(self, day: date, first: date | None = None) -> tuple[date, date]:
        """(first, last) day read for partition ``day``, both inclusive; ``first`` clips the start (the first
        partition)."""
        start = day + timedelta(days=self.start_offset)
        return (max(start, first) if first else start), day + timedelta(days=self.end_offset)


def trailing_days(days: int) -> DayWindow:
    """D-(days-1) .. D: the last ``days`` days ending D."""
    return DayWindow(-(days - 1))


PREVIOUS_DAY = DayWindow(-1, -1)
# "Every day from the first partition through D": a window reaching back further than any partition (100 years),
# clipped to the partitions that exist. Why not the alternatives:
# - AllPartitionMapping would also make D depend on D+1, D+2, ... (future days): automation would call every
#   day stale when tomorrow's data lands, and a missing future day would block D;
# - a same-day dep that reads history anyway hides the real lineage: a backfill could run D before D-3 of its
#   upstream exists and silently miss it.
THROUGH_D = DayWindow(-36500)
