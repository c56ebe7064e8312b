"""`podrec simulate events`: listening history for past days, or a live stream, into Kafka `user-events`."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, timedelta, timezone


def _days(args: argparse.Namespace) -> list[date]:
    last = date.fromisoformat(args.end) if args.end else datetime.now(timezone.utc).date() - timedelta(days=1)
    return [last - timedelta(days=n) for n in range(args.days - 1, -1, -1)]


def _run(args: argparse.Namespace) -> int:
    from podrec_assets.settings import get_settings
    from podrec_assets.sources.simulator import simulate_follow, simulate_history

    settings = get_settings()
    seed = settings.seed if args.seed is None else args.seed
    users = args.users or settings.demo_users
    if args.follow:
        print(f"streaming ~{args.rate:g} events/s for {users} users; Ctrl-C stops", flush=True)
        result = simulate_follow(settings, users, args.rate, seed, duration_s=args.duration, progress=not args.quiet)
    else:
        per_user_day = args.events_per_user_day or settings.demo_events_per_user_day
        result = simulate_history(
            settings, _days(args), users, per_user_day, seed, late_share=args.late_share, progress=not args.quiet
        )
    print(json.dumps(result, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate listening events into Kafka",
        description="Simulate users with topic tastes listening to the published catalog (topic episode-metadata).",
    )
    kinds = parser.add_subparsers(dest="what", metavar="WHAT")
    kinds.required = True
    events = kinds.add_parser(
        "events",
        help="produce user-events (history for past days, or --follow for a live stream)",
        description="History mode stamps events on the last --days days (ending --end, default yesterday, UTC), "
        "with late arrivals and PODREC_MALFORMED_SHARE malformed messages, and writes the users' true tastes to "
        "the Delta table simulated_user_tastes. --follow streams now-stamped events at --rate until Ctrl-C.",
    )
    events.add_argument("--days", type=int, default=7, help="number of past days to simulate (default 7)")
    events.add_argument("--end", help="last simulated day, YYYY-MM-DD (default: yesterday, UTC)")
    events.add_argument("--users", type=int, default=0, help="simulated users (default PODREC_DEMO_USERS)")
    events.add_argument(
        "--events-per-user-day",
        type=float,
        default=0.0,
        help="mean events per active user per day (default PODREC_DEMO_EVENTS_PER_USER_DAY)",
    )
    events.add_argument(
        "--late-share",
        type=float,
        default=0.002,
        help="share of events arriving after their day ended, half beyond the allowed lateness",
    )
    events.add_argument("--seed", type=int, default=None, help="random seed (default PODREC_SEED)")
    events.add_argument("--follow", action="store_true", help="stream now-stamped events until Ctrl-C")
    events.add_argument("--rate", type=float, default=100.0, help="events per second with --follow (default 100)")
    events.add_argument("--duration", type=float, default=None, help="with --follow: stop after this many seconds")
    events.add_argument("--quiet", action="store_true", help="no progress bar")
    events.set_defaults(handler=_run)
