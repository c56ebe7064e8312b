"""Online lists: a listener's ALS vector folded in from their interactions, and their list through the batch fusion.

**Fold-in.** With the served model's episode factors Y held fixed, the user vector that minimises implicit ALS's
objective for one user (Hu, Koren & Volinsky 2008) has a closed form:

    x_u = (YᵀY + Yᵀ(C_u − I)Y + λI)⁻¹ Yᵀ C_u p_u

where C_u holds the confidences ``core.als.confidence`` gives the user's positive pairs (summed engagement over
the ALS window) and p_u is 1 on those pairs (Spark ML's ALS scales λ by the user's number of positive pairs;
``ItemFactors.scale_regularization`` follows it). It is the solve ALS itself makes for a user in each sweep, so a
listener with no new events folds back to (nearly) the vector the batch trained, and one with new events gets the
vector that best explains all their interactions under the served model — not a moving average of item vectors.
YᵀY is computed once per model.

**The list.** ``live_lists`` builds the same inputs the batch's ``final_recommendations`` builds — ALS top-N
candidates (from the folded vectors, nothing the user touched in the window), the user's rows of
``user_episode_daily`` (batch rows plus the live ones) — and runs ``core.fusion.prepare_day`` and
``recommend``: one fusion code path for the batch and the service. Only the catalog's content index and the day's
popular list are shared, built once per model day (``ServedDay``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from podrec_assets.core import fusion
from podrec_assets.core.als import confidence
from podrec_assets.core.content_candidates import ContentIndex

USER, ITEM = "user_id", "episode_id"
DAILY_COLUMNS = ["user_id", "episode_id", "engagement", "completed", "date"]


@dataclass
class ItemFactors:
    """The served model's episode factors, their Gram matrix and the ALS settings the fold-in needs."""

    item_ids: np.ndarray
    factors: np.ndarray
    regularization: float
    confidence_alpha: float
    scale_regularization: bool = False  # Spark ML's ALS: λ times the user's number of positive pairs
    gram: np.ndarray = field(init=False)
    position: dict = field(init=False)

    def __post_init__(self) -> None:
        self.item_ids = np.asarray(self.item_ids, dtype=object)
        self.factors = np.asarray(self.factors, dtype=np.float32)
        if self.factors.ndim != 2 or len(self.factors) != len(self.item_ids):
            raise ValueError(f"factors must be (n_items, f) with n_items = {len(self.item_ids)}: {self.factors.shape}")
        y = self.factors.astype(np.float64)
        self.gram = y.T @ y
        self.position = {eid: i for i, eid in enumerate(self.item_ids)}

    @property
    def rank(self) -> int:
        return self.factors.shape[1]


def fold_in(items: ItemFactors, episode_ids, engagement) -> np.ndarray:
    """The exact least-squares user vector for summed engagement per episode (see the module docstring).

    Pairs with engagement <= 0 and episodes the model has no factor for carry no preference; a user with no positive
    known pair gets the zero vector (an ALS score of 0 for every episode).
    """
    idx, values = [], []
    for eid, value in zip(episode_ids, engagement):
        i = items.position.get(eid)
        if i is not None and value > 0:
            idx.append(i)
            values.append(float(value))
    if not idx:
        return np.zeros(items.rank, dtype=np.float32)
    y = items.factors[idx].astype(np.float64)
    c = confidence(np.asarray(values), items.confidence_alpha)
    reg = items.regularization * (len(idx) if items.scale_regularization else 1)
    a = items.gram + (y.T * (c - 1.0)) @ y + reg * np.eye(items.rank)
    return np.linalg.solve(a, y.T @ c).astype(np.float32)


