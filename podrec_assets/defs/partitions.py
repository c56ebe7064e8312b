"""The daily partitioning every asset shares (UTC days, today's partition open for live data)."""

from __future__ import annotations

from datetime import date

import dagster as dg

from podrec_assets.settings import get_settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=get_settings().start_date, timezone="UTC", end_offset=1)


def partition_day(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> date:
    """The day of the partition being materialized."""
    return date.fromisoformat(context.partition_key)
