"""The pipeline-health page's data: per-asset partitions and freshness from Dagster's GraphQL API, or, when the
webserver does not answer, the days and timestamps the lake itself holds."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pandas as pd

from dash_app.mirror import LakeMirror, Memo
from podrec_assets.core import registry
from podrec_assets.settings import Settings

# Assets shown when Dagster cannot be asked (lake tables of the graph).
GRAPH_TABLES = [name for name, t in registry.TABLES.items() if t.in_graph]

HEALTH_QUERY = """
    query PodrecHealth {
      assetNodes {
        assetKey { path }
        groupName
        isPartitioned
        isObservable
        partitionStats { numMaterialized numPartitions numFailed numMaterializing }
        assetPartitionStatuses {
          __typename
          ... on TimePartitionStatuses { ranges { startKey endKey status } }
          ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
        }
        assetMaterializations(limit: 1) { timestamp partition }
        freshnessStatusInfo { freshnessStatus }
        assetObservations(limit: 1) {
          timestamp
          metadataEntries {
            label
            ... on IntMetadataEntry { intRepr }
            ... on FloatMetadataEntry { floatRepr }
            ... on TextMetadataEntry { text }
            ... on JsonMetadataEntry { jsonString }
          }
        }
      }
    }
    """


class PipelineHealth:
    """Health answers, cached for a few seconds (the page polls)."""

    def __init__(self, settings: Settings, mirror: LakeMirror, timeout_s: float = 1.5):
        self.mirror = mirror
        self.url = f"http://{settings.host}:{settings.dagster_port}/graphql"
        self.timeout_s = timeout_s
        self._cached: tuple[float, dict] | None = None

    def get(self, ttl_s: float = 10.0) -> dict:
        """Per-asset partitions and freshness, from Dagster when its webserver answers, else from the lake."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < ttl_s:
            return self._cached[1]
        try:
            health = self.from_dagster()
        except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
            health = self.from_lake()
            health["dagster_error"] = (
                f"Dagster at {self.url} did not answer ({type(exc).__name__}); showing the lake's own timestamps."
            )
        self._cached = (time.monotonic(), health)
        return health

    def from_dagster(self) -> dict:
        body = json.dumps({"query": HEALTH_QUERY}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise ValueError(payload["errors"][0].get("message", "GraphQL error"))
        assets, kafka = [], []
        for node in payload["data"]["assetNodes"]:
            key = "/".join(node["assetKey"]["path"])
            materialized, failed = set(), set()
            statuses = node.get("assetPartitionStatuses") or {}
            for r in statuses.get("ranges") or []:
                target = failed if r["status"] == "FAILED" else materialized if r["status"] == "MATERIALIZED" else None
                if target is not None:
                    target.update(_day_range(r["startKey"], r["endKey"]))
            materialized.update(statuses.get("materializedPartitions") or [])
            failed.update(statuses.get("failedPartitions") or [])
            last = (node.get("assetMaterializations") or [None])[0]
            observation = (node.get("assetObservations") or [None])[0]
            entry = {
                "asset": key,
                "group": node.get("groupName"),
                "materialized": sorted(materialized),
                "failed": sorted(failed),
                "last_update": _from_millis(last["timestamp"]) if last else None,
                "last_partition": last.get("partition") if last else None,
                "freshness": (node.get("freshnessStatusInfo") or {}).get("freshnessStatus"),
                "stats": node.get("partitionStats"),
            }
            if key.startswith("kafka/") or node.get("isObservable"):
                values = {}
                for m in (observation or {}).get("metadataEntries", []):
                    values[m["label"]] = m.get("intRepr") or m.get("floatRepr") or m.get("text") or m.get("jsonString")
                kafka.append(
                    {
                        "asset": key,
                        "observed_at": _from_millis(observation["timestamp"]) if observation else None,
                        "metadata": values,
                    }
                )
            else:
                assets.append(entry)
        return {"source": "dagster", "assets": assets, "kafka": kafka, "checked_at": datetime.now(timezone.utc)}

    def from_lake(self) -> dict:
        assets = []
        for name in GRAPH_TABLES:
            version = self.mirror.table_version(name)
            entry = {
                "asset": name,
                "group": None,
                "materialized": [],
                "failed": [],
                "last_update": None,
                "last_partition": None,
                "freshness": None,
                "stats": None,
                "delta_version": version,
            }
            if version is not None:

                def build(name=name, version=version) -> tuple[list[str], Any]:
                    dataset = self.mirror.lake.table(name, version).to_pyarrow_dataset()
                    self.mirror.connection().register("_health", dataset)
                    try:
                        frame = (
                            self.mirror.connection()
                            .execute("SELECT DISTINCT date, max(created_at) OVER () AS last FROM _health")
                            .df()
                        )
                    finally:
                        self.mirror.connection().unregister("_health")
                    days = sorted(str(d)[:10] for d in frame["date"])
                    return days, (None if frame.empty else pd.Timestamp(frame["last"].iloc[0]).to_pydatetime())

                with self.mirror.lock:
                    key = ("health", name, version)
                    hit = self.mirror.memo.get(key)
                    if hit is Memo.MISSING:
                        hit = build()
                        self.mirror.memo.put(key, hit)
                entry["materialized"], entry["last_update"] = hit
                entry["last_partition"] = hit[0][-1] if hit[0] else None
            assets.append(entry)
        return {"source": "lake", "assets": assets, "kafka": [], "checked_at": datetime.now(timezone.utc)}


def _day_range(start_key: str, end_key: str) -> list[str]:
    try:
        start, end = date.fromisoformat(start_key[:10]), date.fromisoformat(end_key[:10])
    except ValueError:
        return [start_key, end_key]
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _from_millis(value: str | float | None) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(float(value) / 1000.0, tz=timezone.utc)
