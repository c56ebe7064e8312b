"""Run policies an area declares on its own assets and orchestration reads back."""

HEAVY_TAG = "podrec/heavy"  # runs with this tag are limited to one at a time per value (dagster.yaml)


def heavy(kind: str) -> dict[str, str]:
    """The tags of an asset whose runs must not overlap with another of the same kind (asr, spark)."""
    return {HEAVY_TAG: kind}
