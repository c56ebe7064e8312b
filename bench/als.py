"""ALS fit + top-N time and peak memory, implicit vs Spark ML, on a synthetic interaction set.

    .venv/bin/python bench/als.py                       # 100k users x 10k episodes x 2M interactions
    .venv/bin/python bench/als.py --scale 0.1           # 10k x 1k x 200k, for a quick look
    .venv/bin/python bench/als.py --backends implicit

Both backends get the same Interactions (same confidence, same params) through core.als.fit_recommend, so the
ratio Spark/implicit is the cost of the engine, not of a different model. Peak memory is sampled (every 50 ms)
as resident memory above the starting point: the Python process for implicit; the Python process plus the Spark
JVM for Spark (Spark runs in-process as local[N] through the project's spark resource).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from podrec_assets.core.als import AlsParams, Interactions, fit_recommend  # noqa: E402


def synthetic(users: int, episodes: int, interactions: int, seed: int) -> pd.DataFrame:
    """Users in 50 taste clusters; 70% of listens inside the cluster's episodes, 30% anywhere; Zipf popularity."""
    rng = np.random.default_rng(seed)
    clusters = 50
    activity = np.minimum(rng.lognormal(0.0, 1.0, users), 50.0)  # heavy and light listeners
    user_of = rng.choice(users, size=interactions, p=activity / activity.sum())
    cluster_of_user = rng.integers(0, clusters, users)
    per_cluster = max(episodes // clusters, 1)
    in_cluster = rng.random(interactions) < 0.7
    local = cluster_of_user[user_of] * per_cluster + (rng.zipf(1.2, interactions) % per_cluster)
    anywhere = rng.zipf(1.1, interactions) % episodes
    episode_of = np.where(in_cluster, local, anywhere) % episodes
    engagement = rng.choice([0.2, 0.5, 1.0, 2.0, 3.0, 5.0], interactions, p=[0.1, 0.15, 0.3, 0.2, 0.15, 0.1])
    return pd.DataFrame(
        {"user_id": user_of.astype(np.int64), "episode_id": episode_of.astype(np.int64), "engagement": engagement}
    )


class PeakMemory:
    """Peak RSS (bytes) of this process and its children above the level when started."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.proc = psutil.Process(os.getpid())
        self.peak = 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def __enter__(self):
        self.base = self._rss()
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def above_base_mb(self) -> float:
        return (self.peak - self.base) / 2**20

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the three sizes (e.g. 0.1 for a quick run)")
    parser.add_argument("--backends", default="implicit,spark", help="comma-separated: implicit, spark")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="implicit solver threads")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    users, episodes, n = (max(int(v * args.scale), 10) for v in (args.users, args.episodes, args.interactions))
    frame = synthetic(users, episodes, n, args.seed)
    t0 = time.perf_counter()
    data = Interactions.from_frame(frame)
    index_seconds = time.perf_counter() - t0
    params = AlsParams(
        factors=args.factors,
        regularization=1.0,
        iterations=args.iterations,
        alpha=5.0,
        seed=args.seed,
        threads=args.threads,
    )
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    log(
        f"synthetic: {n:,} interactions -> {data.n_users:,} users x {data.n_items:,} episodes, "
        f"{data.nnz:,} distinct pairs (indexed in {index_seconds:.1f}s); factors {args.factors}, "
        f"{args.iterations} iterations, top-{args.top_n}"
    )

    results = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        spark = None
        if backend == "spark":
            from podrec_assets.resources.spark import spark_resource
            from podrec_assets.settings import get_settings

            t0 = time.perf_counter()
            spark = spark_resource(get_settings()).spark_session
            spark.sparkContext.setLogLevel("ERROR")
            log(
                f"spark session ({get_settings().spark_master}, driver {get_settings().spark_driver_memory}) "
                f"started in {time.perf_counter() - t0:.1f}s (not counted)"
            )
        with PeakMemory() as mem:
            result = fit_recommend(data, params, args.top_n, backend=backend, spark=spark)
        results[backend] = {
            "fit_seconds": result.fit_seconds,
            "top_n_seconds": result.recommend_seconds,
            "total_seconds": result.fit_seconds + result.recommend_seconds,
            "peak_rss_mb": mem.peak_mb,
            "peak_above_start_mb": mem.above_base_mb,
            "rows": len(result.top_n),
        }
        log(
            f"{backend}: fit {result.fit_seconds:.1f}s, top-N {result.recommend_seconds:.1f}s, "
            f"peak +{mem.above_base_mb:.0f} MiB"
        )
        if spark is not None:
            spark.stop()

    if args.json:
        print(json.dumps({"users": data.n_users, "episodes": data.n_items, "pairs": data.nnz, "results": results}))
        return 0
    print(f"\n{'backend':<10}{'fit s':>10}{'top-N s':>10}{'total s':>10}{'peak RSS MiB':>14}{'+ over start':>14}")
    for backend, r in results.items():
        print(
            f"{backend:<10}{r['fit_seconds']:>10.1f}{r['top_n_seconds']:>10.1f}{r['total_seconds']:>10.1f}"
            f"{r['peak_rss_mb']:>14.0f}{r['peak_above_start_mb']:>14.0f}"
        )
    if {"implicit", "spark"} <= results.keys():
        i, s = results["implicit"], results["spark"]
        print(
            f"{'ratio':<10}{s['fit_seconds'] / i['fit_seconds']:>10.1f}{s['top_n_seconds'] / i['top_n_seconds']:>10.1f}"
            f"{s['total_seconds'] / i['total_seconds']:>10.1f}   (Spark / implicit)"
        )
    print(f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
