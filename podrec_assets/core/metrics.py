"""Ranking metrics over pandas frames, with Microsoft Recommenders' definitions.

Every model (popularity, ALS, content, hybrid) is scored by the same functions so their figures compare.

Inputs:
- ``recommended``: columns ``user_id``, ``episode_id``, ``rank`` (1 = best). Rows are ordered per user by
  ``rank``; a user's top-k are the first k distinct episodes in that order (positions 1..k), so gaps or ties in
  ``rank`` do not shift the discount.
- ``relevant``: columns ``user_id``, ``episode_id`` (duplicates ignored): the ground truth.

As in Recommenders' ``python_evaluation``, a metric averages over the users present in BOTH frames ("common
users"): a user with relevant episodes but no recommendation, or with recommendations but nothing relevant,
is not counted. Users counted but without a single hit contribute 0. Relevance is binary.

- precision@k = hits_in_top_k / k  (k even when fewer than k were recommended, as Recommenders does)
- recall@k    = hits_in_top_k / |relevant|
- ndcg@k      = sum over hits of 1/log2(position+1), divided by the ideal sum over positions 1..min(|relevant|, k)
- map_at_k    = sum over hits of (hits so far / position), divided by min(|relevant|, k)   (Recommenders ``map_at_k``)
- map_spark   = the same sum divided by |relevant|: Spark MLlib's ``meanAveragePrecision`` on the top-k list, which
  is what Recommenders' ``map`` computes and what its MovieLens benchmark table reports as "MAP".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

USER, ITEM, RANK = "user_id", "episode_id", "rank"


def _prepare(recommended: pd.DataFrame, relevant: pd.DataFrame, k: int) -> tuple[pd.DataFrame, pd.Series]:
    """(top-k rows of the common users with their position and hit flag, |relevant| per common user)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, not {k}")
    missing = {USER, ITEM, RANK} - set(recommended.columns)
    if missing:
        raise ValueError(f"recommended lacks columns {sorted(missing)}")
    missing = {USER, ITEM} - set(relevant.columns)
    if missing:
        raise ValueError(f"relevant lacks columns {sorted(missing)}")
    truth = relevant[[USER, ITEM]].drop_duplicates()
    recs = recommended[[USER, ITEM, RANK]]
    common = pd.Index(recs[USER].unique()).intersection(pd.Index(truth[USER].unique()))
    recs = recs[recs[USER].isin(common)]
    truth = truth[truth[USER].isin(common)]
    recs = recs.sort_values([USER, RANK], kind="mergesort").drop_duplicates([USER, ITEM], keep="first")
    recs = recs.assign(position=recs.groupby(USER, sort=False).cumcount() + 1)
    recs = recs[recs["position"] <= k]
    top = recs.merge(truth, on=[USER, ITEM], how="left", indicator=True)
    top["hit"] = top.pop("_merge").eq("both").to_numpy()
    actual = truth.groupby(USER).size().rename("actual")
    return top, actual


def _per_user_hits(top: pd.DataFrame, actual: pd.Series) -> pd.DataFrame:
    hits = top[top["hit"]]
    return hits.groupby(USER).size().rename("hits").reindex(actual.index, fill_value=0).to_frame().join(actual)


def precision_at_k(recommended: pd.DataFrame, relevant: pd.DataFrame, k: int) -> float:
    """Mean over common users of hits in the top k / k (Recommenders ``precision_at_k``)."""
    top, actual = _prepare(recommended, relevant, k)
    if actual.empty:
        return 0.0
    per_user = _per_user_hits(top, actual)
    return float((per_user["hits"] / k).sum() / len(actual))


def recall_at_k(recommended: pd.DataFrame, relevant: pd.DataFrame, k: int) -> float:
    """Mean over common users of hits in the top k / number of relevant episodes (Recommenders ``recall_at_k``)."""
    top, actual = _prepare(recommended, relevant, k)
    if actual.empty:
        return 0.0
    per_user = _per_user_hits(top, actual)
    return float((per_user["hits"] / per_user["actual"]).sum() / len(actual))


def ideal_dcg(actual: pd.Series, k: int) -> pd.Series:
    """Ideal DCG@k of each user with ``actual`` relevant episodes (all of them at the top)."""
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))  # ideal DCG for 1..k relevant items
    return pd.Series(discounts[np.minimum(actual.to_numpy(), k) - 1], index=actual.index)


