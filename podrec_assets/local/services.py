"""The embedded local stack: an Apache Kafka broker (KRaft, one JVM), a MongoDB server (SecantusDB) and a Redis
server (Debian's redis-server: the shared online state of `podrec serve`).

All bind 127.0.0.1, keep data, logs and pid files under ``$PODREC_HOME/services/``, and are stopped by
PID. Kafka's jars come from Maven Central at ``make setup`` (``local/kafka/pom.xml``); nothing is fetched here.
When ``PODREC_KAFKA_BOOTSTRAP`` / ``PODREC_MONGO_URI`` / ``PODREC_REDIS_URL`` point at external servers, nothing is
started and ``status`` only probes them.
"""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from podrec_assets.core.registry import TOPICS
from podrec_assets.local.processes import ManagedProcess, ServiceError, require_free_port
from podrec_assets.settings import PROJECT_ROOT, Settings

SECANTUS_VENV = PROJECT_ROOT / ".podrec" / "secantus-venv"
SECANTUS_VERSION = "0.7.0b3"
KAFKA_LIBS = PROJECT_ROOT / ".podrec" / "kafka" / "libs"
KAFKA_LOG4J = Path(__file__).resolve().parent / "kafka" / "log4j2.properties"


def kafka_classpath() -> str:
    if not any(KAFKA_LIBS.glob("kafka_2.13-*.jar")):
        raise ServiceError(
            f"Kafka: Apache Kafka's jars are missing in {KAFKA_LIBS}. Run `make setup` "
            "(it copies them from Maven Central with `mvn`, see podrec_assets/local/kafka/pom.xml)."
        )
    return f"{KAFKA_LIBS}/*"


def kafka_version() -> str:
    """The Apache Kafka version of the installed jars (from the jar name)."""
    jars = sorted(KAFKA_LIBS.glob("kafka_2.13-*.jar"))
    return jars[-1].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else "not installed"


def kafka_server_properties(settings: Settings, data_dir: Path) -> str:
    """A single KRaft node, broker and controller in one process, on 127.0.0.1 only."""
    port, controller = settings.kafka_port, settings.kafka_controller_listen_port
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # records carry past event times; time-based retention is set per topic (ensure_topics)
        "log.retention.hours": "-1",
        "message.max.bytes": str(8 * 1024 * 1024),
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def kafka_java(settings: Settings, main_class: str, *args: str) -> list[str]:
    heap = settings.kafka_heap_mb
    return [
        "java",
        f"-Xmx{heap}m",
        f"-Xms{min(256, heap)}m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
        "-cp",
        kafka_classpath(),
        main_class,
        *args,
    ]


