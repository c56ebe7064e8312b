"""als_top_n materialized through Dagster (engine=local / implicit) on a real Delta lake and MongoDB server."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from podrec_assets.core import als, schemas
from podrec_assets.defs.collaborative import defs as collaborative_defs
from podrec_assets.defs.collaborative.assets import als_top_n, window_mapping
from podrec_assets.defs.partitions import daily_partitions
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets.resources.spark import spark_resource
from podrec_assets.settings import get_settings

DAYS = [date(2026, 1, 1) + timedelta(days=i) for i in range(10)]  # data on Jan 1..10
LAST = DAYS[-1]
EMPTY_DAY = date(2026, 2, 20)  # its window (Feb 14..20) holds no interactions
DB = "podrec_collaborative_test"


def daily_rows(day: date, index: int) -> list[dict]:
    """Users of two tastes; a different number of rows each day so a missing day changes the totals."""
    rng = np.random.default_rng(index)
    rows = []
    for group in ("a", "b"):
        for u in range(25):
            count = 1 + (index + u) % 3
            for item in rng.choice(12, size=count, replace=False):
                rows.append(
                    {
                        "user_id": f"{group}-user{u}",
                        "episode_id": f"{group}-ep{item}",
                        "engagement": float(rng.uniform(0.5, 6.0)),
                        "event_count": 1,
                        "max_played_pct": 0.9,
                        "completed": True,
                        "last_event_at": datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc),
                    }
                )
    return rows


@pytest.fixture(scope="module")
def env(tmp_path_factory, stack_settings):
    lake = LakeResource(root=str(tmp_path_factory.mktemp("collab-lake") / "lake"))
    mongo = MongoResource(uri=stack_settings.mongo_url, database=DB)
    mongo.client().drop_database(DB)
    counts = {}
    for i, day in enumerate(DAYS):
        rows = daily_rows(day, i)
        counts[day] = len(rows)
        lake.write_partition("user_episode_daily", day, schemas.to_table(rows, schemas.USER_EPISODE_DAILY), "fixture")
    yield {"lake": lake, "mongo": mongo, "spark": spark_resource(stack_settings)}, counts
    mongo.client().drop_database(DB)
    mongo.client().close()


def _metadata(result) -> dict:
    mat = result.asset_materializations_for_node("als_top_n")[0]
    return {name: value.value for name, value in mat.metadata.items()}


@pytest.fixture(scope="module")
def first_run(env):
    resources, _ = env
    result = dg.materialize([als_top_n], partition_key=LAST.isoformat(), resources=resources)
    assert result.success
    return _metadata(result)


def test_window_reads_all_w_days_and_nothing_else(env, first_run):
    _, counts = env
    window = get_settings().als_window_days
    assert window == 7
    expected_days = DAYS[-window:]
    assert first_run["days_read"] == [d.isoformat() for d in expected_days]
    assert first_run["days_read_count"] == window
    assert first_run["rows_read"] == sum(counts[d] for d in expected_days)
    assert first_run["window"] == f"{expected_days[0]}..{LAST}"
    assert first_run["delta_versions_read"] == {"user_episode_daily": len(DAYS) - 1}


def test_lineage_maps_d_to_its_w_days():
    upstream = window_mapping(7).get_upstream_mapped_partitions_result_for_partitions(
        daily_partitions.subset_with_partition_keys(["2026-01-10"]), daily_partitions, daily_partitions
    )
    assert sorted(upstream.partitions_subset.get_partition_keys()) == [f"2026-01-{d:02d}" for d in range(4, 11)]
    early = window_mapping(7).get_upstream_mapped_partitions_result_for_partitions(
        daily_partitions.subset_with_partition_keys(["2026-01-02"]), daily_partitions, daily_partitions
    )
    assert sorted(early.partitions_subset.get_partition_keys()) == ["2026-01-01", "2026-01-02"]
    source = dg.AssetKey("user_episode_daily")
    assert source in als_top_n.dependency_keys
    declared = als_top_n.get_partition_mapping(source)
    assert (
        isinstance(declared, dg.TimeWindowPartitionMapping) and declared.start_offset == -6 and declared.end_offset == 0
    )
    assert collaborative_defs.assets == [als_top_n]


def test_outputs_in_delta_and_mongo_agree_and_metadata_is_complete(env, first_run):
    resources, _ = env
    lake, mongo = resources["lake"], resources["mongo"]
    table = lake.read_day("als_top_n", LAST).to_pandas()
    settings = get_settings()
    assert len(table) == first_run["rows"] == first_run["users"] * settings.top_n  # 12 episodes per taste, <= 6 seen
    assert set(table["model_version"]) == {first_run["model_version"]}
    served = pd.DataFrame(mongo.served_rows("als_top_n", LAST))  # buckets of users unpacked to rows
    assert served["user_id"].nunique() == first_run["users"] == table["user_id"].nunique()
    expected_ranks = list(range(1, settings.top_n + 1))
    assert all(ranks == expected_ranks for ranks in served.groupby("user_id", sort=False)["rank"].apply(list))
    assert set(zip(served.user_id, served.episode_id, served["rank"])) == set(
        zip(table.user_id, table.episode_id, table["rank"])
    )
    assert set(served["model_version"]) == {first_run["model_version"]}
    factors = lake.read_day("als_factors", LAST).to_pandas()
    assert set(factors["model_version"]) == {first_run["model_version"]}
    assert (factors["kind"] == "user").sum() == first_run["users"]
    assert (factors["kind"] == "episode").sum() == first_run["episodes"] == 24
    assert {len(v) for v in factors["vector"]} == {als.capped_factors(settings.als_factors, 24)}
    # seen episodes of the window are never recommended
    window = lake.read_days("user_episode_daily", DAYS[-7], LAST).to_pandas()
    seen = set(zip(window.user_id, window.episode_id))
    assert not seen & set(zip(table.user_id, table.episode_id))
    # metadata the blocking check and the UI rely on
    assert first_run["backend"] == "implicit"
    assert first_run["validation_method"] == "last_day_holdout"
    assert 0.0 < first_run["validation_ndcg@10"] <= 1.0
    assert first_run["fit_seconds"] > 0
    assert (
        first_run["params"]["factors"] == als.capped_factors(settings.als_factors, 24)
        and first_run["params"]["window_days"] == 7
    )


def test_rerun_is_idempotent(env, first_run):
    resources, _ = env
    before = resources["lake"].read_day("als_top_n", LAST).to_pandas()
    result = dg.materialize([als_top_n], partition_key=LAST.isoformat(), resources=resources)
    assert result.success
    again = _metadata(result)
    after = resources["lake"].read_day("als_top_n", LAST).to_pandas()
    assert again["model_version"] == first_run["model_version"]
    assert again["validation_ndcg@10"] == pytest.approx(first_run["validation_ndcg@10"])
    cols = ["user_id", "episode_id", "rank"]
    assert (
        before[cols]
        .sort_values(cols)
        .reset_index(drop=True)
        .equals(after[cols].sort_values(cols).reset_index(drop=True))
    )
    mongo = resources["mongo"]
    documents = mongo.served_days("als_top_n")[LAST.isoformat()]["buckets"]  # the re-run replaced every bucket
    assert mongo.db()["als_top_n"].count_documents({"date": LAST.isoformat()}) == documents
    assert again["mongo_deleted"] == documents and again["mongo_inserted"] == documents
    assert len(mongo.served_rows("als_top_n", LAST)) == len(after)


def test_window_without_interactions_fails_clearly(env):
    resources, _ = env
    result = dg.materialize([als_top_n], partition_key=EMPTY_DAY.isoformat(), resources=resources, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "no interactions in user_episode_daily from 2026-02-14 to 2026-02-20" in failure.message
