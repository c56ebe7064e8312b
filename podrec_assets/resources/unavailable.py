"""The one error a resource raises when its server does not answer: which server, where, and how to start it."""

from __future__ import annotations


class ServerUnavailable(RuntimeError):
    """A server a run needs did not answer; the message says which, where and what to do."""


def server_unavailable(server: str, where: str, setting: str, cause: BaseException) -> ServerUnavailable:
    return ServerUnavailable(
        f"{server}: no server answers at {where} ({type(cause).__name__}). The local stack's servers start with "
        f"`podrec services start` (`podrec services status` shows them); a server set by {setting} must be started "
        "where it runs. Re-run the step once the server is up (a re-run of a day is idempotent)."
    )
