"""The generic asset checks every area builds on, written against the table contracts of ``core/registry.py``.

Every check is partitioned like its asset and reads just that day from the lake. The per-area rules (what a
valid row of one table is) live next to their assets in ``defs/<area>/checks.py``; the checks every table
gets (schema, keys, serving copy, Kafka lateness) are built here from the registry.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from podrec_assets.core.registry import TOPICS, AssetTable, asset_tables, served_tables
from podrec_assets.defs.partitions import daily_partitions
from podrec_assets.resources.lake import COMMON_COLUMNS, LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets.settings import Settings

ASSET_TABLES: dict[str, AssetTable] = asset_tables()


def read_partition(lake: LakeResource, asset: str, day: date) -> pa.Table | None:
    """The day's rows of an asset (its slice of the table applied), None when the table does not exist."""
    rows = ASSET_TABLES[asset]
    if not lake.exists(rows.table.name):
        return None
    table = lake.read_day(rows.table.name, day)
    for column, value in rows.where.items():
        table = table.filter(pc.equal(table[column], value))
    return table


def missing_table(asset: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False, description=f"Delta table {ASSET_TABLES[asset].table.name!r} does not exist."
    )


def normalized_type(t: pa.DataType) -> str:
    """Type text that ignores what a Delta round trip may change (string views, large lists, list item names)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view":
        return "string"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or str(t).startswith("list_view"):
        return f"list<{normalized_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return (
            "struct<"
            + ",".join(f"{t.field(i).name}:{normalized_type(t.field(i).type)}" for i in range(t.num_fields))
            + ">"
        )
    if pa.types.is_timestamp(t):
        tz = "UTC" if (t.tz or "").upper() in {"UTC", "+00:00", "Z", "ETC/UTC"} else (t.tz or "")
        return f"timestamp[{t.unit},{tz}]"
    return str(t)


def schema_problems(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    problems = []
    for f in expected:
        if f.name not in actual.names:
            problems.append(f"missing column {f.name}")
        elif normalized_type(actual.field(f.name).type) != normalized_type(f.type):
            problems.append(f"{f.name}: {actual.field(f.name).type} instead of {f.type}")
    for column in COMMON_COLUMNS:
        if column not in actual.names:
            problems.append(f"missing lake column {column}")
    return problems


def duplicate_keys(table: pa.Table, keys: list[str]) -> tuple[int, list[dict[str, Any]]]:
    if table.num_rows == 0:
        return 0, []
    counts = table.select(keys).group_by(keys).aggregate([([], "count_all")])
    dupes = counts.filter(pc.greater(counts["count_all"], 1))
    return dupes.num_rows, dupes.slice(0, 5).to_pylist()


def finite_in(column: pa.ChunkedArray, low: float, high: float) -> tuple[int, float | None, float | None]:
    """(rows outside [low, high] or not finite, min, max)."""
    values = column.to_numpy(zero_copy_only=False).astype(float) if len(column) else np.array([])
    values = values[~np.isnan(values)] if column.null_count == 0 else values
    if values.size == 0:
        return 0, None, None
    bad = int(np.sum(~np.isfinite(values) | (values < low) | (values > high)))
    return bad, float(np.nanmin(values)), float(np.nanmax(values))


# --------------------------------------------------------------------------------------------------------
# factories

CheckBody = Callable[[dg.AssetCheckExecutionContext, LakeResource, date], dg.AssetCheckResult]


def partitioned_check(
    asset_key: dg.AssetKey, name: str, description: str, body: CheckBody, blocking: bool = False
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key, name=name, description=description, blocking=blocking, partitions_def=daily_partitions
    )
    def _check(context: dg.AssetCheckExecutionContext, lake: LakeResource):
        return body(context, lake, date.fromisoformat(context.partition_key))

    return _check


def contract_checks(key_string: str) -> list[dg.AssetChecksDefinition]:
    """Schema and key uniqueness of the day's rows, for an asset of the registry."""
    asset_key = dg.AssetKey.from_user_string(key_string)
    contract = ASSET_TABLES[key_string].table

    def schema_body(context, lake, day):
        table = read_partition(lake, key_string, day)
        if table is None:
            return missing_table(key_string)
        problems = schema_problems(table.schema, contract.schema)
        return dg.AssetCheckResult(
            passed=not problems,
            metadata={"rows": table.num_rows, "problems": "; ".join(problems) or "none"},
            description="; ".join(problems) or None,
        )

    def unique_body(context, lake, day):
        table = read_partition(lake, key_string, day)
        if table is None:
            return missing_table(key_string)
        metadata: dict[str, Any] = {"rows": table.num_rows}
        problems = []
        for keys in contract.keys:
            n, examples = duplicate_keys(table, keys)
            metadata[f"duplicates ({', '.join(keys)})"] = n
            if n:
                metadata[f"examples ({', '.join(keys)})"] = str(examples)
                problems.append(f"{n} duplicated ({', '.join(keys)}) keys, e.g. {examples}")
        return dg.AssetCheckResult(passed=not problems, metadata=metadata, description="; ".join(problems) or None)

    return [
        partitioned_check(
            asset_key,
            "schema_matches_contract",
            f"The day's rows of Delta table {contract.name} have every column of core/schemas.py with its type.",
            schema_body,
        ),
        partitioned_check(
            asset_key,
            "keys_unique",
            f"No two rows of the day share a key ({' / '.join(map(str, contract.keys))}).",
            unique_body,
        ),
    ]


