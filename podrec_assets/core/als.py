"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with two interchangeable backends.

- ``implicit`` (engine=local): benfred/implicit's CPU conjugate-gradient solver, in process.
- ``spark`` (engine=spark): Spark ML ``ALS(implicitPrefs=True)``, the same model on a cluster.

Both see the same input and return the same :class:`AlsResult` (top-N unseen episodes per user with scores, and
the factors), so the asset and the benchmarks never care which one ran.

How engagement becomes confidence: a (user, episode) pair's engagement over the window is summed (the weights of
``user_episode_daily``), then

    preference p = 1 if engagement > 0 else 0
    confidence c = 1 + alpha * log1p(engagement)        (pairs with engagement > 0)

log1p damps heavy repeat listeners so one binge does not dominate the user's factors; alpha is
``PODREC_ALS_CONFIDENCE_ALPHA``. implicit takes ``c`` directly as the matrix value (its solver treats a stored
value as the full confidence); Spark takes rating ``r = log1p(engagement)`` with its ``alpha`` and computes
``1 + alpha * r`` itself, so both optimise the same objective. Pairs with engagement <= 0 (skips, pauses, bad
ratings) are not positives, but they still count as *seen*: nothing a user already touched is recommended.
Only users and episodes with at least one positive pair get factors.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

BACKENDS = ("implicit", "spark")


@dataclass(frozen=True)
class AlsParams:
    """Hyperparameters shared by both backends (threads only matters to implicit)."""

    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 10.0
    seed: int = 42
    threads: int = 2

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_dict(self) -> dict[str, Any]:
        """What defines the model (threads do not)."""
        d = self.as_dict()
        d.pop("threads")
        return d


