"""Checks on the content model's outputs: vectors a KNN can trust, neighbours that make sense."""

import dagster as dg
import numpy as np
import pyarrow.compute as pc

from podrec_assets.core.embedding import vectors_matrix
from podrec_assets.defs.checks import RowRule, finite_in, row_rule_check
from podrec_assets.defs.partitions import daily_partitions, partition_day
from podrec_assets.resources.lake import LakeResource
from podrec_assets.settings import Settings


@dg.asset_check(
    asset="episode_vectors",
    name="vectors_unit_length",
    partitions_def=daily_partitions,
    description="Every vector of the day is finite and unit length, one width.",
)
def episode_vectors_unit_length(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    day = partition_day(context)
    table = lake.read_day("episode_vectors", day, columns=["episode_id", "vector"])
    if table.num_rows == 0:
        return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
    try:
        matrix = vectors_matrix(table["vector"])
    except ValueError as exc:
        return dg.AssetCheckResult(passed=False, metadata={"error": str(exc)})
    norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
    bad = [eid for eid, n in zip(table["episode_id"].to_pylist(), norms) if not np.isfinite(n) or abs(n - 1.0) > 1e-3]
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={
            "rows": table.num_rows,
            "dimension": int(matrix.shape[1]),
            "not_unit": dg.MetadataValue.json(bad[:50]),
            "max_norm_error": float(np.max(np.abs(norms - 1.0))) if np.isfinite(norms).all() else float("inf"),
        },
    )


def _similarity_rules(table, settings):
    bad_cos, _, _ = finite_in(table["cosine_similarity"], -1.0 - 1e-5, 1.0 + 1e-5)
    ranks = table["rank"].to_numpy(zero_copy_only=False)
    return {
        "cosine outside [-1, 1]": bad_cos,
        "rank outside 1..K": int(np.sum((ranks < 1) | (ranks > settings.similarity_k))),
        "self pairs": int(pc.sum(pc.equal(table["new_episode_id"], table["historical_episode_id"])).as_py() or 0),
    }


def checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    return [
        episode_vectors_unit_length,
        row_rule_check(
            RowRule(
                "similarities",
                "scores_in_range",
                "Cosine in [-1, 1], rank in 1..K, no episode is its own neighbour.",
                _similarity_rules,
            ),
            settings,
        ),
    ]
