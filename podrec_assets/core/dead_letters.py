"""Messages that could not be parsed or validated: kept with where they came from and why."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from podrec_assets.core.schemas import DEAD_LETTERS, to_table


def dead_letter(
    topic: str, partition: int, offset: int, timestamp_ms: int, key: bytes | None, value: bytes | None, reason: str
) -> dict[str, Any]:
    """One dead-letter row; the payload is kept as text (undecodable bytes escaped, never dropped)."""
    return {
        "topic": topic,
        "kafka_partition": partition,
        "kafka_offset": offset,
        "kafka_timestamp": datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc),
        "key": key.decode("utf-8", "backslashreplace") if key is not None else None,
        "raw_payload": value.decode("utf-8", "backslashreplace") if value is not None else None,
        "reason": reason,
    }


def dead_letter_table(rows: list[dict[str, Any]]) -> pa.Table:
    return to_table(rows, DEAD_LETTERS)


def reasons_summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Count of dead letters per reason kind (the text before the first ':')."""
    counts: dict[str, int] = {}
    for row in rows:
        kind = row["reason"].split(":", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))
