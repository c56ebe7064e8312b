"""What an ALS fit hands back, and the top-N list builders that both backends share.

Kept below ``als`` and the backend modules so each backend can build the same ``AlsResult`` without importing the
module that dispatches to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from podrec_assets.core.arrays import position_in_runs

if TYPE_CHECKING:
    from podrec_assets.core.als import AlsParams


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


def top_n_frame(
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
    # one row per (user, item), the first; ranks re-counted 1..k after the padding is gone (a user's rows are
    # consecutive, so both are integer work, not a grouping of id strings)
    user_idx, flat_items, flat_scores = user_idx[keep], flat_items[keep], flat_scores[keep]
    first = ~pd.Series(user_idx.astype(np.int64) * max(len(item_ids), 1) + flat_items).duplicated().to_numpy()
    user_idx, flat_items, flat_scores = user_idx[first], flat_items[first], flat_scores[first]
    rank = position_in_runs(user_idx) + 1
    out = pd.DataFrame(
        {
            "user_id": np.asarray(user_ids)[user_idx],
            "episode_id": np.asarray(item_ids)[flat_items],
            "rank": rank.astype(np.int32),
            "score": flat_scores,
        }
    )
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
