"""Benchmark of the events path: simulator -> Kafka -> user_events (Delta) -> user_episode_daily (DuckDB vs Spark).

Starts its own noida-db broker in a temporary home (stopped by PID at the end), publishes a synthetic
catalog, then prints side by side:

1. producing: raw sends of one constant message with kafka-python (the baseline) and with the project's
   librdkafka producer, vs the simulator (events/s);
2. ingest: `user_events` for the simulated day, Kafka -> validation -> Delta (events/s);
3. aggregation of that day: DuckDB vs Spark SQL (wall seconds and peak RSS of each, measured in a
   separate process; Spark's session start is reported apart from the query).

    .venv/bin/python bench/events.py                 # 1M events (the issue's size)
    .venv/bin/python bench/events.py --events 200000 --no-spark
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AGGREGATE_CHILD = r"""
import json, sys, time
from datetime import date
from podrec_assets.core.engagement import aggregate_duckdb, aggregate_spark, weights_from_settings
from podrec_assets.resources import LakeResource
from podrec_assets.settings import load_settings
engine, root, day = sys.argv[1], sys.argv[2], date.fromisoformat(sys.argv[3])
settings = load_settings({})
lake = LakeResource(root=root)
weights = weights_from_settings(settings)
version = lake.version("user_events")
out = {"engine": engine, "version": version}
if engine == "duckdb":
    import pyarrow as pa, pyarrow.dataset as ds
    t = time.perf_counter()
    dataset = lake.table("user_events", version).to_pyarrow_dataset()
    reader = dataset.scanner(columns=["user_id", "episode_id", "event", "rating", "played_pct", "ts"],
                             filter=ds.field("date") == pa.scalar(day, type=pa.date32())).to_reader()
    table = aggregate_duckdb(reader, weights)
    out["query_s"] = time.perf_counter() - t
else:
    from podrec_assets.resources.spark import spark_resource
    t = time.perf_counter()
    spark = spark_resource(settings).spark_session
    out["session_start_s"] = time.perf_counter() - t
    uris = lake.file_uris_for_days("user_events", day, day, version)
    t = time.perf_counter()
    table = aggregate_spark(spark, uris, weights)
    out["query_s"] = time.perf_counter() - t
    t = time.perf_counter()
    table = aggregate_spark(spark, uris, weights)
    out["warm_query_s"] = time.perf_counter() - t
    spark.stop()
