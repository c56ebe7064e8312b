"""`podrec demo`: the whole product on one machine, from nothing to recommendations in the browser.

Starts the local stack, publishes the demo catalog (real topic-labelled text spoken by espeak-ng),
simulates listening history, materializes every asset for every demo day in the persistent Dagster
instance (so the runs, lineage and metadata are in the UI), then serves the Dagster UI, the Dash app and
the recommendation API until Ctrl-C, which stops everything the demo started.
"""

from __future__ import annotations

import argparse
import signal
import time
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

from podrec_assets.settings import Settings, get_settings


def demo_days(settings: Settings, today: date | None = None) -> list[date]:
    """The demo's history: ``demo_days`` days ending yesterday (UTC)."""
    today = today or datetime.now(timezone.utc).date()
    return [today - timedelta(days=n) for n in range(settings.demo_days, 0, -1)]


def graph_job(settings: Settings):
    """(the job of every asset and check, the persistent instance of this home): what a day's run executes."""
    import os
    import warnings

    import dagster as dg

    from podrec_assets.definitions import build_definitions
    from podrec_assets.local.dagster import prepare_dagster_home

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    prepare_dagster_home(settings)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return build_definitions().resolve_implicit_global_asset_job_def(), dg.DagsterInstance.get()


def materialize_days(settings: Settings, days: list[date]) -> list[dict]:
    """Run the whole asset graph for each day, in order, recorded in the persistent instance.

    Dagster's step-by-step log goes to the instance (see each run in the UI); the console gets one line
    per asset with its row count.
    """
    job, instance = graph_job(settings)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    results = []
    for n, day in enumerate(days, 1):
        started = time.monotonic()
        print(f"[{n}/{len(days)}] {day}: materializing every asset ...", flush=True)
        result = job.execute_in_process(
            partition_key=day.isoformat(),
            instance=instance,
            raise_on_error=False,
            run_config=quiet,
            tags={"podrec/source": "demo"},
        )
        for event in result.get_asset_materialization_events():
            materialization = event.materialization
            rows = materialization.metadata.get("rows") or materialization.metadata.get("dagster/row_count")
            shown = f"{rows.value} rows" if rows is not None else ""
            print(f"    {materialization.asset_key.to_user_string():<34} {shown}", flush=True)
        failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        print(
            f"    done in {time.monotonic() - started:.0f}s (run {result.run_id[:8]})"
            + (f"; FAILED steps: {', '.join(failed)}" if failed else ""),
            flush=True,
        )
        results.append({"day": day.isoformat(), "success": result.success, "failed": failed})
    return results


def run_demo(settings: Settings, serve: bool = True, keep_services: bool = False) -> int:
    from podrec_assets.local.services import LocalStack
    from podrec_assets.sources.demo_catalog import publish_demo_catalog
    from podrec_assets.sources.simulator import simulate_history

    days = demo_days(settings)
    if days[0] < settings.start_day:
        raise ValueError(f"the demo starts on {days[0]}, before PODREC_START_DATE={settings.start_date}")
    stack = LocalStack(settings)
    began = time.monotonic()
    print(f"podrec demo: home {settings.home_path}, days {days[0]} .. {days[-1]}", flush=True)
    for status in stack.start():
        print("  " + status.line(), flush=True)
    started_ui: list = []
    try:
        print(f"publishing the demo catalog ({settings.demo_episodes_per_day} episodes/day) ...", flush=True)
        print("  ", publish_demo_catalog(settings, days, settings.demo_episodes_per_day, settings.seed), flush=True)
        print(f"simulating {settings.demo_users} users ...", flush=True)
        print(
            "  ",
            simulate_history(settings, days, settings.demo_users, settings.demo_events_per_user_day, settings.seed),
            flush=True,
        )
        results = materialize_days(settings, days)
        failed_days = [r["day"] for r in results if not r["success"]]
        print(
            f"demo data ready in {time.monotonic() - began:.0f}s"
            + (f"; days with failures: {', '.join(failed_days)} (see the Dagster UI)" if failed_days else ""),
            flush=True,
        )
        if not serve:
            return 1 if failed_days else 0
        started_ui = serve_ui(settings)
        print(
            f"\n  Dagster UI : http://{settings.host}:{settings.dagster_port}\n"
            f"  Dash app   : http://{settings.host}:{settings.dash_port}\n"
            f"  API        : http://{settings.host}:{settings.serve_port}/recommend/{{user_id}}  "
            f"(docs http://{settings.host}:{settings.serve_port}/docs)\n\nCtrl-C stops everything.",
            flush=True,
        )
        wait_for_stop_signal()
        return 0
    finally:
        for stop in reversed(started_ui):
            stop()
        if serve or not keep_services:
            stopped = stack.stop()
            if stopped:
                print(f"stopped: {', '.join(stopped)}", flush=True)


def wait_for_stop_signal() -> None:
    """Sleep until Ctrl-C or SIGTERM (the servers run in their own sessions, so they don't see it)."""
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    signal.sigwait(signals)
    print("\nstopping ...", flush=True)


def serve_ui(settings: Settings) -> list:
    """Start the Dagster webserver + daemon, the Dash app and the recommendation API; returns their stops."""
    from podrec_assets.commands.dash import start_dash
    from podrec_assets.commands.serve import start_serve
    from podrec_assets.local.dagster import settings_environment, start_dagster, stop_dagster

    stops = []
    start_dagster(settings)
    stops.append(lambda: stop_dagster(settings))
    api = start_serve(settings, extra_env=settings_environment(settings))
    stops.append(api.stop)
    dash = start_dash(settings, extra_env=settings_environment(settings))
    stops.append(dash.stop)
    return stops


def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    overrides = {
        k: v
        for k, v in {
            "demo_days": args.days,
            "demo_episodes_per_day": args.episodes_per_day,
            "demo_users": args.users,
        }.items()
        if v is not None
    }
    settings = replace(settings, **overrides)
    return run_demo(settings, serve=not args.no_serve, keep_services=args.keep_services)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="start everything, make demo data, materialize the graph, serve the UIs and the API",
        description="Start Kafka, MongoDB and Redis, publish a demo catalog (real text spoken by espeak-ng), simulate "
        "listeners, materialize every asset for every demo day, then serve the Dagster UI, the Dash app and the "
        "recommendation API (podrec serve) until Ctrl-C. State goes under $PODREC_HOME. Sizes default to "
        "PODREC_DEMO_* settings.",
    )
    parser.add_argument("--days", type=int, help="days of history (default PODREC_DEMO_DAYS)")
    parser.add_argument(
        "--episodes-per-day", type=int, help="episodes published per day (default PODREC_DEMO_EPISODES_PER_DAY)"
    )
    parser.add_argument("--users", type=int, help="simulated users (default PODREC_DEMO_USERS)")
    parser.add_argument("--no-serve", action="store_true", help="do the work and exit (CI, scripts); stops the servers")
    parser.add_argument("--keep-services", action="store_true", help="with --no-serve: leave Kafka and MongoDB running")
    parser.set_defaults(handler=_run)
