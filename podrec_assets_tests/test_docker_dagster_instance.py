"""docker/dagster.yaml and docker/workspace.yaml load with Dagster's own schemas; every configured class
(Postgres storages, queued run coordinator, launcher, compute logs) accepts its config; the run queue's tag
limits are the local instance's."""

from __future__ import annotations

import importlib

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.ref import InstanceRef
from dagster._core.workspace.config_schema import process_workspace_config
from dagster._serdes.config_class import ConfigurableClassData

from podrec_assets.settings import PROJECT_ROOT
from podrec_assets_tests.docker_support import DOCKER_DIR, resolved_compose

POSTGRES_ENV = {
    "DAGSTER_POSTGRES_HOST": "postgres",
    "DAGSTER_POSTGRES_DB": "dagster",
    "DAGSTER_POSTGRES_USER": "dagster",
    "DAGSTER_POSTGRES_PASSWORD": "pw",
    "DAGSTER_MAX_CONCURRENT_RUNS": "4",
}


@pytest.fixture
def instance_env(monkeypatch):
    for key, value in POSTGRES_ENV.items():
        monkeypatch.setenv(key, value)


def _instance_ref(tmp_path) -> InstanceRef:
    return InstanceRef.from_dir(str(tmp_path), config_dir=str(DOCKER_DIR))


def _configured_classes(ref: InstanceRef) -> dict[str, ConfigurableClassData]:
    return {name: data for name, data in ref._asdict().items() if isinstance(data, ConfigurableClassData)}


def test_instance_file_validates_and_every_class_accepts_its_config(instance_env, tmp_path):
    classes = _configured_classes(_instance_ref(tmp_path))
    assert classes["storage_data"].class_name == "DagsterPostgresStorage"
    assert classes["run_coordinator_data"].class_name == "QueuedRunCoordinator"
    for name, data in classes.items():
        klass = getattr(importlib.import_module(data.module_name), data.class_name)
        result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
        assert result.success, f"{name} ({data.class_name}): {[e.message for e in result.errors]}"


def test_postgres_url_comes_from_the_environment(instance_env, tmp_path):
    from dagster_postgres.utils import pg_url_from_config

    data = _configured_classes(_instance_ref(tmp_path))["storage_data"]
    klass = getattr(importlib.import_module(data.module_name), data.class_name)
    config = process_config(resolve_to_config_type(klass.config_type()), data.config_dict).value
    assert pg_url_from_config(config) == "postgresql://dagster:pw@postgres:5432/dagster"


def test_missing_postgres_password_is_a_config_error(instance_env, monkeypatch, tmp_path):
    monkeypatch.delenv("DAGSTER_POSTGRES_PASSWORD")
    data = _configured_classes(_instance_ref(tmp_path))["storage_data"]
    klass = getattr(importlib.import_module(data.module_name), data.class_name)
    result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
    assert not result.success and "DAGSTER_POSTGRES_PASSWORD" in str([e.message for e in result.errors])


def test_a_misspelt_key_is_rejected(tmp_path):
    (tmp_path / "dagster.yaml").write_text(
        (DOCKER_DIR / "dagster.yaml").read_text().replace("run_monitoring:", "run_monitor:")
    )
    with pytest.raises(DagsterInvalidConfigError):
        InstanceRef.from_dir(str(tmp_path))


def test_run_queue_limits_match_the_local_instance(instance_env, tmp_path):
    coordinator = _configured_classes(_instance_ref(tmp_path))["run_coordinator_data"].rehydrate()
    queue = coordinator.get_run_queue_config()
    local = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]
    assert queue.tag_concurrency_limits == local["tag_concurrency_limits"]
    assert queue.max_concurrent_runs == 4


def test_compose_gives_the_instance_its_environment(tmp_path, monkeypatch):
    env = resolved_compose()["services"]["daemon"]["environment"]
    for key in POSTGRES_ENV:
        monkeypatch.setenv(key, str(env[key]))
    ref = _instance_ref(tmp_path)
    data = _configured_classes(ref)["storage_data"]
    klass = getattr(importlib.import_module(data.module_name), data.class_name)
    assert process_config(resolve_to_config_type(klass.config_type()), data.config_dict).success
    assert ref.settings["telemetry"] == {"enabled": False}


def test_workspace_file_validates():
    config = yaml.safe_load((DOCKER_DIR / "workspace.yaml").read_text())
    result = process_workspace_config(config)
    assert result.success, [e.message for e in result.errors]
