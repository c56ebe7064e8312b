"""What reading the catalog "from the first partition to D" costs as history grows.

A day's fusion reads every day of `episode_vectors` through D (a listener's history can be any episode ever
published). This writes the same ``--episodes`` vectors into a Delta table spread over each of ``--days`` day
partitions (one commit per day, as the daily asset does) and times reading them all back as the day's lists do
(``LakeResource.read_days`` + the frame DayData builds), the best of ``--repeat`` reads. The catalog's size, not
the number of days, sets the cost, which is why the catalog stays a windowed read rather than a cumulative state
asset that would store the whole catalog again every day.

    .venv/bin/python bench/catalog_read.py --episodes 20000 --days 1 7 30 365
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_catalog(root: str, vectors, days: int, start: date) -> None:
    import numpy as np
    import pyarrow as pa

    from podrec_assets.resources.lake import LakeResource

    lake = LakeResource(root=root)
    for offset, positions in enumerate(np.array_split(np.arange(len(vectors)), days)):
        table = pa.table(
            {
                "episode_id": [f"ep-{n:06d}" for n in positions],
                "vector": pa.array(list(vectors[positions]), type=pa.list_(pa.float32())),
                "model": ["bench"] * len(positions),
            }
        )
        lake.write_partition("episode_vectors", start + timedelta(days=offset), table, "bench-catalog")


def read_seconds(root: str, start: date, days: int, repeat: int) -> tuple[float, int]:
    from podrec_assets.core.content_candidates import ContentIndex
    from podrec_assets.defs.hybrid.day_data import read_frame
    from podrec_assets.resources.lake import LakeResource

    lake, best, rows = LakeResource(root=root), float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        frame = read_frame(lake, "episode_vectors", start, start + timedelta(days=days - 1), ["episode_id", "vector"])
        rows = len(ContentIndex.from_frame(frame))
        best = min(best, time.perf_counter() - started)
    return best, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20_000, help="vectors in the catalog")
    parser.add_argument("--dim", type=int, default=384, help="vector width (the default model's)")
    parser.add_argument("--days", type=int, nargs="+", default=[1, 7, 30, 365], help="day partitions to spread over")
    parser.add_argument("--repeat", type=int, default=3, help="reads per layout; the best one counts")
    args = parser.parse_args()

    import numpy as np

    vectors = np.random.default_rng(0).standard_normal((args.episodes, args.dim)).astype(np.float32)
    start, results = date(2026, 1, 1), []
    for days in args.days:
        root = tempfile.mkdtemp(prefix="podrec-bench-catalog-")
        try:
            write_catalog(root, vectors, days, start)
            seconds, rows = read_seconds(root, start, days, args.repeat)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        results.append((days, seconds))
        print(f"{days:>5} day partitions: {rows:,} vectors read and indexed in {seconds:.3f} s", flush=True)
    base_days, base = results[0]
    for days, seconds in results[1:]:
        print(f"cost({days} days) / cost({base_days} days) = {seconds / base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
