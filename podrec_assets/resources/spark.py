"""Spark for engine=spark: a lazy session (a run that never touches Spark never starts it) with the Delta Lake
and Kafka connectors on its classpath, so it reads and writes the lake's Delta tables and reads Kafka natively."""

from __future__ import annotations

import re
from pathlib import Path

from dagster_pyspark import LazyPySparkResource

from podrec_assets.settings import Settings

_JAR_NAME = re.compile(r"^(?P<artifact>.+?)-(?P<version>\d+(?:\.\d+)+[^/]*)\.jar$")


def _artifact(jar: Path) -> str:
    match = _JAR_NAME.match(jar.name)
    return match.group("artifact") if match else jar.stem


def connector_jars(jars_dir: Path) -> list[str]:
    """The connector jars (and their dependencies) that pyspark does not already ship, by artifact name:
    Spark's own copy of a shared library (Jackson, Hadoop, Parquet, Scala) stays the only one on the classpath."""
    import pyspark

    shipped = {_artifact(jar) for jar in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    return [str(jar) for jar in sorted(jars_dir.glob("*.jar")) if _artifact(jar) not in shipped]


class SparkResource(LazyPySparkResource):
    """dagster-pyspark's lazy session, refusing to start without the connector jars (with how to get them)."""

    jars_dir: str

    def _init_session(self) -> None:
        if self._spark_session is None:
            jars_dir = Path(self.jars_dir)
            if not any(jars_dir.glob("delta-spark_*.jar")) or not any(jars_dir.glob("spark-sql-kafka-*.jar")):
                raise RuntimeError(
                    f"Spark: the Delta Lake and Kafka connector jars are missing in {jars_dir}. Run `make setup` "
                    "(it copies them from Maven Central with `mvn`, see podrec_assets/local/spark/pom.xml), "
                    "or point PODREC_SPARK_JARS_DIR at a folder that holds them."
                )
        super()._init_session()


def spark_resource(settings: Settings) -> SparkResource:
    jars_dir = settings.spark_jars_path
    jars = connector_jars(jars_dir) if jars_dir.is_dir() else []
    return SparkResource(
        jars_dir=str(jars_dir),
        spark_config={
            "spark.master": settings.spark_master,
            "spark.app.name": "podrec",
            "spark.driver.memory": settings.spark_driver_memory,
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.shuffle.partitions": "4",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            # executors on other hosts (a Spark cluster) connect back to the driver by this name
            "spark.driver.host": settings.spark_driver_host,
            "spark.driver.bindAddress": "127.0.0.1" if settings.spark_driver_host == "127.0.0.1" else "0.0.0.0",
            # Delta Lake and Kafka, from the jars make setup copied (shipped to executors by Spark itself)
            "spark.jars": ",".join(jars),
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            # the lake's other writer (delta-rs) and readers expect microsecond timestamps, not INT96
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        },
    )
