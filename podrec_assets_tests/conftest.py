"""Shared fixtures: a real Kafka broker and MongoDB server per test session, on free ports, in a temp home.

Servers are started through the same code as `podrec services start` and stopped by PID at the end.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from podrec_assets.local.processes import free_port
from podrec_assets.local.services import LocalStack
from podrec_assets.resources import build_resources
from podrec_assets.settings import Settings, get_settings, load_settings

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def make_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        "PODREC_HOME": str(home),
        "PODREC_KAFKA_PORT": str(free_port()),
        "PODREC_KAFKA_CONTROLLER_PORT": str(free_port()),
        "PODREC_MONGO_PORT": str(free_port()),
        "PODREC_REDIS_PORT": str(free_port()),
        "PODREC_START_DATE": "2026-01-01",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory) -> dict[str, str]:
    """PODREC_* variables of the session's stack (a fresh home with its own ports)."""
    return make_env(tmp_path_factory.mktemp("podrec-home"))


@pytest.fixture(scope="session")
def stack_settings(stack_env) -> Settings:
    """Settings of a running local stack: real Apache Kafka and SecantusDB MongoDB, stopped by PID after."""
    settings = load_settings(stack_env)
    stack = LocalStack(settings)
    stack.start()
    yield settings
    stack.stop()


@pytest.fixture(scope="session")
def resources(stack_settings) -> dict:
    return build_resources(stack_settings)


@pytest.fixture
def podrec_env(stack_env, stack_settings, monkeypatch):
    """Point the process-wide settings (what Dagster definitions read) at the session's stack."""
    for key, value in stack_env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield stack_settings
    get_settings.cache_clear()


@pytest.fixture
def artifacts_dir(request) -> Path:
    """Where a test saves screenshots and reports (kept after the run, git-ignored)."""
    path = ARTIFACTS / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True, scope="session")
def _offline_models():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def winning_indexes(explain: dict) -> list[str]:
    """Names of the indexes a MongoDB query plan's winning plan scans ([] for a collection scan)."""
    names, stage = [], explain["queryPlanner"]["winningPlan"]
    stack = [stage]
    while stack:
        stage = stack.pop()
        if stage.get("stage") == "COLLSCAN":
            return []
        if stage.get("stage") == "IXSCAN":
            names.append(stage["indexName"])
        stack += [stage["inputStage"]] if "inputStage" in stage else []
        stack += stage.get("inputStages", [])
    return names


class RouteServer:
    """A real HTTP server on 127.0.0.1 answering from ``routes`` (path -> handler -> (status, headers, body))."""

    def __init__(self, routes):
        routes_ref = routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                parsed = urllib.parse.urlparse(self.path)
                route = routes_ref.get(parsed.path)
                status, headers, body = route(self) if route else (404, {}, b"not found")
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
