"""The embedded local stack: a Kafka broker (noida-db) and a MongoDB server (SecantusDB).

Both bind 127.0.0.1, keep data, logs and pid files under ``$PODREC_HOME/services/``, and are stopped by
PID. When ``PODREC_KAFKA_BOOTSTRAP`` / ``PODREC_MONGO_URI`` point at external servers, nothing is started
and ``status`` only probes them.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from podrec_assets.local.processes import ManagedProcess, ServiceError, require_free_port
from podrec_assets.settings import PROJECT_ROOT, Settings

TOPICS = ("episode-metadata", "episode-ids", "user-events")
SECANTUS_VENV = PROJECT_ROOT / ".podrec" / "secantus-venv"
SECANTUS_VERSION = "0.7.0b3"


def noida_binary() -> Path:
    import noida_db

    binary = Path(noida_db.__file__).parent / "noida-db"
    if not binary.exists():
        raise ServiceError(f"Kafka: the noida-db binary is missing at {binary}. Run `make setup`.")
    return binary


def secantus_binary() -> Path:
    binary = SECANTUS_VENV / "bin" / "secantusd-py"
    if not binary.exists():
        raise ServiceError(
            f"MongoDB: SecantusDB is not installed at {binary}. Run `make setup` "
            f"(it creates that virtualenv with `pip install secantusdb=={SECANTUS_VERSION}`)."
        )
    return binary


def kafka_ready(bootstrap: str, timeout_ms: int = 1500) -> bool:
    """ApiVersions + metadata round trip."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def mongo_ready(uri: str, timeout_ms: int = 1500) -> bool:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def ensure_topics(settings: Settings) -> list[str]:
    """Create the project's topics when missing; returns those created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    partitions = {
        "episode-metadata": settings.episode_topic_partitions,
        "episode-ids": settings.episode_topic_partitions,
        "user-events": max(3, settings.user_events_partitions),
    }
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers, bootstrap_timeout_ms=5000)
    try:
        existing = set(admin.list_topics())
        # Records carry event time; the broker's time-based retention would delete a history of past days on
        # arrival, so the project's topics keep records until settings.kafka_retention_ms (-1: forever).
        configs = {"retention.ms": str(settings.kafka_retention_ms)}
        missing = [NewTopic(t, partitions[t], 1, topic_configs=configs) for t in TOPICS if t not in existing]
        created = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


@dataclass
class ServiceStatus:
    name: str
    url: str
    running: bool
    pid: int | None
    external: bool
    detail: str = ""

    def line(self) -> str:
        state = "up" if self.running else "down"
        where = "external" if self.external else (f"pid {self.pid}" if self.pid else "not started")
        return f"{self.name:<6} {state:<5} {self.url:<50} {where} {self.detail}".rstrip()


class LocalStack:
    """Start/stop/status of the embedded Kafka and MongoDB for one PODREC_HOME."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.kafka = ManagedProcess("kafka", settings.services_dir)
        self.mongo = ManagedProcess("mongodb", settings.services_dir)

    # -- kafka ------------------------------------------------------------------------------------
    def start_kafka(self) -> ServiceStatus:
        s = self.settings
        if s.kafka_external:
            if not kafka_ready(s.kafka_servers, 5000):
                raise ServiceError(
                    f"Kafka: no broker answers at PODREC_KAFKA_BOOTSTRAP={s.kafka_servers}. Start that broker, "
                    "or unset PODREC_KAFKA_BOOTSTRAP to use the embedded one (`podrec services start`)."
                )
        elif self.kafka.pid() is None:
            require_free_port("Kafka", "127.0.0.1", s.kafka_port, "PODREC_KAFKA_PORT")
            data_dir = s.services_dir / "kafka-data"
            data_dir.mkdir(parents=True, exist_ok=True)
            argv = [str(noida_binary()), "start", "--data-dir", str(data_dir), "--host", "127.0.0.1",
                    "--only", "kafka", "--kafka-port", str(s.kafka_port)]
            self.kafka.start(argv)
            self.kafka.wait_ready(lambda: kafka_ready(s.kafka_servers), s.service_start_timeout_s, f"Kafka (127.0.0.1:{s.kafka_port})")
        ensure_topics(s)
        return self.kafka_status()

    def kafka_status(self) -> ServiceStatus:
        s = self.settings
        pid = None if s.kafka_external else self.kafka.pid()
        running = (s.kafka_external or pid is not None) and kafka_ready(s.kafka_servers)
        return ServiceStatus("kafka", s.kafka_servers, running, pid, s.kafka_external)

    # -- mongodb ----------------------------------------------------------------------------------
    def start_mongo(self) -> ServiceStatus:
        s = self.settings
        if s.mongo_external:
            if not mongo_ready(s.mongo_url, 5000):
                raise ServiceError(
                    "MongoDB: no server answers at PODREC_MONGO_URI. Start that server, or unset "
                    "PODREC_MONGO_URI to use the embedded one (`podrec services start`)."
                )
        elif self.mongo.pid() is None:
            require_free_port("MongoDB", "127.0.0.1", s.mongo_port, "PODREC_MONGO_PORT")
            data_dir = s.services_dir / "mongodb-data"
            data_dir.mkdir(parents=True, exist_ok=True)
            argv = [str(secantus_binary()), "--host", "127.0.0.1", "--port", str(s.mongo_port),
                    "--storage-path", str(data_dir), "--log-level", "WARNING"]
            # its own cwd, so it never picks up a stray secantusd.toml from the caller's directory
            self.mongo.start(argv, cwd=s.services_dir)
            self.mongo.wait_ready(lambda: mongo_ready(s.mongo_url), s.service_start_timeout_s, f"MongoDB (127.0.0.1:{s.mongo_port})")
        return self.mongo_status()

    def mongo_status(self) -> ServiceStatus:
        s = self.settings
        pid = None if s.mongo_external else self.mongo.pid()
        running = (s.mongo_external or pid is not None) and mongo_ready(s.mongo_url)
        url = "(PODREC_MONGO_URI)" if s.mongo_external else s.mongo_url
        return ServiceStatus("mongo", url, running, pid, s.mongo_external)

    # -- both -------------------------------------------------------------------------------------
    def start(self) -> list[ServiceStatus]:
        return [self.start_kafka(), self.start_mongo()]

    def stop(self) -> list[str]:
        """Stop what this home started: the broker with SIGINT (it saves its data), Mongo with SIGTERM."""
        stopped = []
        if not self.settings.kafka_external and self.kafka.stop(signal.SIGINT):
            stopped.append("kafka")
        if not self.settings.mongo_external and self.mongo.stop(signal.SIGTERM):
            stopped.append("mongodb")
        return stopped

    def status(self) -> list[ServiceStatus]:
        return [self.kafka_status(), self.mongo_status()]

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"== {p.log_file} ==\n{p.log_tail(lines)}" for p in (self.kafka, self.mongo))


def require_services(settings: Settings) -> None:
    """Fail with a message that says which server is missing, where, and how to start it."""
    if not kafka_ready(settings.kafka_servers, 3000):
        raise ServiceError(
            f"Kafka is not reachable at {settings.kafka_servers}. "
            + ("Check PODREC_KAFKA_BOOTSTRAP." if settings.kafka_external else "Start it with `podrec services start`.")
        )
    if not mongo_ready(settings.mongo_url, 3000):
        raise ServiceError(
            "MongoDB is not reachable at "
            + ("PODREC_MONGO_URI. Check that server." if settings.mongo_external else f"{settings.mongo_url}. Start it with `podrec services start`.")
        )

