"""Sources without the stack: demo corpus, RSS and PodcastIndex against local HTTP servers, audio fetching."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse

import pytest

from podrec_assets.core.asr import word_error_rate
from podrec_assets.core.audio import FetchError, FetchLimits, fetched_file
from podrec_assets.core.episodes import InvalidEpisode, episode_message, parse_episode_records, validate_episode
from podrec_assets.resources.kafka import KafkaRecord
from podrec_assets.sources.demo_catalog import DEMO_TOPICS, plan_catalog
from podrec_assets.sources.demo_corpus import load_demo_documents
from podrec_assets.sources.podcastindex import PodcastIndexAuthError, PodcastIndexClient, recent_episodes
from podrec_assets.sources.rss import FeedError, parse_duration, read_feed
from podrec_assets_tests.conftest import RouteServer

# --- demo corpus and catalog ------------------------------------------------------------------------


def test_demo_corpus_is_real_topic_labelled_text_cleaned_for_speech():
    documents = load_demo_documents()
    assert len(documents) > 5000
    by_topic = {}
    for document in documents:
        by_topic.setdefault(document.topic, []).append(document)
    assert all(len(by_topic[topic]) >= 100 for topic in DEMO_TOPICS)
    assert len({d.doc_id for d in documents}) == len(documents)
    sample = documents[::50]
    assert all(d.title and len(d.text.split()) >= 60 for d in sample)
    joined = " ".join(d.text for d in sample).split()
    # attributions and host names removed: almost no "writes" / top-level-domain debris left
    assert sum(w in {"writes", "edu", "com"} for w in joined) / len(joined) < 0.002
    assert load_demo_documents()[:20] == documents[:20]


def test_demo_plan_is_deterministic_and_gives_several_episodes_per_topic():
    from datetime import date, timedelta

    days = [date(2026, 5, 1) + timedelta(days=i) for i in range(7)]
    plan = plan_catalog(days, 8, seed=7, speech_seconds=40)
    assert plan == plan_catalog(days, 8, seed=7, speech_seconds=40)
    assert plan != plan_catalog(days, 8, seed=8, speech_seconds=40)
    assert len(plan) == 56 and len({e["episode_id"] for e in plan}) == 56
    topics = {}
    for episode in plan:
        assert episode["published_at"].startswith(episode["episode_id"][5:9])
        topics[episode["categories"][0]] = topics.get(episode["categories"][0], 0) + 1
        assert len(episode["description"].split()) <= 100
    assert len(topics) == len(DEMO_TOPICS) and min(topics.values()) >= 5
    # a later window that overlaps gives the same episodes on the shared days
    later = plan_catalog(days[3:] + [days[-1] + timedelta(days=1)], 8, seed=7, speech_seconds=40)
    assert [e for e in plan if e["published_at"] >= "2026-05-04"] == [
        e for e in later if e["published_at"] < "2026-05-08"
    ]
    assert len({e["doc_id"] for e in plan}) == 56


# --- episode contract -----------------------------------------------------------------------------


def _episode(**overrides):
    return {
        "episode_id": "e1",
        "podcast_id": "p1",
        "podcast_title": "Show",
        "episode_title": "Ep",
        "description": "",
        "audio_url": "https://x/a.mp3",
        "language": "en",
        "published_at": "2026-03-02T10:00:00Z",
        "duration_sec": 60,
        "categories": ["news"],
        "source": "rss",
        **overrides,
    }


def test_episode_validation_and_latest_message_wins():
    from datetime import date

    with pytest.raises(InvalidEpisode, match="missing_field"):
        validate_episode(_episode(audio_url=""))
    with pytest.raises(InvalidEpisode, match="bad_audio_url"):
        validate_episode(_episode(audio_url="ftp://x"))
    with pytest.raises(InvalidEpisode, match="bad_published_at"):
        validate_episode(_episode(published_at="yesterday"))
    key, value, ts = episode_message(_episode())
    _, newer, _ = episode_message(_episode(episode_title="Ep (fixed)"))
    records = [
        KafkaRecord(0, 0, ts, key, value),
        KafkaRecord(0, 1, ts, key, newer),
        KafkaRecord(0, 2, ts, b"e2", b"{not json"),
        KafkaRecord(0, 3, ts, b"zz", value),
    ]
    rows, dead, duplicates = parse_episode_records(records, date(2026, 3, 2))
    assert [r["episode_title"] for r in rows] == ["Ep (fixed)"] and duplicates == 1
    assert [d["reason"].split(":")[0] for d in dead] == ["bad_json", "key_mismatch"]
    rows, dead, _ = parse_episode_records(records[:1], date(2026, 3, 3))
    assert not rows and dead[0]["reason"].startswith("wrong_day")


def test_word_error_rate():
    assert word_error_rate("the quick brown fox", "The quick, brown fox!") == 0
    assert word_error_rate("the quick brown fox", "the quick round fox") == 0.25
    assert word_error_rate("a b", "a b c d") == 1.0


# --- RSS ------------------------------------------------------------------------------------------

GOOD_FEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">
<channel><title>Local Radio</title><link>http://example.org</link><language>en-us</language>
<itunes:category text="Science"/>
<item><title>First</title><guid>guid-1</guid><pubDate>Mon, 02 Mar 2026 10:30:00 +0100</pubDate>
<enclosure url="http://127.0.0.1/a1.mp3" length="1000" type="audio/mpeg"/><itunes:duration>01:02:03</itunes:duration>
<description>&lt;p&gt;Hello &amp;amp; welcome&lt;/p&gt;</description></item>
<item><title>Second</title><pubDate>Tue, 03 Mar 2026 08:00:00 GMT</pubDate>
<enclosure url="http://127.0.0.1/a2.mp3" length="1000" type="audio/mpeg"/><itunes:duration>754</itunes:duration></item>
<item><title>No audio</title><guid>guid-3</guid><pubDate>Tue, 03 Mar 2026 08:00:00 GMT</pubDate></item>
<item><title>Bad date</title><guid>guid-4</guid><pubDate>the day after tomorrow</pubDate>
<enclosure url="http://127.0.0.1/a4.mp3" length="1000" type="audio/mpeg"/></item>
</channel></rss>"""


