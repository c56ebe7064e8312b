"""`podrec services start|stop|status|logs`: the embedded Kafka broker, MongoDB server and Redis server."""

from __future__ import annotations

import argparse

from podrec_assets.local.services import LocalStack
from podrec_assets.settings import get_settings


def _run(args: argparse.Namespace) -> int:
    stack = LocalStack(get_settings())
    if args.action == "start":
        for status in stack.start():
            print(status.line())
        return 0
    if args.action == "stop":
        stopped = stack.stop()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if args.action == "logs":
        print(stack.logs(args.lines))
        return 0
    statuses = stack.status()
    for status in statuses:
        print(status.line())
    return 0 if all(s.running for s in statuses) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "services",
        help="start, stop or inspect the local Kafka broker, MongoDB server and Redis server",
        description="Manage the embedded servers (bound to 127.0.0.1, state under $PODREC_HOME/services). "
        "With PODREC_KAFKA_BOOTSTRAP / PODREC_MONGO_URI / PODREC_REDIS_URL set, those servers are used and nothing "
        "is started. "
        "`status` exits 1 when a server is down.",
    )
    parser.add_argument("action", choices=["start", "stop", "status", "logs"])
    parser.add_argument("--lines", type=int, default=40, help="log lines per server for `logs`")
    parser.set_defaults(handler=_run)
