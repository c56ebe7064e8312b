"""episode_vectors and similarities materialized through Dagster on a real Delta lake and MongoDB server.

Input partitions (`episodes`, `transcripts`) are written directly with the LakeResource, with
hand-written text on four subjects, so these tests do not depend on the ASR stage.
"""

from datetime import date, datetime, timezone

import dagster as dg
import numpy as np
import pytest

from podrec_assets.core import schemas
from podrec_assets.core.embedding import vectors_matrix
from podrec_assets.core.knn import top_k_cosine_reference
from podrec_assets.defs.content import defs as content_defs
from podrec_assets.defs.content.assets import ALL_DAYS_THROUGH_D, episode_vectors, similarities
from podrec_assets.defs.content.checks import episode_vectors_unit_length
from podrec_assets.defs.partitions import daily_partitions
from podrec_assets.resources.embedder import EmbedderResource
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets_tests.conftest import winning_indexes

D1, D2, D3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)

TEXT = {
    "space": [
        "Tonight we talk about the rocket launch: the booster separated after two minutes and the upper stage "
        "carried the telescope into orbit, where it will unfold its mirror over the next few weeks.",
        "The astronauts on the space station spent the week repairing a solar panel and photographing storms "
        "on Earth from orbit while mission control planned the next spacewalk.",
        "A probe flew past Jupiter's moons and measured the ice shell; planetary scientists think an ocean "
        "lies underneath, warmed by the tides of the giant planet.",
    ],
    "cooking": [
        "Today's recipe is a slow tomato sauce: soften onions and garlic in olive oil, add crushed tomatoes, "
        "a pinch of salt and basil, and let it simmer for an hour before tossing it with pasta.",
        "We bake sourdough bread at home: mix flour, water and starter, fold the dough every half hour, let it "
        "rise overnight in the fridge and bake it in a very hot covered pot.",
    ],
    "football": [
        "The match went to penalties after a goalless draw; the goalkeeper saved two shots and the home team "
        "lifted the cup in front of their own fans.",
        "Our football preview: the striker is back from injury, the coach is changing formation, and the "
        "league leaders visit the stadium on Saturday afternoon.",
    ],
    "finance": [
        "The central bank kept interest rates unchanged; inflation is slowing, bond yields fell, and stock "
        "markets rallied on hopes of cheaper loans next year.",
    ],
}

# (day, episode_id, topic index or special)
EPISODES = [
    (D1, "space-1", ("space", 0)),
    (D1, "cooking-1", ("cooking", 0)),
    (D1, "football-1", ("football", 0)),
    (D1, "failed-1", "failed"),
    (D1, "empty-1", "empty"),
    (D2, "space-2", ("space", 1)),
    (D2, "cooking-2", ("cooking", 1)),
    (D2, "finance-1", ("finance", 0)),
    (D3, "space-3", ("space", 2)),
    (D3, "football-2", ("football", 1)),
]


def _write_inputs(lake: LakeResource) -> None:
    for day in (D1, D2, D3):
        episodes, transcripts = [], []
        for episode_day, episode_id, what in EPISODES:
            if episode_day != day:
                continue
            published = datetime(day.year, day.month, day.day, 9, 30, tzinfo=timezone.utc)
            episodes.append(
                {
                    "episode_id": episode_id,
                    "podcast_id": "p",
                    "podcast_title": "show",
                    "episode_title": episode_id,
                    "published_at": published,
                    "language": "en",
                    "source": "demo",
                    "categories": [],
                }
            )
            if what == "failed":
                transcripts.append({"episode_id": episode_id, "status": "failed", "error": "audio fetch failed"})
            elif what == "empty":
                transcripts.append({"episode_id": episode_id, "status": "ok", "text": "  ", "language": "en"})
            else:
                transcripts.append(
                    {"episode_id": episode_id, "status": "ok", "text": TEXT[what[0]][what[1]], "language": "en"}
                )
        lake.write_partition("episodes", day, schemas.to_table(episodes, schemas.EPISODES), "test-setup")
        lake.write_partition("transcripts", day, schemas.to_table(transcripts, schemas.TRANSCRIPTS), "test-setup")


