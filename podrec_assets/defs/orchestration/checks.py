"""Asset checks, written against the table contracts of ``core/schemas.py``.

Each factory returns checks only for asset keys that exist, so a check becomes active the moment its
asset lands. Every check is partitioned like its asset and reads just that day from the lake.
"""

import math
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from podrec_assets.core.registry import TOPICS, asset_tables
from podrec_assets.defs.partitions import daily_partitions, trailing_days
from podrec_assets.resources.lake import COMMON_COLUMNS, LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets.settings import Settings


class Contract:
    """Where an asset's rows live and what identifies a row."""

    def __init__(self, table: str, schema: pa.Schema, keys: list[list[str]], where: dict[str, Any] | None = None):
        self.table, self.schema, self.keys, self.where = table, schema, keys, where or {}


# per asset key, its table's contract, as the registry declares it
CONTRACTS: dict[str, Contract] = {
    asset: Contract(rows.table.name, rows.table.schema, [list(k) for k in rows.table.keys], rows.where)
    for asset, rows in asset_tables().items()
}

# dead-letter asset -> the good rows of the same messages
DEAD_LETTER_PAIRS = {topic.dead_letter_asset: topic.table for topic in TOPICS.values() if topic.dead_letter_asset}

UNIT_METRICS = ("precision", "recall", "ndcg", "map", "coverage", "hit")


def read_partition(lake: LakeResource, contract: Contract, day: date) -> pa.Table | None:
    """The day's rows of the contract's table (slice applied), None when the table does not exist."""
    if not lake.exists(contract.table):
        return None
    table = lake.read_day(contract.table, day)
    for column, value in contract.where.items():
        table = table.filter(pc.equal(table[column], value))
    return table


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


def _partitioned_check(
    asset_key: dg.AssetKey, name: str, description: str, body: CheckBody, blocking: bool = False
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key, name=name, description=description, blocking=blocking, partitions_def=daily_partitions
    )
    def _check(context: dg.AssetCheckExecutionContext, lake: LakeResource):
        return body(context, lake, date.fromisoformat(context.partition_key))

    return _check


def contract_checks(key_string: str, contract: Contract) -> list[dg.AssetChecksDefinition]:
    asset_key = dg.AssetKey.from_user_string(key_string)

    def schema_body(context, lake, day):
        table = read_partition(lake, contract, day)
        if table is None:
            return dg.AssetCheckResult(passed=False, description=f"Delta table {contract.table!r} does not exist.")
        problems = schema_problems(table.schema, contract.schema)
        return dg.AssetCheckResult(
            passed=not problems,
            metadata={"rows": table.num_rows, "problems": "; ".join(problems) or "none"},
            description="; ".join(problems) or None,
        )

    def unique_body(context, lake, day):
        table = read_partition(lake, contract, day)
        if table is None:
            return dg.AssetCheckResult(passed=False, description=f"Delta table {contract.table!r} does not exist.")
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
        _partitioned_check(
            asset_key,
            "schema_matches_contract",
            f"The day's rows of Delta table {contract.table} have every column of core/schemas.py with its type.",
            schema_body,
        ),
        _partitioned_check(
            asset_key,
            "keys_unique",
            f"No two rows of the day share a key ({' / '.join(map(str, contract.keys))}).",
            unique_body,
        ),
    ]


def _range_check(
    key_string: str,
    name: str,
    description: str,
    rules: Callable[[pa.Table, Settings], dict[str, int]],
    settings: Settings,
) -> dg.AssetChecksDefinition:
    contract = CONTRACTS[key_string]

    def body(context, lake, day):
        table = read_partition(lake, contract, day)
        if table is None:
            return dg.AssetCheckResult(passed=False, description=f"Delta table {contract.table!r} does not exist.")
        violations = rules(table, settings) if table.num_rows else {}
        return dg.AssetCheckResult(
            passed=not any(violations.values()),
            metadata={"rows": table.num_rows, **{k: int(v) for k, v in violations.items()}},
        )

    return _partitioned_check(dg.AssetKey.from_user_string(key_string), name, description, body)


def _rank_violations(table: pa.Table, settings: Settings) -> int:
    ranks = table["rank"].to_numpy(zero_copy_only=False)
    return int(np.sum((ranks < 1) | (ranks > settings.top_n)))


def _similarity_rules(table, settings):
    bad_cos, _, _ = finite_in(table["cosine_similarity"], -1.0 - 1e-5, 1.0 + 1e-5)
    ranks = table["rank"].to_numpy(zero_copy_only=False)
    return {
        "cosine outside [-1, 1]": bad_cos,
        "rank outside 1..K": int(np.sum((ranks < 1) | (ranks > settings.similarity_k))),
        "self pairs": int(pc.sum(pc.equal(table["new_episode_id"], table["historical_episode_id"])).as_py() or 0),
    }


def _als_rules(table, settings):
    bad_score, _, _ = finite_in(table["score"], -math.inf, math.inf)
    return {
        "rank outside 1..N": _rank_violations(table, settings),
        "non-finite scores": bad_score,
        "missing model_version": table["model_version"].null_count,
    }


