"""Content candidates from the episode neighbours vs the exact search of the whole catalog: quality and time.

On a home with materialized days (a demo's, one kept by ``bench/scale.py --keep``; by default the demo is run
first in a temporary home, as bench/hybrid.py does), for each day D that has a next day: the
day's lists are made both ways (everything else as the daily graph makes them: same ALS top-N, same history, the
settings' alpha curve) and judged against positive engagement on D+1. Printed per way: nDCG@10 (paired with the exact
way, per user, with its standard error), the share of the exact way's content candidates it finds, and the seconds
its candidate search took; per K of ``--neighbours``.

    .venv/bin/python bench/content_candidates.py                  # runs the demo first (~5 min on 2 cores)
    .venv/bin/python bench/content_candidates.py --home .podrec   # an existing demo home
    .venv/bin/python bench/content_candidates.py --home /tmp/podrec-bench-scale-30000-xyz --neighbours 25 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="a PODREC_HOME with materialized days (default: run the demo)")
    parser.add_argument("--neighbours", type=int, nargs="+", default=[10, 30], help="K values to compare")
    parser.add_argument("--days", type=int, default=3, help="judge at most this many of the newest days")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    args = parser.parse_args()
    from hybrid import demo_home  # bench/hybrid.py, beside this file

    with demo_home(args.home, "podrec-bench-candidates-") as home:
        return compare(home, args)


def compare(home: Path, args: argparse.Namespace) -> int:
    os.environ["PODREC_HOME"] = str(home)
    from podrec_assets.core import fusion
    from podrec_assets.core.metrics import paired_ndcg_change
    from podrec_assets.defs.hybrid.day_data import DayData
    from podrec_assets.resources.lake import LakeResource
    from podrec_assets.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    lake = LakeResource(root=settings.lake_root)
    days = sorted(lake.days("final_recommendations"))
    if len(days) < 2:
        print(f"{home}: fewer than two days of final_recommendations; materialize more days first")
        return 2
    curve = fusion.AlphaCurve(settings.fusion_alpha, settings.fusion_alpha_new, settings.fusion_alpha_ramp_days)
    k = settings.metrics_k
    figures = []
    for day in days[-args.days - 1 : -1]:
        truth_day = days[days.index(day) + 1]
        data = DayData(lake, settings, truth_day)
        inputs = data.inputs(day)
        timed = {}
        for neighbours in [0, *args.neighbours]:
            started = time.perf_counter()
            prepared = fusion.prepare_day(replace(inputs, content_neighbours=neighbours))
            seconds = time.perf_counter() - started
            timed[neighbours] = (prepared, fusion.recommend(prepared, curve, settings.top_n), seconds)
        exact, exact_recs, exact_seconds = timed[0]
        relevant = data.relevant(exact, truth_day)
        exact_content = exact.normalised[exact.normalised["in_content"]][["user_id", "episode_id"]]
        print(
            f"{day} lists judged on {truth_day}: {len(exact.users):,} listeners, {len(exact.index):,} episodes, "
            f"{relevant['user_id'].nunique():,} listeners with something relevant",
            flush=True,
        )
        print(f"  {'way':<14}{'nDCG@' + str(k):>10}{'vs exact':>22}{'finds':>9}{'prepare s':>11}{'ratio':>8}")
        print(
            f"  {'exact':<14}{paired_ndcg_change(exact_recs, exact_recs, relevant, k)['new']:>10.4f}"
            f"{'':>22}{'100%':>9}{exact_seconds:>11.2f}{1.0:>8.2f}"
        )
        for neighbours in args.neighbours:
            prepared, recs, seconds = timed[neighbours]
            paired = paired_ndcg_change(recs, exact_recs, relevant, k)
            found = prepared.normalised[prepared.normalised["in_content"]][["user_id", "episode_id"]]
            share = len(found.merge(exact_content)) / len(exact_content) if len(exact_content) else 1.0
            within = abs(paired["change"]) <= paired["change_stderr"] if paired["users"] > 1 else True
            print(
                f"  {'K=' + str(neighbours):<14}{paired['new']:>10.4f}"
                f"{paired['change']:>+12.4f} ± {paired['change_stderr']:.4f}{share:>9.0%}{seconds:>11.2f}"
                f"{seconds / exact_seconds if exact_seconds else float('nan'):>8.2f}"
                f"  {'within one standard error' if within else 'OUTSIDE one standard error'}",
                flush=True,
            )
            figures.append(
                {
                    "day": day.isoformat(),
                    "neighbours": neighbours,
                    "ndcg": paired["new"],
                    "exact_ndcg": paired["old"],
                    "change": paired["change"],
                    "change_stderr": paired["change_stderr"],
                    "users": paired["users"],
                    "exact_candidates_found": share,
                    "seconds": seconds,
                    "exact_seconds": exact_seconds,
                }
            )
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0 if figures else 2


if __name__ == "__main__":
    raise SystemExit(main())
