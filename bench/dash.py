"""Callback latency of every Dash page at scale (default: 50k users, 1.5M recommendation rows).

Writes synthetic tables in the project's schemas into a temp Delta lake and a real MongoDB (SecantusDB,
started here and stopped by PID), builds the app, and times each callback through Dash's own HTTP
endpoint (``POST /_dash-update-component`` via Flask's test client: routing, serialisation and the data
layer, no browser). After the start-up warm-up that `podrec dash` runs in the background, prints p50/p95/max
per callback, the first call of each, and p95 as a ratio of the 300 ms target; then the recommendations page
with MongoDB down (Delta fallback, measured without warm-up: its cold column includes loading the tables).

    .venv/bin/python bench/dash.py                 # 50k users x 10 recs x 3 days = 1.5M rows
    .venv/bin/python bench/dash.py --users 5000    # quicker
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

# this file is named dash.py: keep its own folder off the path so `import dash` finds the library
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from dash_app import data  # noqa: E402
from dash_app.app import create_app  # noqa: E402
from dash_app.engagement import WINDOWS  # noqa: E402
from dash_app.sample_data import WORDS, SampleSpec, user_ids, write_sample  # noqa: E402
from podrec_assets.local.processes import free_port  # noqa: E402
from podrec_assets.local.services import LocalStack  # noqa: E402
from podrec_assets.resources.lake import LakeResource  # noqa: E402
from podrec_assets.resources.mongo import MongoResource  # noqa: E402
from podrec_assets.settings import load_settings  # noqa: E402

TARGET_MS = 300.0


def outputs_of(key: str) -> list[dict]:
    parts = key.strip(".").split("...") if key.startswith("..") else [key]
    return [{"id": p.rsplit(".", 1)[0], "property": p.rsplit(".", 1)[1]} for p in parts]


class CallbackClient:
    """Calls a Dash callback the way the browser does, through the app's HTTP endpoint."""

    def __init__(self, app):
        self.client = app.server.test_client()
        self.keys = {}
        for key in app.callback_map:
            for out in outputs_of(key):
                self.keys[f"{out['id']}.{out['property']}"] = key
        self.client.get("/")  # lets Dash finish its setup before the first callback

    def call(
        self, output: str, inputs: list[tuple[str, str, object]], state: list[tuple[str, str, object]] = ()
    ) -> float:
        key = self.keys[output]
        body = {
            "output": key,
            "outputs": outputs_of(key) if key.startswith("..") else outputs_of(key)[0],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
            "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
        }
        start = time.perf_counter()
        response = self.client.post("/_dash-update-component", data=json.dumps(body), content_type="application/json")
        elapsed = (time.perf_counter() - start) * 1000
        if response.status_code not in (200, 204):
            raise RuntimeError(f"{output}: HTTP {response.status_code}: {response.get_data(as_text=True)[:500]}")
        return elapsed


def scenarios(spec: SampleSpec, rng: random.Random, mongo_users: int):
    users = user_ids(mongo_users)
    n_episodes = spec.episodes_per_day * len(spec.days)
    route = ("page-content.children", "url")
    return {
        "recommendations: open user": lambda: (
            route[0],
            [("url", "pathname", "/"), ("url", "search", f"?user={rng.choice(users)}")],
            [],
        ),
        "recommendations: user search": lambda: (
            "user-matches.children",
            [("user-search", "value", rng.choice(users)[: rng.randint(2, 5)])],
            [],
        ),
        "episodes: open episode": lambda: (
            route[0],
            [("url", "pathname", "/episodes"), ("url", "search", f"?episode=ep{rng.randrange(n_episodes):05d}")],
            [],
        ),
        "episodes: title search": lambda: (
            "episode-results.children",
            [("episode-search", "value", rng.choice(WORDS))],
            [("url", "search", "")],
        ),
        "episodes: transcript filter": lambda: (
            "transcript-segments.children",
            [("transcript-filter", "value", rng.choice(WORDS))],
            [("transcript-episode", "data", f"ep{rng.randrange(n_episodes):05d}")],
        ),
        "engagement: page": lambda: (route[0], [("url", "pathname", "/engagement"), ("url", "search", "")], []),
        "engagement: change window": lambda: (
            "engagement-body.children",
            [("window", "value", rng.choice(list(WINDOWS)))],
            [],
        ),
        "model quality: page": lambda: (route[0], [("url", "pathname", "/quality"), ("url", "search", "")], []),
        "model quality: change metric": lambda: (
            "metric-view.children",
            [("metric", "value", rng.choice(["ndcg@10", "recall@10", "map@10", "coverage"]))],
            [],
        ),
        "pipeline health: page": lambda: (route[0], [("url", "pathname", "/health"), ("url", "search", "")], []),
    }