def _final_rules(table, settings):
    bad_alpha, _, _ = finite_in(table["alpha"], 0.0, 1.0)
    bad_score, _, _ = finite_in(table["final_score"], -math.inf, math.inf)
    reasons = set(table["reason"].to_pylist())
    return {
        "rank outside 1..N": _rank_violations(table, settings),
        "alpha outside [0, 1]": bad_alpha,
        "non-finite final_score": bad_score,
        "unknown reasons": len(reasons - {"als", "content", "hybrid", "popular"}),
    }


def _metrics_rules(table, settings):
    unit = [m.split("@")[0].lower() in UNIT_METRICS for m in table["metric"].to_pylist()]
    unit_values = table.filter(pa.array(unit))["value"]
    bad_unit, _, _ = finite_in(unit_values, 0.0, 1.0) if len(unit_values) else (0, None, None)
    bad_any, _, _ = finite_in(table["value"], -math.inf, math.inf)
    return {"rate metrics outside [0, 1]": bad_unit, "non-finite values": bad_any}


def _daily_rules(table, settings):
    bad_pct, _, _ = finite_in(table["max_played_pct"], 0.0, 1.0)
    counts = table["event_count"].to_numpy(zero_copy_only=False)
    return {"max_played_pct outside [0, 1]": bad_pct, "event_count < 1": int(np.sum(counts < 1))}


def _transcript_rules(table, settings):
    statuses = table["status"].to_pylist()
    return {
        "unknown status": sum(s not in {"ok", "failed", "skipped_language"} for s in statuses),
        "ok without text": sum(1 for s, t in zip(statuses, table["text"].to_pylist()) if s == "ok" and not t),
    }


def _vector_rules(table, settings):
    vectors = table["vector"].combine_chunks()
    lengths = pc.list_value_length(vectors).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(vectors).to_numpy(zero_copy_only=False).astype(np.float64)
    problems = {"varying dimensions": int(len(set(lengths.tolist())) > 1)}
    if len(set(lengths.tolist())) == 1 and lengths[0] > 0:
        norms = np.linalg.norm(flat.reshape(len(lengths), int(lengths[0])), axis=1)
        problems["vectors not unit length (|norm-1| > 1e-3)"] = int(np.sum(np.abs(norms - 1.0) > 1e-3))
    return problems


RANGE_CHECKS: list[tuple[str, str, str, Callable]] = [
    (
        "episode_vectors",
        "vectors_unit_length",
        "Every episode vector has the same dimension and unit L2 norm.",
        _vector_rules,
    ),
    (
        "similarities",
        "scores_in_range",
        "Cosine in [-1, 1], rank in 1..K, no episode is its own neighbour.",
        _similarity_rules,
    ),
    ("als_top_n", "scores_in_range", "Rank in 1..N, finite scores, model version recorded.", _als_rules),
    (
        "final_recommendations",
        "scores_in_range",
        "Rank in 1..N, alpha in [0, 1], finite scores, known reasons.",
        _final_rules,
    ),
    (
        "recommendation_metrics",
        "values_in_range",
        "Rates (precision, recall, nDCG, MAP, coverage) in [0, 1]; all values finite.",
        _metrics_rules,
    ),
    ("user_episode_daily", "values_in_range", "Played fraction in [0, 1], at least one event per row.", _daily_rules),
    (
        "transcripts",
        "statuses_valid",
        "Status is ok/failed/skipped_language; an ok transcript has text.",
        _transcript_rules,
    ),
]


