"""The Dagster webserver and daemon of one PODREC_HOME, started and stopped by PID.

Each runs in its own session with a clean signal mask (``ManagedProcess``): a ``dagster dev &`` started
from a script inherits a blocked SIGINT and then ignores Ctrl-C and SIGTERM. ``DAGSTER_HOME`` is
``$PODREC_HOME/dagster`` with the repository's ``dagster.yaml`` copied in (run queue limit from
settings), so runs, sensor cursors and schedules survive restarts; the code location is the repository's
``workspace.yaml``. The children get every non-default setting as its environment variable, so they
see exactly the settings of the caller.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from podrec_assets.local.processes import ManagedProcess, ServiceError, require_free_port
from podrec_assets.settings import PROJECT_ROOT, Settings, child_environment

WORKSPACE = PROJECT_ROOT / "workspace.yaml"
INSTANCE_TEMPLATE = PROJECT_ROOT / "dagster.yaml"


def settings_environment(settings: Settings) -> dict[str, str]:
    """The caller's environment plus every setting that differs from its default, as PODREC_* variables."""
    env = child_environment(settings)
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if value != f.default:
            env[f.metadata["env"]] = str(value)
    env["PODREC_HOME"] = str(settings.home_path)
    return env


def prepare_dagster_home(settings: Settings) -> Path:
    """Write DAGSTER_HOME/dagster.yaml from the repository's, with the run queue limit of the settings."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(INSTANCE_TEMPLATE.read_text()) or {}
    config.setdefault("concurrency", {}).setdefault("runs", {})["max_concurrent_runs"] = settings.max_concurrent_runs
    (home / "dagster.yaml").write_text(
        "# written by podrec from the repository's dagster.yaml; edit that one\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return home


def initialize_storage(settings: Settings) -> None:
    """Create the instance's sqlite storage once, here: a webserver and a daemon starting together on a fresh
    DAGSTER_HOME would both create it and one fails with 'table alembic_version already exists'."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        instance.get_runs(limit=1)
        instance.get_asset_keys()
        instance.all_instigator_state()


def _tool(name: str) -> str:
    """A console script of the running interpreter's environment (the venv), else from PATH."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise ServiceError(f"{name} is not installed in {Path(sys.executable).parent}. Run `make setup`.")
    return found


def webserver(settings: Settings) -> ManagedProcess:
    return ManagedProcess("dagster-webserver", settings.services_dir)


def daemon(settings: Settings) -> ManagedProcess:
    return ManagedProcess("dagster-daemon", settings.services_dir)


def webserver_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.dagster_port}"


def server_info(settings: Settings, timeout_s: float = 2.0) -> dict | None:
    """The webserver's /server_info, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{webserver_url(settings)}/server_info", timeout=timeout_s) as response:
            return json.loads(response.read().decode()) if response.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def start_dagster(settings: Settings, timeout_s: float = 180.0) -> dict[str, int]:
    """Start the daemon and the webserver (if not already running) and wait until the webserver answers."""
    prepare_dagster_home(settings)
    initialize_storage(settings)
    env = settings_environment(settings)
    web, dmn = webserver(settings), daemon(settings)
    if dmn.pid() is None:
        dmn.start([_tool("dagster-daemon"), "run", "-w", str(WORKSPACE)], env=env, cwd=PROJECT_ROOT)
    if web.pid() is None:
        require_free_port("Dagster webserver", settings.host, settings.dagster_port, "PODREC_DAGSTER_PORT")
        web.start(
            [_tool("dagster-webserver"), "-h", settings.host, "-p", str(settings.dagster_port), "-w", str(WORKSPACE)],
            env=env,
            cwd=PROJECT_ROOT,
        )
    try:
        web.wait_ready(
            lambda: server_info(settings) is not None, timeout_s, f"Dagster webserver ({webserver_url(settings)})"
        )
    except ServiceError:
        dmn.stop()
        raise
    if dmn.pid() is None:
        web.stop()
        raise ServiceError(f"Dagster daemon exited during start-up. Last log lines ({dmn.log_file}):\n{dmn.log_tail()}")
    return {"webserver": web.pid() or 0, "daemon": dmn.pid() or 0}


def stop_dagster(settings: Settings) -> list[str]:
    """Stop the webserver and the daemon of this PODREC_HOME by PID (SIGTERM, then SIGKILL after a timeout)."""
    stopped = []
    for name, process in (("dagster-webserver", webserver(settings)), ("dagster-daemon", daemon(settings))):
        if process.stop():
            stopped.append(name)
    return stopped


def dagster_status(settings: Settings) -> list[str]:
    web_pid, daemon_pid = webserver(settings).pid(), daemon(settings).pid()
    info = server_info(settings) if web_pid else None
    return [
        f"dagster-webserver {'up' if info else 'down':<5} {webserver_url(settings):<32} "
        + (f"pid {web_pid}" if web_pid else "not started")
        + (f" dagster {info.get('dagster_version', '?')}" if info else ""),
        f"dagster-daemon    {'up' if daemon_pid else 'down':<5} {'DAGSTER_HOME=' + str(settings.dagster_home):<32} "
        + (f"pid {daemon_pid}" if daemon_pid else "not started"),
    ]
