"""The local stack against real processes: Apache Kafka and SecantusDB MongoDB, stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import psutil
import pytest

from podrec_assets.core.registry import TOPICS
from podrec_assets.local.processes import ServiceError, free_port
from podrec_assets.local.services import LocalStack
from podrec_assets.settings import load_settings
from podrec_assets_tests.conftest import make_env, winning_indexes


@pytest.fixture
def own_stack(tmp_path):
    """A stack of this test's own (it gets restarted), always stopped at the end."""
    env = make_env(tmp_path / "home")
    stack = LocalStack(load_settings(env))
    yield stack, env
    stack.stop()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    full_env.pop("PODREC_KAFKA_BOOTSTRAP", None)
    full_env.pop("PODREC_MONGO_URI", None)
    full_env.pop("PODREC_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "podrec_assets.cli", *args], capture_output=True, text=True, env=full_env, timeout=120
    )


def test_cli_start_status_stop_leaves_no_process(tmp_path):
    env = make_env(tmp_path / "home")
    started = _cli(env, "services", "start")
    assert started.returncode == 0, started.stderr
    status = _cli(env, "services", "status")
    assert status.returncode == 0
    assert f"127.0.0.1:{env['PODREC_KAFKA_PORT']}" in status.stdout
    assert f"mongodb://127.0.0.1:{env['PODREC_MONGO_PORT']}/?directConnection=true" in status.stdout
    assert f"redis://127.0.0.1:{env['PODREC_REDIS_PORT']}/0" in status.stdout
    assert status.stdout.count(" up ") == 3
    assert "Apache Kafka 4." in status.stdout
    pids = [int(p.read_text()) for p in (tmp_path / "home" / "services").glob("*.pid")]
    assert len(pids) == 3 and all(psutil.pid_exists(pid) for pid in pids)
    redis = psutil.Process(int((tmp_path / "home" / "services" / "redis.pid").read_text()))
    assert redis.name() == "redis-server" and f"127.0.0.1:{env['PODREC_REDIS_PORT']}" in " ".join(redis.cmdline())
    broker = psutil.Process(int((tmp_path / "home" / "services" / "kafka.pid").read_text()))
    assert broker.name() == "java" and "kafka.Kafka" in broker.cmdline()  # a real Apache Kafka JVM

    stopped = _cli(env, "services", "stop")
    assert stopped.returncode == 0 and all(name in stopped.stdout for name in ("kafka", "mongodb", "redis"))
    time.sleep(0.2)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    down = _cli(env, "services", "status")
    assert down.returncode == 1 and down.stdout.count(" down ") == 3


