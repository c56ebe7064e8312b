"""Orchestration: Kafka topics as external assets here; sensors, automation, freshness and checks are
applied to the merged areas by ``apply_orchestration`` (called from ``definitions.py``)."""

from __future__ import annotations

import dagster as dg

from podrec_assets.defs.orchestration.topics import topic_specs

defs = dg.Definitions(assets=topic_specs())
