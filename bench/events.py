"""Benchmark of the events path at platform volume: simulator -> Kafka -> user_events (Delta), DuckDB vs Spark.

Starts its own broker (the project's local Apache Kafka) in a temporary home, stopped by PID at the end,
publishes a synthetic catalog, simulates one day of listening into `user-events` and reads that day back
through the `user_events` asset's own code path (`read_user_events_day`). It checks that every record
produced is read exactly once (valid rows + dead letters = records produced, offset ranges contiguous) and
prints side by side:

1. producing: raw sends of one constant message with kafka-python (the baseline) and with the project's
   librdkafka producer, vs the simulator (events/s);
2. read-back: `user_events` for the day, Kafka -> validation -> Delta (events/s, and the Kafka read alone);
3. the broker: bytes on disk per record of `user-events` and its peak RSS over the whole run;
4. aggregation of the day: DuckDB vs Spark SQL (wall seconds and peak RSS, each in a separate process).

    .venv/bin/python bench/events.py                          # 10M events: one day of a 1M-listener platform
    .venv/bin/python bench/events.py --events 1000000 --no-spark
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from podrec_assets.core.registry import EPISODE_IDS_TOPIC, EPISODE_METADATA_TOPIC, USER_EVENTS_TOPIC  # noqa: E402

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
    t = time.perf_counter()
    table = aggregate_spark(spark, lake.spark_read_days(spark, "user_events", day, day, version), weights).toArrow()
    out["query_s"] = time.perf_counter() - t
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
        value = {
            "episode_id": f"bench-ep{i:04d}",
            "podcast_id": f"show{i % topics}",
            "podcast_title": f"topic {i % topics}",
            "episode_title": f"episode {i}",
            "description": "",
            "audio_url": "file:///dev/null",
            "language": "en",
            "published_at": published.isoformat().replace("+00:00", "Z"),
            "duration_sec": 1200.0 + 30 * i,
            "categories": [f"topic {i % topics}"],
            "source": "demo",
        }
        messages.append((value["episode_id"].encode(), json.dumps(value).encode(), int(published.timestamp() * 1000)))
    kafka.produce(EPISODE_METADATA_TOPIC, messages)


def raw_send_rate(send, flush, count: int, day: date) -> float:
    """Baseline: one constant ~300-byte message sent ``count`` times to ``episode-ids`` (messages/s)."""
    value = json.dumps(
        {
            "event_id": "00000000-0000-4000-8000-000000000000",
            "ts": "2026-01-01T00:00:00.000Z",
            "user_id": "u000000",
            "episode_id": "bench-ep0000",
            "event": "play",
            "device": "ios",
            "rating": None,
            "position_sec": 12.5,
            "from_sec": 0.0,
            "to_sec": 12.5,
            "played_pct": 0.01,
        }
    ).encode()
    ts = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000) - 86_400_000 * 30
    started = time.perf_counter()
    for _ in range(count):
        send(value, ts)
    flush()
    return count / (time.perf_counter() - started)


def kafka_python_rate(bootstrap: str, count: int, day: date) -> float:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks=1,
        linger_ms=50,
        batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    try:
        return raw_send_rate(
            lambda v, ts: producer.send(EPISODE_IDS_TOPIC, key=b"k", value=v, timestamp_ms=ts, partition=0),
            producer.flush,
            count,
            day,
        )
    finally:
        producer.close()


def librdkafka_rate(kafka, count: int, day: date) -> float:
    """The project's producer (librdkafka) with the simulator's settings, sending the same constant message."""
    producer = kafka.producer(acks="1", linger_ms=50)
    try:
        return raw_send_rate(
            lambda v, ts: producer.send(EPISODE_IDS_TOPIC, v, b"k", ts, partition=0), producer.flush, count, day
        )
    finally:
        producer.close()


def kafka_python_read_rate(bootstrap: str, ranges: dict[int, tuple[int, int]]) -> tuple[float, int]:
    """(records/s, records) reading ``ranges`` of user-events with kafka-python, the consumer the project used before
    librdkafka (the baseline of ``KafkaResource.read_range``)."""
    from kafka import KafkaConsumer, TopicPartition

    wanted = {TopicPartition(USER_EVENTS_TOPIC, p): (a, b) for p, (a, b) in ranges.items() if b > a}
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        auto_offset_reset="earliest",
    )
    started, count = time.perf_counter(), 0
    try:
        consumer.assign(list(wanted))
        for tp, (start, _) in wanted.items():
            consumer.seek(tp, start)
        pending, deadline = set(wanted), time.monotonic() + 600
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"kafka-python did not read the range within 600 s: {ranges}")
            for tp, messages in consumer.poll(timeout_ms=500, max_records=50000).items():
                count += sum(1 for m in messages if m.offset < wanted[tp][1])
            for tp in list(pending):
                if consumer.position(tp) >= wanted[tp][1]:
                    pending.discard(tp)
                    consumer.pause(tp)
    finally:
        consumer.close()
    return count / (time.perf_counter() - started), count


class PeakRss:
    """Samples the RSS of one PID (and its children) in a thread until stopped."""

    def __init__(self, pid: int, every_s: float = 0.25):
        import psutil

        self.process, self.every_s, self.peak = psutil.Process(pid), every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import psutil

        while not self._stop.is_set():
            try:
                tree = [self.process] + self.process.children(recursive=True)
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            self._stop.wait(self.every_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_measured(argv: list[str], env: dict[str, str]) -> dict:
    """Run a child, sampling the RSS of it and all its descendants (Spark's JVM included)."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    sampler = PeakRss(process.pid, 0.05)
    started = time.perf_counter()
    output, _ = process.communicate()
    wall = time.perf_counter() - started
    peak = sampler.stop()
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{argv[3]} aggregation failed (exit {process.returncode}): {output[-2000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result.update(process_wall_s=wall, peak_rss_mb=peak / 2**20)
    return result


def topic_bytes_on_disk(data_dir: Path, topic: str) -> int:
    """Bytes the broker keeps for ``topic`` (its partition folders; the whole data dir if it has none)."""
    folders = list(data_dir.glob(f"{topic}-*")) or [data_dir]
    return sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--events", type=int, default=10_000_000, help="events to simulate, all on one day (default 10M)"
    )
    parser.add_argument(
        "--events-per-user-day", type=float, default=10.0, help="simulator K (users = events / (0.6 K))"
    )
    parser.add_argument("--baseline", type=int, default=200_000, help="messages for the raw-producer baselines")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark aggregation")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (lake, broker data)")
    args = parser.parse_args()

    from podrec_assets.defs.events.kafka_day import read_user_events_day
    from podrec_assets.local.processes import free_port
    from podrec_assets.local.services import LocalStack
    from podrec_assets.resources import build_resources
    from podrec_assets.settings import load_settings
    from podrec_assets.sources.simulator import simulate_history

    home = Path(tempfile.mkdtemp(prefix="podrec-bench-events-"))
    env = {
        "PODREC_HOME": str(home),
        "PODREC_KAFKA_PORT": str(free_port()),
        "PODREC_KAFKA_CONTROLLER_PORT": str(free_port()),
        "PODREC_MONGO_PORT": str(free_port()),
        "PODREC_REDIS_PORT": str(free_port()),
        "PODREC_MALFORMED_SHARE": "0.005",
    }
    settings = load_settings(env)
    stack = LocalStack(settings)
    day = date(2026, 2, 1)
    users = max(1, round(args.events / (0.6 * args.events_per_user_day)))
    rows: list[tuple[str, str, str]] = []
    try:
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}", flush=True)
        broker = stack.start_kafka()
        print(f"broker: {broker.line()}", flush=True)
        broker_rss = PeakRss(stack.kafka.pid())
        resources = build_resources(settings)
        kafka, lake = resources["kafka"], resources["lake"]
        publish_catalog(kafka, 120, 12, day)
        baseline = kafka_python_rate(settings.kafka_servers, args.baseline, day)
        librdkafka = librdkafka_rate(kafka, args.baseline, day)
        print(f"raw send: kafka-python {baseline:,.0f} msg/s, librdkafka {librdkafka:,.0f} msg/s", flush=True)

        simulated = simulate_history(
            settings, [day], users, args.events_per_user_day, seed=1, late_share=0.0, progress=True
        )
        produced = sum(kafka.end_offsets(USER_EVENTS_TOPIC).values())
        print(
            f"{day}: simulated {simulated['messages']:,} messages ({produced:,} in the topic) "
            f"in {simulated['seconds']:.1f} s",
            flush=True,
        )
        metadata = read_user_events_day(kafka, lake, day, "bench")
        print(
            f"{day}: read back {metadata['offsets_read']:,} records in {metadata['seconds']:.1f} s "
            f"(Kafka read {metadata['read_seconds']:.1f} s)",
            flush=True,
        )
        peak_broker = broker_rss.stop()
        on_disk = topic_bytes_on_disk(settings.services_dir / "kafka-data", USER_EVENTS_TOPIC)

        # every record of the day once: the ranges read are contiguous from offset 0; each record read is a row,
        # a dead letter or a record of another day; the rows are exactly the valid events the simulator made for D
        ranges = [tuple(map(int, r.split(".."))) for r in metadata["offset_ranges"].values()]
        in_ranges = sum(stop - start for start, stop in ranges)
        accounted = (
            metadata["rows"] + metadata["dead_letters"] + metadata["other_day_records"] + metadata["too_late_events"]
        )
        expected_rows = simulated["valid_by_day"][day.isoformat()]
        stored = lake.day_row_count("user_events", day)
        if not (
            all(start == 0 for start, _ in ranges)
            and in_ranges == metadata["offsets_read"] == accounted
            and metadata["rows"] == expected_rows == stored
        ):
            raise RuntimeError(
                f"records lost or doubled: ranges {metadata['offset_ranges']} ({in_ranges:,}), read "
                f"{metadata['offsets_read']:,}, accounted {accounted:,}, rows {metadata['rows']:,}, "
                f"simulated valid {expected_rows:,}, stored {stored:,}"
            )
        day_ranges = {int(p[1:]): tuple(map(int, r.split(".."))) for p, r in metadata["offset_ranges"].items()}
        old_rate, old_count = kafka_python_read_rate(settings.kafka_servers, day_ranges)
        if old_count != metadata["offsets_read"]:
            raise RuntimeError(f"kafka-python read {old_count:,} records, read_range {metadata['offsets_read']:,}")
        sim_rate = simulated["messages"] / simulated["seconds"]
        read_rate = metadata["offsets_read"] / metadata["seconds"]
        kafka_read_rate = metadata["offsets_read"] / metadata["read_seconds"]
        rows.append(("produce: raw kafka-python send (baseline)", f"{baseline:,.0f} msg/s", "1.00"))
        rows.append(("produce: raw librdkafka send", f"{librdkafka:,.0f} msg/s", f"{librdkafka / baseline:.2f}"))
        rows.append(
            (
                f"produce: simulator ({simulated['messages']:,} messages, {users:,} users)",
                f"{sim_rate:,.0f} events/s",
                f"{sim_rate / baseline:.2f}",
            )
        )
        rows.append(
            (
                f"read back: user_events, Kafka -> Delta ({metadata['offsets_read']:,} records, "
                f"{metadata['rows']:,} rows, {metadata['dead_letters']:,} dead letters)",
                f"{read_rate:,.0f} events/s",
                f"{read_rate / baseline:.2f}",
            )
        )
        rows.append(
            ("  of which the Kafka read", f"{kafka_read_rate:,.0f} events/s", f"{kafka_read_rate / baseline:.2f}")
        )
        rows.append(
            (
                "  the same range read with kafka-python (the reader before librdkafka)",
                f"{old_rate:,.0f} events/s",
                f"{old_rate / baseline:.2f}",
            )
        )
        rows.append(
            (
                f"records lost or read twice ({metadata['other_day_records']:,} of the range fall on the next day)",
                "0",
                "",
            )
        )
        rows.append(("broker: bytes on disk per user-events record", f"{on_disk / produced:,.0f} B", ""))
        rows.append(("broker: peak RSS", f"{peak_broker / 2**20:,.0f} MB", ""))

        child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        engines = ["duckdb"] + ([] if args.no_spark else ["spark"])
        measured = {
            e: run_measured([sys.executable, "-c", AGGREGATE_CHILD, e, lake.root, day.isoformat()], child_env)
            for e in engines
        }
        duck = measured["duckdb"]
        rows.append((f"aggregate: DuckDB ({duck['rows']:,} pairs)", f"{duck['query_s']:.2f} s", "1.00"))
        rows.append(("  DuckDB peak RSS (process)", f"{duck['peak_rss_mb']:,.0f} MB", "1.00"))
        if "spark" in measured:
            spark = measured["spark"]
            if spark["rows"] != duck["rows"] or spark["checksum"] != duck["checksum"]:
                raise RuntimeError(
                    f"engines disagree: duckdb {duck['rows']}/{duck['checksum']} vs spark "
                    f"{spark['rows']}/{spark['checksum']}"
                )
            rows.append(
                ("aggregate: Spark SQL", f"{spark['query_s']:.2f} s", f"{spark['query_s'] / duck['query_s']:.1f}")
            )
            rows.append(("  Spark session start", f"{spark['session_start_s']:.1f} s", ""))
            rows.append(
                (
                    "  Spark peak RSS (driver + JVM)",
                    f"{spark['peak_rss_mb']:,.0f} MB",
                    f"{spark['peak_rss_mb'] / duck['peak_rss_mb']:.1f}",
                )
            )
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
