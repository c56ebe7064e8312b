"""Pipeline health from a real Dagster webserver: materialized and failed day partitions, and the Kafka
lag recorded on a `kafka/*` asset observation, read through Dagster's GraphQL API."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

import pytest

from dash_app import data
from dash_app.app import create_app, render
from podrec_assets.local.processes import ManagedProcess, free_port
from podrec_assets.settings import load_settings

LOCATION = Path(__file__).with_name("dash_health_location.py")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def dagster_port(tmp_path_factory):
    import dagster as dg

    home = tmp_path_factory.mktemp("dagster-home")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    old_home = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        from podrec_assets_tests import dash_health_location as location

        instance = dg.DagsterInstance.get()
        for day in ("2026-03-01", "2026-03-02", "2026-03-03"):
            dg.materialize(
                [location.kafka_user_events, location.user_events],
                selection=[location.user_events],
                partition_key=day,
                instance=instance,
                raise_on_error=False,
            )
        instance.report_runless_asset_event(
            dg.AssetObservation(
                asset_key=dg.AssetKey(["kafka", "user_events"]), metadata={"consumer_lag": 42, "end_offset": 1234}
            )
        )
    finally:
        if old_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old_home
    port = free_port()
    webserver = Path(sys.executable).with_name("dagster-webserver")
    process = ManagedProcess("dagster-webserver-dash-test", home)
    process.start([str(webserver), "-h", "127.0.0.1", "-p", str(port), "-f", str(LOCATION)], env=env, cwd=home)
    process.wait_ready(lambda: _answers(f"http://127.0.0.1:{port}/server_info"), 180, "dagster-webserver")
    yield port
    process.stop()


def test_health_reads_partitions_and_kafka_lag_from_dagster(dagster_port, tmp_path):
    settings = load_settings(
        {"PODREC_HOME": str(tmp_path), "PODREC_DAGSTER_PORT": str(dagster_port), "PODREC_MONGO_PORT": str(free_port())}
    )
    access = data.DataAccess(settings, dagster_timeout_s=30.0)
    try:
        health = access.pipeline_health()
        assert health["source"] == "dagster", health.get("dagster_error")
        events = next(a for a in health["assets"] if a["asset"] == "user_events")
        assert events["materialized"] == ["2026-03-01", "2026-03-02"]
        assert events["failed"] == ["2026-03-03"]
        assert events["last_partition"] == "2026-03-02" and events["last_update"] is not None
        kafka = next(k for k in health["kafka"] if k["asset"] == "kafka/user_events")
        assert kafka["metadata"]["consumer_lag"] == "42"
    finally:
        access.close()

    create_app(settings, dagster_timeout_s=30.0)
    try:
        _, content, _ = render("/health", "")
        text = str(content)
        assert "Live from Dagster" in text and "consumer_lag: 42" in text and "kafka-card" in text
    finally:
        data.current().close()
