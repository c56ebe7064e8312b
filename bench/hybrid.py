"""Recommendation quality per demo day: hybrid vs ALS-only vs content-only vs popularity, side by side.

Reads `recommendation_metrics` (lists made for D-1 judged against positive engagement on D) from a demo home,
or first runs the demo (`podrec demo --no-serve`, default sizes: 7 days, 2,000 users) in a temporary home on
free ports. Prints per day nDCG@10 of each model with its standard error, the ratio hybrid / the better of
ALS and content, nDCG@10 on the episodes published on D-1 (content vs ALS), and the α curve each day's
hybrid used; then how many days the hybrid matched or beat the better single model.

    .venv/bin/python bench/hybrid.py                        # runs the demo first (~5 min on 2 cores)
    .venv/bin/python bench/hybrid.py --home .podrec         # an existing demo home (after `make demo`)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_demo(home: Path) -> None:
    from podrec_assets.local.processes import free_port

    env = {
        **os.environ,
        "PODREC_HOME": str(home),
        "PODREC_KAFKA_PORT": str(free_port()),
        "PODREC_MONGO_PORT": str(free_port()),
        "PODREC_REDIS_PORT": str(free_port()),
    }
    print(f"running the demo in {home} (podrec demo --no-serve) ...", flush=True)
    log = home / "demo.log"
    with open(log, "w") as out:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("podrec")), "demo", "--no-serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        raise SystemExit(f"the demo failed (exit {done.returncode}); see {log}")


@contextmanager
def demo_home(existing: str | None, prefix: str, keep: bool = False) -> Iterator[Path]:
    """``existing`` as is, or a temporary home where the demo has just run (removed afterwards unless ``keep``)."""
    if existing:
        yield Path(existing)
        return
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        run_demo(home)
        yield home
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def quality_table(home: Path, k: int = 10):
    import pandas as pd

    from podrec_assets.resources.lake import LakeResource
    from podrec_assets.settings import load_settings

    lake = LakeResource(root=load_settings({"PODREC_HOME": str(home)}).lake_root)
    if not lake.exists("recommendation_metrics"):
        raise SystemExit(f"no recommendation_metrics under {lake.root}: run the demo first (or drop --home)")
    metrics = lake.read_all("recommendation_metrics").to_pandas()
    metrics = metrics[metrics["value"].notna()]
    wide = metrics.pivot_table(index="date", columns=["metric", "model"], values="value")
    recs = lake.read_all("final_recommendations", columns=["date", "model_version"]).to_pandas()
    curves = {
        pd.Timestamp(d).date(): re.sub(r".*\|", "", v).rstrip("]")
        for d, v in recs.drop_duplicates("date").set_index("date")["model_version"].items()
    }
    rows = []
    for day, row in wide.iterrows():

        def value(metric: str, model: str, row=row) -> float:
            return float(row.get((metric, model), float("nan")))

        als, content, hybrid = (value(f"ndcg@{k}", m) for m in ("als", "content", "hybrid"))
        rows.append(
            {
                "day": pd.Timestamp(day).date(),
                "popularity": value(f"ndcg@{k}", "popularity"),
                "als": als,
                "content": content,
                "hybrid": hybrid,
                "stderr": value(f"ndcg@{k}_stderr", "hybrid"),
                "ratio": hybrid / max(als, content),
                "new_als": value(f"ndcg@{k}/new", "als"),
                "new_content": value(f"ndcg@{k}/new", "content"),
                "curve": curves.get(pd.Timestamp(day).date() - pd.Timedelta(days=1), "?"),
            }
        )
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="an existing PODREC_HOME with materialized demo days (default: run the demo)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary demo home")
    args = parser.parse_args()

    with demo_home(args.home, "podrec-bench-hybrid-", keep=args.keep) as home:
        table = quality_table(home)
    print(
        "\nnDCG@10 of the lists made for D-1, judged on day D "
        f"({'demo in a temporary home' if not args.home else home})"
    )
    print(
        f"{'day':<12}{'popularity':>11}{'ALS':>8}{'content':>9}{'hybrid':>8}{'±se':>7}{'hyb/best':>9}"
        f"{'new: ALS':>10}{'content':>9}  α curve of D-1"
    )
    for r in table.itertuples():
        print(
            f"{r.day!s:<12}{r.popularity:>11.4f}{r.als:>8.4f}{r.content:>9.4f}{r.hybrid:>8.4f}{r.stderr:>7.4f}"
            f"{r.ratio:>9.3f}{r.new_als:>10.4f}{r.new_content:>9.4f}  {r.curve}"
        )
    wins = int((table["ratio"] >= 1.0).sum())
    new_wins = int((table["new_content"] > table["new_als"]).sum())
    within = int((table["hybrid"] >= table[["als", "content"]].max(axis=1) - table["stderr"]).sum())
    print(
        f"\nhybrid >= the better of ALS and content on {wins} of {len(table)} days "
        f"({within} within one standard error); content > ALS on new episodes on {new_wins} of {len(table)} days"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
