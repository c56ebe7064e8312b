"""The Dash app's reads of the MongoDB serving copy: indexed point queries (one user's documents), never cached
(they take milliseconds and are always fresh), and a reachability state refreshed in the background so a page
never waits on the server-selection timeout of a database that is down."""

from __future__ import annotations

import threading
import time

from podrec_assets.resources.mongo import MongoResource
from podrec_assets.resources.unavailable import ServerUnavailable


class MongoUnavailable(RuntimeError):
    """The serving database could not be reached; callers fall back to Delta and show a banner."""


class ServingCopy:
    """Queries of the swapped-in days of MongoDB, and whether MongoDB answers."""

    def __init__(self, mongo: MongoResource):
        self.mongo = mongo
        self._state: tuple[float, str | None] = (0.0, None)  # (checked at, error or None)
        self._pinging = threading.Event()

    def error(self) -> str | None:
        """None when MongoDB answers a ping; else a one-line reason.

        Checked once synchronously, then refreshed in the background every 5 s.
        """
        checked_at, error = self._state
        if checked_at == 0.0:
            self._ping()
            return self._state[1]
        if time.monotonic() - checked_at >= 5.0 and not self._pinging.is_set():
            self._pinging.set()
            threading.Thread(target=self._ping, name="podrec-dash-mongo-ping", daemon=True).start()
        return error

    def _ping(self) -> None:
        from pymongo.errors import PyMongoError

        try:
            self.mongo.client().admin.command("ping")
            error = None
        except PyMongoError as exc:
            error = f"MongoDB at {self.where()} is not reachable ({type(exc).__name__})"
        finally:
            self._pinging.clear()
        self._state = (time.monotonic(), error)

    def where(self) -> str:
        """host:port of the URI, without credentials."""
        return self.mongo.uri.split("://", 1)[-1].split("@")[-1].split("/")[0]

    def list_of(self, collection: str, owner: str, days: int) -> list[dict]:
        """``owner``'s rows of the newest ``days`` swapped-in days (never a half-written one), newest first;
        MongoUnavailable when it is down."""
        error = self.error()
        if error:
            raise MongoUnavailable(error)
        from pymongo.errors import PyMongoError

        try:
            return self.mongo.list_of(collection, owner, days)
        except (PyMongoError, ServerUnavailable) as exc:
            self._state = (time.monotonic(), f"MongoDB query failed ({type(exc).__name__})")
            raise MongoUnavailable(self._state[1]) from exc

    def close(self) -> None:
        if self.mongo._client is not None:
            self.mongo._client.close()
            self.mongo._client = None
