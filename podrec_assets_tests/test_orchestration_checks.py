"""The orchestration layer on the code location, and the contract checks on a real Delta lake."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import pyarrow as pa
import pytest
import yaml

from podrec_assets.core import schemas
from podrec_assets.defs.checks import ASSET_TABLES, build_checks
from podrec_assets.defs.collaborative import checks as collaborative
from podrec_assets.defs.collaborative.checks import allowed_ndcg_drop
from podrec_assets.defs.content import checks as content
from podrec_assets.defs.events import checks as events
from podrec_assets.defs.hybrid import checks as hybrid
from podrec_assets.defs.ingest import checks as ingest
from podrec_assets.defs.partitions import daily_partitions
from podrec_assets.resources.lake import LakeResource
from podrec_assets.settings import PROJECT_ROOT, load_settings

DAY = date(2026, 2, 10)
AREAS = (ingest, events, content, collaborative, hybrid)  # each area's __init__ holds its own checks(settings)


def test_code_location_has_freshness_automation_sensors_and_checks():
    from podrec_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    from podrec_assets.defs.orchestration.wiring import declared_keys

    keys = declared_keys(defs)  # not the deps of areas that have not landed
    for k in keys:
        assert graph.get(k).freshness_policy is not None, k
    kafka_fed = {k for k in keys if any(p.path[0] == "kafka" for p in graph.get(k).parent_keys)}
    for k in keys:
        node = graph.get(k)
        if node.is_executable and k not in kafka_fed:
            assert node.automation_condition is not None, k
            assert node.partitions_def == daily_partitions, k
        if k in kafka_fed:
            assert node.automation_condition is None, k  # the Kafka sensors drive them
    repo = defs.get_repository_def()
    sensors = {s.name: s for s in repo.sensor_defs}
    for name in (
        "kafka_episode_metadata_sensor",
        "kafka_episode_ids_sensor",
        "kafka_user_events_sensor",
        "podrec_automation",
    ):
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING, name
    check_keys = {c.to_user_string() for c in graph.asset_check_keys}
    tables = {
        "episodes",
        "dead_letters/episode_metadata",
        "transcripts",
        "episode_vectors",
        "similarities",
        "user_events",
        "dead_letters/user_events",
        "user_episode_daily",
        "listener_history",
        "als_top_n",
        "final_recommendations",
        "recommendation_metrics",
    }
    assert set(ASSET_TABLES) == tables  # every table of the graph has a contract, and no contract names a stray table
    assert {k.to_user_string() for k in keys if k.path[0] != "kafka"} == tables  # ... and every one is in the graph
    for table in tables:
        assert {f"{table}:schema_matches_contract", f"{table}:keys_unique"} <= check_keys, table
    for table in ("similarities", "als_top_n", "final_recommendations"):  # the tables MongoDB serves
        assert f"{table}:serving_copy_matches_delta" in check_keys, table
    if dg.AssetKey("transcripts") in keys:
        node = graph.get(dg.AssetKey("transcripts"))
        assert node.backfill_policy == dg.BackfillPolicy.multi_run(1)
        assert node.tags.get("podrec/heavy") == "asr"
        assert sensors["podrec_automation_asr"].run_tags == {"podrec/heavy": "asr"}


def test_repository_dagster_yaml_limits_heavy_runs():
    config = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    limits = {(c["key"], c["value"]): c["limit"] for c in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limits[("podrec/heavy", "asr")] == 1 and limits[("podrec/heavy", "spark")] == 1
    assert config["freshness"]["enabled"] is True


def vectors_table(vectors: list[list[float]], ids: list[str]) -> pa.Table:
    return schemas.to_table(
        [
            {"episode_id": i, "model": "m", "chunk_count": 1, "token_count": 3, "vector": v}
            for i, v in zip(ids, vectors)
        ],
        schemas.EPISODE_VECTORS,
    )


def run_with_checks(
    lake: LakeResource,
    tmp_path,
    asset_key: str,
    tables: dict[date, pa.Table],
    metadata=None,
    instance=None,
    extra_assets=(),
):
    """Materialize a stand-in for ``asset_key`` that writes ``tables`` to the real lake, with the real checks."""

    @dg.asset(key=asset_key, partitions_def=daily_partitions)
    def stand_in(context, lake: LakeResource):
        day = date.fromisoformat(context.partition_key)
        lake.write_partition(asset_key, day, tables[day], context.run_id)
        return dg.MaterializeResult(metadata=(metadata or {}).get(day, {}))

    settings = load_settings({"PODREC_HOME": str(tmp_path), "PODREC_ALS_NDCG_TOLERANCE": "0.05"})
    # the stand-in writes no serving copy: its check has its own tests (test_serving_swap.py, the e2e run)
    key = dg.AssetKey.from_user_string(asset_key)
    everything = [c for area in AREAS for c in area(settings)]
    area_checks = [c for c in everything if key in {k.asset_key for k in c.check_keys}]
    checks = [
        c
        for c in build_checks({key}, [], settings) + area_checks
        if all(k.name != "serving_copy_matches_delta" for k in c.check_keys)
    ]
    instance = instance or dg.DagsterInstance.ephemeral()
    results = {}
    for day in sorted(tables):
        result = (
            dg.materialize(
                [stand_in, *extra_assets],
                partition_key=day.isoformat(),
                resources={"lake": lake},
                instance=instance,
                raise_on_error=False,
                selection=None,
            )
            if not checks
            else dg.materialize(
                [stand_in, *checks, *extra_assets],
                partition_key=day.isoformat(),
                resources={"lake": lake},
                instance=instance,
                raise_on_error=False,
            )
        )
        results[day] = result
    return results


def evaluations(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_vectors_unit_length_schema_and_uniqueness(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    good = vectors_table([[0.6, 0.8], [1.0, 0.0]], ["a", "b"])
    bad = vectors_table([[0.6, 0.8], [2.0, 0.0], [0.0, 1.0]], ["a", "b", "b"])
    results = run_with_checks(lake, tmp_path, "episode_vectors", {DAY: good, DAY + timedelta(days=1): bad})
    assert evaluations(results[DAY]) == {
        "schema_matches_contract": True,
        "keys_unique": True,
        "vectors_unit_length": True,
    }
    assert evaluations(results[DAY + timedelta(days=1)]) == {
        "schema_matches_contract": True,
        "keys_unique": False,
        "vectors_unit_length": False,
    }
    duplicated = [
        e for e in results[DAY + timedelta(days=1)].get_asset_check_evaluations() if e.check_name == "keys_unique"
    ][0]
    assert "1 duplicated (episode_id) keys" in duplicated.description and "'b'" in duplicated.description


def test_schema_check_names_the_missing_column(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    table = schemas.to_table(
        [{"user_id": "u", "episode_id": "e", "rank": 1, "score": 0.5, "model_version": "v"}], schemas.ALS_TOP_N
    ).drop_columns(["score"])
    result = run_with_checks(lake, tmp_path, "als_top_n", {DAY: table}, metadata={DAY: {"validation_ndcg@10": 0.3}})[
        DAY
    ]
    failed = [e for e in result.get_asset_check_evaluations() if e.check_name == "schema_matches_contract"][0]
    assert not failed.passed and "missing column score" in failed.metadata["problems"].value


def test_als_ndcg_gate_blocks_a_worse_model_and_its_downstream(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    rows = [{"user_id": "u", "episode_id": f"e{r}", "rank": r, "score": 1.0 / r, "model_version": "v"} for r in (1, 2)]
    table = schemas.to_table(rows, schemas.ALS_TOP_N)
    d1, d2, d3 = DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)

    @dg.asset(partitions_def=daily_partitions, deps=["als_top_n"])
    def downstream_of_als():
        return dg.MaterializeResult()

    results = run_with_checks(
        lake,
        tmp_path,
        "als_top_n",
        {d1: table, d2: table, d3: table},
        metadata={
            d1: {"validation_ndcg@10": 0.30},
            d2: _paired(0.27, 0.30, float("nan")),
            d3: _paired(0.10, 0.30, 0.02),
        },
        extra_assets=[downstream_of_als],
    )
    assert evaluations(results[d1])["validation_ndcg_not_worse"] is True  # no previous model
    assert evaluations(results[d2])["validation_ndcg_not_worse"] is True  # within tolerance
    assert evaluations(results[d3])["validation_ndcg_not_worse"] is False
    blocked = {e.asset_key.to_user_string() for e in results[d3].get_asset_materialization_events()}
    assert "downstream_of_als" not in blocked and "als_top_n" in blocked
    assert "downstream_of_als" in {e.asset_key.to_user_string() for e in results[d2].get_asset_materialization_events()}


def _paired(new: float, old: float, stderr: float, users: int = 100) -> dict:
    """als_top_n metadata: this model and the previous day's on the same held-out day."""
    return {
        "validation_ndcg@10": new,
        "paired_ndcg_this_model": new,
        "paired_ndcg_previous_model": old,
        "ndcg_change_vs_previous": new - old,
        "ndcg_change_stderr": stderr,
        "paired_users": users,
        "paired_k": 10,
    }