@pytest.fixture(scope="module")
def content_env(tmp_path_factory, stack_settings):
    lake = LakeResource(root=str(tmp_path_factory.mktemp("content-lake") / "lake"))
    mongo = MongoResource(uri=stack_settings.mongo_url, database="podrec_content_test")
    mongo.client().drop_database("podrec_content_test")
    _write_inputs(lake)
    resources = {"lake": lake, "mongo": mongo, "embedder": EmbedderResource()}
    yield resources
    mongo.client().drop_database("podrec_content_test")
    mongo.client().close()


def _materialize(assets, day: date, resources) -> dg.ExecuteInProcessResult:
    result = dg.materialize(assets, partition_key=day.isoformat(), resources=resources)
    assert result.success
    return result


def _metadata(result, key: str) -> dict:
    mat = result.asset_materializations_for_node(key)[0]
    return {name: value.value for name, value in mat.metadata.items()}


@pytest.fixture(scope="module")
def vectors_materialized(content_env):
    results = {}
    for day in (D1, D2, D3):  # all three days' vectors exist before any similarities run
        results[day] = _materialize([episode_vectors], day, content_env)
    return results


def test_episode_vectors_embed_ok_transcripts_and_skip_others_with_reasons(content_env, vectors_materialized):
    lake = content_env["lake"]
    meta = _metadata(vectors_materialized[D1], "episode_vectors")
    assert meta["rows"] == 3 and meta["transcripts_read"] == 5 and meta["skipped"] == 2
    reasons = meta["skipped_reasons"]
    assert reasons["empty-1"] == "empty transcript text"
    assert "failed" in reasons["failed-1"]
    assert meta["param_model"] == "all-MiniLM-L6-v2" and meta["chunks"] == 3

    table = lake.read_day("episode_vectors", D1)
    assert sorted(table["episode_id"].to_pylist()) == ["cooking-1", "football-1", "space-1"]
    matrix = vectors_matrix(table["vector"])
    assert matrix.dtype == np.float32 and matrix.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert set(table["model"].to_pylist()) == {"all-MiniLM-L6-v2"}
    assert table["published_at"][0].as_py().hour == 9  # from the episodes table
    assert all(c == 1 for c in table["chunk_count"].to_pylist())


def test_similarities_history_only_within_day_and_self_excluded(content_env, vectors_materialized):
    lake, mongo = content_env["lake"], content_env["mongo"]
    result1 = _materialize([similarities], D1, content_env)
    day1 = lake.read_day("similarities", D1).to_pylist()
    day1_ids = {"space-1", "cooking-1", "football-1"}
    assert {r["new_episode_id"] for r in day1} == day1_ids
    assert {r["historical_episode_id"] for r in day1} <= day1_ids  # nothing from D2 or D3 (already embedded)
    assert all(r["new_episode_id"] != r["historical_episode_id"] for r in day1)
    assert len(day1) == 3 * 2  # k=10 but only two other episodes exist on or before D1
    assert _metadata(result1, "similarities")["catalog_size"] == 3

    _materialize([similarities], D2, content_env)
    day2 = lake.read_day("similarities", D2).to_pylist()
    assert {r["new_episode_id"] for r in day2} == {"space-2", "cooking-2", "finance-1"}
    by_new = {}
    for r in sorted(day2, key=lambda r: r["rank"]):
        by_new.setdefault(r["new_episode_id"], []).append(r)
    assert by_new["space-2"][0]["historical_episode_id"] == "space-1"  # the same subject from history
    assert by_new["cooking-2"][0]["historical_episode_id"] == "cooking-1"
    neighbours_of_space2 = {r["historical_episode_id"] for r in by_new["space-2"]}
    assert {"cooking-2", "finance-1"} <= neighbours_of_space2  # same-day episodes are candidates
    assert not neighbours_of_space2 & {"space-3", "football-2"}  # D3 is the future for D2
    for rows in by_new.values():
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) == 5
        cos = [r["cosine_similarity"] for r in rows]
        assert cos == sorted(cos, reverse=True)
        assert all(r["distance"] == pytest.approx(1 - r["cosine_similarity"]) for r in rows)

    # the asset's answer equals the brute-force reference over the Delta vectors
    vectors = lake.read_days("episode_vectors", D1, D2)
    ids = vectors["episode_id"].to_pylist()
    matrix = vectors_matrix(vectors["vector"])
    q = [ids.index(e) for e in ("cooking-2", "finance-1", "space-2")]
    ref = top_k_cosine_reference(matrix[q], matrix, 10, self_index=q)
    for row, new_id in enumerate(("cooking-2", "finance-1", "space-2")):
        expected = [ids[i] for i in ref.indices[row] if i >= 0]
        assert [r["historical_episode_id"] for r in by_new[new_id]] == expected
        np.testing.assert_allclose(
            [r["cosine_similarity"] for r in by_new[new_id]], ref.scores[row][: len(expected)], atol=1e-5
        )

    coll = mongo.db()["similarities"]
    assert coll.count_documents({"date": D2.isoformat()}) == len(day2)
    doc = coll.find_one({"new_episode_id": "space-2", "rank": 1})
    assert doc["historical_episode_id"] == "space-1" and doc["model_version"] == "all-MiniLM-L6-v2"