def standard_error(values: pd.Series) -> float:
    """Standard error of the mean of ``values`` (sample std / sqrt(n)); NaN for fewer than two values."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def validation_sample(users, size: int) -> set:
    """Up to ``size`` of ``users``, always the same ones for the same ids (the smallest stable hashes): the α
    validation, the ALS gate and the day's metrics then judge a bounded sample at any number of listeners, and a
    re-run picks the same one. ``size`` 0: every user."""
    ids = pd.Series(pd.unique(pd.Series(list(users), dtype=object)), dtype=object)
    if size <= 0 or len(ids) <= size:
        return set(ids)
    hashes = pd.util.hash_pandas_object(ids, index=False).to_numpy()
    chosen = np.argpartition(hashes, size - 1)[:size]
    return set(ids.iloc[chosen])


def _ndcg_per_user(top: pd.DataFrame, actual: pd.Series, k: int) -> pd.Series:
    hits = top[top["hit"]]
    dcg = (1.0 / np.log2(hits["position"] + 1)).groupby(hits[USER]).sum().reindex(actual.index, fill_value=0.0)
    return dcg / ideal_dcg(actual, k)


def ndcg_per_user(recommended: pd.DataFrame, relevant: pd.DataFrame, k: int) -> pd.Series:
    """Binary-relevance nDCG@k of each common user (index user_id)."""
    top, actual = _prepare(recommended, relevant, k)
    return _ndcg_per_user(top, actual, k)


def ndcg_at_k(recommended: pd.DataFrame, relevant: pd.DataFrame, k: int) -> float:
    """Mean over common users of binary-relevance nDCG@k (Recommenders ``ndcg_at_k``, score_type="binary")."""
    per_user = ndcg_per_user(recommended, relevant, k)
    return float(per_user.mean()) if len(per_user) else 0.0


def paired_ndcg_change(new: pd.DataFrame, old: pd.DataFrame, relevant: pd.DataFrame, k: int) -> dict[str, float | int]:
    """nDCG@k of two lists on the same truth, over the users both lists and the truth have (a paired comparison).

    Returns new, old, change (= new − old, mean over users), change_stderr (std of the per-user changes /
    sqrt(users); NaN below two users) and users. Pairing removes what the users themselves contribute to the
    spread, so a change can be told from noise with far fewer users than comparing two independent means.
    """
    a, b = ndcg_per_user(new, relevant, k), ndcg_per_user(old, relevant, k)
    users = a.index.intersection(b.index)
    if users.empty:
        nan = float("nan")
        return {"new": nan, "old": nan, "change": nan, "change_stderr": nan, "users": 0}
    change = a[users] - b[users]
    return {
        "new": float(a[users].mean()),
        "old": float(b[users].mean()),
        "change": float(change.mean()),
        "change_stderr": standard_error(change),
        "users": int(len(users)),
    }


def _average_precision_sums(top: pd.DataFrame, actual: pd.Series) -> pd.Series:
    hits = top[top["hit"]].sort_values([USER, "position"], kind="mergesort")
    precision_at_hit = (hits.groupby(USER).cumcount() + 1) / hits["position"]
    return precision_at_hit.groupby(hits[USER]).sum().reindex(actual.index, fill_value=0.0)


def map_at_k(recommended: pd.DataFrame, relevant: pd.DataFrame, k: int) -> float:
    """Mean average precision normalised by min(|relevant|, k) (Recommenders ``map_at_k``)."""
    top, actual = _prepare(recommended, relevant, k)
    if actual.empty:
        return 0.0
    sums = _average_precision_sums(top, actual)
    return float((sums / np.minimum(actual, k)).sum() / len(actual))


def map_spark(recommended: pd.DataFrame, relevant: pd.DataFrame, k: int) -> float:
    """Mean average precision normalised by |relevant| (Recommenders ``map`` = Spark MLlib meanAveragePrecision).

    This is the "MAP" column of Recommenders' MovieLens benchmark table, so ``podrec bench movielens`` uses it.
    """
    top, actual = _prepare(recommended, relevant, k)
    if actual.empty:
        return 0.0
    sums = _average_precision_sums(top, actual)
    return float((sums / actual).sum() / len(actual))


def ranking_metrics(recommended: pd.DataFrame, relevant: pd.DataFrame, k: int) -> dict[str, float | int]:
    """precision@k, recall@k, ndcg@k, map@k (Recommenders ``map_at_k``) and the number of users evaluated.

    Keys carry k, e.g. ``{"precision@10": ..., "recall@10": ..., "ndcg@10": ..., "map@10": ..., "users": 123}``,
    plus ``ndcg@k_stderr``: the standard error of the mean nDCG over users (sample std / sqrt(users); NaN for
    fewer than two users), so a difference between two figures can be told from noise.
    """
    top, actual = _prepare(recommended, relevant, k)
    n_users = int(len(actual))
    if n_users == 0:
        return {
            f"precision@{k}": 0.0,
            f"recall@{k}": 0.0,
            f"ndcg@{k}": 0.0,
            f"map@{k}": 0.0,
            "users": 0,
            f"ndcg@{k}_stderr": float("nan"),
        }
    per_user = _per_user_hits(top, actual)
    ap_sums = _average_precision_sums(top, actual)
    ndcg = _ndcg_per_user(top, actual, k)
    return {
        f"precision@{k}": float((per_user["hits"] / k).sum() / n_users),
        f"recall@{k}": float((per_user["hits"] / per_user["actual"]).sum() / n_users),
        f"ndcg@{k}": float(ndcg.sum() / n_users),
        f"map@{k}": float((ap_sums / np.minimum(actual, k)).sum() / n_users),
        "users": n_users,
        f"ndcg@{k}_stderr": standard_error(ndcg),
    }


def top_k_from_scores(scored: pd.DataFrame, k: int, score_col: str = "score") -> pd.DataFrame:
    """Per user, the k highest-scoring rows with ``rank`` 1..k (ties broken by episode_id, deterministic)."""
    ordered = scored.sort_values([USER, score_col, ITEM], ascending=[True, False, True], kind="mergesort")
    ordered = ordered.assign(rank=ordered.groupby(USER, sort=False).cumcount() + 1)
    return ordered[ordered[RANK] <= k].reset_index(drop=True)
