"""The images' commands, run here for real: the code location's gRPC server starts with the compose command
and answers the compose healthcheck; the Dash image's WSGI entry serves the app under waitress, and rendering
every page imports nothing that docker/dash-requirements.txt does not install."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from packaging.requirements import Requirement

from podrec_assets.local.processes import free_port
from podrec_assets_tests.docker_support import (
    DOCKER_DIR,
    VENV_BIN,
    distribution_closure,
    resolved_compose,
)


def _start(argv: list[str], env: dict[str, str], cwd, log_path) -> subprocess.Popen:
    log = open(log_path, "wb")
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the process we started, and its children (its own session), by its id."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _local_argv(command: list[str], port: int) -> list[str]:
    """A compose command run here: 127.0.0.1 instead of 0.0.0.0, a free port, the virtualenv's executables."""
    argv = ["127.0.0.1" if a == "0.0.0.0" else a for a in command]
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    argv[0] = str(VENV_BIN / argv[0])
    return argv


def _base_env(tmp_path) -> dict[str, str]:
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "PODREC_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "PODREC_START_DATE": "2026-01-01",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def _wait_http(url: str, proc: subprocess.Popen, log, seconds: float) -> bytes:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            assert proc.poll() is None, f"{proc.args[0]} exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{url} did not answer in {seconds:.0f} s"
            time.sleep(1)


WORKSPACE_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
)


def test_code_location_and_webserver_commands_serve_through_the_workspace_file(tmp_path):
    """The compose commands of code-location and webserver, the code location's healthcheck, the webserver's
    healthcheck URL, and docker/workspace.yaml (pointed at 127.0.0.1) all work together for real."""
    services = resolved_compose()["services"]
    port = free_port()
    argv = _local_argv(services["code-location"]["command"], port)
    health = _local_argv(services["code-location"]["healthcheck"]["test"][1:], port)
    env = _base_env(tmp_path)
    server = _start(argv, env, tmp_path, tmp_path / "code-server.log")
    webserver = None
    try:
        from dagster._grpc.client import DagsterGrpcClient
        from dagster._serdes import deserialize_value

        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.monotonic() + 180
        while client.health_check_query() != "SERVING":
            assert server.poll() is None, f"code server exited:\n{(tmp_path / 'code-server.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "code server not serving in 180 s"
            time.sleep(1)
        check = subprocess.run(health, capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, (
            f"the compose healthcheck fails on a serving code location:\n{check.stdout}{check.stderr}"
        )
        response = deserialize_value(client.list_repositories())
        assert type(response).__name__ == "ListRepositoriesResponse", f"the location failed to load: {response}"
        assert response.repository_symbols, "the code location serves no repository"

        workspace = (DOCKER_DIR / "workspace.yaml").read_text()
        assert "host: code-location" in workspace and "port: 4000" in workspace
        workspace_here = tmp_path / "workspace.yaml"
        workspace_here.write_text(
            workspace.replace("host: code-location", "host: 127.0.0.1").replace("port: 4000", f"port: {port}")
        )
        ui_port = free_port()
        ui_argv = _local_argv(services["webserver"]["command"], ui_port)
        ui_argv[ui_argv.index("/opt/dagster/home/workspace.yaml")] = str(workspace_here)
        webserver = _start(ui_argv, env, tmp_path, tmp_path / "webserver.log")
        health_url = re.search(r"http://127\.0\.0\.1:3000(/\S+?)'", services["webserver"]["healthcheck"]["test"][-1])
        _wait_http(f"http://127.0.0.1:{ui_port}{health_url.group(1)}", webserver, tmp_path / "webserver.log", 120)
        request = urllib.request.Request(
            f"http://127.0.0.1:{ui_port}/graphql",
            data=json.dumps({"query": WORKSPACE_QUERY}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            entries = json.loads(reply.read())["data"]["workspaceOrError"]["locationEntries"]
        assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
            ("podrec", "RepositoryLocation")
        ]
    finally:
        if webserver is not None:
            _stop(webserver)
        _stop(server)


RENDER_IN_THE_IMAGE = r"""
# Renders every page with only the Dash image's distributions importable (the others raise ImportError, as
# they would in the image); prints the blocked imports that the project's own code attempted.
import importlib.abc, json, re, sys, traceback
from importlib import metadata
allowed = set(json.loads(sys.argv[2]))
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
blocked_roots = {root for root, dists in metadata.packages_distributions().items()
                 if not any(norm(d) in allowed for d in dists)}
attempts = []

class NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in blocked_roots:
            frames = [f.filename for f in traceback.extract_stack() if "importlib" not in f.filename]
            attempts.append((name, frames[-2] if len(frames) > 1 else ""))
            raise ModuleNotFoundError(f"No module named {name!r} (not installed in the Dash image)", name=name)
        return None

sys.meta_path.insert(0, NotInTheImage())
sys.path.insert(0, sys.argv[1])
import dash_wsgi
server = dash_wsgi.create_server()
from dash_app import app as dash_app_module
for path, _, _ in dash_app_module.PAGES:
    dash_app_module.render(path, "")
own = [(name, where) for name, where in attempts
       if re.search(r"/(podrec_assets|dash_app)/|dash_wsgi\.py$", where) and "site-packages" not in where]
print(json.dumps({"own_code_blocked": own, "blocked": sorted({n for n, _ in attempts})}))
"""


def _dash_env(tmp_path) -> dict[str, str]:
    env = _base_env(tmp_path)
    env.update(
        {
            "PODREC_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
            "&serverSelectionTimeoutMS=300&connectTimeoutMS=300",
            "PODREC_HOST": "127.0.0.1",
            "PODREC_DAGSTER_PORT": str(free_port()),
        }
    )
    return env


def test_dash_image_installs_everything_the_app_imports(tmp_path):
    lines = [line.split("#")[0].strip() for line in (DOCKER_DIR / "dash-requirements.txt").read_text().splitlines()]
    installed = distribution_closure([Requirement(line) for line in lines if line]) | {"podrec"}
    assert "dash" in installed and "deltalake" in installed and "pymongo" in installed
    assert not installed & {"torch", "sentence-transformers", "faster-whisper", "implicit"}, (
        "the Dash image got the ML stack"
    )
    result = subprocess.run(
        [sys.executable, "-c", RENDER_IN_THE_IMAGE, str(DOCKER_DIR), json.dumps(sorted(installed))],
        env=_dash_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"the Dash app fails with only the image's packages:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["own_code_blocked"], (
        f"podrec code imports packages docker/dash-requirements.txt does not install: {report['own_code_blocked']}"
    )


def test_dash_image_command_serves_the_app(tmp_path):
    import dash_app  # noqa: F401  (fails here first if the package is broken)

    dash_dockerfile = (DOCKER_DIR / "dash.Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dash_dockerfile, re.M).group(1))
    port = free_port()
    argv = [sys.executable if a == "python" else a for a in cmd]
    argv = [
        "--host=127.0.0.1" if a.startswith("--host=") else f"--port={port}" if a.startswith("--port=") else a
        for a in argv
    ]
    proc = _start(argv, _dash_env(tmp_path), DOCKER_DIR, tmp_path / "waitress.log")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=5) as response:
                    layout = json.loads(response.read())
                break
            except OSError:
                assert proc.poll() is None, f"waitress exited:\n{(tmp_path / 'waitress.log').read_text()[-3000:]}"
                assert time.monotonic() < deadline, "the Dash app did not answer in 120 s"
                time.sleep(1)
        assert "podrec" in json.dumps(layout)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200
    finally:
        _stop(proc)
