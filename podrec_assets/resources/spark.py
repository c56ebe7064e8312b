"""Spark for engine=spark: dagster-pyspark's lazy resource, so a run that never touches Spark never starts it."""

from __future__ import annotations

from dagster_pyspark import LazyPySparkResource

from podrec_assets.settings import Settings


def spark_resource(settings: Settings) -> LazyPySparkResource:
    return LazyPySparkResource(
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
        }
    )