def format_kafka_storage(settings: Settings, config: Path, data_dir: Path, cluster_id: str | None = None) -> None:
    """First start only: write the KRaft metadata (a fresh cluster id) into an empty data directory."""
    if (data_dir / "meta.properties").exists():
        return
    cluster_id = cluster_id or base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    # one argument with "=": a random id starts with "-" one time in 64, which the tool would take for an option
    done = subprocess.run(
        kafka_java(settings, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", f"--config={config}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise ServiceError(
            f"Kafka: formatting its storage in {data_dir} failed:\n{(done.stdout + done.stderr)[-2000:]}"
        )


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
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms
        )
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


def redis_ready(url: str, timeout_s: float = 1.5) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError(
            "Redis: redis-server is not installed. Run `make system-packages` as root, or "
            "`sudo apt-get install -y redis-server` (or set PODREC_REDIS_URL to a running Redis)."
        )
    return binary


def redis_config(settings: Settings, data_dir: Path) -> str:
    """A loopback-only Redis holding what the lake and Kafka can rebuild (no persistence); full, it refuses writes
    rather than evict (a lost listener state or offset would double-apply or forget events)."""
    lines = {
        "bind": "127.0.0.1",
        "port": str(settings.redis_port),
        "protected-mode": "yes",
        "daemonize": "no",
        "dir": str(data_dir),
        "save": '""',
        "appendonly": "no",
        "maxmemory": f"{settings.redis_max_memory_mb}mb",
        "maxmemory-policy": "noeviction",
        "loglevel": "warning",
    }
    return "".join(f"{key} {value}\n" for key, value in lines.items())


def ensure_topics(settings: Settings) -> list[str]:
    """Create the project's topics when missing; returns those created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    partitions = {
        name: max(topic.min_partitions, getattr(settings, topic.partitions_setting)) for name, topic in TOPICS.items()
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
    """Start/stop/status of the embedded Kafka, MongoDB and Redis for one PODREC_HOME."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.kafka = ManagedProcess("kafka", settings.services_dir)
        self.mongo = ManagedProcess("mongodb", settings.services_dir)
        self.redis = ManagedProcess("redis", settings.services_dir)

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
            require_free_port(
                "Kafka's controller", "127.0.0.1", s.kafka_controller_listen_port, "PODREC_KAFKA_CONTROLLER_PORT"
            )
            data_dir = s.services_dir / "kafka-data"
            data_dir.mkdir(parents=True, exist_ok=True)
            config = s.services_dir / "kafka.properties"
            config.write_text(kafka_server_properties(s, data_dir))
            format_kafka_storage(s, config, data_dir)
            self.kafka.start(kafka_java(s, "kafka.Kafka", str(config)))
            self.kafka.wait_ready(
                lambda: kafka_ready(s.kafka_servers), s.service_start_timeout_s, f"Kafka (127.0.0.1:{s.kafka_port})"
            )
        ensure_topics(s)
        return self.kafka_status()

    def kafka_status(self) -> ServiceStatus:
        s = self.settings
        pid = None if s.kafka_external else self.kafka.pid()
        running = (s.kafka_external or pid is not None) and kafka_ready(s.kafka_servers)
        detail = "" if s.kafka_external else f"Apache Kafka {kafka_version()} (JVM)"
        return ServiceStatus("kafka", s.kafka_servers, running, pid, s.kafka_external, detail)

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
            argv = [
                str(secantus_binary()),
                "--host",
                "127.0.0.1",
                "--port",
                str(s.mongo_port),
                "--storage-path",
                str(data_dir),
                "--log-level",
                "WARNING",
            ]
            # its own cwd, so it never picks up a stray secantusd.toml from the caller's directory
            self.mongo.start(argv, cwd=s.services_dir)
            self.mongo.wait_ready(
                lambda: mongo_ready(s.mongo_url), s.service_start_timeout_s, f"MongoDB (127.0.0.1:{s.mongo_port})"
            )
        return self.mongo_status()

    def mongo_status(self) -> ServiceStatus:
        s = self.settings
        pid = None if s.mongo_external else self.mongo.pid()
        running = (s.mongo_external or pid is not None) and mongo_ready(s.mongo_url)
        url = "(PODREC_MONGO_URI)" if s.mongo_external else s.mongo_url
        return ServiceStatus("mongo", url, running, pid, s.mongo_external)

    # -- redis ------------------------------------------------------------------------------------
    def start_redis(self) -> ServiceStatus:
        s = self.settings
        if s.redis_external:
            if not redis_ready(s.redis_server_url, 5.0):
                raise ServiceError(
                    "Redis: no server answers at PODREC_REDIS_URL. Start that server, or unset PODREC_REDIS_URL "
                    "to use the embedded one (`podrec services start`)."
                )
        elif self.redis.pid() is None:
            require_free_port("Redis", "127.0.0.1", s.redis_port, "PODREC_REDIS_PORT")
            data_dir = s.services_dir / "redis-data"
            data_dir.mkdir(parents=True, exist_ok=True)
            config = s.services_dir / "redis.conf"
            config.write_text(redis_config(s, data_dir))
            self.redis.start([redis_binary(), str(config)], cwd=data_dir)
            self.redis.wait_ready(
                lambda: redis_ready(s.redis_server_url), s.service_start_timeout_s, f"Redis (127.0.0.1:{s.redis_port})"
            )
        return self.redis_status()

    def redis_status(self) -> ServiceStatus:
        s = self.settings
        pid = None if s.redis_external else self.redis.pid()
        running = (s.redis_external or pid is not None) and redis_ready(s.redis_server_url)
        url = "(PODREC_REDIS_URL)" if s.redis_external else s.redis_server_url
        return ServiceStatus("redis", url, running, pid, s.redis_external)

    # -- all --------------------------------------------------------------------------------------
    def start(self) -> list[ServiceStatus]:
        return [self.start_kafka(), self.start_mongo(), self.start_redis()]

    def stop(self) -> list[str]:
        """Stop what this home started, each with SIGTERM: Kafka then shuts down in a controlled way."""
        stopped = []
        if not self.settings.kafka_external and self.kafka.stop(signal.SIGTERM, timeout_s=60):
            stopped.append("kafka")
        if not self.settings.mongo_external and self.mongo.stop(signal.SIGTERM):
            stopped.append("mongodb")
        if not self.settings.redis_external and self.redis.stop(signal.SIGTERM):
            stopped.append("redis")
        return stopped

    def status(self) -> list[ServiceStatus]:
        return [self.kafka_status(), self.mongo_status(), self.redis_status()]

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"== {p.log_file} ==\n{p.log_tail(lines)}" for p in (self.kafka, self.mongo, self.redis))
