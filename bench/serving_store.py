"""Serving-store benchmark: a day of ranked lists written to MongoDB one document per user vs a bucket of users per
document (what ``MongoResource.replace_day`` writes), side by side on the same server, with a point read of one
user's list in each shape.

A fresh SecantusDB (the local MongoDB) is started in a temporary home on a free port and stopped by PID. Each
user's list is ``--top-n`` rows shaped like final_recommendations (ids, scores, reason, titles). The per-user
shape is written as the serving copy wrote it before buckets (documents {user_id, items: [...]}, with its
{user_id, date} and {date, write_id} indexes); the bucket shape through ``replace_day`` itself (building the
documents from a frame included), swap and clean-up of an earlier write of the day included.

    .venv/bin/python bench/serving_store.py --users 20000
    .venv/bin/python bench/serving_store.py --users 50000 --bucket-users 100 200 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import pandas as pd


def ranked_lists(users: int, top_n: int, seed: int = 7) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for u in range(users):
        for rank in range(1, top_n + 1):
            rows.append(
                {
                    "user_id": f"user{u:07d}",
                    "episode_id": f"ep{rng.randrange(20000):06d}",
                    "rank": rank,
                    "final_score": rng.random(),
                    "als_score": rng.random(),
                    "content_score": rng.random(),
                    "alpha": 0.7,
                    "reason": rng.choice(["als", "content", "hybrid"]),
                    "because_episode_id": f"ep{rng.randrange(20000):06d}",
                    "episode_title": "An episode title of ordinary length",
                    "because_episode_title": "Another episode title",
                }
            )
    return pd.DataFrame(rows)


def per_user_write(db, lists: pd.DataFrame, day: str, batch: int = 5000) -> float:
    """The earlier shape: one document per user, rows under ``items``; seconds to write the day."""
    coll = db["per_user"]
    coll.drop()
    coll.create_index([("user_id", 1), ("date", -1)])
    coll.create_index([("date", 1), ("write_id", 1)])
    stamp = {"date": day, "run_id": uuid.uuid4().hex, "model_version": "bench", "write_id": uuid.uuid4().hex}
    started = time.perf_counter()
    items = lists.drop(columns=["user_id"]).to_dict("records")
    docs, current, owner = [], [], None
    for user, item in zip(lists["user_id"], items):
        if user != owner and current:
            docs.append({"user_id": owner, "items": current, **stamp})
            current = []
        owner = user
        current.append(item)
    if current:
        docs.append({"user_id": owner, "items": current, **stamp})
    for start in range(0, len(docs), batch):
        coll.insert_many(docs[start : start + batch], ordered=False)
    return time.perf_counter() - started


def point_read_ms(read, users: int, reads: int = 200) -> float:
    rng = random.Random(1)
    started = time.perf_counter()
    for _ in range(reads):
        read(f"user{rng.randrange(users):07d}")
    return (time.perf_counter() - started) / reads * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20000, help="listeners in the day")
    parser.add_argument("--top-n", type=int, default=10, help="rows per listener")
    parser.add_argument("--bucket-users", type=int, nargs="+", default=[100], help="users per bucket document")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    args = parser.parse_args()

    from podrec_assets.local.processes import free_port
    from podrec_assets.local.services import LocalStack
    from podrec_assets.resources.mongo import MongoResource
    from podrec_assets.settings import get_settings, load_settings

    home = Path(tempfile.mkdtemp(prefix="podrec-bench-serving-"))
    env = {"PODREC_HOME": str(home), "PODREC_MONGO_PORT": str(free_port())}
    os.environ.update(env)
    get_settings.cache_clear()
    stack = LocalStack(load_settings(env))
    figures: dict = {"users": args.users, "top_n": args.top_n}
    try:
        print(stack.start_mongo().line(), flush=True)
        lists = ranked_lists(args.users, args.top_n)
        day = date(2026, 1, 2)
        base = MongoResource(uri=stack.settings.mongo_url, database="bench_serving")
        db = base.db()
        seconds = per_user_write(db, lists, day.isoformat())
        read_ms = point_read_ms(lambda u: db["per_user"].find_one({"user_id": u, "date": day.isoformat()}), args.users)
        figures["per_user"] = {
            "seconds": round(seconds, 2),
            "users_per_s": round(args.users / seconds),
            "read_ms": read_ms,
        }
        print(
            f"one document per user        {seconds:7.2f} s  {args.users / seconds:9,.0f} users/s  "
            f"point read {read_ms:.2f} ms",
            flush=True,
        )
        for size in args.bucket_users:
            mongo = MongoResource(uri=base.uri, database="bench_serving", list_bucket_users=size)
            mongo.replace_day("final_recommendations", day, lists.head(size * 10), "earlier")  # a write to replace
            started = time.perf_counter()
            written = mongo.replace_day("final_recommendations", day, lists, "bench")
            seconds = time.perf_counter() - started
            read_ms = point_read_ms(lambda u, m=mongo: m.list_of("final_recommendations", u, days=1), args.users)
            figures[f"bucket_{size}"] = {
                "seconds": round(seconds, 2),
                "users_per_s": round(args.users / seconds),
                "documents": written["inserted"],
                "read_ms": read_ms,
            }
            print(
                f"buckets of ~{size:<4d} users ({written['inserted']:,} docs) {seconds:7.2f} s  "
                f"{args.users / seconds:9,.0f} users/s  point read {read_ms:.2f} ms (pointer read included)  "
                f"{figures['per_user']['seconds'] / seconds:.1f}x faster to write",
                flush=True,
            )
        if args.json:
            print(json.dumps(figures, indent=2))
        return 0
    finally:
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
