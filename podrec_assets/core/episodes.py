"""Episode metadata: the Kafka message contract, validation, de-duplication, and transcribing a day.

Producers (PodcastIndex, RSS, demo) build messages with ``episode_message``; the ``episodes`` asset turns a
day's records back into rows with ``parse_episode_records`` (invalid ones become dead letters with a
reason; the latest message per episode_id wins). ``transcribe_episodes`` is the ``transcripts`` asset's
work: the publisher's transcript when one is usable, ASR otherwise; one episode's failure is recorded on its
row and never stops the others.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterable

from podrec_assets.core.dead_letters import dead_letter
from podrec_assets.core.events import utf8_encodable
from podrec_assets.core.published_transcripts import (
    UnparsableTranscript,
    parse_transcript,
    ranked_links,
    transcript_links,
)
from podrec_assets.core.registry import EPISODE_METADATA_TOPIC

SOURCES = ("podcastindex", "rss", "demo")
REQUIRED = ("episode_id", "podcast_id", "podcast_title", "episode_title", "audio_url", "published_at", "source")
AUDIO_SCHEMES = ("http://", "https://", "file://")

log = logging.getLogger(__name__)


class InvalidEpisode(ValueError):
    """A message that breaks the episode-metadata contract; the text is the dead-letter reason."""


def parse_time(value: Any) -> datetime:
    """ISO-8601 text (``Z`` or an offset; naive means UTC) to an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        raise InvalidEpisode(f"bad_published_at: {value!r} is not an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidEpisode(f"bad_published_at: {value!r}") from exc
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def base_language(tag: str | None) -> str:
    """'en-US' -> 'en' (feeds use BCP-47 tags; Whisper reports ISO 639-1 codes)."""
    return (tag or "").strip().lower().replace("_", "-").split("-")[0]


def validate_episode(payload: Any) -> dict[str, Any]:
    """A contract-conforming message value -> a typed row of ``schemas.EPISODES`` (less Kafka columns)."""
    if not isinstance(payload, dict):
        raise InvalidEpisode("not_an_object: the message value must be a JSON object")
    missing = [name for name in REQUIRED if payload.get(name) in (None, "")]
    if missing:
        raise InvalidEpisode(f"missing_field: {', '.join(missing)}")
    for name in REQUIRED:
        if name != "published_at" and not isinstance(payload[name], str):
            raise InvalidEpisode(f"bad_type: {name} must be a string")
    if payload["source"] not in SOURCES:
        raise InvalidEpisode(f"bad_source: {payload['source']!r} (one of {', '.join(SOURCES)})")
    if not payload["audio_url"].startswith(AUDIO_SCHEMES):
        raise InvalidEpisode(f"bad_audio_url: {payload['audio_url'][:200]!r} (http, https or file)")
    duration = payload.get("duration_sec")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
            raise InvalidEpisode(f"bad_duration: {duration!r}")
        duration = float(duration)
    categories = payload.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise InvalidEpisode("bad_categories: must be a list of strings")
    for name in ("description", "language"):
        if payload.get(name) is not None and not isinstance(payload[name], str):
            raise InvalidEpisode(f"bad_type: {name} must be a string")
    try:
        transcripts = transcript_links(payload.get("transcripts"))
    except ValueError as exc:
        raise InvalidEpisode(str(exc)) from None
    texts = [payload[n] for n in REQUIRED if isinstance(payload[n], str)] + categories
    texts += [payload.get(n) or "" for n in ("description", "language")] + [v for t in transcripts for v in t.values()]
    if not all(utf8_encodable(text) for text in texts):
        raise InvalidEpisode("invalid_text: a field holds a lone surrogate escape (not encodable as UTF-8)")
    return {
        "episode_id": payload["episode_id"],
        "podcast_id": payload["podcast_id"],
        "podcast_title": payload["podcast_title"],
        "episode_title": payload["episode_title"],
        "description": payload.get("description") or "",
        "audio_url": payload["audio_url"],
        "language": payload.get("language") or "",
        "published_at": parse_time(payload["published_at"]),
        "duration_sec": duration,
        "categories": categories,
        "source": payload["source"],
        "transcripts": transcripts,
    }


def episode_message(episode: dict[str, Any]) -> tuple[bytes, bytes, int]:
    """(key, value, timestamp ms) for ``episode-metadata``: validated first, timestamp = published_at."""
    row = validate_episode(episode)
    value = {**row, "published_at": iso_utc(row["published_at"])}
    return (
        row["episode_id"].encode(),
        json.dumps(value, ensure_ascii=False).encode(),
        int(row["published_at"].timestamp() * 1000),
    )


def episode_id_message(episode: dict[str, Any]) -> tuple[bytes, bytes, int]:
    """(key, value, timestamp ms) for ``episode-ids``."""
    published = (
        parse_time(episode["published_at"]) if isinstance(episode["published_at"], str) else episode["published_at"]
    )
    value = {"episode_id": episode["episode_id"], "published_at": iso_utc(published)}
    return episode["episode_id"].encode(), json.dumps(value).encode(), int(published.timestamp() * 1000)


def parse_episode_records(
    records: Iterable[Any], day: date, topic: str = EPISODE_METADATA_TOPIC
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Kafka records of one day -> (rows, dead letters, duplicates dropped). Latest message per id wins."""
    latest: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
    dead: list[dict[str, Any]] = []
    valid = 0
    for record in records:
        try:
            try:
                payload = json.loads(record.value.decode("utf-8")) if record.value is not None else None
            except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, a number too long, nesting too deep
                raise InvalidEpisode(f"bad_json: {type(exc).__name__}: {str(exc)[:200]}") from None
            row = validate_episode(payload)
            key = record.key.decode("utf-8", "replace") if record.key is not None else None
            if key is not None and key != row["episode_id"]:
                raise InvalidEpisode(f"key_mismatch: key {key!r} but episode_id {row['episode_id']!r}")
            if row["published_at"].date() != day:
                raise InvalidEpisode(f"wrong_day: published_at {iso_utc(row['published_at'])} is not on {day}")
        except InvalidEpisode as exc:
            dead.append(
                dead_letter(
                    topic, record.partition, record.offset, record.timestamp_ms, record.key, record.value, str(exc)
                )
            )
            continue
        valid += 1
        row["kafka_partition"] = record.partition
        row["kafka_offset"] = record.offset
        order = (record.timestamp_ms, record.partition, record.offset)
        previous = latest.get(row["episode_id"])
        if previous is None or order > previous[0]:
            latest[row["episode_id"]] = (order, row)
    rows = sorted((row for _, row in latest.values()), key=lambda r: (r["published_at"], r["episode_id"]))
    return rows, dead, valid - len(rows)


def catalog_document(row: dict[str, Any]) -> dict[str, Any]:
    """The Mongo ``episodes`` catalog document of an episode row (serving fields only)."""
    return {
        k: v for k, v in row.items() if k not in ("kafka_partition", "kafka_offset", "date", "run_id", "created_at")
    }


# --- transcribing a day --------------------------------------------------------------------------------

PUBLISHER_MODEL = "publisher"  # the `model` of a row whose text is the publisher's own transcript


def transcript_row(episode_id: str, status: str, model: str, error: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "status": status,
        "error": error,
        "language": fields.get("language"),
        "language_probability": fields.get("language_probability"),
        "audio_seconds": fields.get("audio_seconds"),
        "wall_seconds": fields.get("wall_seconds"),
        "model": model,
        "text": fields.get("text"),
        "segments": fields.get("segments") or [],
        "text_source": fields.get("text_source"),
        "asr_reason": fields.get("asr_reason"),
        "transcript_url": fields.get("transcript_url"),
        "transcript_format": fields.get("transcript_format"),
    }


def published_transcript(
    episode: dict[str, Any], fetch_transcript: Callable[[str], bytes], allowed: set[str]
) -> tuple[dict[str, Any] | None, str]:
    """The best usable publisher transcript of an episode as row fields, or None and why ASR must run.

    Links are tried best first (timed formats first); one that is in a language outside ``allowed``, cannot be
    fetched or does not parse is passed over, and every reason is kept: ``kind: detail; kind: detail``.
    """
    links = ranked_links(episode.get("transcripts") or [])
    if not links:
        return None, "none_published"
    declared = base_language(episode.get("language"))
    reasons = []
    for link in links:
        language = base_language(link.get("language")) or declared
        if allowed and language and language not in allowed:
            reasons.append(f"wrong_language: {link['url']} is {language!r}, allowed {', '.join(sorted(allowed))}")
            continue
        try:
            body = fetch_transcript(link["url"])
        except Exception as exc:  # noqa: BLE001 - any failure to fetch sends the episode to ASR
            reasons.append(f"fetch_failed: {exc}"[:500])
            continue
        try:
            parsed = parse_transcript(body, link.get("type"), link["url"])
        except UnparsableTranscript as exc:
            reasons.append(f"unparsable: {link['url']}: {exc}"[:500])
            continue
        except Exception as exc:  # noqa: BLE001 - a parser bug on a publisher's odd file must not fail the day
            reasons.append(f"unparsable: {link['url']}: {type(exc).__name__}: {exc}"[:500])
            continue
        if not parsed.text.strip():
            reasons.append(f"unparsable: {link['url']}: no text")
            continue
        audio_seconds = episode.get("duration_sec") or max((s["end"] for s in parsed.segments), default=None)
        return {
            "language": language or None,
            "text": parsed.text,
            "segments": parsed.segments,
            "audio_seconds": audio_seconds,
            "text_source": "published",
            "transcript_url": link["url"],
            "transcript_format": parsed.format,
        }, ""
    return None, "; ".join(reasons)


def transcribe_episodes(
    episodes: list[dict[str, Any]],
    transcribe: Callable[..., Any],
    fetch: Callable[[str], Any],
    model_name: str,
    languages: list[str],
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
    fetch_transcript: Callable[[str], bytes] | None = None,
) -> list[dict[str, Any]]:
    """One transcript row per episode, in the input order; failures become ``failed`` rows.

    A publisher's transcript is used when the episode lists one that can be fetched (``fetch_transcript(url)``
    returns its bytes) and parsed; otherwise the audio is transcribed and the row says why (``asr_reason``).
    ``fetch(url)`` is a context manager yielding a local audio path; ``transcribe(path, progress)`` returns an
    ``asr.Transcription`` and calls ``progress(done_seconds, total_seconds)`` as it goes. An episode whose
    declared language is not allowed is skipped before any download.
    """
    allowed = {lang.lower() for lang in languages}
    say = progress or log.info
    total = len(episodes)

    def one(index_episode: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        index, episode = index_episode
        episode_id = episode["episode_id"]
        declared = base_language(episode.get("language"))
        if allowed and declared and declared not in allowed:
            say(f"[{index}/{total}] {episode_id}: skipped_language (declared {declared!r})")
            return transcript_row(
                episode_id, "skipped_language", model_name, language=declared, language_probability=None
            )
        started = time.perf_counter()
        reason = "none_published"
        if fetch_transcript is not None:
            published, reason = published_transcript(episode, fetch_transcript, allowed)
            if published is not None:
                wall = round(time.perf_counter() - started, 3)
                say(
                    f"[{index}/{total}] {episode_id}: publisher's {published['transcript_format']} transcript, "
                    f"{len(published['text'].split())} words in {wall}s"
                )
                return transcript_row(episode_id, "ok", PUBLISHER_MODEL, wall_seconds=wall, **published)
            if reason != "none_published":
                say(f"[{index}/{total}] {episode_id}: publisher's transcript not usable, transcribing: {reason}")

        def window_done(done: float, whole: float | None) -> None:
            share = f" ({100 * done / whole:.0f}%)" if whole else ""
            say(
                f"[{index}/{total}] {episode_id}: {done:.0f}/{whole or 0:.0f} s of audio transcribed{share}, "
                f"{time.perf_counter() - started:.0f}s so far"
            )

        try:
            with fetch(episode["audio_url"]) as path:
                result = transcribe(path, window_done)
        except Exception as exc:  # noqa: BLE001 - one episode's failure must not stop the day
            wall = round(time.perf_counter() - started, 3)
            say(f"[{index}/{total}] {episode_id}: failed after {wall}s: {type(exc).__name__}: {exc}")
            return transcript_row(
                episode_id,
                "failed",
                model_name,
                error=f"{type(exc).__name__}: {exc}"[:2000],
                wall_seconds=wall,
                text_source="asr",
                asr_reason=reason,
            )
        rtf = result.wall_seconds / result.audio_seconds if result.audio_seconds else 0.0
        say(
            f"[{index}/{total}] {episode_id}: {result.status} ({result.language} {result.language_probability:.2f}), "
            f"{result.audio_seconds:.1f}s audio in {result.wall_seconds:.1f}s (RTF {rtf:.3f})"
        )
        return transcript_row(
            episode_id,
            result.status,
            result.model,
            language=result.language,
            language_probability=result.language_probability,
            audio_seconds=result.audio_seconds,
            wall_seconds=result.wall_seconds,
            text=result.text,
            segments=result.segments,
            text_source="asr",
            asr_reason=reason,
        )

    items = list(enumerate(episodes, 1))
    if workers <= 1:
        return [one(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr") as pool:
        return list(pool.map(one, items))


def status_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0, "skipped_language": 0}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts
