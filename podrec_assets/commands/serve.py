"""`podrec serve`: the recommendation API (live lists from the lake's newest model and Kafka's newest events).

``start_serve`` / ``serve_ready`` let `podrec demo` and the tests run it as a managed process.
"""

from __future__ import annotations

import argparse
import logging
import sys
import urllib.error
import urllib.request

from podrec_assets.local.processes import ManagedProcess, require_free_port
from podrec_assets.settings import Settings, get_settings


def serve_url(settings: Settings) -> str:
    return settings.serve_url


def serve_process(settings: Settings) -> ManagedProcess:
    return ManagedProcess(f"serve-{settings.serve_port}", settings.services_dir)


def serve_ready(settings: Settings, timeout_s: float = 1.0) -> bool:
    """True when the API says it is ready (a model loaded, Redis and Kafka reachable)."""
    try:
        with urllib.request.urlopen(serve_url(settings) + "/health/ready", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_serve(
    settings: Settings, timeout_s: float = 120.0, extra_env: dict[str, str] | None = None
) -> ManagedProcess:
    """Start `podrec serve` in the background and wait until it is ready (pid and log under services/)."""
    from podrec_assets.settings import PROJECT_ROOT, child_environment

    require_free_port("Recommendation API", settings.host, settings.serve_port, "PODREC_SERVE_PORT")
    process = serve_process(settings)
    env = child_environment(settings)
    env.update(extra_env or {})
    argv = [sys.executable, "-m", "podrec_assets.cli", "serve", "--host", settings.host]
    process.start(argv + ["--port", str(settings.serve_port)], env=env, cwd=PROJECT_ROOT)
    process.wait_ready(lambda: serve_ready(settings), timeout_s, f"Recommendation API on {serve_url(settings)}")
    return process


def serve(settings: Settings, host: str, port: int, access_log: bool = False) -> None:
    import uvicorn

    from podrec_assets.serving.app import create_app

    require_free_port("Recommendation API", host, port, "PODREC_SERVE_PORT")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(settings)
    redis_where = "PODREC_REDIS_URL" if settings.redis_external else settings.redis_server_url
    print(
        f"podrec serve: http://{host}:{port}/recommend/{{user_id}}  (docs http://{host}:{port}/docs; "
        f"lake {settings.lake_root}, Redis {redis_where}, "
        f"Kafka {settings.kafka_servers})",
        flush=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )


def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    serve(settings, args.host or settings.host, args.port or settings.serve_port, access_log=args.access_log)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the recommendation API (live lists, similar, popular, latest, event intake)",
        description="Serve the HTTP API (default http://127.0.0.1:8060, PODREC_HOST / PODREC_SERVE_PORT; OpenAPI "
        "docs at /docs). It answers with the lake's newest day of final_recommendations, folds user-events from "
        "Kafka into listeners' lists as they arrive, and keeps shared state in Redis (`podrec services start` "
        "starts one on 127.0.0.1). Several replicas may run against the same Redis and Kafka.",
    )
    parser.add_argument("--host", default=None, help="address to bind (default: PODREC_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default: PODREC_SERVE_PORT)")
    parser.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs time)")
    parser.set_defaults(handler=_run)
