"""`podrec demo --no-serve` end to end on a small demo: every asset of every day, in a fresh home."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from podrec_assets.local.services import LocalStack
from podrec_assets.resources import build_resources
from podrec_assets.settings import load_settings
from podrec_assets_tests.conftest import make_env

TABLES = [
    "episodes",
    "transcripts",
    "user_events",
    "user_episode_daily",
    "listener_history",
    "episode_vectors",
    "similarities",
    "als_top_n",
    "final_recommendations",
    "recommendation_metrics",
]


def test_demo_no_serve_materializes_every_asset(tmp_path):
    # the blocking "ALS nDCG not worse" check runs with its defaults: it compares yesterday's model and today's
    # on the same held-out day, so small data's day-to-day swings do not stop the demo
    env = make_env(tmp_path / "home", PODREC_DEMO_SPEECH_SECONDS="20")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PODREC_")} | env
    settings = load_settings(env)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "podrec_assets.cli",
                "demo",
                "--no-serve",
                "--keep-services",
                "--days",
                "3",
                "--episodes-per-day",
                "3",
                "--users",
                "80",
            ],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=1200,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        today = datetime.now(timezone.utc).date()
        days = {today - timedelta(days=n) for n in (1, 2, 3)}
        lake = build_resources(settings)["lake"]
        for table in TABLES:
            if table == "recommendation_metrics":
                expected = days - {min(days)}  # the first day has no previous lists to judge
            else:
                expected = days
            found = {d for d in lake.read_all(table, columns=["date"]).column("date").to_pylist()}
            assert expected <= found, f"{table}: days {sorted(expected - found)} missing"
        mongo = build_resources(settings)["mongo"]
        newest = max(days).isoformat()
        assert mongo.db()["final_recommendations"].count_documents({"date": newest}) > 0
        assert mongo.db()["episodes"].count_documents({}) == 9
    finally:
        LocalStack(settings).stop()
