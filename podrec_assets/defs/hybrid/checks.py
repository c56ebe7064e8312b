"""Checks on the hybrid area: sane fused lists and metrics, and every active listener served a list."""

import math

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from podrec_assets.defs.checks import (
    RowRule,
    finite_in,
    partitioned_check,
    rank_violations,
    read_partition,
    row_rule_check,
)
from podrec_assets.defs.partitions import THROUGH_D, trailing_days
from podrec_assets.defs.state import listening_through
from podrec_assets.settings import Settings

UNIT_METRICS = ("precision", "recall", "ndcg", "map", "coverage", "hit")
REASONS = {"als", "content", "hybrid", "popular"}


def _final_rules(table, settings):
    # a fused row has its alpha in [0, 1] (a missing one is a violation); the popular fill has none
    fused = table.filter(pc.not_equal(table["reason"], "popular"))
    bad_alpha, _, _ = finite_in(fused["alpha"], 0.0, 1.0)
    bad_score, _, _ = finite_in(table["final_score"], -math.inf, math.inf)
    reasons = set(pc.unique(table["reason"]).to_pylist())
    return {
        "rank outside 1..N": rank_violations(table, settings.top_n),
        "alpha outside [0, 1]": bad_alpha,
        "non-finite final_score": bad_score,
        "unknown reasons": len(reasons - REASONS),
    }


def _metrics_rules(table, settings):
    unit = [m.split("@")[0].lower() in UNIT_METRICS for m in table["metric"].to_pylist()]
    unit_values = table.filter(pa.array(unit))["value"]
    bad_unit, _, _ = finite_in(unit_values, 0.0, 1.0) if len(unit_values) else (0, None, None)
    bad_any, _, _ = finite_in(table["value"], -math.inf, math.inf)
    return {"rate metrics outside [0, 1]": bad_unit, "non-finite values": bad_any}


def users_who_heard_everything(history: pa.Table, users: pa.Array, catalog: pa.Array) -> set[str]:
    """The ``users`` whose history holds every episode of ``catalog`` (they have nothing left to be offered).

    One grouped pass over the history rows of those users: distinct catalog episodes per user against the
    catalog's size, so the cost is the history's size, never users x catalog.
    """
    catalog = pc.unique(catalog)
    mine = history.filter(pc.and_(pc.is_in(history["user_id"], users), pc.is_in(history["episode_id"], catalog)))
    if mine.num_rows == 0 or len(catalog) == 0:
        return set()
    heard = mine.group_by("user_id").aggregate([("episode_id", "count_distinct")])
    return set(heard.filter(pc.equal(heard["episode_id_count_distinct"], len(catalog)))["user_id"].to_pylist())


def active_users_check(settings: Settings) -> dg.AssetChecksDefinition:
    def body(context, lake, day):
        recs = read_partition(lake, "final_recommendations", day)
        if recs is None or not lake.exists("user_episode_daily"):
            return dg.AssetCheckResult(passed=False, description="final_recommendations or user_episode_daily missing")
        start, _ = trailing_days(settings.history_days).days(day)
        active = pc.unique(lake.read_days("user_episode_daily", start, day, columns=["user_id"])["user_id"])
        served = pc.unique(recs["user_id"])
        missing = pc.filter(active, pc.invert(pc.is_in(active, served)))
        excused: set[str] = set()
        if len(missing) and lake.exists("episodes"):
            first, _ = THROUGH_D.days(day)
            catalog = lake.read_days("episodes", first, day, columns=["episode_id"])["episode_id"]
            history = listening_through(lake, day, settings).select(["user_id", "episode_id"])
            excused = users_who_heard_everything(history, missing, catalog)
        still = sorted(set(missing.to_pylist()) - excused)
        return dg.AssetCheckResult(
            passed=not still,
            metadata={
                "active_users": len(active),
                "users_with_recommendations": len(served),
                "active_without": len(still),
                "active_who_heard_every_episode": len(excused),
                "window": f"{start.isoformat()}..{day.isoformat()}",
                "examples": ", ".join(still[:5]) or "none",
            },
        )

    return partitioned_check(
        dg.AssetKey("final_recommendations"),
        "active_users_have_recommendations",
        "Every user with engagement in the last history_days days has recommendations for the day.",
        body,
    )


def checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    final = RowRule(
        "final_recommendations",
        "scores_in_range",
        "Rank in 1..N, alpha in [0, 1] on fused rows (the popular fill has none), finite scores, known reasons.",
        _final_rules,
    )
    metrics = RowRule(
        "recommendation_metrics",
        "values_in_range",
        "Rates (precision, recall, nDCG, MAP, coverage) in [0, 1]; all values finite.",
        _metrics_rules,
    )
    return [row_rule_check(final, settings), row_rule_check(metrics, settings), active_users_check(settings)]