def capped_factors(requested: int, n_items: int, items_per_factor: int = 8) -> int:
    """The rank actually trained: at most one factor per ``items_per_factor`` episodes in the window.

    With about as many factors as episodes, ALS can reproduce every user's row of the window exactly and stops
    generalising: on the 56-episode demo, 64 factors scored validation nDCG@10 0.05-0.19 where 8 scored
    0.33-0.41 (the asset's own held-out check, never the evaluated day). Large catalogs keep the setting.
    """
    return max(2, min(requested, n_items // items_per_factor))


def confidence(engagement: np.ndarray | pd.Series, alpha: float) -> np.ndarray:
    """c = 1 + alpha * log1p(engagement) for positive engagement (see the module docstring)."""
    e = np.asarray(engagement, dtype=np.float64)
    return 1.0 + alpha * np.log1p(np.clip(e, 0.0, None))


@dataclass
class Interactions:
    """A window's interactions indexed for ALS.

    ``engagement`` is a users x items CSR of summed engagement for positive pairs only; ``seen`` is a binary
    CSR of every pair (positive or not) whose user and item are indexed.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    engagement: sp.csr_matrix
    seen: sp.csr_matrix
    rows_in: int = 0

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def nnz(self) -> int:
        return int(self.engagement.nnz)

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, user_col: str = "user_id", item_col: str = "episode_id", value_col: str = "engagement"
    ) -> "Interactions":
        """Sum ``value_col`` per (user, item) over all rows (e.g. the W days of a window) and index them."""
        if frame.empty:
            raise ValueError("no interactions: cannot train ALS on an empty window")
        summed = frame.groupby([user_col, item_col], sort=False, observed=True)[value_col].sum().reset_index()
        positive = summed[summed[value_col] > 0]
        if positive.empty:
            raise ValueError(f"no positive engagement among {len(summed)} (user, item) pairs: nothing to learn from")
        user_ids = np.sort(positive[user_col].unique())
        item_ids = np.sort(positive[item_col].unique())
        shape = (len(user_ids), len(item_ids))
        u = np.searchsorted(user_ids, positive[user_col].to_numpy())
        i = np.searchsorted(item_ids, positive[item_col].to_numpy())
        engagement = sp.csr_matrix((positive[value_col].to_numpy(np.float64), (u, i)), shape=shape)
        known = summed[summed[user_col].isin(user_ids) & summed[item_col].isin(item_ids)]
        su = np.searchsorted(user_ids, known[user_col].to_numpy())
        si = np.searchsorted(item_ids, known[item_col].to_numpy())
        seen = sp.csr_matrix((np.ones(len(known), np.float32), (su, si)), shape=shape)
        seen.sum_duplicates()
        seen.data[:] = 1.0
        return cls(user_ids, item_ids, engagement, seen, rows_in=len(frame))

    def confidence_matrix(self, alpha: float) -> sp.csr_matrix:
        conf = self.engagement.copy().astype(np.float32)
        conf.data = confidence(self.engagement.data, alpha).astype(np.float32)
        return conf


@dataclass
class AlsResult:
    """Top-N per user (user_id, episode_id, rank, score) plus factors, timings and the model version."""

    backend: str
    params: AlsParams
    top_n: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    fit_seconds: float
    recommend_seconds: float
    model_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def model_version(backend: str, params: AlsParams, data_version: str) -> str:
    """``als-<backend>-<12 hex>``: a hash of the parameters and the data it was trained on."""
    payload = json.dumps({"backend": backend, "params": params.model_dict(), "data": data_version}, sort_keys=True)
    return f"als-{backend}-{hashlib.sha1(payload.encode()).hexdigest()[:12]}"


def _frame(
    user_ids, item_ids, users: np.ndarray, items: np.ndarray, scores: np.ndarray, seen: sp.csr_matrix | None = None
) -> pd.DataFrame:
    """Flat top-N frame from per-user (n_users x N) arrays; padding (item < 0, -inf or -FLT_MAX) dropped.

    When a user has fewer unseen episodes than N, implicit also pads with repeated or already-seen items:
    with ``seen`` given, those are dropped too, so a list never repeats an episode or recommends a seen one.
    """
    n = items.shape[1] if items.ndim == 2 else 0
    user_idx = np.repeat(users, n)
    flat_items = items.reshape(-1)
    flat_scores = scores.reshape(-1).astype(np.float64)
    # implicit pads lists shorter than N (a user who has seen almost everything) with -FLT_MAX scores
    keep = (flat_items >= 0) & np.isfinite(flat_scores) & (flat_scores > -1e37)
    if seen is not None and keep.any():
        rows, cols = user_idx[keep], flat_items[keep]
        was_seen = np.asarray(seen[rows, cols]).ravel() != 0
        keep[np.flatnonzero(keep)[was_seen]] = False
    out = pd.DataFrame(
        {
            "user_id": user_ids[user_idx[keep]],
            "episode_id": item_ids[flat_items[keep]],
            "score": flat_scores[keep],
        }
    ).drop_duplicates(["user_id", "episode_id"], keep="first")
    # re-rank after dropping padding so ranks stay 1..k
    out["rank"] = out.groupby("user_id", sort=False).cumcount().astype(np.int32) + 1
    return out[["user_id", "episode_id", "rank", "score"]]


def recommend_reference(
    user_factors: np.ndarray, item_factors: np.ndarray, seen: sp.csr_matrix, n: int, block: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Plain-numpy exact top-N of unseen items per user: the obviously-right version the fast paths are tested
    against. Returns (items, scores), each n_users x n, padded with -1 / -inf."""
    n_users, n_items = user_factors.shape[0], item_factors.shape[0]
    k = min(n, n_items)
    items = np.full((n_users, n), -1, dtype=np.int64)
    scores = np.full((n_users, n), -np.inf, dtype=np.float64)
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        s = user_factors[start:stop].astype(np.float64) @ item_factors.T.astype(np.float64)
        mask = seen[start:stop].toarray() > 0
        s[mask] = -np.inf
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        top_scores = np.take_along_axis(s, top, axis=1)
        top = np.where(np.isfinite(top_scores), top, -1)
        items[start:stop, :k] = top
        scores[start:stop, :k] = top_scores
    return items, scores


def _fit_implicit(data: Interactions, params: AlsParams, n: int) -> AlsResult:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    threads = max(1, min(params.threads, os.cpu_count() or 1))
    # implicit parallelises over users itself; a multi-threaded BLAS underneath only oversubscribes the cores.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=1.0,
            iterations=params.iterations,
            random_state=params.seed,
            num_threads=threads,
            calculate_training_loss=False,
        )
        t0 = time.perf_counter()
        model.fit(data.confidence_matrix(params.alpha), show_progress=False)
        fit_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        users = np.arange(data.n_users)
        ids, scores = model.recommend(users, data.seen, N=n, filter_already_liked_items=True)
        recommend_seconds = time.perf_counter() - t0
    ids = np.asarray(ids).reshape(len(users), -1)
    scores = np.asarray(scores).reshape(len(users), -1)
    top_n = _frame(data.user_ids, data.item_ids, users, ids, scores, seen=data.seen)
    return AlsResult(
        "implicit",
        params,
        top_n,
        data.user_ids,
        data.item_ids,
        np.asarray(model.user_factors),
        np.asarray(model.item_factors),
        fit_seconds,
        recommend_seconds,
    )


def _fit_spark(data: Interactions, params: AlsParams, n: int, spark, checkpoint_dir: str | None = None) -> AlsResult:
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
        top_n = pd.concat([top_n, _frame(data.user_ids, data.item_ids, heavy, items, scores)])
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


def fit_recommend(
    data: Interactions,
    params: AlsParams,
    n: int,
    backend: str = "implicit",
    spark=None,
    data_version: str = "",
    checkpoint_dir: str | None = None,
) -> AlsResult:
    """Train ALS on ``data`` and return each user's top ``n`` unseen items (the one interface of both backends).

    ``spark`` is a SparkSession, required for backend="spark"; ``checkpoint_dir`` is where Spark checkpoints
    ALS when the session has no checkpoint directory yet (on a cluster: a shared filesystem path).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown ALS backend {backend!r}; choose one of {BACKENDS}")
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    if backend == "spark":
        if spark is None:
            raise ValueError("the spark backend needs a SparkSession")
        result = _fit_spark(data, params, n, spark, checkpoint_dir)
    else:
        result = _fit_implicit(data, params, n)
    result.model_version = model_version(backend, params, data_version)
    return result


def factors_frame(result: AlsResult) -> pd.DataFrame:
    """Factors as rows (kind user|episode, id, vector) for the lake, so a model can be reloaded or inspected."""
    return pd.concat(
        [
            pd.DataFrame(
                {"kind": "user", "id": result.user_ids, "vector": list(result.user_factors.astype(np.float32))}
            ),
            pd.DataFrame(
                {"kind": "episode", "id": result.item_ids, "vector": list(result.item_factors.astype(np.float32))}
            ),
        ],
        ignore_index=True,
    )


def holdout_last_day(frame: pd.DataFrame, last_day, day_col: str = "date") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows before ``last_day``, relevant pairs of ``last_day``).

    Relevant = positive engagement on the last day with an episode the user had not touched before it (the
    model is never asked to recommend a seen episode, so those could only be misses).
    """
    day = pd.Timestamp(last_day).date()
    days = pd.to_datetime(frame[day_col]).dt.date
    train = frame[days < day]
    last = frame[days == day]
    last = last.groupby(["user_id", "episode_id"], sort=False)["engagement"].sum().reset_index()
    last = last[last["engagement"] > 0]
    if not train.empty:
        before = train[["user_id", "episode_id"]].drop_duplicates().assign(_seen=True)
        last = last.merge(before, on=["user_id", "episode_id"], how="left")
        last = last[last["_seen"].isna()]
    return train, last[["user_id", "episode_id"]].reset_index(drop=True)


def random_holdout(frame: pd.DataFrame, share: float = 0.2, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, relevant pairs): a seeded ``share`` of each user's positive pairs held out (users with at
    least two positive pairs); the fallback when the window has no earlier day to train on."""
    pairs = frame.groupby(["user_id", "episode_id"], sort=True)["engagement"].sum().reset_index()
    positive = pairs[pairs["engagement"] > 0].sample(frac=1, random_state=seed)
    grouped = positive.groupby("user_id", sort=False)
    position = grouped.cumcount()
    size = grouped["episode_id"].transform("size")
    held = positive[(size >= 2) & (position < np.maximum(1, np.floor(share * size)))]
    held_keys = held.set_index(["user_id", "episode_id"]).index
    keep = ~frame.set_index(["user_id", "episode_id"]).index.isin(held_keys)
    return frame[keep], held[["user_id", "episode_id"]].reset_index(drop=True)


def validate(
    frame: pd.DataFrame,
    last_day,
    params: AlsParams,
    backend: str = "implicit",
    spark=None,
    k: int = 10,
    previous_top_n: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """nDCG@k (and friends) of a model trained without the held-out part of ``frame`` (rows of a window with a
    ``date`` column). Method ``last_day_holdout`` (train on the days before ``last_day``, score on what users newly
    engaged with on it) when both parts are non-empty, otherwise ``random_20pct_holdout``; ``none`` when even
    that leaves nothing to train or score. ``ndcg`` is then NaN.

    ``previous_top_n``: the previous day's served lists (user_id, episode_id, rank). With a last-day hold-out they
    are judged on the same truth, paired per user (at ``paired_k``, the shorter of k and the served length):
    ``paired_ndcg`` (this model) and ``previous_ndcg`` on the paired users, ``change`` (this model − previous),
    ``change_stderr`` and ``paired_users`` (NaN / 0 when there is nothing to pair). That is what the blocking
    check compares: two days' own validation figures differ with the day (catalog size, activity), not the model.
    """
    from podrec_assets.core import metrics

    nan = float("nan")
    unpaired = {
        "paired_ndcg": nan,
        "previous_ndcg": nan,
        "change": nan,
        "change_stderr": nan,
        "paired_users": 0,
        "paired_k": 0,
    }

    def scorable(train: pd.DataFrame, relevant: pd.DataFrame) -> bool:
        learned_users = train.loc[train["engagement"] > 0, "user_id"]
        return bool(len(relevant)) and bool(relevant["user_id"].isin(learned_users).any())

    method = "last_day_holdout"
    train, relevant = holdout_last_day(frame, last_day)
    if not scorable(train, relevant):
        method = "random_20pct_holdout"
        train, relevant = random_holdout(frame, 0.2, params.seed)
    if not scorable(train, relevant):
        return {
            "method": "none",
            "ndcg": nan,
            "ndcg_stderr": nan,
            "users": 0,
            "relevant_pairs": 0,
            "train_rows": len(train),
            **unpaired,
        }
    result = fit_recommend(Interactions.from_frame(train), params, k, backend=backend, spark=spark)
    scores = metrics.ranking_metrics(result.top_n, relevant, k)
    paired = unpaired
    if method == "last_day_holdout" and previous_top_n is not None and len(previous_top_n):
        # at the served list length when it is shorter than k, so a top-5 list is not judged against a top-10
        pair_k = min(k, int(previous_top_n.groupby("user_id").size().max()))
        change = metrics.paired_ndcg_change(result.top_n, previous_top_n, relevant, pair_k)
        paired = {
            "paired_ndcg": change["new"],
            "previous_ndcg": change["old"],
            "change": change["change"],
            "change_stderr": change["change_stderr"],
            "paired_users": change["users"],
            "paired_k": pair_k,
        }
    return {
        "method": method,
        "ndcg": scores[f"ndcg@{k}"],
        "ndcg_stderr": scores[f"ndcg@{k}_stderr"],
        "precision": scores[f"precision@{k}"],
        "recall": scores[f"recall@{k}"],
        "map": scores[f"map@{k}"],
        "users": scores["users"],
        "relevant_pairs": len(relevant),
        "train_rows": len(train),
        "fit_seconds": result.fit_seconds,
        **paired,
    }