def test_rss_feed_from_local_server_good_and_broken_items():
    routes = {
        "/feed.xml": lambda h: (200, {"Content-Type": "application/rss+xml"}, GOOD_FEED),
        "/broken.xml": lambda h: (200, {"Content-Type": "text/html"}, b"<html><body>not a feed"),
        "/agent.xml": lambda h: (200, {}, GOOD_FEED) if h.headers["User-Agent"] == "podrec-test" else (403, {}, b""),
    }
    with RouteServer(routes) as server:
        read = read_feed(server.url + "/feed.xml", user_agent="podrec-test")
        again = read_feed(server.url + "/feed.xml", user_agent="podrec-test")
        other_url = read_feed(server.url + "/agent.xml", user_agent="podrec-test")
        with pytest.raises(FeedError):
            read_feed(server.url + "/broken.xml")
        with pytest.raises(FeedError):
            read_feed(server.url + "/missing.xml")
    assert read.title == "Local Radio"
    assert [e["episode_title"] for e in read.episodes] == ["First", "Second"]
    first, second = read.episodes
    assert first["published_at"] == "2026-03-02T09:30:00Z" and first["duration_sec"] == 3723
    assert second["duration_sec"] == 754 and first["language"] == "en-us"
    assert first["audio_url"] == "http://127.0.0.1/a1.mp3" and first["description"] == "Hello & welcome"
    assert first["categories"] == ["Science"] and first["source"] == "rss"
    assert len(read.problems) == 2 and "no enclosure" in read.problems[0] and "date" in read.problems[1]
    # ids are stable for a feed URL and differ between feeds
    assert [e["episode_id"] for e in read.episodes] == [e["episode_id"] for e in again.episodes]
    assert {e["episode_id"] for e in read.episodes}.isdisjoint(e["episode_id"] for e in other_url.episodes)
    for episode in read.episodes:
        validate_episode(episode)
    assert parse_duration("12:34") == 754 and parse_duration("abc") is None


# --- PodcastIndex -----------------------------------------------------------------------------------


