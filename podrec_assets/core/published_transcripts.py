"""Publishers' transcripts: the links a feed declares, which one to use, and parsing each format to text.

Feeds declare transcripts with the Podcasting 2.0 ``<podcast:transcript url type language rel>`` tag (and
PodcastIndex returns the same as ``transcripts``). Formats read here: SubRip (SRT), WebVTT, the Podcasting 2.0
JSON format, HTML and plain text. Timed formats give segments (start, end, text) like ASR does; HTML and plain
text give text only. Parsing is strict enough to reject garbage (binary bytes, a caption file without one cue),
because a bad transcript must send the episode to ASR instead of embedding noise.
"""

from __future__ import annotations

import html
import html.parser
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from podrec_assets.core.events import utf8_encodable

# MIME types podcasts use for each format (the Podcasting 2.0 tag's ``type``); the first name is canonical.
FORMATS: dict[str, tuple[str, ...]] = {
    "json": ("application/json", "application/x-podcast-transcript+json"),
    "vtt": ("text/vtt", "text/webvtt"),
    "srt": ("application/x-subrip", "application/srt", "text/srt", "application/x-srt", "text/x-srt"),
    "html": ("text/html", "application/xhtml+xml"),
    "text": ("text/plain",),
}
# Which listed transcript is tried first: timed formats before untimed ones.
PREFERENCE = ("json", "vtt", "srt", "html", "text")
_FORMAT_OF_TYPE = {mime: name for name, mimes in FORMATS.items() for mime in mimes}


class UnparsableTranscript(ValueError):
    """A transcript body that is not the format it claims (or any format read here)."""


@dataclass
class ParsedTranscript:
    format: str
    text: str
    segments: list[dict[str, Any]] = field(default_factory=list)


def format_of(mime_type: str | None, url: str = "") -> str | None:
    """The format name of a declared MIME type, else of the URL's extension; None when neither tells."""
    mime = (mime_type or "").split(";")[0].strip().lower()
    if mime in _FORMAT_OF_TYPE:
        return _FORMAT_OF_TYPE[mime]
    extension = url.lower().split("?")[0].rsplit(".", 1)[-1] if "." in url else ""
    return {"json": "json", "vtt": "vtt", "srt": "srt", "html": "html", "htm": "html", "txt": "text"}.get(extension)


def transcript_links(values: Any) -> list[dict[str, str]]:
    """Validated ``{url, type, language, rel}`` links (http/https/file URLs only); raises ValueError on bad shape."""
    if values is None:
        return []
    if not isinstance(values, list):
        raise ValueError("bad_transcripts: must be a list of {url, type} objects")
    links = []
    for value in values:
        if not isinstance(value, dict) or not isinstance(value.get("url"), str) or not value["url"]:
            raise ValueError("bad_transcripts: every transcript needs a url string")
        if not value["url"].startswith(("http://", "https://", "file://")):
            raise ValueError(f"bad_transcripts: {value['url'][:200]!r} (http, https or file)")
        for name in ("type", "language", "rel"):
            if value.get(name) is not None and not isinstance(value[name], str):
                raise ValueError(f"bad_transcripts: {name} must be a string")
        links.append(
            {
                "url": value["url"],
                "type": value.get("type") or "",
                "language": value.get("language") or "",
                "rel": value.get("rel") or "",
            }
        )
    return links


def ranked_links(links: list[dict[str, str]]) -> list[dict[str, str]]:
    """The links worth trying, best first: timed formats first, then the feed's order; captions-only
    (``rel="captions"``) files are kept, links of an unknown format are tried last (the body may still tell)."""

    def rank(item: tuple[int, dict[str, str]]) -> tuple[int, int]:
        position, link = item
        name = format_of(link["type"], link["url"])
        return (PREFERENCE.index(name) if name else len(PREFERENCE), position)

    return [link for _, link in sorted(enumerate(links), key=rank)]


# --- decoding ------------------------------------------------------------------------------------------


def decode_text(body: bytes) -> str:
    """UTF-8 (a BOM allowed) or UTF-16 with a BOM, else Windows-1252; binary content is refused."""
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = body.decode("utf-16", errors="replace")
    else:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = body.decode("cp1252", errors="replace")
    if not text.strip():
        raise UnparsableTranscript("empty body")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f") + text.count("\ufffd")
    if controls > max(2, len(text) // 100):
        raise UnparsableTranscript(f"binary content ({controls} control or undecodable characters in {len(text)})")
    return text


def _clean(text: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


# --- caption formats -----------------------------------------------------------------------------------

_TIMESTAMP = r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})"
_CUE_TIMING = re.compile(rf"^\s*{_TIMESTAMP}\s*-->\s*{_TIMESTAMP}")
_ANY_CUE_TIMING = re.compile(rf"^\s*{_TIMESTAMP}\s*-->\s*{_TIMESTAMP}", re.MULTILINE)  # anywhere in a body


def _seconds(hours: str | None, minutes: str, seconds: str, fraction: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction.ljust(3, "0")) / 1000


def _cues(lines: list[str]) -> list[dict[str, Any]]:
    """Cues of an SRT or WebVTT body: a timing line, then text lines up to a blank line."""
    segments, index = [], 0
    while index < len(lines):
        timing = _CUE_TIMING.match(lines[index])
        index += 1
        if not timing:
            continue
        groups = timing.groups()
        start, end = _seconds(*groups[:4]), _seconds(*groups[4:])
        text_lines = []
        while index < len(lines) and lines[index].strip():
            if _CUE_TIMING.match(lines[index]):
                break  # a cue without a blank line before the next timing
            text_lines.append(lines[index])
            index += 1
        text = _clean(" ".join(text_lines))
        if text and end >= start:
            segments.append({"start": round(start, 3), "end": round(end, 3), "text": text})
    return segments


