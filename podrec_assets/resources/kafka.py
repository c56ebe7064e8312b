"""Kafka I/O: producers, and reading exactly one day's offset range of a topic.

A day's range per partition is [offsets_for_times(day start), offsets_for_times(day end + lateness)) (to the log
end for topics stamped long before arrival, ``through_log_end``); the consumer is assigned (no group), reads that
bounded range and is closed, so no idle consumer keeps polling. The same range on a re-run gives the same records,
so materializing a day is idempotent; with ``through_log_end`` a re-run also sees the day's records that arrived
since, never fewer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

from dagster import ConfigurableResource

from podrec_assets.core.days import day_bounds_ms
from podrec_assets.resources.unavailable import server_unavailable


@dataclass
class KafkaRecord:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


@dataclass
class DayRange:
    """The offsets of one day of a topic, per partition, as ``offsets_for_times`` answers (log end when none).

    ``start``/``stop``: the first offset stamped at or after the day's start / after its end plus the lateness,
    so [start, stop) is what a day's read consumes (the same range on a re-run). ``midnight``: the first offset
    stamped on the next day (records from there to ``stop`` arrived late but within the lateness).
    ``previous_stop``: the previous day's ``stop``. ``log_start``/``log_end``: what the broker holds now.
    """

    topic: str
    day: date
    lateness_minutes: int
    start: dict[int, int]
    stop: dict[int, int]
    midnight: dict[int, int]
    previous_stop: dict[int, int]
    log_start: dict[int, int]
    log_end: dict[int, int]

    @property
    def ranges(self) -> dict[int, tuple[int, int]]:
        """Per partition, the [start, stop) offsets the day's read consumes."""
        return {p: (a, max(a, self.stop[p])) for p, a in sorted(self.start.items())}

    @property
    def record_count(self) -> int:
        return sum(b - a for a, b in self.ranges.values())

    @property
    def possibly_truncated(self) -> list[int]:
        """Partitions whose retained log starts at or after the day's start: older records may be gone."""
        return sorted(p for p, first in self.log_start.items() if first > 0 and self.start[p] <= first)

    def lost_since(self, stored_top_offsets: dict[int, int]) -> list[str]:
        """Partitions where the broker now ends at or below an offset a stored day was read from: its data was
        wiped or the topic recreated, so reading again would replace the day with other, fewer records."""
        return [
            f"partition {p} ends at offset {self.log_end.get(p, 0)} but the stored day holds offset {top}"
            for p, top in sorted(stored_top_offsets.items())
            if self.log_end.get(p, 0) <= top
        ]

    def why_rereading_loses(self, stored_rows: int, stored_top_offsets: dict[int, int]) -> str | None:
        """Why reading this day again would replace its ``stored_rows`` with less (None when it would not): the
        broker was wiped or the topic recreated, or retention deleted the start of the day."""
        if not stored_rows:
            return None
        lost = self.lost_since(stored_top_offsets)
        if lost:
            return (
                f"the broker holds fewer records of topic {self.topic!r} than the stored day was read from "
                f"({'; '.join(lost)}): its data was wiped or the topic recreated"
            )
        truncated = self.possibly_truncated
        if truncated:
            detail = ", ".join(f"partition {p}: log starts at offset {self.log_start[p]}" for p in truncated)
            return (
                f"the broker no longer holds the start of {self.day} on topic {self.topic!r} ({detail}; older "
                "records were deleted by retention)"
            )
        return None

    def range_metadata(self) -> dict[str, str]:
        return {f"p{p}": f"{a}..{b}" for p, (a, b) in self.ranges.items()}

    def spark_offsets(self) -> tuple[str, str]:
        """startingOffsets / endingOffsets for Spark's Kafka source: exactly these ranges (end exclusive)."""
        ranges = self.ranges
        return (
            json.dumps({self.topic: {str(p): a for p, (a, _) in ranges.items()}}),
            json.dumps({self.topic: {str(p): b for p, (_, b) in ranges.items()}}),
        )


