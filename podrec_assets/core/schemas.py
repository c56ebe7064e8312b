"""Arrow schemas of every Delta table: the data contracts of the lake.

The lake adds ``date`` (Delta date, the partition column), ``run_id`` and ``created_at`` to every table;
the schemas below are what an asset hands to the lake. Assets build their output with ``to_table`` so a
missing or mistyped column fails loudly at write time instead of drifting silently.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

SEGMENT = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string())])
# a publisher's transcript link (Podcasting 2.0 <podcast:transcript>, PodcastIndex `transcripts`)
TRANSCRIPT_LINK = pa.struct(
    [("url", pa.string()), ("type", pa.string()), ("language", pa.string()), ("rel", pa.string())]
)

EPISODES = pa.schema(
    [
        ("episode_id", pa.string()),
        ("podcast_id", pa.string()),
        ("podcast_title", pa.string()),
        ("episode_title", pa.string()),
        ("description", pa.string()),
        ("audio_url", pa.string()),
        ("language", pa.string()),
        ("published_at", TS),
        ("duration_sec", pa.float64()),
        ("categories", pa.list_(pa.string())),
        ("source", pa.string()),
        ("transcripts", pa.list_(TRANSCRIPT_LINK)),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
    ]
)

TRANSCRIPTS = pa.schema(
    [
        ("episode_id", pa.string()),
        ("status", pa.string()),  # ok | failed | skipped_language
        ("error", pa.string()),
        ("language", pa.string()),
        ("language_probability", pa.float64()),
        ("audio_seconds", pa.float64()),
        ("wall_seconds", pa.float64()),
        ("model", pa.string()),
        ("text", pa.string()),
        ("segments", pa.list_(SEGMENT)),
        ("text_source", pa.string()),  # published | asr (null: skipped before either was tried)
        ("asr_reason", pa.string()),  # why ASR ran: none_published | fetch_failed | unparsable | wrong_language: ...
        ("transcript_url", pa.string()),  # the publisher's transcript used (text_source = published)
        ("transcript_format", pa.string()),  # json | vtt | srt | html | text
    ]
)

USER_EVENTS = pa.schema(
    [
        ("event_id", pa.string()),
        ("ts", TS),
        ("user_id", pa.string()),
        ("episode_id", pa.string()),
        ("event", pa.string()),
        ("device", pa.string()),
        ("rating", pa.int32()),
        ("position_sec", pa.float64()),
        ("from_sec", pa.float64()),
        ("to_sec", pa.float64()),
        ("played_pct", pa.float64()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
    ]
)

USER_EPISODE_DAILY = pa.schema(
    [
        ("user_id", pa.string()),
        ("episode_id", pa.string()),
        ("engagement", pa.float64()),
        ("event_count", pa.int64()),
        ("max_played_pct", pa.float64()),
        ("completed", pa.bool_()),
        ("last_event_at", TS),
    ]
)

# incremental state: one row per (user, episode) ever engaged with, through the partition's day
LISTENER_HISTORY = pa.schema(
    [
        ("user_id", pa.string()),
        ("episode_id", pa.string()),
        ("first_date", pa.date32()),
        ("last_date", pa.date32()),
        ("days_engaged", pa.int64()),
        ("engagement", pa.float64()),
        ("completed", pa.bool_()),
    ]
)

EPISODE_VECTORS = pa.schema(
    [
        ("episode_id", pa.string()),
        ("published_at", TS),
        ("model", pa.string()),
        ("chunk_count", pa.int32()),
        ("token_count", pa.int32()),
        ("vector", pa.list_(pa.float32())),
    ]
)

SIMILARITIES = pa.schema(
    [
        ("new_episode_id", pa.string()),
        ("historical_episode_id", pa.string()),
        ("rank", pa.int32()),
        ("cosine_similarity", pa.float64()),
        ("distance", pa.float64()),
        ("model", pa.string()),
    ]
)

ALS_TOP_N = pa.schema(
    [
        ("user_id", pa.string()),
        ("episode_id", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float64()),
        ("model_version", pa.string()),
    ]
)

ALS_FACTORS = pa.schema(
    [
        ("model_version", pa.string()),
        ("kind", pa.string()),  # user | episode
        ("id", pa.string()),
        ("vector", pa.list_(pa.float32())),
    ]
)

FINAL_RECOMMENDATIONS = pa.schema(
    [
        ("user_id", pa.string()),
        ("episode_id", pa.string()),
        ("rank", pa.int32()),
        ("final_score", pa.float64()),
        ("als_score", pa.float64()),
        ("content_score", pa.float64()),
        ("alpha", pa.float64()),
        ("reason", pa.string()),  # als | content | hybrid | popular
        ("because_episode_id", pa.string()),
        ("model_version", pa.string()),
    ]
)

RECOMMENDATION_METRICS = pa.schema(
    [
        ("model", pa.string()),  # popularity | als | content | hybrid
        ("metric", pa.string()),  # precision@k, recall@k, ndcg@k, map@k, coverage, novelty, diversity, ...
        ("k", pa.int32()),
        ("value", pa.float64()),
        ("users_evaluated", pa.int64()),
    ]
)

DEAD_LETTERS = pa.schema(
    [
        ("topic", pa.string()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("kafka_timestamp", TS),
        ("key", pa.string()),
        ("raw_payload", pa.string()),
        ("reason", pa.string()),
    ]
)


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) to an Arrow table of exactly ``schema``; unknown keys are an error."""
    rows = list(rows)
    names = set(schema.names)
    for row in rows:
        extra = set(row) - names
        if extra:
            raise ValueError(f"columns not in the schema: {sorted(extra)}")
    return pa.Table.from_pylist([{n: row.get(n) for n in schema.names} for row in rows], schema=schema)


def frame_to_table(frame, schema: pa.Schema) -> pa.Table:
    """A pandas frame with exactly the schema's columns, typed by the schema (fails loudly on a mismatch): the
    columnar way for large tables, where ``to_table``'s dict per row costs seconds."""
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