def parse_srt(text: str) -> ParsedTranscript:
    segments = _cues(text.splitlines())
    if not segments:
        raise UnparsableTranscript("SRT without a single timed cue")
    return ParsedTranscript("srt", " ".join(s["text"] for s in segments), segments)


def parse_vtt(text: str) -> ParsedTranscript:
    lines = text.splitlines()
    if not lines or not lines[0].lstrip("\ufeff").startswith("WEBVTT"):
        raise UnparsableTranscript("WebVTT must start with 'WEBVTT'")
    kept, skipping = [], False
    for line in lines[1:]:
        if not line.strip():
            skipping = False
        elif not kept or not kept[-1].strip():  # the first line of a block says what the block is
            skipping = line.startswith(("NOTE", "STYLE", "REGION"))
        kept.append("" if skipping else line)
    segments = _cues(kept)
    if not segments:
        raise UnparsableTranscript("WebVTT without a single timed cue")
    return ParsedTranscript("vtt", " ".join(s["text"] for s in segments), segments)


def _finite_seconds(value: Any) -> float | None:
    """A JSON number as seconds; None for anything else (strings, booleans, 1e999, a 400-digit integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def parse_json(text: str) -> ParsedTranscript:
    """The Podcasting 2.0 JSON format: ``{"version", "segments": [{"startTime", "endTime", "body", "speaker"}]}``."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UnparsableTranscript(f"not JSON: {str(exc)[:200]}") from None
    raw = document.get("segments") if isinstance(document, dict) else None
    if not isinstance(raw, list):
        raise UnparsableTranscript("JSON transcript without a 'segments' list")
    segments = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("body"), str):
            raise UnparsableTranscript("a JSON segment without a 'body' string")
        start, end = _finite_seconds(item.get("startTime")), _finite_seconds(item.get("endTime"))
        if start is None or end is None:
            raise UnparsableTranscript("a JSON segment without numeric startTime/endTime")
        body = " ".join(item["body"].split())
        if body:
            segments.append({"start": round(start, 3), "end": round(end, 3), "text": body})
    if not segments:
        raise UnparsableTranscript("JSON transcript with no text")
    if not utf8_encodable("".join(s["text"] for s in segments)):
        raise UnparsableTranscript("JSON text holds a lone surrogate escape (not encodable as UTF-8)")
    segments = _joined_word_segments(segments)
    return ParsedTranscript("json", " ".join(s["text"] for s in segments), segments)


def _joined_word_segments(
    segments: list[dict[str, Any]], max_chars: int = 300, max_gap_s: float = 1.0
) -> list[dict[str, Any]]:
    """Some publishers emit one JSON segment per word: join runs of them into sentence-sized segments
    (a segment ends at . ! ?, at a pause over ``max_gap_s`` or at ``max_chars``), as ASR segments are."""
    joined: list[dict[str, Any]] = []
    for segment in segments:
        last = joined[-1] if joined else None
        if (
            last is not None
            and not last["text"].endswith((".", "!", "?"))
            and segment["start"] - last["end"] <= max_gap_s
            and len(last["text"]) + len(segment["text"]) < max_chars
        ):
            last["text"] = f"{last['text']} {segment['text']}"
            last["end"] = max(last["end"], segment["end"])
        else:
            joined.append(dict(segment))
    return joined


class _TextOfHtml(html.parser.HTMLParser):
    # <cite> (speaker) and <time> (timestamp) label the Podcasting 2.0 HTML format's paragraphs: left out, so the
    # text reads like what was said, as an ASR transcript does
    SKIP = {"script", "style", "head", "title", "noscript", "template", "cite", "time"}
    BLOCKS = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "cite", "time"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.tags = 0

    def handle_starttag(self, tag, attrs):
        self.tags += 1
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def parse_html(text: str) -> ParsedTranscript:
    reader = _TextOfHtml()
    reader.feed(text)
    reader.close()
    if not reader.tags:
        raise UnparsableTranscript("HTML without any markup")
    words = " ".join("".join(reader.parts).split())
    if not words:
        raise UnparsableTranscript("HTML with no text")
    return ParsedTranscript("html", words)


def parse_plain(text: str) -> ParsedTranscript:
    if "<html" in text[:2000].lower() or _ANY_CUE_TIMING.search(text[:5000]):
        raise UnparsableTranscript("declared plain text but the body is markup or captions")
    return ParsedTranscript("text", " ".join(text.split()))


PARSERS = {"srt": parse_srt, "vtt": parse_vtt, "json": parse_json, "html": parse_html, "text": parse_plain}


def sniff_format(text: str) -> str:
    """The format a body looks like, for links that declare no known type."""
    head = text.lstrip("\ufeff \t\r\n")[:5000]
    if head.startswith("WEBVTT"):
        return "vtt"
    if head.startswith("{"):
        return "json"
    if _ANY_CUE_TIMING.search(head):
        return "srt"
    if re.search(r"<(html|body|p|div)\b", head, re.IGNORECASE):
        return "html"
    return "text"


def parse_transcript(body: bytes, mime_type: str | None = None, url: str = "") -> ParsedTranscript:
    """Text and (for timed formats) segments of a transcript body in the format its link declares."""
    text = decode_text(body)
    name = format_of(mime_type, url) or sniff_format(text)
    return PARSERS[name](text)