out["rows"] = table.num_rows
out["checksum"] = round(sum(table.column("engagement").to_pylist()), 6)
print("RESULT " + json.dumps(out), flush=True)
"""


def publish_catalog(kafka, episodes: int, topics: int, first_day: date) -> None:
    messages = []
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=timezone.utc) - timedelta(days=10)
    for i in range(episodes):
        published = start + timedelta(hours=4 * i)
        value = {"episode_id": f"bench-ep{i:04d}", "podcast_id": f"show{i % topics}", "podcast_title": f"topic {i % topics}",
                 "episode_title": f"episode {i}", "description": "", "audio_url": "file:///dev/null", "language": "en",
                 "published_at": published.isoformat().replace("+00:00", "Z"), "duration_sec": 1200.0 + 30 * i,
                 "categories": [f"topic {i % topics}"], "source": "demo"}
        messages.append((value["episode_id"].encode(), json.dumps(value).encode(), int(published.timestamp() * 1000)))
    kafka.produce("episode-metadata", messages)


def raw_producer(producer, count: int, day: date) -> float:
    """Baseline: ``producer`` sending one constant ~300-byte message ``count`` times (messages/s)."""
    value = json.dumps({"event_id": "00000000-0000-4000-8000-000000000000", "ts": "2026-01-01T00:00:00.000Z",
                        "user_id": "u000000", "episode_id": "bench-ep0000", "event": "play", "device": "ios",
                        "rating": None, "position_sec": 12.5, "from_sec": 0.0, "to_sec": 12.5, "played_pct": 0.01}).encode()
    ts = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000) - 86_400_000 * 30
    started = time.perf_counter()
    for n in range(count):
        producer.send("episode-ids", key=b"k", value=value, timestamp_ms=ts, partition=0)
    producer.flush()
    seconds = time.perf_counter() - started
    producer.close()
    return count / seconds


def kafka_python_producer(kafka):
    """kafka-python's producer with batching, the project's producer before it moved to librdkafka."""
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=kafka.bootstrap_servers.split(","), acks=1, linger_ms=50,
                         batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)


def run_measured(argv: list[str], env: dict[str, str]) -> dict:
    """Run a child, sampling the RSS of it and all its descendants (Spark's JVM included)."""
    import psutil

    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    parent = psutil.Process(process.pid)
    peak = 0
    started = time.perf_counter()
    while process.poll() is None:
        try:
            tree = [parent] + parent.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - started
    output = process.stdout.read()
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{argv[3]} aggregation failed (exit {process.returncode}): {output[-2000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result.update(process_wall_s=wall, peak_rss_mb=peak / 2**20)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to simulate in all (default 1M)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="split the events over this many days, each on a fresh broker (default 4: noida-db 0.2.3 "
                        "stops serving fetches once a topic holds ~1M records)")
    parser.add_argument("--events-per-user-day", type=float, default=10.0, help="simulator K (users = events / (0.6 K))")
    parser.add_argument("--baseline", type=int, default=100_000, help="messages for the raw-producer baseline")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark aggregation")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (lake, broker data)")
    args = parser.parse_args()

    from podrec_assets.defs.events.assets import read_user_events_day
    from podrec_assets.local.processes import free_port
    from podrec_assets.local.services import LocalStack
    from podrec_assets.resources import build_resources
    from podrec_assets.settings import load_settings
    from podrec_assets.sources.simulator import _producer, simulate_history

    home = Path(tempfile.mkdtemp(prefix="podrec-bench-events-"))
    env = {"PODREC_HOME": str(home), "PODREC_KAFKA_PORT": str(free_port()), "PODREC_MONGO_PORT": str(free_port()),
           "PODREC_MALFORMED_SHARE": "0.005"}
    settings = load_settings(env)
    stack = LocalStack(settings)
    first_day = date(2026, 2, 1)
    days = [first_day + timedelta(days=n) for n in range(args.rounds)]
    day = days[0]
    rows: list[tuple[str, str, str]] = []
    per_round = args.events // args.rounds
    users = max(1, round(per_round / (0.6 * args.events_per_user_day)))
    totals = {"sim_messages": 0, "sim_s": 0.0, "records": 0, "rows": 0, "ingest_s": 0.0, "read_s": 0.0}
    try:
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}", flush=True)
        baseline = None
        for number, round_day in enumerate(days):
            stack.stop()
            shutil.rmtree(settings.services_dir / "kafka-data", ignore_errors=True)
            stack.start_kafka()
            resources = build_resources(settings)
            kafka, lake = resources["kafka"], resources["lake"]
            publish_catalog(kafka, 120, 12, first_day)
            if baseline is None:
                baseline = raw_producer(kafka_python_producer(kafka), args.baseline, first_day)
                librdkafka = raw_producer(_producer(kafka), args.baseline, first_day)
                print(f"raw send: kafka-python {baseline:,.0f} msg/s, librdkafka {librdkafka:,.0f} msg/s", flush=True)
            simulated = simulate_history(settings, [round_day], users, args.events_per_user_day, seed=number + 1, late_share=0.0)
            metadata = read_user_events_day(kafka, lake, round_day, "bench")
            totals["sim_messages"] += simulated["messages"]
            totals["sim_s"] += simulated["seconds"]
            totals["records"] += metadata["offsets_read"]
            totals["rows"] += metadata["rows"]
            totals["ingest_s"] += metadata["seconds"]
            totals["read_s"] += metadata["read_seconds"]
            print(f"{round_day}: simulated {simulated['messages']:,} in {simulated['seconds']:.1f} s, ingested "
                  f"{metadata['offsets_read']:,} records in {metadata['seconds']:.1f} s", flush=True)
        sim_rate = totals["sim_messages"] / totals["sim_s"]
        ingest_rate = totals["records"] / totals["ingest_s"]
        rows.append(("produce: raw kafka-python send (baseline)", f"{baseline:,.0f} msg/s", "1.00"))
        rows.append(("produce: raw librdkafka send (the project's producer)", f"{librdkafka:,.0f} msg/s",
                     f"{librdkafka / baseline:.2f}"))
        rows.append((f"produce: simulator ({totals['sim_messages']:,} messages, {users:,} users/day)",
                     f"{sim_rate:,.0f} events/s", f"{sim_rate / baseline:.2f}"))
        rows.append((f"ingest: Kafka -> user_events Delta ({totals['records']:,} records, {totals['rows']:,} rows, {len(days)} days)",
                     f"{ingest_rate:,.0f} events/s", f"{ingest_rate / baseline:.2f}"))
        rows.append(("  of which Kafka read", f"{totals['read_s']:.1f} s", ""))
        rows.append(("  total (read + validate + write)", f"{totals['ingest_s']:.1f} s", ""))

        child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        engines = ["duckdb"] + ([] if args.no_spark else ["spark"])
        measured = {e: run_measured([sys.executable, "-c", AGGREGATE_CHILD, e, lake.root, day.isoformat()], child_env)
                    for e in engines}
        duck = measured["duckdb"]
        rows.append((f"aggregate: DuckDB ({duck['rows']:,} pairs)", f"{duck['query_s']:.2f} s", "1.00"))
        rows.append(("  DuckDB peak RSS (process)", f"{duck['peak_rss_mb']:,.0f} MB", "1.00"))
        if "spark" in measured:
            spark = measured["spark"]
            if spark["rows"] != duck["rows"] or spark["checksum"] != duck["checksum"]:
                raise RuntimeError(f"engines disagree: duckdb {duck['rows']}/{duck['checksum']} vs spark {spark['rows']}/{spark['checksum']}")
            rows.append(("aggregate: Spark SQL, first query", f"{spark['query_s']:.2f} s", f"{spark['query_s'] / duck['query_s']:.1f}"))
            rows.append(("aggregate: Spark SQL, warm query", f"{spark['warm_query_s']:.2f} s", f"{spark['warm_query_s'] / duck['query_s']:.1f}"))
            rows.append(("  Spark session start", f"{spark['session_start_s']:.1f} s", ""))
            rows.append(("  Spark peak RSS (driver + JVM)", f"{spark['peak_rss_mb']:,.0f} MB", f"{spark['peak_rss_mb'] / duck['peak_rss_mb']:.1f}"))
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'measure':<{width}}{'value':>18}  ratio")
    for name, value, ratio in rows:
        print(f"{name:<{width}}{value:>18}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