def test_rerun_replaces_only_that_day(content_env, vectors_materialized):
    lake, mongo = content_env["lake"], content_env["mongo"]
    _materialize([similarities], D3, content_env)
    _materialize([similarities], D2, content_env)
    before = {
        d: sorted(
            (r["new_episode_id"], r["historical_episode_id"], r["rank"])
            for r in lake.read_day("similarities", d).to_pylist()
        )
        for d in (D2, D3)
    }
    coll = mongo.db()["similarities"]
    mongo_before = {d: coll.count_documents({"date": d.isoformat()}) for d in (D2, D3)}
    first_run_ids = set(coll.distinct("run_id", {"date": D3.isoformat()}))

    rerun = _materialize([similarities], D3, content_env)
    after = {
        d: sorted(
            (r["new_episode_id"], r["historical_episode_id"], r["rank"])
            for r in lake.read_day("similarities", d).to_pylist()
        )
        for d in (D2, D3)
    }
    assert after == before  # same rows for D3, D2 untouched
    assert {d: coll.count_documents({"date": d.isoformat()}) for d in (D2, D3)} == mongo_before
    assert set(coll.distinct("run_id", {"date": D3.isoformat()})) == {rerun.run_id} != first_run_ids
    assert set(lake.read_day("similarities", D3)["run_id"].to_pylist()) == {rerun.run_id}

    again = _materialize([episode_vectors], D1, content_env)
    assert _metadata(again, "episode_vectors")["rows"] == 3
    assert lake.read_day("episode_vectors", D1).num_rows == 3  # replaced, not appended


def test_top_neighbours_query_is_answered_from_an_index(content_env, vectors_materialized):
    mongo = content_env["mongo"]
    _materialize([similarities], D3, content_env)
    coll = mongo.db()["similarities"]
    keys = [tuple(spec["key"]) for spec in coll.index_information().values()]
    assert (("new_episode_id", 1), ("model", 1), ("cosine_similarity", -1)) in keys
    assert (("historical_episode_id", 1), ("model", 1)) in keys
    assert (("date", 1), ("write_id", 1)) in keys
    query = coll.find({"new_episode_id": "space-3", "model": "all-MiniLM-L6-v2"}).sort("cosine_similarity", -1).limit(5)
    assert winning_indexes(query.explain()) == ["new_episode_id_1_model_1_cosine_similarity_-1"]
    top = list(
        coll.find({"new_episode_id": "space-3", "model": "all-MiniLM-L6-v2"}).sort("cosine_similarity", -1).limit(5)
    )
    assert len(top) == 5
    assert top[0]["historical_episode_id"] in {"space-1", "space-2"}


def test_unit_length_check_passes(content_env, vectors_materialized):
    result = dg.materialize(
        [episode_vectors, episode_vectors_unit_length], partition_key=D2.isoformat(), resources=content_env
    )
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 1 and evaluations[0].passed


def test_similarities_depend_on_every_day_through_d_and_never_on_later_days():
    upstream = ALL_DAYS_THROUGH_D.get_upstream_mapped_partitions_result_for_partitions(
        daily_partitions.subset_with_partition_keys(["2026-01-05"]), daily_partitions, daily_partitions
    )
    assert sorted(upstream.partitions_subset.get_partition_keys()) == [f"2026-01-0{d}" for d in range(1, 6)]
    assert upstream.required_but_nonexistent_subset.is_empty
    assert content_defs.assets == [episode_vectors, similarities]
    (dep,) = similarities.specs_by_key[dg.AssetKey("similarities")].deps
    assert dep.asset_key == dg.AssetKey("episode_vectors") and dep.partition_mapping is ALL_DAYS_THROUGH_D
