"""PodcastIndex API client: trending podcasts, then recent episodes per feed, mapped to episode messages.

Auth (https://podcastindex-org.github.io/docs-api/): ``X-Auth-Key``, ``X-Auth-Date`` (unix seconds) and
``Authorization = sha1(key + secret + date)`` plus a ``User-Agent``. 429 and 5xx answers are retried with
exponential backoff (``Retry-After`` honoured); 401 is a clear credentials error, never retried.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Any, Callable


class PodcastIndexError(RuntimeError):
    """The API answered with an error or could not be reached."""


class PodcastIndexAuthError(PodcastIndexError):
    """Credentials missing or refused (HTTP 401)."""


def auth_headers(api_key: str, api_secret: str, user_agent: str, now: float | None = None) -> dict[str, str]:
    stamp = str(int(now if now is not None else time.time()))
    digest = hashlib.sha1((api_key + api_secret + stamp).encode()).hexdigest()
    return {"X-Auth-Key": api_key, "X-Auth-Date": stamp, "Authorization": digest, "User-Agent": user_agent}


class PodcastIndexClient:
    def __init__(
        self,
        api_key: str,
        api_secret: str,
        base_url: str = "https://api.podcastindex.org/api/1.0",
        user_agent: str = "podrec/0.1",
        timeout_s: float = 20.0,
        retries: int = 4,
        backoff_s: float = 1.0,
    ):
        if not api_key or not api_secret:
            raise PodcastIndexAuthError(
                "PodcastIndex needs PODCASTINDEX_API_KEY and PODCASTINDEX_API_SECRET "
                "(free at https://api.podcastindex.org)"
            )
        self.api_key, self.api_secret = api_key, api_secret
        self.base_url = base_url.rstrip("/")
        self.user_agent, self.timeout_s, self.retries, self.backoff_s = user_agent, timeout_s, retries, backoff_s

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.base_url}/{path.lstrip('/')}" + (f"?{query}" if query else "")
        for attempt in range(1, self.retries + 1):
            request = urllib.request.Request(url, headers=auth_headers(self.api_key, self.api_secret, self.user_agent))
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                break
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    raise PodcastIndexAuthError(
                        f"PodcastIndex refused the credentials (HTTP 401) for {path}; "
                        "check PODCASTINDEX_API_KEY / PODCASTINDEX_API_SECRET"
                    ) from exc
                if (exc.code == 429 or exc.code >= 500) and attempt < self.retries:
                    retry_after = exc.headers.get("Retry-After", "")
                    delay = float(retry_after) if retry_after.isdigit() else self.backoff_s * 2 ** (attempt - 1)
                    time.sleep(min(delay, 60.0))
                    continue
                raise PodcastIndexError(f"PodcastIndex {path}: HTTP {exc.code} after {attempt} attempt(s)") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt < self.retries:
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))
                    continue
                raise PodcastIndexError(f"PodcastIndex {path}: {getattr(exc, 'reason', exc)}") from exc
        if str(payload.get("status", "true")).lower() != "true":
            raise PodcastIndexError(f"PodcastIndex {path}: {payload.get('description', 'status false')}")
        return payload

    def trending(self, max_feeds: int = 10, lang: str | None = "en", since: int | None = None) -> list[dict[str, Any]]:
        return self.get("podcasts/trending", max=max_feeds, lang=lang, since=since).get("feeds", [])

    def episodes_by_feed_id(self, feed_id: int, max_items: int = 10, since: int | None = None) -> list[dict[str, Any]]:
        return self.get("episodes/byfeedid", id=feed_id, max=max_items, since=since).get("items", [])


_TAGS = re.compile(r"<[^>]+>")


def plain_text(markup: str | None) -> str:
    return " ".join(html.unescape(_TAGS.sub(" ", markup or "")).split())


def episode_from_item(item: dict[str, Any], feed: dict[str, Any]) -> dict[str, Any] | None:
    """An ``episodes/byfeedid`` item -> an episode-metadata message (None when it has no audio)."""
    if not item.get("enclosureUrl") or not item.get("datePublished"):
        return None
    categories = feed.get("categories") or {}
    return {
        "episode_id": f"pi-{item['id']}",
        "podcast_id": f"pi-{item.get('feedId', feed.get('id'))}",
        "podcast_title": feed.get("title") or item.get("feedTitle") or "",
        "episode_title": item.get("title") or "",
        "description": plain_text(item.get("description"))[:5000],
        "audio_url": item["enclosureUrl"],
        "language": item.get("feedLanguage") or feed.get("language") or "",
        "published_at": datetime.fromtimestamp(int(item["datePublished"]), tz=timezone.utc)
        .isoformat()
        .replace("+00:00", "Z"),
        "duration_sec": float(item["duration"]) if isinstance(item.get("duration"), (int, float)) else None,
        "categories": [str(v) for v in (categories.values() if isinstance(categories, dict) else categories)],
        "source": "podcastindex",
        "transcripts": [
            {
                "url": t["url"],
                "type": str(t.get("type") or ""),
                "language": str(t.get("language") or ""),
                "rel": str(t.get("rel") or ""),
            }
            for t in item.get("transcripts") or []
            if isinstance(t, dict) and isinstance(t.get("url"), str) and t["url"].startswith(("http://", "https://"))
        ],
    }


def recent_episodes(
    client: PodcastIndexClient,
    feeds: int = 10,
    per_feed: int = 5,
    lang: str | None = "en",
    since: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Episodes of the trending feeds (items without audio are left out and counted)."""
    say = progress or (lambda message: None)
    episodes, without_audio = [], 0
    for feed in client.trending(max_feeds=feeds, lang=lang, since=since):
        for item in client.episodes_by_feed_id(feed["id"], max_items=per_feed, since=since):
            episode = episode_from_item(item, feed)
            if episode is None:
                without_audio += 1
            else:
                episodes.append(episode)
        say(f"feed {feed['id']} {feed.get('title', '')!r}: {len(episodes)} episodes so far")
    if without_audio:
        say(f"{without_audio} items had no enclosure or date and were left out")
    return episodes
