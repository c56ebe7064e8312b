"""`podrec ui`: webserver + daemon started in their own sessions, stopped by PID (stop command and Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import yaml

from podrec_assets.local.dagster import daemon, server_info, webserver
from podrec_assets.local.processes import free_port
from podrec_assets.settings import PROJECT_ROOT, load_settings


def ui_env(tmp_path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PODREC_HOME": str(tmp_path),
            "PODREC_DAGSTER_PORT": str(free_port()),
            "PODREC_KAFKA_PORT": str(free_port()),
            "PODREC_MONGO_PORT": str(free_port()),
            "PODREC_MAX_CONCURRENT_RUNS": "3",
        }
    )
    return env


def podrec(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "podrec_assets.cli", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def gone(pids: list[int], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.3)
    return False


def test_ui_no_wait_status_and_stop(tmp_path):
    env = ui_env(tmp_path)
    settings = load_settings(env)
    started = podrec("ui", "--no-wait", env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        pids = [webserver(settings).pid(), daemon(settings).pid()]
        assert all(pids), pids
        info = server_info(settings)
        assert info and info["dagster_version"].startswith("1.13")
        status = podrec("ui", "status", env=env)
        assert status.returncode == 0 and "up" in status.stdout
        instance = yaml.safe_load((settings.dagster_home / "dagster.yaml").read_text())
        repo = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
        assert instance["concurrency"]["runs"]["max_concurrent_runs"] == 3
        assert (
            instance["concurrency"]["runs"]["tag_concurrency_limits"]
            == repo["concurrency"]["runs"]["tag_concurrency_limits"]
        )
        assert instance["freshness"] == {"enabled": True}
    finally:
        stopped = podrec("ui", "stop", env=env)
    assert "dagster-webserver" in stopped.stdout and "dagster-daemon" in stopped.stdout
    assert gone(pids)
    assert podrec("ui", "status", env=env).returncode == 1


def test_ui_foreground_stops_both_on_ctrl_c(tmp_path):
    env = ui_env(tmp_path)
    settings = load_settings(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "podrec_assets.cli", "ui"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while server_info(settings) is None:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "webserver did not come up"
            time.sleep(1)
        pids = [webserver(settings).pid(), daemon(settings).pid()]
        assert all(pids)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert gone(pids), "webserver or daemon still running after Ctrl-C"
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(
            [sys.executable, "-m", "podrec_assets.cli", "ui", "stop"], env=env, cwd=PROJECT_ROOT, capture_output=True
        )