def _podcastindex_routes(calls, key="k3y", secret="s3cr3t"):
    def authorised(h):
        stamp = h.headers.get("X-Auth-Date", "")
        expected = hashlib.sha1((key + secret + stamp).encode()).hexdigest()
        fresh = stamp.isdigit() and abs(int(stamp) - time.time()) < 300
        return (
            h.headers.get("X-Auth-Key") == key
            and h.headers.get("Authorization") == expected
            and fresh
            and h.headers.get("User-Agent", "").startswith("podrec")
        )

    def trending(h):
        calls.append(h.path)
        if not authorised(h):
            return 401, {"Content-Type": "application/json"}, b'{"status":"false","description":"Authorization Failed"}'
        if len([c for c in calls if "trending" in c]) == 1:
            return 429, {"Retry-After": "0"}, b""
        query = urllib.parse.parse_qs(urllib.parse.urlparse(h.path).query)
        feeds = [
            {
                "id": 920666,
                "url": "https://feeds.example/one.xml",
                "title": "Science Weekly",
                "description": "d",
                "author": "A",
                "image": "https://i/1.jpg",
                "artwork": "https://i/1.jpg",
                "newestItemPublishTime": 1772445600,
                "itunesId": 1,
                "trendScore": 9,
                "language": "en",
                "categories": {"67": "Science", "71": "Physics"},
            },
            {
                "id": 41504,
                "url": "https://feeds.example/two.xml",
                "title": "Tech Daily",
                "description": "d",
                "author": "B",
                "image": "",
                "artwork": "",
                "newestItemPublishTime": 1772445600,
                "itunesId": None,
                "trendScore": 7,
                "language": "en-US",
                "categories": None,
            },
        ]
        body = {
            "status": "true",
            "feeds": feeds[: int(query["max"][0])],
            "count": 2,
            "max": query["max"][0],
            "since": None,
            "description": "Found matching feeds",
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def by_feed(h):
        calls.append(h.path)
        if not authorised(h):
            return 401, {}, b""
        if len([c for c in calls if "byfeedid" in c]) == 1:
            return 503, {}, b"busy"
        feed_id = int(urllib.parse.parse_qs(urllib.parse.urlparse(h.path).query)["id"][0])
        items = [
            {
                "id": feed_id * 10 + i,
                "title": f"Episode {i}",
                "link": "https://x",
                "description": "<p>About <b>it</b></p>",
                "guid": f"g{i}",
                "datePublished": 1772445600 + i * 3600,
                "datePublishedPretty": "March 02, 2026 10:00am",
                "dateCrawled": 1772445700,
                "enclosureUrl": f"https://cdn.example/{feed_id}/{i}.mp3" if i < 2 else "",
                "enclosureType": "audio/mpeg",
                "enclosureLength": 1234,
                "duration": 1800 + i,
                "explicit": 0,
                "episode": i,
                "episodeType": "full",
                "season": 1,
                "image": "",
                "feedItunesId": None,
                "feedImage": "",
                "feedId": feed_id,
                "feedLanguage": "en",
                "feedDead": 0,
                "chaptersUrl": None,
                "transcriptUrl": None,
            }
            for i in range(3)
        ]
        body = {
            "status": "true",
            "liveItems": [],
            "items": items,
            "count": 3,
            "query": str(feed_id),
            "description": "Found",
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    return {"/api/1.0/podcasts/trending": trending, "/api/1.0/episodes/byfeedid": by_feed}


def test_podcastindex_client_auth_retries_and_mapping():
    calls: list[str] = []
    with RouteServer(_podcastindex_routes(calls)) as server:
        client = PodcastIndexClient("k3y", "s3cr3t", base_url=server.url + "/api/1.0", backoff_s=0.01)
        episodes = recent_episodes(client, feeds=2, per_feed=3)
        with pytest.raises(PodcastIndexAuthError, match="401"):
            PodcastIndexClient("k3y", "wrong", base_url=server.url + "/api/1.0", backoff_s=0.01).trending()
    assert sum("trending" in c for c in calls) == 3  # one 429 retried, then the 401 call (not retried)
    assert len(episodes) == 4  # items without an enclosure are left out
    first = episodes[0]
    assert first["episode_id"] == "pi-9206660" and first["podcast_id"] == "pi-920666"
    assert first["podcast_title"] == "Science Weekly" and first["categories"] == ["Science", "Physics"]
    assert first["published_at"] == "2026-03-02T10:00:00Z" and first["duration_sec"] == 1800
    assert first["description"] == "About it" and first["source"] == "podcastindex"
    for episode in episodes:
        validate_episode(episode)
    with pytest.raises(PodcastIndexAuthError, match="PODCASTINDEX_API_KEY"):
        PodcastIndexClient("", "")


# --- audio fetching -----------------------------------------------------------------------------------


def test_audio_fetch_limits_and_retries(tmp_path):
    hits = {"flaky": 0, "down": 0}

    def flaky(h):
        hits["flaky"] += 1
        return (500, {}, b"") if hits["flaky"] < 2 else (200, {}, b"RIFF" + b"\0" * 100)

    def down(h):
        hits["down"] += 1
        return 503, {}, b""

    routes = {"/flaky.wav": flaky, "/down.wav": down, "/big.wav": lambda h: (200, {}, b"\0" * 5000)}
    limits = FetchLimits(max_bytes=1000, timeout_s=10, retries=3, backoff_s=0.01)
    with RouteServer(routes) as server:
        with fetched_file(server.url + "/flaky.wav", limits, tmp_path) as path:
            assert path.read_bytes().startswith(b"RIFF")
        assert not path.exists()  # downloads are temporary
        with pytest.raises(FetchError, match="over the limit"):
            with fetched_file(server.url + "/big.wav", limits, tmp_path):
                pass
        with pytest.raises(FetchError, match="404"):
            with fetched_file(server.url + "/nothing.wav", limits, tmp_path):
                pass
        with pytest.raises(FetchError, match="503"):
            with fetched_file(server.url + "/down.wav", limits, tmp_path):
                pass
    assert hits == {"flaky": 2, "down": 3}
    with pytest.raises(FetchError, match="no such file"):
        with fetched_file((tmp_path / "none.wav").as_uri(), limits):
            pass
