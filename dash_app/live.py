"""The live list of a listener from the recommendation API (`podrec serve`), for the Recommendations page."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from podrec_assets.settings import Settings


@dataclass
class LiveList:
    """What the API answered (``body``), or why there is no answer (``error``)."""

    url: str
    body: dict | None = None
    error: str | None = None


def live_list(settings: Settings, user_id: str, k: int = 10, timeout_s: float = 1.0) -> LiveList:
    """GET /recommend/{user_id}; a short timeout, so a stopped API only costs the page a second."""
    url = f"{settings.serve_url}/recommend/{urllib.parse.quote(user_id, safe='')}?k={k}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return LiveList(url, body=json.loads(response.read()))
    except urllib.error.HTTPError as error:
        try:
            detail = json.loads(error.read()).get("detail")
        except ValueError:
            detail = error.reason
        return LiveList(url, error=f"the API answered {error.code}: {detail}")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return LiveList(
            url,
            error=f"no answer from the recommendation API at {settings.serve_url} ({reason}): start it with "
            "`podrec serve` (`podrec demo` starts it)",
        )
