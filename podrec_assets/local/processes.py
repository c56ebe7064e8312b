"""Start, watch and stop local server processes by PID (never by name).

Every process podrec starts gets its own session (so it does not inherit a blocked SIGINT from a shell
that ran it in the background), a pid file, and a log file. Stopping sends one signal to that PID, waits,
and escalates to SIGKILL only after a timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil


class ServiceError(RuntimeError):
    """A local server could not be started, reached or stopped; the message says which and what to do."""


def _reset_signals() -> None:
    """Child pre-exec: default handlers and an empty signal mask, whatever the parent had."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def port_owner(host: str, port: int) -> str | None:
    """Describe the process listening on host:port, if the OS lets us see it."""
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                try:
                    proc = psutil.Process(conn.pid)
                    return f"pid {conn.pid} ({' '.join(proc.cmdline()[:3]) or proc.name()})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except psutil.Error:
        return None
    return None


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and side-by-side demos)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def require_free_port(service: str, host: str, port: int, setting: str) -> None:
    if port_is_free(host, port):
        return
    owner = port_owner(host, port)
    raise ServiceError(
        f"{service}: port {host}:{port} is already taken"
        + (f" by {owner}" if owner else "")
        + f". Stop that process or choose another port with {setting}=<port>."
    )


@dataclass
class ManagedProcess:
    """One long-running process owned through a pid file."""

    name: str
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The live PID from the pid file; a stale pid file is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                return pid
        except psutil.NoSuchProcess:
            pass
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_reset_signals,
        )
        log.close()
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise ServiceError(
                    f"{what} exited during start-up. Last log lines ({self.log_file}):\n{self.log_tail()}"
                )
            if probe():
                return
            time.sleep(0.2)
        self.stop()
        raise ServiceError(
            f"{what} did not answer within {timeout_s:.0f}s. Last log lines ({self.log_file}):\n{self.log_tail()}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> bool:
        """Signal the PID, wait for it to exit, SIGKILL after the timeout. True if something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            proc = psutil.Process(pid)
            children = proc.children(recursive=True)
            os.kill(pid, sig)
            _, alive = psutil.wait_procs([proc], timeout=timeout_s)
            for straggler in alive:
                straggler.kill()
            # children of a server (e.g. a webserver's workers) are stopped by their own PIDs too
            _, alive_children = psutil.wait_procs([c for c in children if c.is_running()], timeout=5)
            for child in alive_children:
                child.kill()
        except psutil.NoSuchProcess:
            pass
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