class Producer:
    """Sends records with librdkafka; ``flush`` waits for every ack and raises if any record was not delivered.

    kafka-python spends ~35 µs of Python per record, which caps one process near 29k records/s; librdkafka
    batches in its own threads (~240k/s on this machine). Bounded ranges are consumed with librdkafka too
    (``KafkaResource.read_range``); admin calls and offset look-ups stay on kafka-python.
    """

    def __init__(self, bootstrap_servers: str, options: dict[str, Any], delivery_timeout_s: float = 120.0):
        from confluent_kafka import Producer as RdKafkaProducer

        failures: list[str] = []
        failed = [0]

        def delivered(error, message) -> None:  # a closure, not a bound method: no cycle keeps librdkafka alive
            if error is not None:
                failed[0] += 1
                if len(failures) < 5:
                    failures.append(f"{message.topic()}[{message.partition()}]: {error.str()}")

        self.bootstrap_servers = bootstrap_servers
        self._failures, self._failed, self._sent = failures, failed, 0
        self._producer = RdKafkaProducer(
            {
                "bootstrap.servers": bootstrap_servers,
                "queue.buffering.max.messages": 500_000,
                "delivery.report.only.error": True,
                "on_delivery": delivered,
                "log_level": 3,
                "partitioner": "murmur2_random",  # the key -> partition mapping of kafka-python and the Java client
                "max.in.flight.requests.per.connection": 5,  # as kafka-python: retries cannot reorder much
                "message.timeout.ms": int(delivery_timeout_s * 1000),
                **options,
            }
        )

    def _raise_failures(self) -> None:
        if self._failed[0]:
            raise RuntimeError(
                f"could not deliver {self._failed[0]} Kafka records to {self.bootstrap_servers} ("
                + "; ".join(self._failures)
                + "): is the broker running? (`podrec services start`)"
            )

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record (the record timestamp is ``timestamp_ms``, default now); raises once deliveries fail."""
        kwargs: dict[str, Any] = {"value": value, "key": key}
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:  # the local queue is full: let librdkafka send, then retry
                self._producer.poll(0.05)
                self._raise_failures()
        self._sent += 1
        if self._sent % 10_000 == 0:  # serve delivery reports as we go, so a failing broker stops a long run early
            self.check()

    def check(self) -> None:
        """Serve pending delivery reports; raise if any record could not be delivered."""
        self._producer.poll(0)
        self._raise_failures()

    def flush(self, timeout_s: float = 120.0) -> None:
        """Wait for every queued record to be acknowledged; raise if any was not."""
        remaining = self._producer.flush(timeout_s)
        self._raise_failures()
        if remaining:
            raise RuntimeError(
                f"{remaining} Kafka records were not delivered to {self.bootstrap_servers} within "
                f"{timeout_s:g}s: is the broker running? (`podrec services start`)"
            )

    def close(self) -> None:
        """Drop what was not sent yet (call ``flush`` first to wait for it) and stop librdkafka's threads."""
        self._producer.purge()
        self._producer.flush(0)
        self._producer.close()


class KafkaResource(ConfigurableResource):
    """Connection settings for the broker; every client it hands out is short-lived."""

    bootstrap_servers: str
    lateness_minutes: int = 60
    request_timeout_ms: int = 10000

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "bootstrap_timeout_ms": self.request_timeout_ms,
            "request_timeout_ms": max(self.request_timeout_ms, 3000) + 1000,
        }

    def producer(self, linger_ms: int = 20, batch_bytes: int = 1024 * 1024, acks: str = "all") -> "Producer":
        """A producer (librdkafka through confluent-kafka: ~8x kafka-python's send rate, needed by the simulator)."""
        return Producer(self.bootstrap_servers, {"linger.ms": linger_ms, "batch.size": batch_bytes, "acks": acks})

    def consumer(self, **overrides: Any):
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        options = {"enable_auto_commit": False, "group_id": None, "auto_offset_reset": "earliest", **overrides}
        try:
            return KafkaConsumer(**self._client_kwargs(), **options)
        except KafkaError as exc:
            raise server_unavailable("Kafka", self.bootstrap_servers, "PODREC_KAFKA_BOOTSTRAP", exc) from exc

    def admin(self):
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            return KafkaAdminClient(**self._client_kwargs())
        except KafkaError as exc:
            raise server_unavailable("Kafka", self.bootstrap_servers, "PODREC_KAFKA_BOOTSTRAP", exc) from exc

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Current end offset of every partition of ``topic`` ({} when the topic does not exist)."""
        from kafka import TopicPartition

        consumer = self.consumer()
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()} if tps else {}
        finally:
            consumer.close()

    def read_range(self, topic: str, ranges: dict[int, tuple[int, int]], timeout_s: float = 120.0) -> list[KafkaRecord]:
        """Every record with start <= offset < stop per partition, in offset order per partition.

        librdkafka (confluent-kafka) fetches in its own threads: ~1.9x kafka-python's records/s (bench/events.py),
        which is most of a big day's read. A partition is done at its first record at or past stop - 1 (offsets may
        have gaps), or at its end of log; a start below the log start (retention) reads from the log start. A
        transient error (a dropped connection) is left to librdkafka, which reconnects; a fatal one, or no progress
        until ``timeout_s``, raises."""
        from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

        stops = {p: b for p, (a, b) in ranges.items() if b > a}
        if not stops:
            return []
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": "podrec-range-reader",  # required by librdkafka; nothing is committed (assign, no commit)
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 8 * 1024 * 1024,
                "socket.timeout.ms": max(self.request_timeout_ms, 3000) + 1000,
                "log_level": 3,
            }
        )
        records: list[KafkaRecord] = []
        try:
            try:
                consumer.list_topics(topic, timeout=self.request_timeout_ms / 1000)
            except KafkaException as exc:
                raise server_unavailable("Kafka", self.bootstrap_servers, "PODREC_KAFKA_BOOTSTRAP", exc) from exc
            consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in stops])
            pending = set(stops)
            deadline, last_error = time.monotonic() + timeout_s, "none"
            while pending:
                if time.monotonic() > deadline:
                    missing = {p: (consumer.position([TopicPartition(topic, p)])[0].offset, stops[p]) for p in pending}
                    raise TimeoutError(
                        f"Kafka {topic}: range not fully read within {timeout_s}s (position, stop): {missing}; "
                        f"last error from {self.bootstrap_servers}: {last_error}"
                    )
                done = set()
                for message in consumer.consume(num_messages=20_000, timeout=0.5):
                    partition, offset, error = message.partition(), message.offset(), message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            if offset >= stops.get(partition, 0):
                                done.add(partition)
                        elif error.fatal():
                            raise KafkaException(error)
                        else:
                            last_error = error.str()
                        continue
                    stop = stops.get(partition)
                    if stop is None or partition in done or offset < ranges[partition][0]:
                        continue
                    if offset < stop:
                        records.append(
                            KafkaRecord(partition, offset, message.timestamp()[1], message.key(), message.value())
                        )
                    if offset >= stop - 1:
                        done.add(partition)
                if done & pending:
                    consumer.pause([TopicPartition(topic, p) for p in done & pending])
                    pending -= done
        finally:
            consumer.close()
        return records

    def offsets_at_times(self, topic: str, times_ms: dict[str, int]) -> dict[str, dict[int, int]]:
        """Per partition: ``log_start``, ``log_end`` and, for each named time, the first offset at or after it
        (the log end when no record is that late). One short-lived consumer for all the look-ups."""
        from kafka import TopicPartition

        consumer = self.consumer()
        try:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                raise RuntimeError(
                    f"Kafka topic {topic!r} does not exist on {self.bootstrap_servers}. "
                    "Run `podrec services start` (it creates the topics) or create it."
                )
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            log_start, log_end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
            found = {name: consumer.offsets_for_times({tp: ms for tp in tps}) for name, ms in times_ms.items()}
        finally:
            consumer.close()
        result: dict[str, dict[int, int]] = {"log_start": {}, "log_end": {}}
        for tp in tps:
            result["log_start"][tp.partition] = log_start[tp]
            result["log_end"][tp.partition] = log_end[tp]
            for name, offsets in found.items():
                hit = offsets.get(tp)
                result.setdefault(name, {})[tp.partition] = hit.offset if hit is not None else log_end[tp]
        return result

    def day_range(self, topic: str, day: date, through_log_end: bool = False) -> DayRange:
        """Where ``day`` (UTC) lies in ``topic``, per partition: the one definition of a day's offsets.

        ``through_log_end``: the day's read runs to the end of the log instead of stopping at the first record
        stamped after the day plus the lateness. For topics whose records may be stamped long before they
        arrive (``episode-metadata``: a feed's back catalogue is stamped with each episode's publication time,
        and feeds list the newest first), a record of day D can follow records of later days; the start stays
        exact (the first offset stamped at or after D's start: nothing of D lies before it).
        """
        start_ms, end_ms, late_ms = day_bounds_ms(day, self.lateness_minutes)
        found = self.offsets_at_times(
            topic,
            {
                "start": start_ms,
                "midnight": end_ms,
                "stop": late_ms,
                "previous_stop": start_ms + self.lateness_minutes * 60_000,
            },
        )
        if through_log_end:
            found["stop"] = dict(found["log_end"])
        return DayRange(topic, day, self.lateness_minutes, **found)

    def read_records(self, day_range: DayRange, spark: Any = None) -> list[KafkaRecord]:
        """Every record of the range, once, in offset order per partition: by kafka-python, or with a
        SparkSession by Spark's Kafka source (engine=spark) over exactly the same offsets."""
        if spark is not None:
            return self.read_range_spark(spark, day_range)
        timeout_s = 120 + day_range.record_count / 2000  # generous: a slow disk is not an error
        return self.read_range(day_range.topic, day_range.ranges, timeout_s=timeout_s)

    def read_range_spark(self, spark: Any, day_range: DayRange) -> list[KafkaRecord]:
        """The day's records through Spark's Kafka source (spark-sql-kafka), bounded by the exact offsets."""
        if not day_range.record_count:
            return []
        starting, ending = day_range.spark_offsets()
        frame = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", self.bootstrap_servers)
            .option("assign", json.dumps({day_range.topic: sorted(day_range.start)}))
            .option("startingOffsets", starting)
            .option("endingOffsets", ending)
            .option("kafka.request.timeout.ms", str(max(self.request_timeout_ms, 3000) + 1000))
            .load()
            .selectExpr("partition", "offset", "unix_millis(timestamp) AS timestamp_ms", "key", "value")
        )
        table = frame.toArrow()
        columns = [table.column(name).to_pylist() for name in ("partition", "offset", "timestamp_ms", "key", "value")]
        records = [KafkaRecord(*fields) for fields in zip(*columns)]
        records.sort(key=lambda r: (r.partition, r.offset))
        return records

    def produce(self, topic: str, messages: Iterable[tuple[bytes | None, bytes, int | None]]) -> int:
        """Send (key, value, timestamp_ms) messages and wait for every ack; returns the count."""
        producer = self.producer()
        count = 0
        try:
            for key, value, ts in messages:
                producer.send(topic, key=key, value=value, timestamp_ms=ts)
                count += 1
            producer.flush()
        finally:
            producer.close()
        return count
