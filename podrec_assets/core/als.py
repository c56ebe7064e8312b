"""Implicit-feedback ALS as the ``als_top_n`` asset uses it: parameters, the window's interactions, fit, validation.

How engagement becomes confidence: a (user, episode) pair's engagement over the window is summed (the weights of
``user_episode_daily``), then

    preference p = 1 if engagement > 0 else 0
    confidence c = 1 + alpha * log1p(engagement)        (pairs with engagement > 0)

log1p damps heavy repeat listeners so one binge does not dominate the user's factors; alpha is
``PODREC_ALS_CONFIDENCE_ALPHA``. Pairs with engagement <= 0 (skips, pauses, bad ratings) are not positives, but
they still count as *seen*: nothing a user already touched is recommended. Only users and episodes with at least
one positive pair get factors. Two interchangeable backends (``als_implicit``, ``als_spark``) optimise that same
objective and return the same ``AlsResult``, so the asset and the benchmarks never care which one ran.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from podrec_assets.core.als_implicit import fit_implicit
from podrec_assets.core.als_result import AlsResult
from podrec_assets.core.als_spark import fit_spark

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
        """Sum ``value_col`` per (user, item) over all rows (e.g. the W days of a window) and index them.

        Ids are coded once (``pd.factorize``) and pairs summed as integer keys: a million listeners' window is tens
        of millions of rows, where grouping or searching the id strings themselves costs minutes."""
        if frame.empty:
            raise ValueError("no interactions: cannot train ALS on an empty window")
        users, user_index = pd.factorize(frame[user_col], sort=True)
        items, item_index = pd.factorize(frame[item_col], sort=True)
        values = np.nan_to_num(frame[value_col].to_numpy(np.float64), nan=0.0)  # a missing value adds nothing
        known = (users >= 0) & (items >= 0)  # a missing id is no interaction
        n_items = max(len(item_index), 1)
        pairs, inverse = np.unique(users[known].astype(np.int64) * n_items + items[known], return_inverse=True)
        summed = np.bincount(inverse, weights=values[known], minlength=len(pairs))
        pair_user, pair_item = pairs // n_items, pairs % n_items
        positive = summed > 0
        if not positive.any():
            raise ValueError(f"no positive engagement among {len(pairs)} (user, item) pairs: nothing to learn from")
        kept_users, kept_items = np.unique(pair_user[positive]), np.unique(pair_item[positive])
        user_row = np.full(len(user_index), -1, dtype=np.int64)
        user_row[kept_users] = np.arange(len(kept_users))
        item_column = np.full(len(item_index), -1, dtype=np.int64)
        item_column[kept_items] = np.arange(len(kept_items))
        shape = (len(kept_users), len(kept_items))
        u, i = user_row[pair_user], item_column[pair_item]
        engagement = sp.csr_matrix((summed[positive], (u[positive], i[positive])), shape=shape)
        indexed = (u >= 0) & (i >= 0)
        seen = sp.csr_matrix((np.ones(int(indexed.sum()), np.float32), (u[indexed], i[indexed])), shape=shape)
        user_ids, item_ids = np.asarray(user_index)[kept_users], np.asarray(item_index)[kept_items]
        return cls(user_ids, item_ids, engagement, seen, rows_in=len(frame))

    def confidence_matrix(self, alpha: float) -> sp.csr_matrix:
        conf = self.engagement.copy().astype(np.float32)
        conf.data = confidence(self.engagement.data, alpha).astype(np.float32)
        return conf


def model_version(backend: str, params: AlsParams, data_version: str) -> str:
    """``als-<backend>-<12 hex>``: a hash of the parameters and the data it was trained on."""
    payload = json.dumps({"backend": backend, "params": params.model_dict(), "data": data_version}, sort_keys=True)
    return f"als-{backend}-{hashlib.sha1(payload.encode()).hexdigest()[:12]}"


def fit_recommend(
    data: Interactions,
    params: AlsParams,
    n: int,
    backend: str = "implicit",
    spark=None,
    data_version: str = "",
    checkpoint_dir: str | None = None,
    users=None,
) -> AlsResult:
    """Train ALS on ``data`` and return each user's top ``n`` unseen items (the one interface of both backends).

    ``spark`` is a SparkSession, required for backend="spark"; ``checkpoint_dir`` is where Spark checkpoints
    ALS when the session has no checkpoint directory yet (on a cluster: a shared filesystem path). ``users``: list
    only these (the validation's judged sample): the implicit backend scores only them, Spark scores everyone and
    keeps them.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown ALS backend {backend!r}; choose one of {BACKENDS}")
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    if backend == "spark":
        if spark is None:
            raise ValueError("the spark backend needs a SparkSession")
        result = fit_spark(data, params, n, spark, checkpoint_dir)
        if users is not None:
            result.top_n = result.top_n[result.top_n["user_id"].isin(set(users))].reset_index(drop=True)
    else:
        result = fit_implicit(data, params, n, users)
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
    day = pd.Timestamp(last_day).normalize()
    days = pd.to_datetime(frame[day_col]).dt.tz_localize(None).dt.normalize()  # the calendar day, in its zone
    train, last = frame[(days < day).to_numpy()], frame[(days == day).to_numpy()]
    last = last[last["user_id"].notna() & last["episode_id"].notna()]
    # (user, episode) as one integer; a missing id in train gives a key no pair of the last day has
    users, _ = pd.factorize(pd.concat([train["user_id"], last["user_id"]], ignore_index=True))
    items, _ = pd.factorize(pd.concat([train["episode_id"], last["episode_id"]], ignore_index=True))
    key = users.astype(np.int64) * (int(items.max()) + 2 if len(items) else 1) + items + 1
    train_keys, last_keys = np.unique(key[: len(train)]), key[len(train) :]
    pairs, inverse = np.unique(last_keys, return_inverse=True)
    weights = np.nan_to_num(last["engagement"].to_numpy(np.float64), nan=0.0)
    engaged = np.bincount(inverse, weights=weights, minlength=len(pairs)) > 0
    new = ~np.isin(pairs, train_keys, assume_unique=True)
    _, first = np.unique(inverse, return_index=True)  # each pair's first row: its ids
    chosen = first[engaged & new]
    chosen.sort()
    return train, last.iloc[chosen][["user_id", "episode_id"]].reset_index(drop=True)


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
    max_users: int = 0,
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

    ``max_users`` > 0: only a stable sample of at most that many of the judged users is scored (and listed), so the
    gate costs one training and a bounded scoring at any number of listeners; ``judged_users`` says how many.
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
            "judged_users": 0,
            "train_rows": len(train),
            **unpaired,
        }
    judged = metrics.validation_sample(relevant["user_id"], max_users)
    relevant = relevant[relevant["user_id"].isin(judged)]
    result = fit_recommend(Interactions.from_frame(train), params, k, backend=backend, spark=spark, users=judged)
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
        "judged_users": len(judged),
        "train_rows": len(train),
        "fit_seconds": result.fit_seconds,
        **paired,
    }
