"""Ingest assets: ``episodes`` (+ its dead letters) from Kafka, and ``transcripts`` (publisher's or faster-whisper)."""

import dagster as dg

from podrec_assets.core.days import day_bounds_ms
from podrec_assets.core.dead_letters import dead_letter_table, reasons_summary
from podrec_assets.core.episodes import (
    catalog_document,
    parse_episode_records,
    status_counts,
    transcribe_episodes,
)
from podrec_assets.core.registry import DEAD_LETTERS_TABLE, EPISODE_METADATA_TOPIC
from podrec_assets.core.schemas import EPISODES, TRANSCRIPTS, to_table
from podrec_assets.defs.partitions import daily_partitions, partition_day
from podrec_assets.defs.policies import heavy
from podrec_assets.resources import AsrResource, KafkaResource, LakeResource, MongoResource

GROUP = "ingest"
DEAD_LETTERS_KEY = dg.AssetKey(["dead_letters", "episode_metadata"])


@dg.multi_asset(
    name="episodes_ingest",
    group_name=GROUP,
    partitions_def=daily_partitions,
    specs=[
        dg.AssetSpec(
            "episodes",
            deps=[dg.AssetKey(["kafka", "episode_metadata"])],
            group_name=GROUP,
            description="Episode metadata published on the day (Kafka episode-metadata), deduplicated "
            "by episode_id, validated. Also upserted into the Mongo `episodes` catalog.",
        ),
        dg.AssetSpec(
            DEAD_LETTERS_KEY,
            deps=[dg.AssetKey(["kafka", "episode_metadata"])],
            group_name=GROUP,
            description="episode-metadata messages of the day that could not be parsed or validated, "
            "with the reason (Delta `dead_letters`, topic slice).",
        ),
    ],
)
def episodes_ingest(context: dg.AssetExecutionContext, kafka: KafkaResource, lake: LakeResource, mongo: MongoResource):
    """Read the day's offset range of episode-metadata; valid rows to `episodes`, the rest to dead letters."""
    day = partition_day(context)
    day_range = kafka.day_range(EPISODE_METADATA_TOPIC, day, through_log_end=True)  # back catalogues arrive late
    existing = lake.day_row_count("episodes", day)
    reason = day_range.why_rereading_loses(existing, lake.day_top_offsets("episodes", day) if existing else {})
    if reason:
        raise dg.Failure(
            f"episodes[{day}]: {reason} (broker {kafka.bootstrap_servers}). The {existing} stored "
            "episodes are kept rather than replaced with less; restore the broker's data or republish, "
            "then re-run.",
            allow_retries=False,
        )
    start_ms, end_ms, _ = day_bounds_ms(day)
    records = [r for r in kafka.read_records(day_range) if start_ms <= r.timestamp_ms < end_ms]
    outside_day = day_range.record_count - len(records)
    rows, dead, duplicates = parse_episode_records(records, day)
    context.log.info(
        f"{day}: {len(records)} records -> {len(rows)} episodes, {len(dead)} dead letters, "
        f"{duplicates} duplicates dropped"
    )
    written = lake.write_partition("episodes", day, to_table(rows, EPISODES), context.run_id)
    dead_written = lake.write_partition(
        DEAD_LETTERS_TABLE, day, dead_letter_table(dead), context.run_id, where={"topic": EPISODE_METADATA_TOPIC}
    )
    documents = [{**catalog_document(row), "date": day.isoformat(), "run_id": context.run_id} for row in rows]
    upserted = mongo.upsert_many("episodes", ["episode_id"], documents) if documents else 0
    # the catalog follows the lake: a document of this day goes only when no day of `episodes` holds it any more
    held = lake.read_all("episodes", columns=["episode_id"]).column("episode_id").to_pylist()
    removed = mongo.delete_day_except("episodes", day, "episode_id", set(held))
    ranges = day_range.range_metadata()
    yield dg.MaterializeResult(
        asset_key="episodes",
        metadata={
            "rows": len(rows),
            "records_read": len(records),
            "duplicates_dropped": duplicates,
            "dead_letters": len(dead),
            "outside_day": outside_day,
            "offset_ranges": ranges,
            "delta_version": written["delta_version"],
            "mongo_upserted": upserted,
            "mongo_removed": removed,
            "shows": len({row["podcast_id"] for row in rows}),
            "dagster/row_count": len(rows),
        },
    )
    yield dg.MaterializeResult(
        asset_key=DEAD_LETTERS_KEY,
        metadata={
            "rows": len(dead),
            "reasons": reasons_summary(dead),
            "topic": EPISODE_METADATA_TOPIC,
            "offset_ranges": ranges,
            "delta_version": dead_written["delta_version"],
            "dagster/row_count": len(dead),
        },
    )


