"""Fetching an episode's files (audio, transcripts; http, https, file) with a size limit, a time limit and retries.

Local files are read in place; remote ones are streamed to a temporary file (never into memory) and the
download is abandoned as soon as it passes ``max_bytes`` or ``timeout_s``.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


class FetchError(RuntimeError):
    """A file that could not be fetched; ``retryable`` says whether another attempt could succeed."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 200 * 1024 * 1024
    timeout_s: float = 120.0
    retries: int = 3
    user_agent: str = "podrec/0.1"
    backoff_s: float = 0.5


def local_path(url: str) -> Path | None:
    """The file a ``file://`` URL or bare path names; None for remote URLs."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and url[1:3] in (":\\", ":/")):
        return Path(url)
    return None


def _download(url: str, target: Path, limits: FetchLimits) -> int:
    deadline = time.monotonic() + limits.timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": limits.user_agent})
    try:
        with urllib.request.urlopen(request, timeout=min(30.0, limits.timeout_s)) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise FetchError(f"{url}: {int(declared)} bytes is over the limit of {limits.max_bytes}")
            size = 0
            with target.open("wb") as out:
                while chunk := response.read(256 * 1024):
                    size += len(chunk)
                    if size > limits.max_bytes:
                        raise FetchError(f"{url}: more than {limits.max_bytes} bytes, download stopped")
                    if time.monotonic() > deadline:
                        raise FetchError(f"{url}: download took longer than {limits.timeout_s}s", retryable=True)
                    out.write(chunk)
            return size
    except urllib.error.HTTPError as exc:
        retryable = exc.code == 429 or exc.code >= 500
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}", retryable=retryable) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise FetchError(f"{url}: {getattr(exc, 'reason', exc)}", retryable=True) from exc


@contextmanager
def fetched_file(url: str, limits: FetchLimits, work_dir: str | Path | None = None) -> Iterator[Path]:
    """A local path holding the file at ``url`` for the duration of the ``with`` block."""
    path = local_path(url)
    if path is not None:
        if not path.is_file():
            raise FetchError(f"{url}: no such file")
        if path.stat().st_size > limits.max_bytes:
            raise FetchError(f"{url}: {path.stat().st_size} bytes is over the limit of {limits.max_bytes}")
        yield path
        return
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise FetchError(f"{url}: unsupported URL scheme (http, https and file are)")
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="podrec-fetch-", dir=work_dir)
    os.close(handle)
    target = Path(name)
    try:
        for attempt in range(1, max(1, limits.retries) + 1):
            try:
                _download(url, target, limits)
                break
            except FetchError as exc:
                if not exc.retryable or attempt >= limits.retries:
                    raise FetchError(f"{exc} (attempt {attempt} of {limits.retries})") from exc
                time.sleep(limits.backoff_s * 2 ** (attempt - 1))
        yield target
    finally:
        target.unlink(missing_ok=True)
