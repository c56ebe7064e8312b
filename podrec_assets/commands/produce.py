"""`podrec produce episodes`: publish episodes (demo catalog, PodcastIndex, RSS) to Kafka."""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime, timedelta, timezone

from podrec_assets.settings import get_settings


def _days(args: argparse.Namespace, default_days: int) -> list[date]:
    end = date.fromisoformat(args.end_date) if args.end_date else date.today() - timedelta(days=1)
    count = args.days or default_days
    return [end - timedelta(days=offset) for offset in range(count - 1, -1, -1)]


def _run(args: argparse.Namespace) -> int:
    from podrec_assets.resources.kafka import KafkaResource
    from podrec_assets.sources.publisher import publish_episodes

    settings = get_settings()
    say = lambda message: print(message, flush=True)  # noqa: E731
    kafka = KafkaResource(bootstrap_servers=settings.kafka_servers, lateness_minutes=settings.kafka_lateness_minutes)
    if args.source == "demo":
        from podrec_assets.sources.demo_catalog import publish_demo_catalog

        days = _days(args, settings.demo_days)
        say(
            f"demo catalog: {len(days)} days {days[0]}..{days[-1]}, "
            f"{args.per_day or settings.demo_episodes_per_day}/day"
        )
        result = publish_demo_catalog(
            settings,
            days,
            args.per_day or settings.demo_episodes_per_day,
            settings.seed if args.seed is None else args.seed,
            progress=say,
        )
    elif args.source == "podcastindex":
        from podrec_assets.sources.podcastindex import PodcastIndexClient, recent_episodes

        client = PodcastIndexClient(
            settings.podcastindex_api_key,
            settings.podcastindex_api_secret,
            settings.podcastindex_base_url,
            settings.user_agent,
        )
        since = None
        if args.days:
            since = int(
                datetime.combine(
                    date.today() - timedelta(days=args.days), datetime.min.time(), tzinfo=timezone.utc
                ).timestamp()
            )
        episodes = recent_episodes(
            client, feeds=args.feeds_max, per_feed=args.per_feed, lang=args.lang, since=since, progress=say
        )
        result = {"episodes": len(episodes), **publish_episodes(kafka, episodes, progress=say)}
    else:
        from podrec_assets.sources.rss import FeedError, read_feed

        if not args.feeds:
            raise SystemExit("--source rss needs --feeds URL [URL ...]")
        episodes, problems, failed = [], 0, 0
        for url in args.feeds:
            try:
                read = read_feed(url, settings.user_agent)
            except FeedError as exc:
                say(f"feed failed: {exc}")
                failed += 1
                continue
            say(f"{url}: {read.title!r}, {len(read.episodes)} episodes, {len(read.problems)} items left out")
            for problem in read.problems:
                say(f"  left out {problem}")
            episodes += read.episodes
            problems += len(read.problems)
        result = {
            "episodes": len(episodes),
            "items_left_out": problems,
            "feeds_failed": failed,
            **publish_episodes(kafka, episodes, progress=say),
        }
    print(json.dumps(result))
    return 1 if result.get("feeds_failed") and result.get("feeds_failed") == len(args.feeds or []) else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "produce",
        help="publish episodes to Kafka (episode-metadata, episode-ids)",
        description="Publish episodes to the episode-metadata and episode-ids topics with record timestamp = "
        "published_at. Idempotent by episode_id: episodes already on episode-ids are not sent again.",
    )
    what = parser.add_subparsers(dest="what", required=True)
    episodes = what.add_parser(
        "episodes",
        help="publish episodes from the demo catalog, PodcastIndex or RSS feeds",
        description="demo: newsgroup posts spoken by espeak-ng into $PODREC_HOME/audio (no network). "
        "podcastindex: trending feeds' recent episodes (PODCASTINDEX_API_KEY/SECRET). rss: the given feeds.",
    )
    episodes.add_argument("--source", choices=["demo", "podcastindex", "rss"], default="demo")
    episodes.add_argument(
        "--days",
        type=int,
        default=None,
        help="demo: days of catalog ending --end-date (default PODREC_DEMO_DAYS); "
        "podcastindex: only episodes of the last D days",
    )
    episodes.add_argument("--end-date", default=None, help="demo: last day (YYYY-MM-DD, default yesterday)")
    episodes.add_argument(
        "--per-day", type=int, default=None, help="demo: episodes per day (default PODREC_DEMO_EPISODES_PER_DAY)"
    )
    episodes.add_argument("--seed", type=int, default=None, help="demo: seed (default PODREC_SEED)")
    episodes.add_argument("--feeds", nargs="+", default=None, metavar="URL", help="rss: feed URLs")
    episodes.add_argument("--feeds-max", type=int, default=10, help="podcastindex: trending feeds to read")
    episodes.add_argument("--per-feed", type=int, default=5, help="podcastindex: recent episodes per feed")
    episodes.add_argument("--lang", default="en", help="podcastindex: language of trending feeds")
    episodes.set_defaults(handler=_run)
