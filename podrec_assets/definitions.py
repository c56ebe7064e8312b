"""The podrec code location: every area's assets, checks and sensors, plus the shared resources.

Each folder under ``defs/`` is an area (ingest, events, content, collaborative, hybrid, ...) whose
``__init__`` exposes ``defs``; they are merged here so adding an area never edits this file.
"""

from __future__ import annotations

import importlib
import pkgutil

import dagster as dg

from podrec_assets import defs as defs_package
from podrec_assets.resources import build_resources
from podrec_assets.settings import get_settings


def area_definitions() -> list[dg.Definitions]:
    found = []
    for module_info in sorted(pkgutil.iter_modules(defs_package.__path__), key=lambda m: m.name):
        if module_info.ispkg:
            module = importlib.import_module(f"{defs_package.__name__}.{module_info.name}")
            if isinstance(getattr(module, "defs", None), dg.Definitions):
                found.append(module.defs)
    return found


def build_definitions() -> dg.Definitions:
    """Merge the areas, then apply orchestration (sensors, automation, freshness, checks) to the result."""
    from podrec_assets.defs.orchestration.wiring import apply_orchestration

    settings = get_settings()
    merged = dg.Definitions.merge(*area_definitions(), dg.Definitions(resources=build_resources(settings)))
    return apply_orchestration(merged, settings)


defs = build_definitions()