def _status_table(rows: list[dict]) -> str:
    lines = [
        "| episode | status | text from | language | audio s | wall s | why ASR / error |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows[:50]:
        why = row["error"] or (row["asr_reason"] if row["asr_reason"] != "none_published" else "") or ""
        lines.append(
            f"| {row['episode_id']} | {row['status']} | {row['text_source'] or ''} | {row['language'] or ''} | "
            f"{row['audio_seconds'] or 0:.1f} | {row['wall_seconds'] or 0:.1f} | {why.replace('|', '/')[:120]} |"
        )
    return "\n".join(lines)


def _asr_reason_counts(rows: list[dict]) -> dict[str, int]:
    """How many episodes went to ASR for each first reason (none_published, fetch_failed, unparsable, ...)."""
    counts: dict[str, int] = {}
    for row in rows:
        if row["text_source"] == "asr":
            kind = (row["asr_reason"] or "").split(":")[0]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


@dg.asset(
    group_name=GROUP,
    partitions_def=daily_partitions,
    deps=[dg.AssetDep("episodes")],
    # one Whisper run per day: the heaviest step, so a failure or a cancel loses one day, not the backfill
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    op_tags=heavy("asr"),
    tags=heavy("asr"),
    description="One row per episode of the day: the publisher's transcript (Podcasting 2.0 podcast:transcript: "
    "JSON, WebVTT, SRT, HTML, text) when one is usable, else a faster-whisper transcript (int8, VAD, "
    "batched); with segments, language, where the text came from and why ASR ran, and status "
    "ok / failed / skipped_language.",
)
def transcripts(context: dg.AssetExecutionContext, lake: LakeResource, asr: AsrResource) -> dg.MaterializeResult:
    """Text for the day's episodes; one failure marks that episode failed, all failing fails the day."""
    import time

    day = partition_day(context)
    episodes = lake.read_day("episodes", day).to_pylist()
    started = time.perf_counter()
    rows = transcribe_episodes(
        episodes,
        transcribe=asr.transcribe,
        fetch=asr.fetch,
        model_name=asr.model,
        languages=asr.language_list,
        workers=asr.workers,
        progress=context.log.info,
        fetch_transcript=asr.fetch_transcript,
    )
    wall = time.perf_counter() - started
    counts = status_counts(rows)
    if episodes and counts["failed"] == len(rows):
        raise dg.Failure(
            f"every episode of {day} failed to transcribe",
            metadata={"errors": dg.MetadataValue.md(_status_table(rows))},
        )
    written = lake.write_partition("transcripts", day, to_table(rows, TRANSCRIPTS), context.run_id)
    transcribed = [row for row in rows if row["status"] == "ok" and row["text_source"] == "asr"]
    published = [row for row in rows if row["status"] == "ok" and row["text_source"] == "published"]
    audio_seconds = sum(row["audio_seconds"] or 0.0 for row in transcribed)
    asr_seconds = sum(row["wall_seconds"] or 0.0 for row in transcribed)
    return dg.MaterializeResult(
        metadata={
            "rows": len(rows),
            **{f"count_{status}": n for status, n in counts.items()},
            "published_transcripts": len(published),
            "asr_transcripts": len(transcribed),
            "asr_reasons": dg.MetadataValue.json(_asr_reason_counts(rows)),
            "published_seconds": round(sum(row["wall_seconds"] or 0.0 for row in published), 2),
            "audio_seconds": round(audio_seconds, 1),
            "wall_seconds": round(wall, 1),
            "real_time_factor": round(asr_seconds / audio_seconds, 4) if audio_seconds else 0.0,
            "asr_audio_seconds_per_second": round(audio_seconds / asr_seconds, 1) if asr_seconds else 0.0,
            "model": asr.model,
            "batch_size": asr.batch_size,
            "languages": ",".join(asr.language_list),
            "workers": asr.workers,
            "delta_version": written["delta_version"],
            "episodes": dg.MetadataValue.md(_status_table(rows)),
            "dagster/row_count": len(rows),
        }
    )
