"""Publishers' transcripts: each format parsed, links read from RSS and PodcastIndex, and the transcripts asset
using them end to end (real Kafka, MongoDB, HTTP server, whisper tiny.en for the fallbacks)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import date, datetime, timezone
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podrec_assets.core.asr import word_error_rate
from podrec_assets.core.episodes import PUBLISHER_MODEL, InvalidEpisode, validate_episode
from podrec_assets.core.published_transcripts import (
    UnparsableTranscript,
    format_of,
    parse_transcript,
    ranked_links,
    sniff_format,
)
from podrec_assets.defs.ingest.assets import episodes_ingest, transcripts
from podrec_assets.resources import AsrResource
from podrec_assets.sources.podcastindex import episode_from_item
from podrec_assets.sources.publisher import publish_episodes
from podrec_assets.sources.rss import parse_feed
from podrec_assets_tests.conftest import RouteServer

CUES = [
    (0.0, 2.5, "Welcome to the show about trains."),
    (2.5, 6.04, "Today we ride the night train to Vienna."),
    (6.04, 3601.5, "And we talk about sleeper cars & timetables."),
]
TEXT = " ".join(text for _, _, text in CUES)


def _clock(seconds: float, separator: str) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}:{int(minutes):02d}:{int(secs):02d}{separator}{round((secs % 1) * 1000):03d}"


def srt_body(cues=CUES) -> bytes:
    blocks = [
        f"{n}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{text.replace(' about ', chr(10) + 'about ')}"
        for n, (a, b, text) in enumerate(cues, 1)
    ]
    return ("\r\n".join("\n\n".join(blocks).split("\n")) + "\r\n").encode("utf-8-sig")  # Windows line ends, a BOM


def vtt_body(cues=CUES) -> bytes:
    lines = [
        "WEBVTT - made by the test",
        "Kind: captions",
        "",
        "NOTE a comment block",
        "that spans two lines",
        "",
        "STYLE",
        "::cue { color: yellow }",
        "",
    ]
    for n, (a, b, text) in enumerate(cues, 1):
        start = _clock(a, ".")[3:] if a < 3600 else _clock(a, ".")  # hours are optional in WebVTT
        lines += [
            f"cue-{n}",
            f"{start} --> {_clock(b, '.')} align:start position:10%",
            f"<v Host>{text.replace('&', '&amp;')}</v>",
            "",
        ]
    return "\n".join(lines).encode()


def json_body(cues=CUES, per_word: bool = False) -> bytes:
    segments = []
    for a, b, text in cues:
        words = text.split() if per_word else [text]
        step = (b - a) / len(words)
        segments += [
            {"speaker": "Host", "startTime": a + i * step, "endTime": a + (i + 1) * step, "body": word}
            for i, word in enumerate(words)
        ]
    return json.dumps({"version": "1.0.0", "segments": segments}).encode()


def html_body() -> bytes:
    paragraphs = "".join(
        f"<cite>Host:</cite><time>{_clock(a, ',')}</time><p>{t.replace('&', '&amp;')}</p>" for a, _, t in CUES
    )
    return (
        f"<!doctype html><html><head><title>Episode 1</title><style>p {{color: red}}</style></head>"
        f"<body><script>var x = 'not text';</script>{paragraphs}</body></html>"
    ).encode()


def test_each_format_gives_text_and_timed_segments():
    expected_segments = [{"start": a, "end": b, "text": t} for a, b, t in CUES]
    for body, mime, name in (
        (srt_body(), "application/x-subrip", "srt"),
        (vtt_body(), "text/vtt", "vtt"),
        (json_body(), "application/json", "json"),
    ):
        parsed = parse_transcript(body, mime)
        assert (parsed.format, parsed.text, parsed.segments) == (name, TEXT, expected_segments), name
    # one JSON segment per word becomes sentence-sized segments over the same times
    worded = parse_transcript(json_body(per_word=True), "application/json")
    assert worded.text == TEXT and [s["text"] for s in worded.segments] == [t for _, _, t in CUES]
    assert [(s["start"], s["end"]) for s in worded.segments] == [(a, b) for a, b, _ in CUES]
    html = parse_transcript(html_body(), "text/html")
    assert html.format == "html" and html.segments == []
    assert html.text == TEXT  # no speaker labels, timestamps, script or title
    plain = parse_transcript(f"  {TEXT}\n\n".encode("cp1252"), "text/plain; charset=windows-1252")
    assert (plain.format, plain.text, plain.segments) == ("text", TEXT, [])
    # the format comes from the type, else the URL's extension, else the body
    assert parse_transcript(srt_body(), "", "https://x/ep.srt?sig=1").format == "srt"
    assert parse_transcript(vtt_body(), "application/octet-stream", "https://x/ep").format == "vtt"
    assert [sniff_format(b.decode("utf-8-sig")) for b in (srt_body(), vtt_body(), json_body(), html_body())] == [
        "srt",
        "vtt",
        "json",
        "html",
    ]
    assert format_of("TEXT/VTT; charset=utf-8") == "vtt" and format_of("audio/mpeg", "x.mp3") is None


@pytest.mark.parametrize(
    "body, mime, why",
    [
        (os.urandom(4096), "text/vtt", "binary"),
        (bytes(range(256)) * 8, "text/plain", "binary"),
        (b"1\nnot a time\nhello\n", "application/x-subrip", "SRT without"),
        (b"00:00:01.000 --> 00:00:02.000\nhello\n", "text/vtt", "must start with 'WEBVTT'"),
        (b"WEBVTT\n\nNOTE only a note\n", "text/vtt", "WebVTT without"),
        (b'{"version": "1.0.0"}', "application/json", "'segments'"),
        (b'{"segments": [{"body": "x"}]}', "application/json", "numeric startTime"),
        (b"[1, 2", "application/json", "not JSON"),
        (b"plain words, no markup at all", "text/html", "without any markup"),
        (b"<html><body><p>a page</p></body></html>", "text/plain", "markup or captions"),
        (b"   \n  ", "text/plain", "empty"),
        (b'{"segments": [{"startTime": 0, "endTime": 1, "body": "hi \\ud800"}]}', "application/json", "lone surrogate"),
    ],
)
def test_garbage_is_unparsable_with_a_reason(body, mime, why):
    with pytest.raises(UnparsableTranscript, match=why):
        parse_transcript(body, mime)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=3000),
        st.text(max_size=3000).map(str.encode),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.sampled_from(["segments", "body", "startTime", "endTime", "x"]), inner, max_size=4)
            ),
            max_leaves=30,
        ).map(lambda v: json.dumps({"segments": v}).encode()),
        st.builds(
            lambda a, b, t: f"WEBVTT\n\n{a} --> {b}\n{t}\n".encode(),
            st.text(max_size=14),
            st.text(max_size=14),
            st.text(max_size=40),
        ),
    ),
    mime=st.sampled_from(["text/vtt", "application/x-subrip", "application/json", "text/html", "text/plain", ""]),
)
def test_any_body_parses_or_is_unparsable_never_crashes(body, mime):
    try:
        parsed = parse_transcript(body, mime)
    except UnparsableTranscript:
        return
    assert isinstance(parsed.text, str) and parsed.format in ("srt", "vtt", "json", "html", "text")
    assert all(s["text"] and 0 <= s["start"] and s["start"] <= s["end"] < float("inf") for s in parsed.segments)


def test_json_with_huge_or_odd_numbers_is_unparsable():
    for value in ("1e999", "1" + "0" * 400, "-3", '"12"', "true"):
        with pytest.raises(UnparsableTranscript, match="numeric"):
            parse_transcript(
                f'{{"segments": [{{"startTime": {value}, "endTime": 2, "body": "x"}}]}}'.encode(), "application/json"
            )


def test_links_ranked_timed_formats_first_and_validated():
    links = [
        {"url": "https://x/a.html", "type": "text/html"},
        {"url": "https://x/a.txt", "type": "text/plain"},
        {"url": "https://x/a", "type": "application/x-weird"},
        {"url": "https://x/a.srt", "type": "application/srt"},
        {"url": "https://x/a.json", "type": "application/json"},
    ]
    episode = {
        "episode_id": "e",
        "podcast_id": "p",
        "podcast_title": "P",
        "episode_title": "E",
        "audio_url": "https://x/a.mp3",
        "published_at": "2026-03-03T09:00:00Z",
        "source": "rss",
        "transcripts": links,
    }
    row = validate_episode(episode)
    assert [link["url"].rsplit("/", 1)[1] for link in ranked_links(row["transcripts"])] == [
        "a.json",
        "a.srt",
        "a.html",
        "a.txt",
        "a",
    ]
    assert row["transcripts"][0] == {"url": "https://x/a.html", "type": "text/html", "language": "", "rel": ""}
    assert validate_episode({**episode, "transcripts": None})["transcripts"] == []
    for bad, reason in (
        ("x", "list"),
        ([{"type": "text/vtt"}], "url"),
        ([{"url": "ftp://x/a.vtt"}], "http"),
        ([{"url": "https://x/a.vtt", "language": 3}], "language"),
    ):
        with pytest.raises(InvalidEpisode, match=f"bad_transcripts.*{reason}"):
            validate_episode({**episode, "transcripts": bad})


FEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:podcast="https://podcastindex.org/namespace/1.0">
<channel><title>Rail Talk</title><language>en</language>
<item><title>Night trains</title><guid>g1</guid><pubDate>Tue, 03 Mar 2026 09:00:00 GMT</pubDate>
<enclosure url="https://cdn.example/1.mp3" type="audio/mpeg" length="1"/>
<podcast:transcript url="https://cdn.example/1.vtt" type="text/vtt" language="en"/>
<podcast:transcript url="https://cdn.example/1.json" type="application/json" rel="captions"/>
<podcast:transcript url="file:///etc/passwd" type="text/plain"/>
</item>
<item><title>Timetables</title><guid>g2</guid><pubDate>Tue, 03 Mar 2026 10:00:00 GMT</pubDate>
<enclosure url="https://cdn.example/2.mp3" type="audio/mpeg" length="1"/></item>
</channel></rss>"""