def dead_letter_share_check(key_string: str, settings: Settings) -> dg.AssetChecksDefinition:
    contract, good_contract = CONTRACTS[key_string], CONTRACTS[DEAD_LETTER_PAIRS[key_string]]

    def body(context, lake, day):
        dead = read_partition(lake, contract, day)
        good = read_partition(lake, good_contract, day)
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

    return _partitioned_check(
        dg.AssetKey.from_user_string(key_string),
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

    return _partitioned_check(
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


def allowed_ndcg_drop(tolerance: float, change_stderr: float | None) -> float:
    """The larger of the configured tolerance and two standard errors of the paired nDCG change.

    On small data (tens of validation users) nDCG moves by more than any fixed tolerance without the model
    getting worse; two standard errors keep the check to drops that are real.
    """
    if change_stderr is None or math.isnan(change_stderr):
        return tolerance
    return max(tolerance, 2.0 * change_stderr)


MIN_PAIRED_USERS = 20  # below this, a paired nDCG change says more about a few users than about the model


def als_ndcg_check(settings: Settings) -> dg.AssetChecksDefinition:
    key = dg.AssetKey("als_top_n")

    def body(context, lake, day):
        record = latest_materialization(context.instance, key, day.isoformat())
        validation_key = f"validation_ndcg@{settings.metrics_k}"  # what als_top_n records
        validation = metadata_float(record, validation_key)
        new, old = (
            metadata_float(record, "paired_ndcg_this_model"),
            metadata_float(record, "paired_ndcg_previous_model"),
        )
        change, users = metadata_float(record, "ndcg_change_vs_previous"), metadata_float(record, "paired_users") or 0
        k = int(metadata_float(record, "paired_k") or 10)
        allowed = allowed_ndcg_drop(settings.als_ndcg_tolerance, metadata_float(record, "ndcg_change_stderr"))
        metadata = {
            validation_key: validation,
            f"paired_ndcg@{k}": new,
            f"previous_model_ndcg@{k}": old,
            "paired_users": int(users),
            "tolerance": settings.als_ndcg_tolerance,
            "allowed_drop": round(allowed, 6),
            "validation_method": metadata_text(record, "validation_method") or "",
        }
        if validation is None:
            return dg.AssetCheckResult(
                passed=False, metadata=metadata, description=f"the materialization has no {validation_key} metadata"
            )
        if math.isnan(validation):
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                metadata=metadata,
                description="the window could not be split for validation (nDCG is NaN): nothing to compare",
            )
        if change is None or math.isnan(change):
            return dg.AssetCheckResult(
                passed=True,
                metadata=metadata,
                description="no previous day's model judged on the same held-out day: nothing to compare",
            )
        if users < MIN_PAIRED_USERS:
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                metadata=metadata,
                description=f"only {int(users)} users could be paired (fewer than {MIN_PAIRED_USERS}): "
                "too few to judge the model",
            )
        drop = -change
        return dg.AssetCheckResult(
            passed=drop <= allowed,
            metadata={**metadata, "drop": round(drop, 6)},
            description=f"on the held-out day, nDCG@{k} {new:.4f} vs {old:.4f} for the previous day's model over "
            f"{int(users)} users (drop {drop:+.4f}, allowed {allowed:.4f}: the larger of the tolerance and "
            "two standard errors).",
        )

    return _partitioned_check(
        key,
        "validation_ndcg_not_worse",
        "BLOCKING: stops a new ALS model that does worse than the previous day's model on the same "
        "held-out day by more than PODREC_ALS_NDCG_TOLERANCE and more than two standard errors.",
        body,
        blocking=True,
    )


def active_users_check(settings: Settings) -> dg.AssetChecksDefinition:
    def body(context, lake, day):
        recs = read_partition(lake, CONTRACTS["final_recommendations"], day)
        if recs is None or not lake.exists("user_episode_daily"):
            return dg.AssetCheckResult(passed=False, description="final_recommendations or user_episode_daily missing")
        start, _ = trailing_days(settings.history_days).days(day)
        active = set(lake.read_days("user_episode_daily", start, day, columns=["user_id"])["user_id"].to_pylist())
        served = set(recs["user_id"].to_pylist())
        missing = sorted(active - served)
        excused = 0
        if missing and lake.exists("episodes"):
            # a user who already listened to every episode published so far has nothing left to recommend
            catalog = set(
                lake.read_days("episodes", date(1970, 1, 1), day, columns=["episode_id"])["episode_id"].to_pylist()
            )
            history = lake.read_days("user_episode_daily", date(1970, 1, 1), day, columns=["user_id", "episode_id"])
            heard: dict[str, set[str]] = {}
            for user, episode in zip(history["user_id"].to_pylist(), history["episode_id"].to_pylist()):
                heard.setdefault(user, set()).add(episode)
            still = [u for u in missing if catalog - heard.get(u, set())]
            excused, missing = len(missing) - len(still), still
        return dg.AssetCheckResult(
            passed=not missing,
            metadata={
                "active_users": len(active),
                "users_with_recommendations": len(served),
                "active_without": len(missing),
                "active_who_heard_every_episode": excused,
                "window": f"{start.isoformat()}..{day.isoformat()}",
                "examples": ", ".join(missing[:5]) or "none",
            },
        )

    return _partitioned_check(
        dg.AssetKey("final_recommendations"),
        "active_users_have_recommendations",
        "Every user with engagement in the last history_days days has recommendations for the day.",
        body,
    )


SERVED_TABLES = ("similarities", "als_top_n", "final_recommendations")  # Delta tables with a MongoDB serving copy


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
    """Every check whose asset exists (and whose extra inputs exist) in this code location."""

    def has(key_string: str) -> bool:
        return dg.AssetKey.from_user_string(key_string) in existing

    checks: list[dg.AssetChecksDefinition] = []
    for key_string, contract in CONTRACTS.items():
        if has(key_string):
            checks += contract_checks(key_string, contract)
    for key_string, name, description, rules in RANGE_CHECKS:
        if has(key_string):
            checks.append(_range_check(key_string, name, description, rules, settings))
    for key_string in DEAD_LETTER_PAIRS:
        if has(key_string):
            checks.append(dead_letter_share_check(key_string, settings))
    for key in kafka_fed:
        if key in existing and not key.to_user_string().startswith("dead_letters"):
            checks.append(lateness_check(key, settings))
    if has("als_top_n"):
        checks.append(als_ndcg_check(settings))
    if has("final_recommendations") and has("user_episode_daily"):
        checks.append(active_users_check(settings))
    checks += [serving_copy_check(table) for table in SERVED_TABLES if has(table)]
    return checks
