"""Dagster's default run launcher, plus a run-worker health check so run monitoring fails killed runs.

The default launcher cannot tell the daemon whether a run's worker is alive, so a run whose worker was killed
(kill -9, OOM, a reboot) stays STARTED for ever. On one machine the answer is simple: every run worker reports
its PID in the run's first engine event; the run is healthy while that process lives. The local instance
(``dagster.yaml``) uses this launcher with ``run_monitoring`` enabled; the daemon then marks such a run FAILED.
"""

from __future__ import annotations

import psutil
from dagster import DagsterEventType, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus


def run_worker_pid(instance, run_id: str) -> tuple[int, float] | None:
    """(PID, when it was reported) of the run's worker, from its "Started process for run" engine event."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=20).records
    for record in records:
        event = record.event_log_entry.dagster_event
        pid = event.engine_event_data.metadata.get("pid") if event and event.engine_event_data else None
        if pid is not None and "Started process for run" in (event.message or ""):
            return int(getattr(pid, "value", pid)), record.event_log_entry.timestamp
    return None


class LocalRunLauncher(DefaultRunLauncher):
    """Launches runs like the default launcher; answers run monitoring from the run worker's PID."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        found = run_worker_pid(self._instance, run.run_id)
        if found is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run worker has not reported its PID yet")
        pid, reported_at = found
        try:
            process = psutil.Process(pid)
            alive = process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= reported_at + 1
        except psutil.NoSuchProcess:
            alive = False
        if alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"the run worker (pid {pid}) is gone: it was killed or crashed before the run finished"
        )