def measure(client: CallbackClient, cases: dict, requests: int) -> list[dict]:
    rows = []
    for name, make in cases.items():
        output, inputs, state = make()
        cold = client.call(output, inputs, state)
        times = [client.call(*make()) for _ in range(requests)]
        times.sort()
        rows.append(
            {
                "callback": name,
                "n": len(times),
                "cold": cold,
                "p50": statistics.median(times),
                "p95": times[max(0, int(round(0.95 * len(times))) - 1)],
                "max": times[-1],
            }
        )
    return rows


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'callback':<34}{'n':>5}{'cold ms':>10}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'p95/300ms':>11}")
    for r in rows:
        print(
            f"{r['callback']:<34}{r['n']:>5}{r['cold']:>10.1f}{r['p50']:>9.1f}{r['p95']:>9.1f}{r['max']:>9.1f}"
            f"{r['p95'] / TARGET_MS:>10.2f}x"
        )
    worst = max(rows, key=lambda r: r["p95"])
    print(
        f"worst p95: {worst['p95']:.1f} ms ({worst['callback']}); target p95 < {TARGET_MS:.0f} ms: "
        f"{'met' if worst['p95'] < TARGET_MS else 'NOT met'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50_000, help="users (each gets a list every day)")
    parser.add_argument("--days", type=int, default=3, help="day partitions")
    parser.add_argument("--recs-per-user", type=int, default=10, help="recommendations per user and day")
    parser.add_argument("--episodes-per-day", type=int, default=200, help="episodes published per day")
    parser.add_argument("--events-per-user-day", type=int, default=3, help="listening events per user and day")
    parser.add_argument(
        "--mongo-users",
        type=int,
        default=2000,
        help="users whose lists are also written to MongoDB (SecantusDB inserts ~2k docs/s here; "
        "lookups are indexed, so latency does not depend on this)",
    )
    parser.add_argument("--requests", type=int, default=100, help="timed calls per callback")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    days = [date(2026, 2, 1) + timedelta(days=i) for i in range(args.days)]
    spec = SampleSpec(
        days=days,
        users=args.users,
        episodes_per_day=args.episodes_per_day,
        recs_per_user=args.recs_per_user,
        events_per_user_day=args.events_per_user_day,
        mongo_users=args.mongo_users,
        seed=args.seed,
    )
    home = Path(tempfile.mkdtemp(prefix="podrec-bench-dash-"))
    env = {
        "PODREC_HOME": str(home),
        "PODREC_MONGO_PORT": str(free_port()),
        "PODREC_REDIS_PORT": str(free_port()),
        "PODREC_KAFKA_PORT": str(free_port()),
        "PODREC_DAGSTER_PORT": str(free_port()),
        "PODREC_MONGO_DB": "podrec_bench",
    }
    settings = load_settings(env)
    stack = LocalStack(settings)
    stack.start_mongo()
    try:
        t0 = time.perf_counter()
        counts = write_sample(
            LakeResource(root=settings.lake_root),
            MongoResource(uri=settings.mongo_url, database=settings.mongo_db),
            spec,
        )
        print(
            f"data: {args.users:,} users, {counts['final_recommendations']:,} final_recommendations rows in Delta "
            f"({counts['mongo_final_recommendations']:,} in MongoDB), {counts['user_episode_daily']:,} "
            "user_episode_daily, "
            f"{counts['user_events']:,} user_events, {counts['episodes']:,} episodes; written in "
            f"{time.perf_counter() - t0:.0f} s"
        )
        rng = random.Random(args.seed)

        app = create_app(settings)
        t0 = time.perf_counter()
        data.current().warm_up()  # what `podrec dash` does in the background at start-up
        print(
            "warm-up (copy the Delta tables into DuckDB, indexes, engagement windows): "
            f"{time.perf_counter() - t0:.1f} s"
        )
        rows = measure(CallbackClient(app), scenarios(spec, rng, args.mongo_users), args.requests)
        print_rows("MongoDB up (recommendations from the serving copy)", rows)
        data.current().close()

        down = load_settings({**env, "PODREC_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"})
        app = create_app(down)
        all_users = user_ids(args.users)
        fallback = {
            "recommendations: open user (Delta)": lambda: (
                "page-content.children",
                [("url", "pathname", "/"), ("url", "search", f"?user={rng.choice(all_users)}")],
                [],
            )
        }
        rows_down = measure(CallbackClient(app), fallback, args.requests)
        print_rows("MongoDB down (banner; recommendations read from Delta, 1 ping per 5 s)", rows_down)
        data.current().close()
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
