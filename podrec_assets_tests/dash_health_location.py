"""A tiny Dagster code location for test_dash_health.py: a daily-partitioned asset and a Kafka topic asset,
so the Dash app's pipeline-health page can be tested against a real Dagster webserver's GraphQL API."""

import dagster as dg

days = dg.DailyPartitionsDefinition(start_date="2026-03-01", end_offset=1)

kafka_user_events = dg.AssetSpec(key=dg.AssetKey(["kafka", "user_events"]), description="the user-events topic")


@dg.asset(partitions_def=days, group_name="events", deps=[kafka_user_events])
def user_events(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    if context.partition_key == "2026-03-03":
        raise RuntimeError("this partition fails on purpose")
    return dg.MaterializeResult(metadata={"rows": 10})


defs = dg.Definitions(assets=[kafka_user_events, user_events])