@dataclass(frozen=True)
class RowRule:
    """A check of the day's rows of one asset: ``count`` returns, per kind of violation, how many rows break it."""

    asset: str
    name: str
    description: str
    count: Callable[[pa.Table, Settings], dict[str, int]]


def row_rule_check(rule: RowRule, settings: Settings) -> dg.AssetChecksDefinition:
    def body(context, lake, day):
        table = read_partition(lake, rule.asset, day)
        if table is None:
            return missing_table(rule.asset)
        violations = rule.count(table, settings) if table.num_rows else {}
        return dg.AssetCheckResult(
            passed=not any(violations.values()),
            metadata={"rows": table.num_rows, **{k: int(v) for k, v in violations.items()}},
        )

    return partitioned_check(dg.AssetKey.from_user_string(rule.asset), rule.name, rule.description, body)


def rank_violations(table: pa.Table, most: int) -> int:
    """Rows whose rank is outside 1..most."""
    ranks = table["rank"].to_numpy(zero_copy_only=False)
    return int(np.sum((ranks < 1) | (ranks > most)))


def dead_letter_share_check(topic: str, settings: Settings) -> dg.AssetChecksDefinition:
    """Warns when a topic's malformed messages exceed a share of the day's messages (dead letters + good rows)."""
    dead_asset, good_asset = TOPICS[topic].dead_letter_asset, TOPICS[topic].table

    def body(context, lake, day):
        dead = read_partition(lake, dead_asset, day)
        good = read_partition(lake, good_asset, day)
        n_dead = dead.num_rows if dead is not None else 0
        n_good = good.num_rows if good is not None else 0
        share = n_dead / (n_dead + n_good) if n_dead + n_good else 0.0
        return dg.AssetCheckResult(
            passed=share <= settings.dead_letter_warn_share,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "dead_letters": n_dead,
                "good_rows": n_good,
                "share": round(share, 5),
                "threshold": settings.dead_letter_warn_share,
            },
            description=f"{share:.2%} of the day's messages were dead letters "
            f"(warn above {settings.dead_letter_warn_share:.2%}).",
        )

    return partitioned_check(
        dg.AssetKey.from_user_string(dead_asset),
        "dead_letter_share",
        "Warns when malformed messages exceed a share of the day's messages.",
        body,
    )


def latest_materialization(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return records[0] if records else None


def lateness_check(asset_key: dg.AssetKey, settings: Settings) -> dg.AssetChecksDefinition:
    """A Kafka day is final only after midnight + the allowed lateness; earlier reads are provisional."""

    def body(context, lake, day):
        record = latest_materialization(context.instance, asset_key, day.isoformat())
        closes = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc) + timedelta(
            minutes=settings.kafka_lateness_minutes
        )
        if record is None:
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.WARN, description="partition not materialized"
            )
        read_at = datetime.fromtimestamp(record.timestamp, tz=timezone.utc)
        final = read_at >= closes
        return dg.AssetCheckResult(
            passed=final,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "read_at": read_at.isoformat(),
                "lateness_window_closes": closes.isoformat(),
                "allowed_lateness_minutes": settings.kafka_lateness_minutes,
            },
            description=None
            if final
            else f"read before the lateness window closed ({closes.isoformat()}): late records "
            "may still arrive; the Kafka sensor re-runs the day when they do.",
        )

    return partitioned_check(
        asset_key,
        "read_after_lateness_window",
        "The day was read from Kafka after midnight + the allowed lateness, so it is complete.",
        body,
    )


