"""Serving benchmark: `podrec serve` under load from a second process, with a platform's worth of listener state.

A fresh home on free ports with its own Apache Kafka and Redis; a synthetic lake for one model day: ``--episodes``
episodes (categories, 384-d content vectors in topic clusters, ALS factors), ``--users`` listeners with their
rows of user_episode_daily and their final_recommendations (10 each). `podrec serve` loads it like any day (the
whole state goes to Redis), then:

1. the bare store read one `/recommend` makes (GET list + SMEMBERS seen, one pipelined round trip), timed from
   this process: the floor under the HTTP figure;
2. `wrk` (Debian's, a second process on loopback, random listeners) against `/health/live` (the HTTP floor) and
   `/recommend/{user}`: requests/s and latency percentiles;
3. freshness: an event published to Kafka (the top episode of a random listener, completed) until
   `/recommend` shows a changed live list, polled every 2 ms; p50/p99 over ``--fresh`` events;
4. retrieval: the catalog is scanned exactly (content: every episode's cosine; ALS: every episode's score), so
   recall@10 against the exact scan is 1 by construction; the fold-in's cost per listener is printed.

    .venv/bin/python bench/serve.py --users 1000000 --episodes 100000
    .venv/bin/python bench/serve.py --users 20000 --episodes 2000 --duration 5 --fresh 20   # a quick look
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from podrec_assets.core.registry import USER_EVENTS_TOPIC  # noqa: E402

PUBLISHED = [
    ("nanoRecSys, 2 vCPU", "p95 180 ms at 144 req/s"),
    ("Feast online feature read", "p99 < 2 ms"),
]


def _say(message: str) -> None:
    print(message, flush=True)


def _conform(table, schema):
    """The table with exactly the schema's columns (absent optional ones as nulls), typed by it."""
    import pyarrow as pa

    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _vectors(matrix: np.ndarray):
    """Rows of a float32 matrix as an Arrow list<float> column, without a Python object per row."""
    import pyarrow as pa

    n, d = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.astype(np.float32).ravel()))


