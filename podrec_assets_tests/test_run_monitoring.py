"""A run whose worker is killed is marked FAILED by Dagster's run monitoring (the local instance's launcher answers
its health check from the worker's PID), instead of staying STARTED for ever."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import dagster as dg
from dagster._core.events import EngineEventData
from dagster._core.launcher import WorkerStatus
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from podrec_assets.local.dagster import prepare_dagster_home
from podrec_assets.local.run_launcher import LocalRunLauncher
from podrec_assets.settings import load_settings


@dg.asset
def slow_asset() -> None:
    time.sleep(60)


def started_run(instance: dg.DagsterInstance, worker_pid: int):
    """A run marked STARTED whose worker reported ``worker_pid``, as Dagster's run worker does."""
    job = dg.Definitions(assets=[slow_asset]).resolve_implicit_global_asset_job_def()
    run = instance.create_run_for_job(job)
    assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.UNKNOWN  # no PID reported yet
    instance.report_engine_event(
        f"Started process for run (pid: {worker_pid}).", run, EngineEventData.in_process(worker_pid)
    )
    instance.report_dagster_event(dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=job.name), run.run_id)
    return instance.get_run_record_by_id(run.run_id)


def test_the_daemon_fails_a_run_whose_worker_was_killed(tmp_path):
    settings = load_settings({"PODREC_HOME": str(tmp_path / "home")})
    home = prepare_dagster_home(settings)  # the repository's dagster.yaml, as `podrec ui` writes it
    logger = logging.getLogger("run-monitoring-test")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_launcher, LocalRunLauncher)
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # plays the run worker
        try:
            record = started_run(instance, worker.pid)
            assert record.dagster_run.status == DagsterRunStatus.STARTED
            assert instance.run_launcher.check_run_worker_health(record.dagster_run).status == WorkerStatus.RUNNING
            monitor_started_run(instance, None, record, logger)  # the daemon's monitoring pass: a live worker stays
            assert instance.get_run_by_id(record.dagster_run.run_id).status == DagsterRunStatus.STARTED
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        health = instance.run_launcher.check_run_worker_health(record.dagster_run)
        assert health.status == WorkerStatus.FAILED and f"pid {worker.pid}" in health.msg
        monitor_started_run(instance, None, instance.get_run_record_by_id(record.dagster_run.run_id), logger)
        assert instance.get_run_by_id(record.dagster_run.run_id).status == DagsterRunStatus.FAILURE
        messages = [
            r.event_log_entry.message or r.event_log_entry.dagster_event.message or ""
            for r in instance.get_records_for_run(record.dagster_run.run_id).records
        ]
        assert any(f"pid {worker.pid}" in m and "gone" in m for m in messages), messages