def metadata_float(record, name: str) -> float | None:
    if record is None:
        return None
    entry = record.asset_materialization.metadata.get(name) if record.asset_materialization else None
    value = getattr(entry, "value", entry)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def metadata_text(record, name: str) -> str | None:
    if record is None or not record.asset_materialization:
        return None
    entry = record.asset_materialization.metadata.get(name)
    value = getattr(entry, "value", entry)
    return None if value is None else str(value)


def serving_copy_problems(lake: LakeResource, mongo: MongoResource, table: str, day: date) -> tuple[list[str], dict]:
    """How the day's serving copy differs from its Delta day (empty when they agree): the swapped-in write must
    come from the run that wrote the Delta day, record as many rows as the day has, and hold the documents it
    recorded. A day older than the ones MongoDB keeps (``keep_days``) is not served, and that is no difference."""
    rows = lake.read_day(table, day, columns=["run_id"])  # an empty table when `table` does not exist yet
    delta_runs = sorted(set(rows.column("run_id").to_pylist())) if rows.num_rows else []
    served_days = mongo.served_days(table)
    pointer = served_days.get(day.isoformat())
    facts: dict[str, Any] = {"delta_rows": rows.num_rows, "delta_run_ids": ", ".join(delta_runs)}
    if pointer is None:
        if mongo.older_than_kept(table, day.isoformat()):
            oldest = sorted(served_days, reverse=True)[mongo.keep_days - 1]
            facts["not_served"] = f"older than the {mongo.keep_days} days MongoDB keeps (from {oldest})"
            return [], facts
        return ([f"MongoDB serves no write of {day} (Delta has {rows.num_rows} rows)"] if rows.num_rows else []), facts
    documents = mongo.count_day_write(table, day, pointer["write_id"])
    served = pointer["rows"]
    facts.update(
        served_rows=served,
        served_documents=documents,
        served_run_id=pointer["run_id"],
        served_delta_version=pointer.get("delta_version"),
    )
    problems = []
    if rows.num_rows and delta_runs != [pointer["run_id"]]:  # an empty day records no run in Delta: nothing to match
        problems.append(
            f"MongoDB serves the write of run {pointer['run_id']}, Delta holds run(s) {delta_runs or 'none'}"
        )
    recorded = pointer.get("documents", pointer["rows"])  # pointers written before per-user lists: one row each
    if served != rows.num_rows or documents != recorded:
        problems.append(
            f"MongoDB serves {documents} documents holding {served} rows (its write recorded {recorded} documents), "
            f"Delta has {rows.num_rows} rows"
        )
    return problems, facts


def serving_copy_check(table: str) -> dg.AssetChecksDefinition:
    """Delta is the truth and MongoDB its serving copy: a failure between the two writes must not go unnoticed."""

    @dg.asset_check(
        asset=dg.AssetKey(table),
        name="serving_copy_matches_delta",
        partitions_def=daily_partitions,
        description="The MongoDB documents readers see for the day come from the same run as the Delta "
        "day and are as many as its rows; a re-run of the day repairs a difference.",
    )
    def _check(context: dg.AssetCheckExecutionContext, lake: LakeResource, mongo: MongoResource):
        day = date.fromisoformat(context.partition_key)
        problems, facts = serving_copy_problems(lake, mongo, table, day)
        return dg.AssetCheckResult(
            passed=not problems,
            metadata=facts,
            description="; ".join(problems) + f" — re-materialize {table}[{day}] to repair" if problems else None,
        )

    return _check


def build_checks(
    existing: set[dg.AssetKey], kafka_fed: Iterable[dg.AssetKey], settings: Settings
) -> list[dg.AssetChecksDefinition]:
    """The checks every table gets, for each registry asset in this code location: schema and keys, the serving
    copy of the tables MongoDB serves, and read-after-lateness for the assets a Kafka topic feeds."""

    def has(key_string: str) -> bool:
        return dg.AssetKey.from_user_string(key_string) in existing

    checks: list[dg.AssetChecksDefinition] = []
    for key_string in ASSET_TABLES:
        if has(key_string):
            checks += contract_checks(key_string)
    for key in kafka_fed:
        if key in existing and not key.to_user_string().startswith("dead_letters"):
            checks.append(lateness_check(key, settings))
    checks += [serving_copy_check(table) for table in served_tables() if has(table)]
    return checks