def test_data_survives_clean_restart(own_stack):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from pymongo import MongoClient

    stack, _ = own_stack
    s = stack.settings
    stack.start()
    producer = KafkaProducer(bootstrap_servers=s.kafka_servers)
    for i in range(5):
        producer.send("episode-ids", key=f"ep{i}".encode(), value=f'{{"n": {i}}}'.encode())
    producer.flush()
    producer.close()
    client = MongoClient(s.mongo_url)
    client.podrec.survivors.insert_many([{"n": i} for i in range(5)])
    client.close()

    first_pids = (stack.kafka.pid(), stack.mongo.pid())
    assert stack.stop() == ["kafka", "mongodb", "redis"]
    stack.start()
    assert (stack.kafka.pid(), stack.mongo.pid()) != first_pids

    consumer = KafkaConsumer(bootstrap_servers=s.kafka_servers, enable_auto_commit=False)
    tp = TopicPartition("episode-ids", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    values = []
    deadline = time.monotonic() + 20
    while len(values) < 5 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values += [r.value for r in records]
    consumer.close()
    assert values == [f'{{"n": {i}}}'.encode() for i in range(5)]
    client = MongoClient(s.mongo_url)
    assert sorted(d["n"] for d in client.podrec.survivors.find()) == list(range(5))
    client.close()


def test_topics_created_with_partitions_and_keep_history(stack_settings):
    """Records stamped months ago stay (the broker's time retention would otherwise drop history at once)."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    old = int(datetime(2026, 1, 2, tzinfo=timezone.utc).timestamp() * 1000)
    key = f"old-{time.time_ns()}".encode()
    producer = KafkaProducer(bootstrap_servers=stack_settings.kafka_servers)
    sent = producer.send("episode-ids", key=key, value=b"{}", timestamp_ms=old).get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=stack_settings.kafka_servers, enable_auto_commit=False)
    try:
        for topic in TOPICS:
            assert consumer.partitions_for_topic(topic), topic
        assert len(consumer.partitions_for_topic("user-events")) >= 3
        tp = TopicPartition("episode-ids", sent.partition)
        assert consumer.beginning_offsets([tp])[tp] <= sent.offset
        consumer.assign([tp])
        consumer.seek(tp, sent.offset)
        found = []
        deadline = time.monotonic() + 20
        while not found and time.monotonic() < deadline:
            found = [r for records in consumer.poll(timeout_ms=500).values() for r in records if r.key == key]
        assert found and found[0].timestamp == old
    finally:
        consumer.close()


def test_kafka_keys_groups_and_offsets_for_times(stack_settings):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    topic = "test-keys-groups"
    admin = KafkaAdminClient(bootstrap_servers=stack_settings.kafka_servers)
    admin.create_topics([NewTopic(topic, 3, 1, topic_configs={"retention.ms": "-1"})])
    admin.close()
    base = int(datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp() * 1000)
    producer = KafkaProducer(bootstrap_servers=stack_settings.kafka_servers)
    for i in range(30):
        producer.send(topic, key=f"user-{i % 3}".encode(), value=str(i).encode(), timestamp_ms=base + i * 60_000)
    producer.flush()
    producer.close()

    # a consumer group reads everything once, keys keep their partition (order per key)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=stack_settings.kafka_servers,
        group_id="g1",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 30 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen += records
    consumer.commit()
    consumer.close()
    assert sorted(int(r.value) for r in seen) == list(range(30))
    by_key: dict[bytes, set[int]] = {}
    for r in seen:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    for key in by_key:
        values = [int(r.value) for r in seen if r.key == key]
        assert values == sorted(values)

    # the committed group offset means a restart of the group reads nothing new
    again = KafkaConsumer(
        topic,
        bootstrap_servers=stack_settings.kafka_servers,
        group_id="g1",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    assert sum(len(v) for v in again.poll(timeout_ms=2000).values()) == 0
    again.close()

    # offsets_for_times: the first record at or after minute 20 of each partition
    probe = KafkaConsumer(bootstrap_servers=stack_settings.kafka_servers)
    tps = [TopicPartition(topic, p) for p in range(3)]
    found = probe.offsets_for_times({tp: base + 20 * 60_000 for tp in tps})
    probe.close()
    for tp in tps:
        expected = [r for r in seen if r.partition == tp.partition and r.timestamp >= base + 20 * 60_000]
        if expected:
            assert found[tp].offset == min(r.offset for r in expected)
            assert found[tp].timestamp == min(r.timestamp for r in expected)
        else:
            assert found[tp] is None


def test_mongo_bulk_upsert_with_unique_index(stack_settings):
    from pymongo import MongoClient, ReplaceOne
    from pymongo.errors import DuplicateKeyError

    client = MongoClient(stack_settings.mongo_url)
    coll = client.podrec.test_upserts
    coll.create_index("episode_id", unique=True)
    coll.bulk_write(
        [ReplaceOne({"episode_id": f"e{i}"}, {"episode_id": f"e{i}", "v": 1}, upsert=True) for i in range(100)]
    )
    coll.bulk_write(
        [ReplaceOne({"episode_id": f"e{i}"}, {"episode_id": f"e{i}", "v": 2}, upsert=True) for i in range(50, 150)]
    )
    assert coll.count_documents({}) == 150
    assert coll.count_documents({"v": 2}) == 100
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"episode_id": "e1"})
    plan = coll.find({"episode_id": "e7"}).explain()
    assert winning_indexes(plan) == ["episode_id_1"]
    client.close()


def test_busy_port_gives_clear_error(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        stack = LocalStack(load_settings(make_env(tmp_path, PODREC_KAFKA_PORT=str(port))))
        with pytest.raises(ServiceError) as err:
            stack.start_kafka()
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and "PODREC_KAFKA_PORT" in message
    assert f"pid {os.getpid()}" in message  # the owner is named
    assert stack.kafka.pid() is None


def test_stale_pid_file_is_ignored(own_stack):
    stack, _ = own_stack
    stack.settings.services_dir.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stack.kafka.pid_file.write_text(str(dead.pid))
    assert stack.kafka.pid() is None and not stack.kafka.pid_file.exists()
    assert stack.start_kafka().running


def test_external_servers_start_nothing(stack_settings, tmp_path):
    env = make_env(
        tmp_path / "other",
        PODREC_KAFKA_BOOTSTRAP=stack_settings.kafka_servers,
        PODREC_MONGO_URI=stack_settings.mongo_url,
        PODREC_REDIS_URL=stack_settings.redis_server_url,
    )
    stack = LocalStack(load_settings(env))
    statuses = stack.start()
    assert all(s.running and s.external and s.pid is None for s in statuses)
    assert not (tmp_path / "other" / "services").exists() or not list((tmp_path / "other" / "services").glob("*.pid"))
    assert stack.stop() == []


def test_external_server_down_names_it(tmp_path):
    dead_port = free_port()
    env = make_env(tmp_path, PODREC_KAFKA_BOOTSTRAP=f"127.0.0.1:{dead_port}")
    with pytest.raises(ServiceError, match=f"127.0.0.1:{dead_port}"):
        LocalStack(load_settings(env)).start_kafka()


def test_broker_survives_kill_9_with_every_acknowledged_record(own_stack):
    """kill -9 right after acknowledged sends: the next start recovers the log, nothing acknowledged is lost,
    and new records get new offsets (none reused)."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    stack, _ = own_stack
    s = stack.settings
    stack.start()
    tp = TopicPartition("episode-ids", 0)
    producer = KafkaProducer(bootstrap_servers=s.kafka_servers, acks="all")
    acknowledged = [
        producer.send(tp.topic, value=f"before-{i}".encode(), partition=0).get(timeout=20).offset for i in range(200)
    ]
    producer.close()
    broker = psutil.Process(stack.kafka.pid())
    broker.send_signal(signal.SIGKILL)
    broker.wait(timeout=20)
    assert stack.kafka.pid() is None  # the stale pid file is noticed

    stack.start_kafka()
    assert stack.kafka.pid() != broker.pid
    producer = KafkaProducer(bootstrap_servers=s.kafka_servers, acks="all")
    after = producer.send(tp.topic, value=b"after", partition=0).get(timeout=20).offset
    producer.close()
    assert after == acknowledged[-1] + 1
    consumer = KafkaConsumer(bootstrap_servers=s.kafka_servers, enable_auto_commit=False)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    seen: dict[int, bytes] = {}
    deadline = time.monotonic() + 30
    while len(seen) < 201 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen.update({r.offset: r.value for r in records})
    consumer.close()
    assert [seen[o] for o in acknowledged] == [f"before-{i}".encode() for i in range(200)]
    assert seen[after] == b"after" and len(seen) == 201


def test_broker_stops_with_a_controlled_shutdown(own_stack):
    """SIGTERM: Kafka runs its controlled shutdown and exits on its own (no SIGKILL needed)."""
    stack, _ = own_stack
    stack.start_kafka()
    proc = psutil.Process(stack.kafka.pid())
    started = time.monotonic()
    assert stack.stop() == ["kafka"]
    assert time.monotonic() - started < 60 and not proc.is_running()
    assert "shut down completely" in stack.kafka.log_tail(5)  # the last words of a controlled shutdown


def test_project_producer_keeps_key_partition_and_timestamp(stack_settings):
    """The librdkafka producer writes what the day reads rely on: record timestamp = event time, chosen partition."""
    from podrec_assets.resources.kafka import KafkaResource

    kafka = KafkaResource(bootstrap_servers=stack_settings.kafka_servers)
    base = int(datetime(2026, 4, 1, tzinfo=timezone.utc).timestamp() * 1000)
    tag = f"prod-{time.time_ns()}"
    before = kafka.end_offsets("user-events")
    producer = kafka.producer(acks="1")
    for i in range(50):
        producer.send(
            "user-events", key=f"{tag}-{i % 2}".encode(), value=str(i).encode(), timestamp_ms=base + i, partition=i % 2
        )
    producer.flush()
    producer.close()
    after = kafka.end_offsets("user-events")
    records = kafka.read_range("user-events", {p: (before[p], after[p]) for p in (0, 1)})
    mine = sorted((r for r in records if r.key and r.key.decode().startswith(tag)), key=lambda r: int(r.value))
    assert [int(r.value) for r in mine] == list(range(50))
    assert all(r.timestamp_ms == base + int(r.value) and r.partition == int(r.value) % 2 for r in mine)


def test_project_producer_reports_refused_records_and_a_missing_broker(stack_settings):
    from podrec_assets.resources.kafka import KafkaResource

    producer = KafkaResource(bootstrap_servers=stack_settings.kafka_servers).producer()
    producer.send("user-events", value=b"{}", partition=999)  # no such partition: the broker refuses it
    with pytest.raises(RuntimeError, match=r"could not deliver 1 Kafka records .*user-events\[999\]"):
        producer.flush(timeout_s=20)
    producer.close()

    nowhere = f"127.0.0.1:{free_port()}"
    producer = KafkaResource(bootstrap_servers=nowhere).producer()
    producer.send("user-events", value=b"{}")
    with pytest.raises(RuntimeError, match=rf"not delivered to {nowhere}.*podrec services start"):
        producer.flush(timeout_s=2)
    producer.close()


def test_kafka_storage_formats_with_a_cluster_id_that_starts_with_a_dash(tmp_path):
    """A random cluster id begins with "-" one time in 64; the storage tool must not take it for an option."""
    import base64

    from podrec_assets.local.services import format_kafka_storage, kafka_server_properties

    settings = load_settings(make_env(tmp_path / "home"))
    cluster_id = base64.urlsafe_b64encode(b"\xf8" + bytes(range(15))).decode().rstrip("=")
    assert cluster_id.startswith("-")
    data_dir = tmp_path / "kafka-data"
    data_dir.mkdir()
    config = tmp_path / "kafka.properties"
    config.write_text(kafka_server_properties(settings, data_dir))
    format_kafka_storage(settings, config, data_dir, cluster_id=cluster_id)
    assert f"cluster.id={cluster_id}" in (data_dir / "meta.properties").read_text()
