"""The Spark ML backend (local[2], one session for the module): agrees with implicit, exact top-N, the asset on
engine=spark."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from podrec_assets.core import als, als_result, schemas
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets.resources.spark import spark_resource
from podrec_assets.settings import get_settings, load_settings
from podrec_assets_tests.test_collaborative_assets import DAYS, daily_rows

DB = "podrec_collaborative_spark_test"


@pytest.fixture(scope="module")
def spark():
    resource = spark_resource(load_settings({"PODREC_SPARK_MASTER": "local[2]"}))
    resource.spark_session.sparkContext.setLogLevel("ERROR")
    yield resource
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


def clustered(
    seed: int = 0, clusters: int = 4, items_per_cluster: int = 30, users_per_cluster: int = 50, seen: int = 8
) -> pd.DataFrame:
    """Users listen within their cluster, popular episodes (Zipf) more often: a structure any ALS must find."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items_per_cluster + 1) ** 1.1
    popularity /= popularity.sum()
    rows = []
    for c in range(clusters):
        for u in range(users_per_cluster):
            for item in rng.choice(items_per_cluster, size=seen, replace=False, p=popularity):
                rows.append((f"c{c}-u{u}", f"c{c}-e{item}", float(rng.uniform(1, 6))))
    return pd.DataFrame(rows, columns=["user_id", "episode_id", "engagement"])


def test_backends_agree_on_a_small_dataset(spark):
    data = als.Interactions.from_frame(clustered())
    implicit = als.fit_recommend(
        data, als.AlsParams(factors=8, regularization=1.0, alpha=5.0, iterations=15, seed=1), 10
    )
    sparkml = als.fit_recommend(
        data,
        als.AlsParams(factors=8, regularization=0.05, alpha=5.0, iterations=15, seed=1),
        10,
        backend="spark",
        spark=spark.spark_session,
    )
    assert sparkml.model_version.startswith("als-spark-")
    assert len(implicit.top_n) == len(sparkml.top_n) == data.n_users * 10
    a = implicit.top_n.groupby("user_id")["episode_id"].apply(set)
    b = sparkml.top_n.groupby("user_id")["episode_id"].apply(set)
    overlap = np.mean([len(a[u] & b[u]) / 10 for u in a.index])
    assert overlap >= 0.8, overlap
    # neither recommends (much) across clusters, nor ever a seen episode
    frame = clustered()
    seen = set(zip(frame.user_id, frame.episode_id))
    for top in (implicit.top_n, sparkml.top_n):
        assert (top.user_id.str[:2] == top.episode_id.str[:2]).mean() >= 0.95
        assert not seen & set(zip(top.user_id, top.episode_id))


def test_spark_top_n_is_exact_against_the_reference_on_its_factors(spark):
    frame = clustered(seed=2, clusters=2, items_per_cluster=20, users_per_cluster=30, seen=15)
    # one user who played almost the whole catalog: scored in the driver, not by a longer list for everyone
    catalog = sorted(frame["episode_id"].unique())
    heavy = pd.DataFrame({"user_id": "heavy", "episode_id": catalog[:-6], "engagement": 2.0})
    frame = pd.concat([frame, heavy], ignore_index=True)
    data = als.Interactions.from_frame(frame)
    result = als.fit_recommend(
        data,
        als.AlsParams(factors=6, regularization=0.05, alpha=5.0, iterations=10, seed=2),
        10,
        backend="spark",
        spark=spark.spark_session,
    )
    items, scores = als_result.recommend_reference(result.user_factors, result.item_factors, data.seen, 10)
    reference = als_result.top_n_frame(data.user_ids, data.item_ids, np.arange(data.n_users), items, scores)
    merged = result.top_n.merge(reference, on=["user_id", "rank"], suffixes=("", "_ref"))
    assert len(merged) == len(reference) == len(result.top_n)
    np.testing.assert_allclose(merged["score"], merged["score_ref"], rtol=1e-4, atol=1e-5)
    heavy_top = result.top_n[result.top_n.user_id == "heavy"]
    assert sorted(heavy_top["episode_id"]) == catalog[-6:] and list(heavy_top["rank"]) == list(range(1, 7))


def test_asset_on_engine_spark(spark, stack_settings, tmp_path, monkeypatch):
    from podrec_assets.defs.collaborative.assets import als_top_n

    lake = LakeResource(root=str(tmp_path / "lake"))
    mongo = MongoResource(uri=stack_settings.mongo_url, database=DB)
    mongo.client().drop_database(DB)
    for i, day in enumerate(DAYS[-3:]):
        lake.write_partition(
            "user_episode_daily", day, schemas.to_table(daily_rows(day, i), schemas.USER_EPISODE_DAILY), "fx"
        )
    monkeypatch.setenv("PODREC_ENGINE", "spark")
    get_settings.cache_clear()
    try:
        result = dg.materialize(
            [als_top_n], partition_key=DAYS[-1].isoformat(), resources={"lake": lake, "mongo": mongo, "spark": spark}
        )
    finally:
        monkeypatch.delenv("PODREC_ENGINE")
        get_settings.cache_clear()
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("als_top_n")[0].metadata.items()}
    assert meta["backend"] == "spark" and meta["model_version"].startswith("als-spark-")
    assert meta["days_read"] == [(DAYS[-1] - timedelta(days=d)).isoformat() for d in (2, 1, 0)]
    assert 0.0 < meta["validation_ndcg@10"] <= 1.0
    table = lake.read_day("als_top_n", DAYS[-1]).to_pandas()
    assert len(table) == meta["rows"] > 0
    served = mongo.served_rows("als_top_n", DAYS[-1])  # the lists as readers get them, from their buckets
    assert sorted((r["user_id"], r["episode_id"], r["rank"]) for r in served) == sorted(
        zip(table["user_id"], table["episode_id"], table["rank"])
    )
    mongo.client().drop_database(DB)
