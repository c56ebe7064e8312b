"""docker/compose.yaml: valid for docker-compose, complete (healthchecks, volumes, local-only ports, required
secrets), and every PODREC_* variable it or the images pass is a real setting whose value loads."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from podrec_assets.settings import Settings, load_settings
from podrec_assets_tests.docker_support import (
    COMPOSE_FILE,
    DOCKER_DIR,
    ENV_EXAMPLE,
    PODREC_SERVICES,
    docker_compose,
    dockerfiles,
    resolved_compose,
)

SETTING_NAMES = {f.metadata["env"] for f in dataclasses.fields(Settings)}
ONE_SHOT = {"kafka-init", "mongo-init"}
EXPECTED = {
    "kafka",
    "kafka-init",
    "mongo",
    "mongo-init",
    "postgres",
    "code-location",
    "webserver",
    "daemon",
    "dash",
    "redis",
    "api",
    "spark-master",
    "spark-worker",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return resolved_compose()


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _mounts(service: dict) -> dict[str, dict]:
    """Volume mounts by target, from docker-compose 1.29's short syntax (source:target[:mode]) or the long one."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            volume = {
                "type": "bind" if source.startswith(("/", ".")) else "volume",
                "source": source,
                "target": target,
                "read_only": mode == ["ro"],
            }
        mounts[volume["target"]] = volume
    return mounts


def _host_ips(service: dict) -> list[str]:
    """Host addresses of published ports ("ip:host_port:container_port/proto" in docker-compose 1.29)."""
    ips = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ips.append(port.get("host_ip", ""))
        else:
            parts = str(port).split(":")
            ips.append(parts[0] if len(parts) == 3 else "")
    return ips


def test_compose_file_validates_with_every_service(compose):
    assert set(compose["services"]) == EXPECTED
    assert compose["services"]["spark-master"]["profiles"] == ["spark"]
    assert compose["services"]["spark-worker"]["profiles"] == ["spark"]


def test_long_running_services_have_healthchecks_and_restart(compose):
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} is a one-shot job"
            continue
        if name == "spark-worker":  # scaled with --scale; the master's UI lists the live ones
            continue
        assert "test" in service.get("healthcheck", {}), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", f"{name} should restart unless stopped"


def test_state_lives_in_named_volumes(compose):
    named = set(compose["volumes"])
    stateful = {
        "kafka": "/var/lib/kafka/data",
        "mongo": "/data/db",
        "postgres": "/var/lib/postgresql/data",
        "code-location": "/var/lib/podrec",
    }
    for name, target in stateful.items():
        mounts = _mounts(compose["services"][name])
        assert target in mounts and mounts[target]["type"] == "volume" and mounts[target]["source"] in named, (
            f"{name} must keep {target} on a named volume"
        )
    # the Dash app and Spark executors read the lake; they must not write it
    for name in ("dash", "spark-worker", "api"):
        mounts = _mounts(compose["services"][name])
        assert mounts["/var/lib/podrec"].get("read_only") is True, f"{name} should mount the lake read-only"


def test_published_ports_bind_to_localhost_unless_set(compose, tmp_path):
    for name, service in compose["services"].items():
        for ip in _host_ips(service):
            assert ip == "127.0.0.1", f"{name} publishes a port on {ip or 'every interface'}"
    assert not compose["services"]["postgres"].get("ports"), "Postgres needs no published port"
    env_file = tmp_path / "public.env"
    env_file.write_text(ENV_EXAMPLE.read_text().replace("PUBLISH_ADDRESS=127.0.0.1", "PUBLISH_ADDRESS=0.0.0.0"))
    public = resolved_compose(env_file)
    assert _host_ips(public["services"]["webserver"]) == ["0.0.0.0"]


@pytest.mark.parametrize(
    "secret",
    [
        "POSTGRES_PASSWORD",
        "MONGO_ROOT_PASSWORD",
        "MONGO_APP_PASSWORD",
        "MONGO_READER_PASSWORD",
        "MONGO_REPLICA_SET_KEY",
    ],
)
def test_compose_refuses_to_start_without_a_secret(secret, tmp_path):
    env_file = tmp_path / "missing.env"
    env_file.write_text(re.sub(rf"^{secret}=.*$", f"{secret}=", ENV_EXAMPLE.read_text(), flags=re.M))
    result = docker_compose("config", "--quiet", env_file=env_file)
    assert result.returncode != 0 and secret in result.stderr, result.stderr


