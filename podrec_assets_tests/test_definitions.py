"""The code location loads without touching any server, and `dagster definitions validate` accepts it."""

from __future__ import annotations

import subprocess
import sys

from podrec_assets.settings import get_settings


def test_definitions_load_without_servers(monkeypatch, tmp_path):
    # ports where nothing listens: loading must not connect anywhere
    monkeypatch.setenv("PODREC_HOME", str(tmp_path))
    monkeypatch.setenv("PODREC_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("PODREC_MONGO_URI", "mongodb://127.0.0.1:1/?directConnection=true")
    get_settings.cache_clear()
    from podrec_assets.definitions import build_definitions

    defs = build_definitions()
    resources = defs.resources
    assert {"kafka", "mongo", "lake", "spark", "asr", "embedder"} <= set(resources)
    assert resources["lake"].root == str(tmp_path / "lake")
    get_settings.cache_clear()


def test_dagster_definitions_validate(tmp_path):
    env = {"PODREC_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "podrec_assets.definitions"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
