"""Checks on the content model's outputs: vectors a KNN can trust."""

import dagster as dg
import numpy as np

from podrec_assets.core.embedding import vectors_matrix
from podrec_assets.defs.partitions import partition_day
from podrec_assets.resources.lake import LakeResource


@dg.asset_check(asset="episode_vectors", description="Every vector of the day is finite and unit length, one width.")
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