def als_candidates(items: ItemFactors, vectors: dict, seen: dict, n: int, block_users: int = 512) -> pd.DataFrame:
    """Top ``n`` episodes per user by x_u · y_i, none the user touched (``seen``: user -> set of episode ids).

    Returns user_id, episode_id, rank, score like ``als_top_n``; ties by episode position in the model. Scores are
    computed for ``block_users`` users at a time (memory ~ 4 bytes x block x catalog).
    """
    users = list(vectors)
    if not users or not len(items.item_ids):
        return pd.DataFrame({USER: [], ITEM: [], "rank": [], "score": []}).astype({"rank": "int64", "score": float})
    parts = []
    for b0 in range(0, len(users), block_users):
        block = users[b0 : b0 + block_users]
        scores = np.stack([vectors[u] for u in block]).astype(np.float32) @ items.factors.T
        for row, user in enumerate(block):
            blocked = [items.position[e] for e in seen.get(user, ()) if e in items.position]
            scores[row, blocked] = -np.inf
        take = min(n, scores.shape[1])
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)  # score descending, then catalog position
        top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
        keep = np.isfinite(top_scores)
        rows = np.nonzero(keep)
        parts.append(
            pd.DataFrame(
                {
                    USER: np.asarray(block, dtype=object)[rows[0]],
                    ITEM: items.item_ids[top[keep]],
                    "rank": (rows[1] + 1).astype(np.int64),
                    "score": top_scores[keep].astype(float),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@dataclass
class ServedDay:
    """What every live list of one model day shares: the model and the day's settings."""

    day: date
    model_version: str
    items: ItemFactors
    index: ContentIndex
    published: pd.Series  # published_at (UTC) by episode_id
    popular: pd.DataFrame  # episode_id, popularity (the batch's popular list of the day)
    curve: fusion.AlphaCurve
    top_n: int
    als_window_days: int
    history_days: int
    min_engagement: float
    popularity_half_life_days: float
    content_candidates: int
    content_neighbours: int = 0


def live_lists(served: ServedDay, daily: pd.DataFrame, day: date, user_vectors: dict | None = None) -> pd.DataFrame:
    """The fused top-N of every user in ``daily`` for ``day``: their rows of user_episode_daily (batch and live).

    ALS candidates come from each user's vector folded in over the ALS window ending ``day`` (``user_vectors``
    overrides that, e.g. with the batch's own factors); then ``core.fusion`` as in the batch.
    Returns the rows of ``final_recommendations`` (without model_version).
    """
    if daily.empty:
        return fusion.empty_recommendations()
    daily = daily[DAILY_COLUMNS].assign(date=pd.to_datetime(daily["date"]).dt.date)
    daily = daily[daily["date"] <= day]
    start = day - timedelta(days=served.als_window_days - 1)
    window = daily[daily["date"] >= start]
    summed = window.groupby([USER, ITEM], sort=False)["engagement"].sum().reset_index()
    seen = window.groupby(USER)[ITEM].agg(set).to_dict()
    users = sorted(set(daily[USER]))
    if user_vectors is None:
        by_user = {u: g for u, g in summed.groupby(USER, sort=False)}
        user_vectors = {
            u: fold_in(served.items, by_user[u][ITEM], by_user[u]["engagement"])
            if u in by_user
            else np.zeros(served.items.rank, np.float32)
            for u in users
        }
    wanted = set(users)
    vectors = {u: v for u, v in user_vectors.items() if u in wanted and np.any(v)}
    als = als_candidates(served.items, vectors, seen, served.top_n)
    prepared = fusion.prepare_day(
        fusion.FusionInputs(
            day=day,
            als=als,
            daily=daily,
            vectors=pd.DataFrame({ITEM: [], "vector": []}),
            published=served.published,
            history_days=served.history_days,
            min_engagement=served.min_engagement,
            popularity_half_life_days=served.popularity_half_life_days,
            content_candidates=served.content_candidates,
            content_neighbours=served.content_neighbours,
            index=served.index,
            popular=served.popular,
        )
    )
    return fusion.recommend(prepared, served.curve, served.top_n)


def state_rows(daily: pd.DataFrame, day: date, keep_days: int) -> pd.DataFrame:
    """The rows of user_episode_daily a user's live list can depend on: the last ``keep_days`` days to ``day``, and
    every completed pair before (a completed episode is never recommended again). Older rows cannot matter."""
    if daily.empty:
        return pd.DataFrame({c: [] for c in DAILY_COLUMNS})
    daily = daily[DAILY_COLUMNS].assign(date=pd.to_datetime(daily["date"]).dt.date)
    recent = daily["date"] > day - timedelta(days=keep_days)
    completed = daily["completed"].fillna(False).astype(bool)
    return daily[recent | completed].reset_index(drop=True)
