"""The ``implicit`` backend (engine=local): the implicit library's CPU conjugate-gradient ALS, in process.

The library takes the confidence matrix directly (its solver treats a stored value as the full confidence), so it is
fitted with its own alpha at 1 and ``Interactions.confidence_matrix`` supplies c.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from podrec_assets.core.als_result import AlsResult, top_n_frame

if TYPE_CHECKING:
    from podrec_assets.core.als import AlsParams, Interactions


def fit_implicit(data: Interactions, params: AlsParams, n: int, only_users=None) -> AlsResult:
    """Fit, then list the top ``n`` unseen items of every user (of ``only_users`` when given)."""
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
        users, seen = np.arange(data.n_users), data.seen
        if only_users is not None:
            users = users[pd.Index(data.user_ids).isin(list(only_users))]
            seen = data.seen[users]  # (every user's rows as they are: a fancy-indexed copy of them all is slow)
        ids, scores = model.recommend(users, seen, N=n, filter_already_liked_items=True)
        recommend_seconds = time.perf_counter() - t0
    ids = np.asarray(ids).reshape(len(users), -1)
    scores = np.asarray(scores).reshape(len(users), -1)
    top_n = top_n_frame(data.user_ids, data.item_ids, users, ids, scores, seen=data.seen)
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
