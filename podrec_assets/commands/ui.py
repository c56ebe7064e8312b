"""`podrec ui [start|stop|status]`: the Dagster webserver + daemon (sensors, automation, backfills, freshness)."""

from __future__ import annotations

import argparse
import signal

from podrec_assets.settings import get_settings


def _run(args: argparse.Namespace) -> int:
    from podrec_assets.local.dagster import dagster_status, start_dagster, stop_dagster, webserver_url

    settings = get_settings()
    if args.action == "stop":
        stopped = stop_dagster(settings)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if args.action == "status":
        lines = dagster_status(settings)
        print("\n".join(lines))
        return 0 if all(" up " in line for line in lines) else 1
    signals = {signal.SIGINT, signal.SIGTERM}
    if not args.no_wait:
        # blocked from before the start: a Ctrl-C during start-up is held and then stops both, never half-way
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    pids = start_dagster(settings)
    print(
        f"Dagster UI: {webserver_url(settings)}  (webserver pid {pids['webserver']}, daemon pid {pids['daemon']}, "
        f"DAGSTER_HOME={settings.dagster_home})",
        flush=True,
    )
    if args.no_wait:
        print("running in the background; `podrec ui stop` stops both.")
        return 0
    print("Ctrl-C stops both.", flush=True)
    try:
        signal.sigwait(signals)
    finally:
        print("\nstopping: " + ", ".join(stop_dagster(settings)), flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="start (or stop) the Dagster UI: webserver + daemon with sensors and automation on",
        description="Start dagster-webserver on PODREC_HOST:PODREC_DAGSTER_PORT and dagster-daemon with "
        "DAGSTER_HOME=$PODREC_HOME/dagster (dagster.yaml copied from the repository) and the repository's "
        "workspace.yaml; pid files and logs under $PODREC_HOME/services. Waits until Ctrl-C, which stops both, "
        "unless --no-wait. The Kafka sensors and the automation sensors start RUNNING.",
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=["start", "stop", "status"],
        default="start",
        help="start (default), stop or status",
    )
    parser.add_argument("--no-wait", action="store_true", help="start and return, leaving both running")
    parser.set_defaults(handler=_run)