def test_rss_and_podcastindex_carry_every_transcript_link():
    read = parse_feed("https://feeds.example/rail.xml", FEED)
    first, second = read.episodes
    assert first["transcripts"] == [  # every tag (feedparser alone keeps the last), a feed's file:// link refused
        {"url": "https://cdn.example/1.vtt", "type": "text/vtt", "language": "en", "rel": ""},
        {"url": "https://cdn.example/1.json", "type": "application/json", "language": "", "rel": "captions"},
    ]
    assert second["transcripts"] == [] and read.problems == []
    assert validate_episode(first)["transcripts"] == first["transcripts"]

    item = {
        "id": 7,
        "feedId": 3,
        "title": "Ep",
        "enclosureUrl": "https://cdn.example/7.mp3",
        "datePublished": 1772528400,
        "transcripts": [{"url": "https://cdn.example/7.srt", "type": "application/srt"}, {"type": "text/vtt"}, "junk"],
    }
    episode = episode_from_item(item, {"id": 3, "title": "Feed"})
    assert episode["transcripts"] == [
        {"url": "https://cdn.example/7.srt", "type": "application/srt", "language": "", "rel": ""}
    ]
    assert validate_episode(episode)["transcripts"] == episode["transcripts"]


def test_transcript_fetch_keeps_to_its_size_and_time_limits(tmp_path):
    import time

    from podrec_assets.core.audio import FetchError

    def slow(handler):
        time.sleep(3)
        return 200, {"Content-Type": "text/vtt"}, vtt_body()

    asr = AsrResource(transcript_max_mb=1, transcript_timeout_s=1, audio_retries=1, download_dir=str(tmp_path))
    with RouteServer(
        {
            "/slow.vtt": slow,
            "/ok.vtt": lambda h: (200, {}, vtt_body()),
            "/big.txt": lambda h: (200, {}, b"word " * 300000),
        }
    ) as server:
        assert asr.fetch_transcript(server.url + "/ok.vtt") == vtt_body()
        started = time.monotonic()
        with pytest.raises(FetchError, match="timed out"):
            asr.fetch_transcript(server.url + "/slow.vtt")
        assert time.monotonic() - started < 2.5
        with pytest.raises(FetchError, match="over the limit"):
            asr.fetch_transcript(server.url + "/big.txt")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


