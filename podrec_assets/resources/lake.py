"""The Delta lake: one table per asset, a ``date`` partition column, one partition replaced per write."""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster import ConfigurableResource

COMMON_COLUMNS = ("date", "run_id", "created_at")


def _sql_literal(value: Any) -> str:
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def partition_predicate(day: date, where: dict[str, Any] | None = None) -> str:
    clauses = [f"date = '{day.isoformat()}'"]
    clauses += [f"{column} = {_sql_literal(value)}" for column, value in (where or {}).items()]
    return " AND ".join(clauses)


def with_common_columns(table: pa.Table, day: date, run_id: str) -> pa.Table:
    """Stamp every row with its partition date, the run that wrote it and when."""
    table = table.drop_columns([c for c in COMMON_COLUMNS if c in table.column_names])
    n = table.num_rows
    now = datetime.now(timezone.utc)
    table = table.append_column("date", pa.array([day] * n, pa.date32()))
    table = table.append_column("run_id", pa.array([run_id] * n, pa.string()))
    return table.append_column("created_at", pa.array([now] * n, pa.timestamp("us", tz="UTC")))


class LakeResource(ConfigurableResource):
    """Reads and writes the project's Delta tables under ``root`` (local path or object-store URI)."""

    root: str
    storage_options_json: str = ""

    @property
    def storage_options(self) -> dict[str, str] | None:
        return json.loads(self.storage_options_json) if self.storage_options_json else None

    def table_uri(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def exists(self, name: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.table_uri(name), storage_options=self.storage_options)

    def table(self, name: str, version: int | None = None):
        from deltalake import DeltaTable

        return DeltaTable(self.table_uri(name), version=version, storage_options=self.storage_options)

    def version(self, name: str) -> int | None:
        return self.table(name).version() if self.exists(name) else None

    def days(self, name: str, version: int | None = None) -> list[date]:
        """The days the table holds (from the Delta log's partition values: no data file is read)."""
        if not self.exists(name):
            return []
        actions = pa.table(self.table(name, version).get_add_actions(flatten=True))
        if "partition.date" not in actions.column_names:
            return []
        return sorted({d for d in actions.column("partition.date").to_pylist() if d is not None})

    def written_ms(self, name: str) -> dict[date, int]:
        """When each day was last written: the newest data file's modification time (epoch ms) per day partition,
        from the Delta log (no data file is read)."""
        if not self.exists(name):
            return {}
        actions = pa.table(self.table(name).get_add_actions(flatten=True))
        if "partition.date" not in actions.column_names:
            return {}
        written: dict[date, int] = {}
        for day, ms in zip(
            actions.column("partition.date").to_pylist(), actions.column("modification_time").to_pylist()
        ):
            if day is not None:
                written[day] = max(written.get(day, 0), int(ms))
        return written

    def write_partition(
        self, name: str, day: date, data: pa.Table, run_id: str, where: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Replace exactly the rows of ``day`` (and ``where``, e.g. one topic's slice) with ``data``.

        A predicate overwrite is one Delta commit: readers see the old partition or the new one, never a
        mix, and runs writing different days commit independently (retried on a commit conflict).
        """
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError

        stamped = with_common_columns(data, day, run_id)
        for attempt in range(8):
            try:
                if self.exists(name):
                    write_deltalake(
                        self.table_uri(name),
                        stamped,
                        mode="overwrite",
                        predicate=partition_predicate(day, where),
                        partition_by=["date"],
                        schema_mode="merge",
                        storage_options=self.storage_options,
                    )
                else:
                    write_deltalake(
                        self.table_uri(name),
                        stamped,
                        mode="append",
                        partition_by=["date"],
                        storage_options=self.storage_options,
                    )
                break
            except CommitFailedError:
                if attempt == 7:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return {"rows": stamped.num_rows, "delta_version": self.version(name), "table_uri": self.table_uri(name)}

    def replace_table(self, name: str, table: pa.Table) -> str:
        """Overwrite an unpartitioned table whole (schema included): tables that are one snapshot, not a history of
        days (the simulator's true tastes). Returns the table's URI."""
        from deltalake import write_deltalake

        uri = self.table_uri(name)
        write_deltalake(uri, table, mode="overwrite", schema_mode="overwrite", storage_options=self.storage_options)
        return uri

    def read_days(
        self, name: str, start: date, end: date, columns: list[str] | None = None, version: int | None = None
    ) -> pa.Table:
        """All rows with start <= date <= end (both inclusive), every day of the range."""
        if not self.exists(name):
            return pa.table({})
        dataset = self.table(name, version).to_pyarrow_dataset()
        import pyarrow.dataset as ds

        day_field = ds.field("date")
        flt = (day_field >= pa.scalar(start, type=pa.date32())) & (day_field <= pa.scalar(end, type=pa.date32()))
        return dataset.to_table(columns=columns, filter=flt)

    def read_day(self, name: str, day: date, columns: list[str] | None = None, version: int | None = None) -> pa.Table:
        return self.read_days(name, day, day, columns, version)

    def read_all(self, name: str, columns: list[str] | None = None) -> pa.Table:
        if not self.exists(name):
            return pa.table({})
        return self.table(name).to_pyarrow_dataset().to_table(columns=columns)

    def day_row_count(self, name: str, day: date, where: dict[str, Any] | None = None) -> int:
        if not self.exists(name):
            return 0
        import pyarrow.dataset as ds

        flt = ds.field("date") == pa.scalar(day, type=pa.date32())
        for column, value in (where or {}).items():
            flt = flt & (ds.field(column) == value)
        return self.table(name).to_pyarrow_dataset().count_rows(filter=flt)

    def day_top_offsets(self, name: str, day: date) -> dict[int, int]:
        """Per Kafka partition, the highest ``kafka_offset`` among the day's rows (a Kafka-fed table)."""
        stored = self.read_day(name, day, columns=["kafka_partition", "kafka_offset"])
        if not stored.num_rows:
            return {}
        tops = stored.group_by("kafka_partition").aggregate([("kafka_offset", "max")])
        return dict(zip(tops.column("kafka_partition").to_pylist(), tops.column("kafka_offset_max").to_pylist()))

    def spark_read_days(self, spark: Any, name: str, start: date, end: date, version: int):
        """The rows of a pinned table version with start <= date <= end, as a Spark DataFrame: Spark's own Delta
        reader (time travel to ``version``, the day's partitions pruned by the filter)."""
        frame = spark.read.format("delta").option("versionAsOf", int(version)).load(self._spark_uri(name))
        return frame.where(f"date >= DATE'{start.isoformat()}' AND date <= DATE'{end.isoformat()}'")

    def spark_write_partition(
        self, name: str, day: date, frame: Any, run_id: str, where: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``write_partition`` for a Spark DataFrame, written by Spark's Delta writer with the same semantics:
        the rows of ``day`` (and ``where``) replaced in one commit (replaceWhere), stamped like every write."""
        from pyspark.sql import functions as F

        stamped = (
            frame.drop(*[c for c in COMMON_COLUMNS if c in frame.columns])
            .withColumn("date", F.lit(day.isoformat()).cast("date"))
            .withColumn("run_id", F.lit(run_id))
            .withColumn("created_at", F.lit(datetime.now(timezone.utc)).cast("timestamp"))
        )
        for attempt in range(8):
            try:
                if self.exists(name):
                    (
                        stamped.write.format("delta")
                        .mode("overwrite")
                        .option("replaceWhere", partition_predicate(day, where))
                        .option("mergeSchema", "true")
                        .save(self._spark_uri(name))
                    )
                else:
                    stamped.write.format("delta").mode("append").partitionBy("date").save(self._spark_uri(name))
                break
            except Exception as exc:  # py4j wraps Delta's ConcurrentAppendException & co.: retry those only
                if "Concurrent" not in type(exc).__name__ + str(exc)[:500] or attempt == 7:
                    raise
                time.sleep(0.2 * (attempt + 1))
        table = self.table(name)
        rows = int(table.history(1)[0].get("operationMetrics", {}).get("numOutputRows", 0))
        return {"rows": rows, "delta_version": table.version(), "table_uri": self.table_uri(name)}

    def _spark_uri(self, name: str) -> str:
        """The table's URI as Hadoop names it (a local folder needs the file: scheme; object stores keep theirs)."""
        uri = self.table_uri(name)
        return uri if "://" in uri else "file://" + str(Path(uri).resolve())
