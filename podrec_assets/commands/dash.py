"""`podrec dash`: serve the Dash app (recommendations, episodes, engagement, model quality, pipeline health).

``dash_command_argv`` / ``dash_process`` / ``dash_ready`` let `podrec demo` run it as a managed process.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

from podrec_assets.local.processes import ManagedProcess, require_free_port
from podrec_assets.settings import Settings, get_settings


def dash_command_argv(settings: Settings) -> list[str]:
    """The command line that serves the app on settings.host:settings.dash_port (settings via env)."""
    return [
        sys.executable,
        "-m",
        "podrec_assets.cli",
        "dash",
        "--host",
        settings.host,
        "--port",
        str(settings.dash_port),
    ]


def dash_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.dash_port}/"


def dash_process(settings: Settings) -> ManagedProcess:
    """The app as a ManagedProcess (pid and log under $PODREC_HOME/services/)."""
    return ManagedProcess(f"dash-{settings.dash_port}", settings.services_dir)


def dash_ready(settings: Settings, timeout_s: float = 1.0) -> bool:
    """True when the app answers its layout endpoint."""
    try:
        with urllib.request.urlopen(dash_url(settings) + "_dash-layout", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_dash(settings: Settings, timeout_s: float = 60.0, extra_env: dict[str, str] | None = None) -> ManagedProcess:
    """Start the app in the background and wait until it answers (used by `podrec demo` and tests).

    The child reads its settings from the environment: ``extra_env`` (PODREC_* values) must describe the same
    settings when they do not come from this process's own environment.
    """
    from podrec_assets.settings import PROJECT_ROOT, child_environment

    require_free_port("Dash app", settings.host, settings.dash_port, "PODREC_DASH_PORT")
    process = dash_process(settings)
    env = child_environment(settings)
    env.update(extra_env or {})
    process.start(dash_command_argv(settings), env=env, cwd=PROJECT_ROOT)
    process.wait_ready(lambda: dash_ready(settings), timeout_s, f"Dash app on {dash_url(settings)}")
    return process


def serve(settings: Settings, host: str, port: int, debug: bool = False, threads: int = 8) -> None:
    from dash_app.app import create_app

    require_free_port("Dash app", host, port, "PODREC_DASH_PORT")
    app = create_app(settings)
    import threading

    from dash_app import data

    threading.Thread(target=data.current().warm_up, name="podrec-dash-warm-up", daemon=True).start()
    print(
        f"podrec dash: serving on http://{host}:{port}/ (lake {settings.lake_root}, MongoDB db {settings.mongo_db})",
        flush=True,
    )
    if debug:
        app.run(host=host, port=port, debug=True)
        return
    from waitress import serve as waitress_serve

    waitress_serve(app.server, host=host, port=port, threads=threads, ident="podrec-dash")


def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    serve(settings, args.host or settings.host, args.port or settings.dash_port, debug=args.debug, threads=args.threads)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dash",
        help="serve the Dash app that explores recommendations, episodes, engagement and pipeline health",
        description="Serve the Plotly Dash app (default http://127.0.0.1:8050, PODREC_HOST / PODREC_DASH_PORT). "
        "It reads the Delta lake through DuckDB and the MongoDB serving copy; when MongoDB is down it shows a banner "
        "and reads Delta instead. Pipeline health comes from the Dagster webserver on PODREC_DAGSTER_PORT when it "
        "answers.",
    )
    parser.add_argument("--host", default=None, help="address to bind (default: PODREC_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default: PODREC_DASH_PORT)")
    parser.add_argument("--threads", type=int, default=8, help="request threads of the WSGI server")
    parser.add_argument("--debug", action="store_true", help="Dash debug mode with hot reload (development only)")
    parser.set_defaults(handler=_run)
