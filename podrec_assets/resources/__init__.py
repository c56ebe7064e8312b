"""Dagster resources: every I/O client of the project, built from settings, connecting lazily."""

from __future__ import annotations

from podrec_assets.resources.asr import AsrResource
from podrec_assets.resources.embedder import EmbedderResource
from podrec_assets.resources.kafka import KafkaResource
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets.resources.spark import spark_resource
from podrec_assets.settings import Settings


def build_resources(settings: Settings) -> dict:
    return {
        "kafka": KafkaResource(
            bootstrap_servers=settings.kafka_servers, lateness_minutes=settings.kafka_lateness_minutes
        ),
        "mongo": MongoResource(
            uri=settings.mongo_url, database=settings.mongo_db, keep_days=settings.serving_keep_days
        ),
        "lake": LakeResource(root=settings.lake_root, storage_options_json=settings.lake_storage_options),
        "spark": spark_resource(settings),
        "asr": AsrResource.from_settings(settings),
        "embedder": EmbedderResource(
            model_path=settings.embed_model,
            chunk_overlap=settings.embed_chunk_overlap,
            batch_size=settings.embed_batch_size,
        ),
    }


__all__ = ["AsrResource", "EmbedderResource", "KafkaResource", "LakeResource", "MongoResource", "build_resources"]