def build_lake(lake, day: date, users: int, episodes: int, topics: int = 12, dim: int = 384, factors: int = 64):
    """One model day of every table `podrec serve` reads, written with the LakeResource (as the assets write)."""
    import pyarrow as pa

    from podrec_assets.core import schemas

    rng = np.random.default_rng(7)
    topic = rng.integers(0, topics, episodes)
    ids = np.array([f"e{i:06d}" for i in range(episodes)], dtype=object)
    centres = rng.normal(0, 1, (topics, dim)).astype(np.float32)
    vectors = centres[topic] + rng.normal(0, 0.6, (episodes, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    age = rng.integers(0, 30, episodes)
    published = [datetime.combine(day - timedelta(days=int(a)), datetime.min.time(), tzinfo=timezone.utc) for a in age]
    names = [f"topic-{t}" for t in range(topics)]
    episodes_table = pa.table(
        {
            "episode_id": ids,
            "podcast_id": [f"p{t}" for t in topic],
            "podcast_title": [f"Podcast {t}" for t in topic],
            "episode_title": [f"Episode {i}" for i in range(episodes)],
            "description": [""] * episodes,
            "audio_url": [""] * episodes,
            "language": ["en"] * episodes,
            "published_at": published,
            "duration_sec": [1800.0] * episodes,
            "categories": [[names[t]] for t in topic],
            "source": ["demo"] * episodes,
            "kafka_partition": [0] * episodes,
            "kafka_offset": list(range(episodes)),
        }
    )
    lake.write_partition("episodes", day, _conform(episodes_table, schemas.EPISODES), "bench")
    vectors_table = pa.table(
        {
            "episode_id": ids,
            "published_at": published,
            "model": ["bench-384"] * episodes,
            "chunk_count": [1] * episodes,
            "token_count": [100] * episodes,
            "vector": _vectors(vectors),
        }
    )
    lake.write_partition("episode_vectors", day, _conform(vectors_table, schemas.EPISODE_VECTORS), "bench")
    item_factors = (rng.normal(0, 0.3, (episodes, factors)) + centres[topic][:, :factors]).astype(np.float32)
    lake.write_partition(
        "als_factors",
        day,
        pa.table(
            {
                "model_version": ["als-bench"] * episodes,
                "kind": ["episode"] * episodes,
                "id": ids,
                "vector": _vectors(item_factors),
            }
        ).cast(schemas.ALS_FACTORS),
        "bench",
    )
    # listeners: 6 positive rows on the day, from their own topic
    by_topic = [np.flatnonzero(topic == t) for t in range(topics)]
    user_ids = np.array([f"u{u:07d}" for u in range(users)], dtype=object)
    taste = rng.integers(0, topics, users)
    per_user = 6
    picks = np.concatenate([rng.choice(by_topic[t], per_user) for t in taste])
    daily = pa.table(
        {
            "user_id": np.repeat(user_ids, per_user),
            "episode_id": ids[picks],
            "engagement": rng.choice([1.0, 3.0, 6.0], users * per_user),
            "event_count": np.full(users * per_user, 2, dtype=np.int64),
            "max_played_pct": np.ones(users * per_user),
            "completed": rng.random(users * per_user) < 0.5,
            "last_event_at": [datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)] * (users * per_user),
        }
    )
    lake.write_partition("user_episode_daily", day, _conform(daily, schemas.USER_EPISODE_DAILY), "bench")
    # the day's lists: 10 per listener, from their topic, reasons and explanations as fusion gives them
    n = 10
    recs_items = np.concatenate([rng.choice(by_topic[t], n, replace=False) for t in taste])
    reasons = rng.choice(["hybrid", "als", "content"], users * n)
    because = np.where(reasons == "als", None, ids[np.repeat(picks.reshape(users, per_user)[:, 0], n)])
    version = "hybrid[als-bench|bench-384|a=0.7,a_new=0.2,ramp=3d]"
    recs = pa.table(
        {
            "user_id": np.repeat(user_ids, n),
            "episode_id": ids[recs_items],
            "rank": np.tile(np.arange(1, n + 1, dtype=np.int32), users),
            "final_score": np.tile(np.linspace(1.0, 0.1, n), users),
            "als_score": rng.random(users * n),
            "content_score": rng.random(users * n),
            "alpha": np.full(users * n, 0.7),
            "reason": reasons,
            "because_episode_id": because,
            "model_version": [version] * (users * n),
        }
    )
    lake.write_partition("final_recommendations", day, _conform(recs, schemas.FINAL_RECOMMENDATIONS), "bench")
    return user_ids


def store_read_latency(settings, version: str, users, samples: int = 5000) -> dict:
    """The read a /recommend does, from a client on loopback: GET list + SMEMBERS seen, pipelined."""
    import redis

    from podrec_assets.serving import store as keys

    client = redis.Redis.from_url(settings.redis_server_url)
    rng = np.random.default_rng(1)
    times = []
    for user in rng.choice(users, samples):
        started = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        pipe.get(keys.list_key(version, user))
        pipe.smembers(keys.seen_key(version, user))
        pipe.execute()
        times.append(time.perf_counter() - started)
    client.close()
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


WRK_SCRIPT = """
math.randomseed(%d)
request = function()
  return wrk.format("GET", string.format("/recommend/u%%07d", math.random(0, %d)))
end
"""
PACED_DELAY_MS = 8
# paced: each connection waits PACED_DELAY_MS between requests, so a connection sends about one request per
# delay + latency (~10 ms): rate / 100 connections offer at least ``--rate`` requests/s
PACED = """
delay = function()
  return %d
end
"""


def run_wrk(url: str, seconds: int, connections: int, script: Path | None) -> dict:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        argv += ["-s", str(script)]
    out = subprocess.run(argv + [url], capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def percentile(p: str) -> float:
        match = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": rate,
        "p50_ms": percentile("50"),
        "p90_ms": percentile("90"),
        "p99_ms": percentile("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def freshness(settings, base_url: str, users, trials: int, day: date) -> dict:
    """Event published to Kafka -> /recommend shows a changed live list (exclude_seen=false: the fold-in's doing)."""
    from podrec_assets.resources.kafka import Producer

    producer = Producer(settings.kafka_servers, {"linger.ms": 0})
    rng = np.random.default_rng(3)
    waits = []
    ts = datetime.now(timezone.utc)  # the day after the model's day (the broker refuses times far ahead)
    for user in rng.choice(users, trials, replace=False):
        url = f"{base_url}/recommend/{user}?exclude_seen=false"
        before = json.loads(urllib.request.urlopen(url, timeout=10).read())
        top = before["items"][0]["episode_id"]
        payload = {
            "event_id": str(uuid.uuid4()),
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "user_id": str(user),
            "episode_id": top,
            "event": "complete",
            "device": "bench",
            "rating": None,
            "position_sec": 1800.0,
            "from_sec": 0.0,
            "to_sec": 1800.0,
            "played_pct": 1.0,
        }
        sent = time.perf_counter()
        producer.send(
            USER_EVENTS_TOPIC,
            json.dumps(payload).encode(),
            key=str(user).encode(),
            timestamp_ms=int(ts.timestamp() * 1000),
        )
        producer.flush(10)
        while True:
            now = json.loads(urllib.request.urlopen(url, timeout=10).read())
            if now["live"] and [i["episode_id"] for i in now["items"]] != [i["episode_id"] for i in before["items"]]:
                waits.append(time.perf_counter() - sent)
                break
            if time.perf_counter() - sent > 10:
                waits.append(float("inf"))
                break
            time.sleep(0.002)
    producer.close()
    ms = np.array(waits) * 1000
    return {
        "trials": trials,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


def memory_gb(pid: int) -> tuple[float, float]:
    """(peak, current) resident memory of a process, from /proc (VmHWM, VmRSS)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[name].split()[0]) * 1024 / 1e9 for name in ("VmHWM", "VmRSS"))


def metric(text: str, name: str) -> float:
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return sum(values)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1_000_000, help="listeners with state (default 1,000,000)")
    parser.add_argument("--episodes", type=int, default=100_000, help="catalog size (default 100,000)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk run (default 20)")
    parser.add_argument("--connections", type=int, nargs="+", default=[4, 16], help="wrk connections (default 4 16)")
    parser.add_argument("--rate", type=int, default=1000, help="offered rate of the paced /recommend run (req/s)")
    parser.add_argument("--fresh", type=int, default=100, help="events timed for freshness (default 100)")
    parser.add_argument("--work-dir", default=None, help="where the temporary home goes (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: `make system-packages` (Debian package wrk)")

    from podrec_assets.commands.serve import serve_url, start_serve
    from podrec_assets.local.processes import free_port
    from podrec_assets.local.services import LocalStack
    from podrec_assets.resources import build_resources
    from podrec_assets.settings import load_settings

    day = datetime.now(timezone.utc).date() - timedelta(days=1)
    home = Path(tempfile.mkdtemp(prefix="podrec-bench-serve-", dir=args.work_dir))
    env = {
        "PODREC_HOME": str(home),
        "PODREC_KAFKA_PORT": str(free_port()),
        "PODREC_KAFKA_CONTROLLER_PORT": str(free_port()),
        "PODREC_MONGO_PORT": str(free_port()),
        "PODREC_REDIS_PORT": str(free_port()),
        "PODREC_SERVE_PORT": str(free_port()),
        "PODREC_START_DATE": day.isoformat(),
        "PODREC_REDIS_MAX_MEMORY_MB": "12000",
    }
    settings = load_settings(env)
    stack = LocalStack(settings)
    process = None
    results: dict = {"users": args.users, "episodes": args.episodes}
    _say(f"== podrec serve: {args.users:,} listeners, {args.episodes:,} episodes, model day {day}, home {home}")
    try:
        for status in (stack.start_kafka(), stack.start_redis()):
            _say("  " + status.line())
        started = time.perf_counter()
        users = build_lake(build_resources(settings)["lake"], day, args.users, args.episodes)
        _say(f"  synthetic lake written in {time.perf_counter() - started:.0f}s")
        started = time.perf_counter()
        process = start_serve(settings, timeout_s=3600, extra_env=env)
        results["load_s"] = time.perf_counter() - started
        base = serve_url(settings)
        ready = json.loads(urllib.request.urlopen(base + "/health/ready", timeout=10).read())
        version = ready["checks"]["model"]["version"]
        _say(f"  model {version} and its state in Redis in {results['load_s']:.0f}s")

        results["store_read"] = store_read_latency(settings, version, users)
        script = home / "random_users.lua"
        script.write_text(WRK_SCRIPT % (11, args.users - 1))
        paced = home / "random_users_paced.lua"

        paced_connections = max(1, -(-args.rate // 100))
        paced.write_text(script.read_text() + PACED % PACED_DELAY_MS)
        results["wrk"] = {}
        for connections in args.connections:
            results["wrk"][f"health_c{connections}"] = run_wrk(base + "/health/live", args.duration, connections, None)
            results["wrk"][f"recommend_c{connections}"] = run_wrk(base, args.duration, connections, script)
        health_paced = home / "health_paced.lua"
        health_paced.write_text(PACED % PACED_DELAY_MS)
        results["wrk"][f"health_paced_c{paced_connections}"] = run_wrk(
            base + "/health/live", args.duration, paced_connections, health_paced
        )
        results["wrk"][f"recommend_paced_c{paced_connections}"] = run_wrk(base, args.duration, paced_connections, paced)
        results["freshness"] = freshness(settings, base, users, args.fresh, day)
        text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        fold_sum, fold_count = (
            metric(text, "podrec_fold_batch_seconds_sum"),
            metric(text, "podrec_fold_batch_seconds_count"),
        )
        results["fold_batch_ms_mean"] = 1000 * fold_sum / fold_count if fold_count else None
        started = time.perf_counter()
        for episode in [f"e{i:06d}" for i in range(0, args.episodes, max(1, args.episodes // 50))]:
            urllib.request.urlopen(f"{base}/similar/{episode}?k=10", timeout=10).read()
        results["similar_ms_mean"] = (time.perf_counter() - started) * 1000 / 50
        results["serve_peak_rss_gb"], results["serve_rss_gb"] = memory_gb(process.pid())
        results["redis_rss_gb"] = memory_gb(stack.redis.pid())[1]
    finally:
        if process is not None:
            process.stop()
        stack.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)

    s = results["store_read"]
    _say(f"\n== {args.users:,} listeners, {args.episodes:,} episodes (2 cores: wrk, the API and Redis share them)")
    _say(f"{'what':<34}{'req/s':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'non-2xx':>9}")
    _say(f"{'bare store read (GET+SMEMBERS)':<34}{'':>10}{s['p50_ms']:>10.2f}{'':>10}{s['p99_ms']:>10.2f}")
    for name, w in results["wrk"].items():
        what = "GET /health/live" if name.startswith("health") else "GET /recommend/{user}"
        label = f"{what}, {name.split('_c')[1]} conn" + (f", paced {args.rate}/s" if "paced" in name else "")
        _say(
            f"{label:<34}{w['requests_per_s']:>10.0f}{w['p50_ms']:>10.2f}{w['p90_ms']:>10.2f}{w['p99_ms']:>10.2f}{w['non_2xx']:>9}"
        )
    f = results["freshness"]
    _say(
        f"\nfreshness, Kafka -> changed /recommend ({f['trials']} events): p50 {f['p50_ms']:.0f} ms, "
        f"p99 {f['p99_ms']:.0f} ms, max {f['max_ms']:.0f} ms (target p99 <= 1000 ms)"
    )
    _say(f"fold-in batch (consume -> state -> fusion -> Redis), mean: {results['fold_batch_ms_mean']:.1f} ms")
    _say(
        f"GET /similar over {args.episodes:,} episodes (exact scan, so recall@10 against it = 1.000): "
        f"{results['similar_ms_mean']:.1f} ms mean"
    )
    _say(
        f"model load for {args.users:,} listeners (lake -> memory -> Redis): {results['load_s']:.0f} s; "
        f"podrec serve RSS {results['serve_rss_gb']:.1f} GB after it (peak {results['serve_peak_rss_gb']:.1f} GB "
        f"while loading), Redis {results['redis_rss_gb']:.1f} GB"
    )
    best = next(w for name, w in results["wrk"].items() if name.startswith("recommend_paced"))
    _say(
        f"\n/recommend paced: {best['requests_per_s']:.0f} req/s at p99 {best['p99_ms']:.1f} ms "
        "(target >= 1000 req/s at p99 <= 10 ms); published: " + "; ".join(f"{who}: {what}" for who, what in PUBLISHED)
    )
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
