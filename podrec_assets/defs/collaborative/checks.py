"""Checks on the ALS model: sane rows, and the blocking gate that stops a model worse than yesterday's."""

import math

import dagster as dg

from podrec_assets.defs.checks import (
    RowRule,
    finite_in,
    latest_materialization,
    metadata_float,
    metadata_text,
    partitioned_check,
    rank_violations,
    row_rule_check,
)
from podrec_assets.settings import Settings


def _als_rules(table, settings):
    bad_score, _, _ = finite_in(table["score"], -math.inf, math.inf)
    return {
        "rank outside 1..N": rank_violations(table, settings.top_n),
        "non-finite scores": bad_score,
        "missing model_version": table["model_version"].null_count,
    }


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

    return partitioned_check(
        key,
        "validation_ndcg_not_worse",
        "BLOCKING: stops a new ALS model that does worse than the previous day's model on the same "
        "held-out day by more than PODREC_ALS_NDCG_TOLERANCE and more than two standard errors.",
        body,
        blocking=True,
    )


def checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    rows = RowRule("als_top_n", "scores_in_range", "Rank in 1..N, finite scores, model version recorded.", _als_rules)
    return [row_rule_check(rows, settings), als_ndcg_check(settings)]