# --- the transcripts asset, end to end -----------------------------------------------------------------

SPOKEN = "Podcasts about space exploration are becoming popular with listeners around the world."


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("speech") / "english.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), SPOKEN], check=True, capture_output=True)
    return path


def _episode(episode_id: str, day: date, hour: int, audio_url: str, transcripts: list[dict] | None = None):
    return {
        "episode_id": episode_id,
        "podcast_id": "show-t",
        "podcast_title": "Transcripts Show",
        "episode_title": episode_id,
        "description": "",
        "audio_url": audio_url,
        "language": "en",
        "published_at": datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc).isoformat(),
        "duration_sec": 3602.0,
        "categories": ["test"],
        "source": "rss",
        "transcripts": transcripts or [],
    }


def test_transcripts_asset_uses_published_transcripts_and_falls_back_to_asr(
    resources, podrec_env, stack_settings, speech
):
    day = date(2026, 3, 5)
    big = b"WEBVTT\n\n" + b"00:00.000 --> 00:01.000\nword\n\n" * 40000  # ~1.3 MB, over a 1 MB limit
    routes = {
        "/t.srt": lambda h: (200, {"Content-Type": "application/x-subrip"}, srt_body()),
        "/t.vtt": lambda h: (200, {"Content-Type": "text/vtt"}, vtt_body()),
        "/t.json": lambda h: (200, {"Content-Type": "application/json"}, json_body(per_word=True)),
        "/t.html": lambda h: (200, {"Content-Type": "text/html"}, html_body()),
        "/t.txt": lambda h: (200, {"Content-Type": "text/plain"}, TEXT.encode()),
        "/garbage.vtt": lambda h: (200, {"Content-Type": "text/vtt"}, os.urandom(2048)),
        "/big.vtt": lambda h: (200, {"Content-Type": "text/vtt"}, big),
        "/spanish.srt": lambda h: (200, {}, srt_body()),
    }
    missing_audio = "file:///nonexistent/podrec-no-audio.mp3"  # ASR on it would fail: the text must be the publisher's
    with RouteServer(routes) as server:
        link = lambda path, mime, **extra: {"url": server.url + path, "type": mime, **extra}  # noqa: E731
        publish_episodes(
            resources["kafka"],
            [
                _episode("pub-srt", day, 6, missing_audio, [link("/t.srt", "application/x-subrip")]),
                _episode("pub-vtt", day, 7, missing_audio, [link("/t.vtt", "text/vtt", language="en-GB")]),
                _episode("pub-json", day, 8, missing_audio, [link("/t.json", "application/json")]),
                _episode("pub-html", day, 9, missing_audio, [link("/t.html", "text/html")]),
                _episode("pub-text", day, 10, missing_audio, [link("/t.txt", "text/plain")]),
                # the best listed format is broken (404): the next one is used
                _episode(
                    "pub-second", day, 11, missing_audio, [link("/t.txt", "text/plain"), link("/gone.vtt", "text/vtt")]
                ),
                _episode("asr-404", day, 12, speech.as_uri(), [link("/gone.srt", "application/x-subrip")]),
                _episode("asr-garbage", day, 13, speech.as_uri(), [link("/garbage.vtt", "text/vtt")]),
                _episode(
                    "asr-language", day, 14, speech.as_uri(), [link("/spanish.srt", "application/srt", language="es")]
                ),
                _episode("asr-too-big", day, 15, speech.as_uri(), [link("/big.vtt", "text/vtt")]),
                _episode("asr-none", day, 16, speech.as_uri()),
            ],
        )
        asr = AsrResource(
            model="tiny.en",
            threads=2,
            languages="en",
            models_dir=str(stack_settings.home_path / "models"),
            audio_retries=1,
            transcript_max_mb=1,
            transcript_timeout_s=10,
        )
        result = dg.materialize(
            [episodes_ingest, transcripts], partition_key=day.isoformat(), resources={**resources, "asr": asr}
        )
    assert result.success
    rows = {row["episode_id"]: row for row in resources["lake"].read_day("transcripts", day).to_pylist()}
    assert len(rows) == 11 and {row["status"] for row in rows.values()} == {"ok"}

    timed = [{"start": a, "end": b, "text": t} for a, b, t in CUES]
    for episode_id, fmt in (
        ("pub-srt", "srt"),
        ("pub-vtt", "vtt"),
        ("pub-json", "json"),
        ("pub-html", "html"),
        ("pub-text", "text"),
        ("pub-second", "text"),
    ):
        row = rows[episode_id]
        assert (row["text_source"], row["model"], row["transcript_format"]) == ("published", PUBLISHER_MODEL, fmt)
        assert row["asr_reason"] is None and row["transcript_url"].endswith(f"/t.{ {'text': 'txt'}.get(fmt, fmt) }")
        assert row["language"] == "en" and row["audio_seconds"] == 3602.0 and row["error"] is None
        assert row["text"] == TEXT
        assert row["segments"] == (timed if fmt in ("srt", "vtt", "json") else [])

    for episode_id, reason in (
        ("asr-404", "fetch_failed: .*/gone.srt: HTTP 404"),
        ("asr-garbage", "unparsable: .*/garbage.vtt: binary content"),
        ("asr-language", "wrong_language: .*/spanish.srt is 'es', allowed en"),
        ("asr-too-big", "fetch_failed: .*over the limit"),
        ("asr-none", "none_published"),
    ):
        row = rows[episode_id]
        assert (row["text_source"], row["model"], row["transcript_url"]) == ("asr", "tiny.en", None), episode_id
        assert __import__("re").match(reason, row["asr_reason"]), (episode_id, row["asr_reason"])
        assert word_error_rate(SPOKEN, row["text"]) <= 0.2, row["text"]
        assert row["segments"] and row["audio_seconds"] < 30

    metadata = result.asset_materializations_for_node("transcripts")[0].metadata
    assert metadata["published_transcripts"].value == 6 and metadata["asr_transcripts"].value == 5
    assert metadata["asr_reasons"].value == {
        "fetch_failed": 2,
        "unparsable": 1,
        "wrong_language": 1,
        "none_published": 1,
    }


def test_asr_reports_progress_over_a_long_file(stack_settings, speech):
    from podrec_assets.core.asr import audio_duration, load_whisper, transcribe_audio

    whisper = load_whisper("tiny.en", stack_settings.home_path / "models", cpu_threads=2)
    seen: list[tuple[float, float | None]] = []
    result = transcribe_audio(whisper, speech, ["en"], window_seconds=2.0, progress=lambda d, t: seen.append((d, t)))
    total = audio_duration(speech)
    assert total is not None and abs(total - result.audio_seconds) < 0.05
    assert len(seen) >= 2 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert {t for _, t in seen} == {total} and abs(seen[-1][0] - result.audio_seconds) < 0.01