def test_no_secret_value_is_written_in_compose_yaml():
    text = COMPOSE_FILE.read_text()
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, _, value = line.partition("=")
        if re.search(r"PASSWORD|SECRET|KEY", key) and value and not key.startswith("KAFKA_CLUSTER"):
            assert value not in text, f"the example value of {key} appears in compose.yaml"


def _podrec_variables() -> dict[str, set[str]]:
    """Every PODREC_* name: passed to a service, interpolated in compose.yaml, set by an image, or in .env.example."""
    found: dict[str, set[str]] = {}

    def add(name: str, where: str) -> None:
        found.setdefault(name, set()).add(where)

    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, service in raw["services"].items():
        for key in _environment(service):
            if key.startswith(("PODREC_", "PODCASTINDEX_")):
                add(key, f"compose service {name}")
    for name in re.findall(r"\$\{((?:PODREC|PODCASTINDEX)_[A-Z0-9_]+)", COMPOSE_FILE.read_text()):
        add(name, "compose.yaml interpolation")
    for path in dockerfiles():
        for name in re.findall(r"\b((?:PODREC|PODCASTINDEX)_[A-Z0-9_]+)=", path.read_text()):
            add(name, path.name)
    for path in DOCKER_DIR.rglob("*.sh"):
        for name in re.findall(r"\b((?:PODREC|PODCASTINDEX)_[A-Z0-9_]+)", path.read_text()):
            add(name, str(path.relative_to(DOCKER_DIR)))
    for name in re.findall(r"^#?\s*((?:PODREC|PODCASTINDEX)_[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M):
        add(name, ".env.example")
    return found


def test_every_podrec_variable_is_a_setting():
    variables = _podrec_variables()
    assert len(variables) >= 15, "the scan found too few variables: the parser is out of step with the files"
    unknown = {name: sorted(where) for name, where in variables.items() if name not in SETTING_NAMES}
    assert not unknown, f"not settings in podrec_assets/settings.py: {unknown}"


@pytest.mark.parametrize("service_name", [*PODREC_SERVICES, "dash", "api"])
def test_service_environment_loads_as_settings(compose, service_name):
    env = {
        k: v
        for k, v in _environment(compose["services"][service_name]).items()
        if k.startswith(("PODREC_", "PODCASTINDEX_"))
    }
    settings = load_settings(env)  # raises on a value of the wrong type or an invalid engine/date
    if service_name == "code-location":
        assert settings.kafka_servers == "kafka:9092"
        assert settings.mongo_url.startswith("mongodb://podrec:") and "@mongo:27017/" in settings.mongo_url
        assert "replicaSet=rs0" in settings.mongo_url and "authSource=admin" in settings.mongo_url
        assert settings.lake_root == "/var/lib/podrec/lake" and settings.home_path.as_posix() == "/var/lib/podrec"
        assert settings.spark_driver_host == "code-location"
        assert settings.kafka_external and settings.mongo_external  # the code starts no embedded server
    if service_name == "dash":
        assert settings.mongo_url.startswith("mongodb://podrec_reader:"), "the Dash app reads with the read-only user"
    if service_name == "api":
        assert settings.redis_external and settings.redis_server_url == "redis://redis:6379/0"
        assert settings.kafka_servers == "kafka:9092" and settings.lake_root == "/var/lib/podrec/lake"


def test_dagster_processes_share_the_instance_and_storage(compose):
    for name in PODREC_SERVICES:
        service = compose["services"][name]
        env = _environment(service)
        for key in (
            "DAGSTER_POSTGRES_HOST",
            "DAGSTER_POSTGRES_DB",
            "DAGSTER_POSTGRES_USER",
            "DAGSTER_POSTGRES_PASSWORD",
            "DAGSTER_MAX_CONCURRENT_RUNS",
        ):
            assert env.get(key), f"{name} lacks {key} (docker/dagster.yaml reads it)"
        assert "/opt/dagster/storage" in _mounts(service), (
            f"{name} must share compute logs on the dagster_storage volume"
        )


def test_workspace_points_at_the_code_location_server(compose):
    workspace = yaml.safe_load((DOCKER_DIR / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]
    server = entry["grpc_server"]
    command = compose["services"]["code-location"]["command"]
    assert server["host"] == "code-location" == compose["services"]["code-location"]["hostname"]
    assert str(server["port"]) == command[command.index("--port") + 1]
    assert server["location_name"] == command[command.index("--location-name") + 1]
    for name in ("webserver", "daemon"):
        assert "/opt/dagster/home/workspace.yaml" in compose["services"][name]["command"]
        assert compose["services"][name]["depends_on"]["code-location"]["condition"] == "service_healthy"


def test_kafka_topics_use_the_settings_partitions(compose):
    script = (DOCKER_DIR / "kafka" / "create-topics.sh").read_text()
    for topic in ("episode-metadata", "episode-ids", "user-events"):
        assert f"create {topic} " in script
    env = _environment(compose["services"]["kafka-init"])
    settings = load_settings(env)
    assert settings.user_events_partitions >= 3
    code_env = _environment(compose["services"]["code-location"])
    for key in ("PODREC_EPISODE_TOPIC_PARTITIONS", "PODREC_USER_EVENTS_PARTITIONS", "PODREC_KAFKA_RETENTION_MS"):
        assert env[key] == code_env[key], f"kafka-init and the code location disagree on {key}"
    kafka_env = _environment(compose["services"]["kafka"])
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from kafka-init, never by accident"
    assert "INTERNAL://kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]


def test_mongo_runs_a_replica_set_with_auth(compose):
    mongo = compose["services"]["mongo"]
    command = mongo["command"]
    assert "--replSet" in command and "--keyFile" in command
    rs_name = command[command.index("--replSet") + 1]
    init_env = _environment(compose["services"]["mongo-init"])
    assert init_env["MONGO_REPLICA_SET"] == rs_name
    assert f"replicaSet={rs_name}" in _environment(compose["services"]["code-location"])["PODREC_MONGO_URI"]
    js = (DOCKER_DIR / "mongo" / "init-replica-set.js").read_text()
    assert "rs.initiate" in js and "createUser" in js and '"read"' in js and '"readWrite"' in js
    for name in ("code-location", "dash"):
        assert compose["services"][name]["depends_on"]["mongo-init"]["condition"] == "service_completed_successfully"


def test_spark_workers_share_the_driver_image_and_lake(compose):
    services = compose["services"]
    assert services["spark-worker"]["image"] == services["spark-master"]["image"] == services["code-location"]["image"]
    command = services["spark-worker"]["command"]
    assert "spark://spark-master:7077" in command
    # the image runs as a non-root user: the worker's default work dir (inside site-packages) is read-only to it
    assert command[command.index("--work-dir") + 1].startswith("/tmp/")
    # executors on the workers connect back to the driver (a run in the code-location container) by that name
    from podrec_assets.resources.spark import spark_resource

    env = {k: v for k, v in _environment(services["code-location"]).items() if k.startswith("PODREC_")}
    spark_config = spark_resource(
        load_settings({**env, "PODREC_SPARK_MASTER": "spark://spark-master:7077"})
    ).spark_config
    assert (
        spark_config["spark.driver.host"] == "code-location" and spark_config["spark.driver.bindAddress"] == "0.0.0.0"
    )
    assert spark_config["spark.master"] == "spark://spark-master:7077"
    assert spark_config["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert "hostname" not in services["spark-worker"] and "ports" not in services["spark-worker"], (
        "spark-worker must stay scalable (--scale): no fixed hostname or published port"
    )


def test_the_image_carries_the_spark_connectors_make_setup_installs():
    """The image copies Spark's Delta and Kafka jars with `make setup`'s pom, and points the setting at them."""
    dockerfile = (DOCKER_DIR / "Dockerfile").read_text()
    assert "COPY podrec_assets/local/spark/pom.xml /build/pom.xml" in dockerfile
    assert "-f /build/pom.xml dependency:copy-dependencies -DincludeScope=runtime" in dockerfile
    assert "COPY --from=spark-jars /opt/spark-jars /opt/podrec-spark-jars" in dockerfile
    assert "PODREC_SPARK_JARS_DIR=/opt/podrec-spark-jars" in dockerfile
    makefile = (DOCKER_DIR.parent / "Makefile").read_text()
    assert "SPARK_POM := podrec_assets/local/spark/pom.xml" in makefile and "$(SPARK_STAMP)" in makefile
