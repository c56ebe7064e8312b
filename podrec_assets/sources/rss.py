"""RSS/Atom podcast feeds (feedparser) -> episode-metadata messages.

episode_id is derived from the feed URL and the item's guid (or enclosure URL when there is no guid), so
re-reading a feed yields the same ids. Items without an enclosure or with an unreadable date are reported
as problems and left out; a feed that cannot be parsed at all is an error. Publishers' transcripts
(Podcasting 2.0 ``<podcast:transcript url type language rel>``, any number per item) are read from the XML
itself: feedparser keeps only the last tag of an item.
"""

from __future__ import annotations

import calendar
import hashlib
import urllib.request
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from podrec_assets.sources.podcastindex import plain_text


class FeedError(RuntimeError):
    """A feed that could not be fetched or parsed."""


@dataclass
class FeedRead:
    url: str
    title: str
    episodes: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_duration(value: Any) -> float | None:
    """itunes:duration: seconds, MM:SS or HH:MM:SS -> seconds (None when unreadable)."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        return None
    if not parts or len(parts) > 3 or any(p < 0 for p in parts):
        return None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


def _stable_id(prefix: str, *parts: str) -> str:
    return f"{prefix}-" + hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def _enclosure(entry: Any) -> str | None:
    for enclosure in entry.get("enclosures", []) or []:
        if enclosure.get("href"):
            return enclosure["href"]
    for link in entry.get("links", []) or []:
        if link.get("rel") == "enclosure" and link.get("href"):
            return link["href"]
    return None


def _is_podcast_namespace(tag: str, name: str) -> bool:
    return tag.endswith("}" + name) and "podcastindex.org/namespace" in tag


def transcript_tags(body: bytes) -> list[list[dict[str, str]]] | None:
    """The ``podcast:transcript`` links of each item (RSS) or entry (Atom), in document order; None when the
    XML is too broken for a strict parser (feedparser may still read the items)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    items = [element for element in root.iter() if element.tag in ("item", "{http://www.w3.org/2005/Atom}entry")]
    return [
        [
            {
                "url": tag.get("url", ""),
                "type": tag.get("type", ""),
                "language": tag.get("language", ""),
                "rel": tag.get("rel", ""),
            }
            for tag in item
            if _is_podcast_namespace(tag.tag, "transcript") and tag.get("url")
        ]
        for item in items
    ]


def fetch_feed(
    url: str, user_agent: str = "podrec/0.1", timeout_s: float = 30.0, max_bytes: int = 20 * 1024 * 1024
) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": user_agent})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read(max_bytes + 1)
    except Exception as exc:  # noqa: BLE001 - reported with the URL
        raise FeedError(f"{url}: {exc}") from exc
    if len(body) > max_bytes:
        raise FeedError(f"{url}: feed larger than {max_bytes} bytes")
    return body


def parse_feed(url: str, body: bytes) -> FeedRead:
    """Parse a fetched feed into episodes and a list of problems (items left out and why)."""
    import feedparser

    parsed = feedparser.parse(body)
    if not parsed.entries and (parsed.bozo or not parsed.feed):
        raise FeedError(f"{url}: not a readable RSS/Atom feed ({parsed.get('bozo_exception', 'no entries')})")
    feed = parsed.feed
    title = feed.get("title") or url
    podcast_id = _stable_id("rss", url)
    feed_language = feed.get("language") or ""
    feed_categories = [t["term"] for t in feed.get("tags", []) or [] if t.get("term")]
    read = FeedRead(url=url, title=title)
    transcripts = transcript_tags(body)
    if transcripts is None or len(transcripts) != len(parsed.entries):
        if b"podcastindex.org/namespace" in body:
            read.problems.append("podcast:transcript tags not read: the feed is not well-formed XML")
        transcripts = [[] for _ in parsed.entries]
    for index, entry in enumerate(parsed.entries):
        label = entry.get("title") or f"item {index}"
        audio = _enclosure(entry)
        if not audio:
            read.problems.append(f"{label!r}: no enclosure")
            continue
        stamp = entry.get("published_parsed") or entry.get("updated_parsed")
        if not stamp:
            read.problems.append(f"{label!r}: missing or unreadable date {entry.get('published', '')!r}")
            continue
        published = datetime.fromtimestamp(calendar.timegm(stamp), tz=timezone.utc)
        guid = entry.get("id") or audio
        categories = [t["term"] for t in entry.get("tags", []) or [] if t.get("term")] or feed_categories
        read.episodes.append(
            {
                "episode_id": _stable_id("rss", url, guid),
                "podcast_id": podcast_id,
                "podcast_title": title,
                "episode_title": entry.get("title") or "",
                "description": plain_text(entry.get("summary"))[:5000],
                "audio_url": audio,
                "language": entry.get("language") or feed_language,
                "published_at": published.isoformat().replace("+00:00", "Z"),
                "duration_sec": parse_duration(entry.get("itunes_duration")),
                "categories": categories,
                "source": "rss",
                "transcripts": [link for link in transcripts[index] if link["url"].startswith(("http://", "https://"))],
            }
        )
    return read


def read_feed(url: str, user_agent: str = "podrec/0.1", timeout_s: float = 30.0) -> FeedRead:
    return parse_feed(url, fetch_feed(url, user_agent, timeout_s))
