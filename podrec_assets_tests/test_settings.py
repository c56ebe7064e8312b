"""Settings: environment and .env parsing, validation, and the README's table kept complete."""

from __future__ import annotations

import dataclasses

import pytest

from podrec_assets.settings import PROJECT_ROOT, Settings, load_settings


def test_defaults_run_the_local_stack(tmp_path):
    s = load_settings({"PODREC_HOME": str(tmp_path)})
    assert s.lake_root == str(tmp_path / "lake")
    assert not s.kafka_external and not s.mongo_external
    assert s.kafka_servers == "127.0.0.1:19092"
    assert "directConnection=true" in s.mongo_url
    assert s.engine == "local"


def test_environment_overrides_and_types():
    s = load_settings(
        {
            "PODREC_ALS_FACTORS": "8",
            "PODREC_FUSION_ALPHA": "0.25",
            "PODREC_LANGUAGES": "en, de",
            "PODREC_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
        }
    )
    assert s.als_factors == 8 and s.fusion_alpha == 0.25
    assert s.language_list == ["en", "de"]
    assert s.kafka_external and s.kafka_servers == "k1:9092,k2:9092"


def test_dotenv_fills_gaps_but_environment_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("PODREC_TOP_N=7\nPODREC_SIMILARITY_K=3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PODREC_SIMILARITY_K", "5")
    s = load_settings()
    assert s.top_n == 7 and s.similarity_k == 5


@pytest.mark.parametrize(
    "env,message",
    [
        ({"PODREC_ENGINE": "hadoop"}, "PODREC_ENGINE"),
        ({"PODREC_TOP_N": "ten"}, "PODREC_TOP_N"),
        ({"PODREC_START_DATE": "yesterday"}, "yesterday"),
    ],
)
def test_invalid_values_are_named(env, message):
    with pytest.raises(ValueError, match=message):
        load_settings(env)


def test_secrets_are_masked():
    rows = {r["env"]: r for r in load_settings({"PODCASTINDEX_API_SECRET": "s3cr3t"}).describe()}
    assert rows["PODCASTINDEX_API_SECRET"]["value"] == "***"
    assert "s3cr3t" not in str(rows)


def test_readme_lists_every_setting():
    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = [f.metadata["env"] for f in dataclasses.fields(Settings) if f"`{f.metadata['env']}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}; regenerate it with `podrec settings --markdown`"


def test_only_settings_reads_the_environment():
    offenders = []
    for path in (PROJECT_ROOT / "podrec_assets").rglob("*.py"):
        text = path.read_text()
        if path.name != "settings.py" and ("os.environ.get(" in text or "os.getenv(" in text):
            offenders.append(str(path.relative_to(PROJECT_ROOT)))
    assert not offenders, offenders
