"""The ``spark`` backend (engine=spark): Spark ML's ``ALS(implicitPrefs=True)``, the same model on a cluster.

Spark takes rating r = log1p(engagement) with its own alpha and computes the confidence 1 + alpha * r itself, so it
optimises the same objective as the implicit backend. Kept apart because it is the one path that needs a
SparkSession and has to work around what Spark's ALS cannot do (exclude seen episodes, bound its lineage).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from podrec_assets.core.als_result import AlsResult, recommend_reference, top_n_frame

if TYPE_CHECKING:
    from podrec_assets.core.als import AlsParams, Interactions


def fit_spark(data: Interactions, params: AlsParams, n: int, spark, checkpoint_dir: str | None = None) -> AlsResult:
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    # Without a checkpoint directory ALS's lineage grows with every iteration until serialising a task overflows
    # the stack (StackOverflowError after ~10-15 iterations); checkpoints every 5 iterations cut it.
    if spark.sparkContext.getCheckpointDir() is None:
        import tempfile

        spark.sparkContext.setCheckpointDir(checkpoint_dir or tempfile.mkdtemp(prefix="podrec-als-checkpoints-"))
    coo = data.engagement.tocoo()
    ratings_pd = pd.DataFrame(
        {
            "user": coo.row.astype(np.int32),
            "item": coo.col.astype(np.int32),
            "rating": np.log1p(coo.data).astype(np.float32),
        }
    )
    seen_coo = data.seen.tocoo()
    seen_pd = pd.DataFrame({"user": seen_coo.row.astype(np.int32), "item": seen_coo.col.astype(np.int32)})
    parallelism = int(spark.sparkContext.defaultParallelism)
    ratings = spark.createDataFrame(ratings_pd).repartition(parallelism).cache()
    ratings.count()
    als = ALS(
        rank=params.factors,
        maxIter=params.iterations,
        regParam=params.regularization,
        alpha=params.alpha,
        implicitPrefs=True,
        seed=params.seed,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        coldStartStrategy="drop",
        nonnegative=False,
        numUserBlocks=parallelism,
        numItemBlocks=parallelism,
        checkpointInterval=5,
    )
    t0 = time.perf_counter()
    model = als.fit(ratings)
    user_f = model.userFactors.toPandas()
    item_f = model.itemFactors.toPandas()
    fit_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    # recommendForAllUsers cannot exclude seen items; asking for n + (items the user has seen) is exact: removing
    # those still leaves the n best unseen ones. One list length serves everyone up to the 99th percentile of
    # seen counts; the few heavier users are scored exactly in the driver from their factors instead, so one
    # user who played the whole catalog cannot blow up every list.
    seen_counts = np.diff(data.seen.indptr)
    cap = int(max(np.percentile(seen_counts, 99), 20)) if len(seen_counts) else 0
    want = min(n + cap, data.n_items)
    heavy = np.flatnonzero(seen_counts > cap)
    recs = model.recommendForAllUsers(want).select("user", F.posexplode("recommendations").alias("pos", "rec"))
    recs = recs.select("user", "pos", F.col("rec.item").alias("item"), F.col("rec.rating").alias("score"))
    seen = spark.createDataFrame(seen_pd)
    unseen = recs.join(F.broadcast(seen) if len(seen_pd) < 5_000_000 else seen, ["user", "item"], "left_anti")
    ordered = Window.partitionBy("user").orderBy(F.col("score").desc(), F.col("item"))
    top = unseen.withColumn("rank", F.row_number().over(ordered)).where(F.col("rank") <= n)
    top_pd = top.select("user", "item", "rank", "score").toPandas()
    ratings.unpersist()

    user_factors = _dense_factors(user_f, data.n_users, params.factors)
    item_factors = _dense_factors(item_f, data.n_items, params.factors)
    top_pd = top_pd[~top_pd["user"].isin(heavy)].sort_values(["user", "rank"], kind="mergesort")
    top_n = pd.DataFrame(
        {
            "user_id": data.user_ids[top_pd["user"].to_numpy()],
            "episode_id": data.item_ids[top_pd["item"].to_numpy()],
            "rank": top_pd["rank"].to_numpy(np.int32),
            "score": top_pd["score"].to_numpy(np.float64),
        }
    )
    if len(heavy):
        items, scores = recommend_reference(user_factors[heavy], item_factors, data.seen[heavy], n)
        top_n = pd.concat([top_n, top_n_frame(data.user_ids, data.item_ids, heavy, items, scores)])
        top_n = top_n.sort_values(["user_id", "rank"], kind="mergesort")
    recommend_seconds = time.perf_counter() - t0
    top_n = top_n.reset_index(drop=True)
    return AlsResult(
        "spark", params, top_n, data.user_ids, data.item_ids, user_factors, item_factors, fit_seconds, recommend_seconds
    )


def _dense_factors(frame: pd.DataFrame, rows: int, factors: int) -> np.ndarray:
    out = np.zeros((rows, factors), dtype=np.float32)
    if len(frame):
        out[frame["id"].to_numpy()] = np.stack(frame["features"].to_numpy()).astype(np.float32)
    return out