def test_als_ndcg_gate_does_not_judge_on_a_handful_of_users(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    rows = [{"user_id": "u", "episode_id": f"e{r}", "rank": r, "score": 1.0 / r, "model_version": "v"} for r in (1, 2)]
    results = run_with_checks(
        lake,
        tmp_path,
        "als_top_n",
        {DAY: schemas.to_table(rows, schemas.ALS_TOP_N)},
        metadata={DAY: _paired(0.0, 1.0, float("nan"), users=1)},
    )
    check = [e for e in results[DAY].get_asset_check_evaluations() if e.check_name == "validation_ndcg_not_worse"][0]
    assert check.passed and check.severity == dg.AssetCheckSeverity.WARN and "only 1 users" in check.description


def test_als_ndcg_gate_allows_drops_within_noise_and_blocks_larger_ones(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    rows = [{"user_id": "u", "episode_id": f"e{r}", "rank": r, "score": 1.0 / r, "model_version": "v"} for r in (1, 2)]
    table = schemas.to_table(rows, schemas.ALS_TOP_N)
    d1, d2 = DAY, DAY + timedelta(days=1)
    # both drop 0.15; with a paired standard error of 0.1 that is noise (allowed 0.2), with 0.03 it is not (0.06)
    results = run_with_checks(
        lake,
        tmp_path,
        "als_top_n",
        {d1: table, d2: table},
        metadata={d1: _paired(0.30, 0.45, 0.1), d2: _paired(0.30, 0.45, 0.03)},
    )
    assert evaluations(results[d1])["validation_ndcg_not_worse"] is True
    assert evaluations(results[d2])["validation_ndcg_not_worse"] is False
    check = [e for e in results[d2].get_asset_check_evaluations() if e.check_name == "validation_ndcg_not_worse"][0]
    assert check.metadata["allowed_drop"].value == pytest.approx(0.06)
    assert check.metadata["drop"].value == pytest.approx(0.15)


def test_allowed_ndcg_drop_is_never_below_the_tolerance():
    assert allowed_ndcg_drop(0.05, 0.001) == 0.05
    assert allowed_ndcg_drop(0.05, None) == 0.05  # unknown spread: the tolerance alone
    assert allowed_ndcg_drop(0.05, float("nan")) == 0.05
    assert allowed_ndcg_drop(0.05, 0.04) == pytest.approx(0.08)


def test_active_users_check_excuses_only_listeners_who_heard_the_whole_catalog(tmp_path):
    """u1 is served; u2 heard both episodes (over two days), so has nothing left; u3 heard one and has no list."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    d1, d2 = DAY, DAY + timedelta(days=1)
    lake.write_partition(
        "episodes", d1, schemas.to_table([{"episode_id": "e1"}, {"episode_id": "e2"}], schemas.EPISODES), "r"
    )
    daily = {
        d1: [("u2", "e1"), ("u3", "e1"), ("u3", "e1-unknown")],
        d2: [("u1", "e1"), ("u2", "e2"), ("u3", "e1")],
    }
    for day, pairs in daily.items():
        rows = [{"user_id": u, "episode_id": e, "event_count": 1, "max_played_pct": 1.0} for u, e in pairs]
        lake.write_partition("user_episode_daily", day, schemas.to_table(rows, schemas.USER_EPISODE_DAILY), "r")
    served = [{"user_id": "u1", "episode_id": "e2", "rank": 1, "final_score": 1.0, "alpha": 0.5, "reason": "als"}]
    result = run_with_checks(
        lake, tmp_path, "final_recommendations", {d2: schemas.to_table(served, schemas.FINAL_RECOMMENDATIONS)}
    )[d2]
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "active_users_have_recommendations"]
    facts = {k: v.value for k, v in check.metadata.items()}
    assert not check.passed
    assert facts["active_users"] == 3 and facts["active_who_heard_every_episode"] == 1
    assert facts["active_without"] == 1 and facts["examples"] == "u3"


def test_final_rules_allow_the_popular_fill_without_alpha_but_not_a_fused_row():
    """Popular-fill rows carry no alpha (null in Delta); a fused row must have one, in [0, 1]."""
    from podrec_assets.defs.hybrid.checks import _final_rules

    settings = load_settings({})

    def table(alphas, reasons):
        return pa.table(
            {
                "rank": pa.array(range(1, len(alphas) + 1), pa.int32()),
                "alpha": pa.array(alphas, pa.float64()),
                "final_score": pa.array([1.0] * len(alphas)),
                "reason": reasons,
            }
        )

    fine = _final_rules(table([0.5, 1.0, None, None], ["als", "hybrid", "popular", "popular"]), settings)
    assert fine["alpha outside [0, 1]"] == 0
    missing = _final_rules(table([0.5, None, None], ["als", "content", "popular"]), settings)
    assert missing["alpha outside [0, 1]"] == 1
    outside = _final_rules(table([1.5, 0.2, None], ["als", "content", "popular"]), settings)
    assert outside["alpha outside [0, 1]"] == 1
