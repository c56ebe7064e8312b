"""final_recommendations and recommendation_metrics materialized through Dagster on the real local stack.

The inputs are small synthetic Delta tables written with the LakeResource: two topics, users who each like
one topic and listen to its newest episodes, and an ALS list that proposes old episodes of both topics (so
content, which knows the topics, should beat it on new episodes).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from podrec_assets.core.schemas import ALS_TOP_N, EPISODE_VECTORS, EPISODES, USER_EPISODE_DAILY, to_table
from podrec_assets.resources.mongo import list_bucket
from podrec_assets.settings import get_settings
from podrec_assets_tests.conftest import winning_indexes

DAYS = [date(2026, 2, 1) + timedelta(days=i) for i in range(4)]
TOPICS = ("science", "sport")


def _episode_id(day: date, topic: str, i: int) -> str:
    return f"{day:%m%d}-{topic}-{i}"


def write_inputs(lake, run_id: str = "synthetic") -> dict:
    rng = np.random.default_rng(5)
    axes = {"science": np.array([1.0, 0.0, 0.0]), "sport": np.array([0.0, 1.0, 0.0])}
    catalog = []
    for day in DAYS:
        episodes, vectors = [], []
        for topic in TOPICS:
            for i in range(3):
                eid = _episode_id(day, topic, i)
                published = datetime(day.year, day.month, day.day, 6, tzinfo=timezone.utc)
                vec = axes[topic] + rng.normal(0, 0.15, 3)
                vec = (vec / np.linalg.norm(vec)).astype(np.float32)
                catalog.append((eid, topic, day))
                episodes.append(
                    {
                        "episode_id": eid,
                        "podcast_id": topic,
                        "podcast_title": topic.title(),
                        "episode_title": f"{topic} {day} #{i}",
                        "description": "",
                        "audio_url": "",
                        "language": "en",
                        "published_at": published,
                        "duration_sec": 60.0,
                        "categories": [topic],
                        "source": "demo",
                        "kafka_partition": 0,
                        "kafka_offset": 0,
                    }
                )
                vectors.append(
                    {
                        "episode_id": eid,
                        "published_at": published,
                        "model": "synthetic-3d",
                        "chunk_count": 1,
                        "token_count": 10,
                        "vector": vec.tolist(),
                    }
                )
        lake.write_partition("episodes", day, to_table(episodes, EPISODES), run_id)
        lake.write_partition("episode_vectors", day, to_table(vectors, EPISODE_VECTORS), run_id)

    users = [f"user{i:03d}" for i in range(40)]
    taste = {u: TOPICS[i % 2] for i, u in enumerate(users)}
    seen: dict[str, set] = {u: set() for u in users}
    for day in DAYS:
        rows = []
        todays = [(e, t) for e, t, d in catalog if d == day]
        for u in users:
            # one new episode of the user's topic published today, one from yesterday not heard yet
            today = [e for e, t in todays if t == taste[u]]
            yesterday = [
                e for e, t, d in catalog if d == day - timedelta(days=1) and t == taste[u] and e not in seen[u]
            ]
            picks = [str(rng.choice(today))] + ([str(rng.choice(yesterday))] if yesterday else [])
            for e in picks:
                seen[u].add(e)
                rows.append(
                    {
                        "user_id": u,
                        "episode_id": e,
                        "engagement": 6.0,
                        "event_count": 3,
                        "max_played_pct": 1.0,
                        "completed": True,
                        "last_event_at": datetime(day.year, day.month, day.day, 20, tzinfo=timezone.utc),
                    }
                )
        # one user listened weakly only on the first day: a cold-start user later on
        if day == DAYS[0]:
            rows.append(
                {
                    "user_id": "lurker",
                    "episode_id": todays[0][0],
                    "engagement": 0.5,
                    "event_count": 1,
                    "max_played_pct": 0.1,
                    "completed": False,
                    "last_event_at": datetime(day.year, day.month, day.day, 9, tzinfo=timezone.utc),
                }
            )
        lake.write_partition("user_episode_daily", day, to_table(rows, USER_EPISODE_DAILY), run_id)
        # a poor ALS: old episodes of both topics, including some the user already completed
        old = [e for e, t, d in catalog if d < day] or [e for e, t, d in catalog if d == day]
        als_rows = []
        for u in users:
            picks = rng.choice(old, size=min(5, len(old)), replace=False)
            for r, e in enumerate(picks, start=1):
                als_rows.append(
                    {"user_id": u, "episode_id": str(e), "rank": r, "score": 1.0 / r, "model_version": "als-test"}
                )
        lake.write_partition("als_top_n", day, to_table(als_rows, ALS_TOP_N), run_id)
    return {"users": users, "taste": taste, "catalog": catalog}


@pytest.fixture
def inputs(resources, podrec_env):
    return write_inputs(resources["lake"])


def _materialize(asset, day: date, resources):
    from podrec_assets.defs.hybrid import assets as hybrid_assets  # after podrec_env points settings at the stack

    result = dg.materialize(
        [getattr(hybrid_assets, asset)],
        partition_key=day.isoformat(),
        resources={"lake": resources["lake"], "mongo": resources["mongo"]},
    )
    assert result.success
    return result.asset_materializations_for_node(asset)[0].metadata


def test_final_recommendations_end_to_end(inputs, resources, podrec_env):
    lake, mongo = resources["lake"], resources["mongo"]
    day = DAYS[2]
    meta = _materialize("final_recommendations", day, resources)
    recs = lake.read_day("final_recommendations", day).to_pandas()
    daily = lake.read_days("user_episode_daily", DAYS[0], day).to_pandas()

    # every known user (the 40 + the cold-start lurker) gets top_n rows ranked 1..N
    top_n = podrec_env.top_n
    assert recs["user_id"].nunique() == 41
    assert (recs.groupby("user_id").size() == top_n).all()
    lurker = recs[recs["user_id"] == "lurker"]
    assert set(lurker["reason"]) == {"popular"} and meta["cold_start_users"].value == 1

    # completed episodes never come back, though the ALS lists propose some
    completed = set(map(tuple, daily[daily["completed"]][["user_id", "episode_id"]].to_numpy()))
    assert not completed & set(map(tuple, recs[["user_id", "episode_id"]].to_numpy()))

    # explanations point into the user's own history
    history = set(map(tuple, daily[daily["engagement"] >= 2.0][["user_id", "episode_id"]].to_numpy()))
    explained = recs[recs["because_episode_id"].notna()]
    assert len(explained) > 0
    assert all((u, b) in history for u, b in zip(explained["user_id"], explained["because_episode_id"]))

    # new episodes (published on the day, no ALS score) reach the lists through content, on the user's topic
    new_today = {e for e, _, d in inputs["catalog"] if d == day}
    topic_of = {e: t for e, t, _ in inputs["catalog"]}
    first = recs[recs["rank"] == 1]
    for user, rows in recs[recs["user_id"] != "lurker"].groupby("user_id"):
        reached = rows[rows["episode_id"].isin(new_today)].sort_values("rank")
        assert len(reached) and set(reached["reason"]) <= {"content", "hybrid"}, user
        on_topic = [topic_of[e] == inputs["taste"][user] for e in reached["episode_id"]]
        assert on_topic[0] and on_topic == sorted(on_topic, reverse=True), user  # the user's topic ranks first
    assert first["episode_id"].isin(new_today).mean() > 0.5  # the poor ALS' old picks do not crowd them out
    assert all(
        topic_of[e] == inputs["taste"][u] for u, e in zip(first["user_id"], first["episode_id"]) if u != "lurker"
    )

    # α was chosen on the earlier days (lists for V judged on V+1 <= D, never D's own) and recorded with evidence
    assert "best ndcg@" in meta["alpha_choice"].value
    assert f"(days {DAYS[1]}, {DAYS[0]})" in meta["alpha_choice"].value
    assert "alpha_validation" in meta

    # Mongo answers "recommendations for user U" with one indexed read of the user's bucket, with reasons
    coll = mongo.db()["final_recommendations"]
    pointer = mongo.served_days("final_recommendations")[day.isoformat()]
    items = mongo.list_of("final_recommendations", "user001", days=1)
    assert [d["rank"] for d in items] == list(range(1, top_n + 1)) and {d["date"] for d in items} == {day.isoformat()}
    assert all(d["reason"] in {"als", "content", "hybrid", "popular"} for d in items)
    assert items[0]["because_episode_title"]
    mine = recs[recs["user_id"] == "user001"].sort_values("rank")
    assert [d["episode_id"] for d in items] == mine["episode_id"].tolist()
    assert coll.count_documents({"date": day.isoformat()}) == pointer["documents"] == pointer["buckets"]
    bucket = list_bucket("user001", pointer["buckets"])
    plan = coll.find({"date": day.isoformat(), "write_id": pointer["write_id"], "bucket": bucket}).explain()
    assert winning_indexes(plan) == ["date_1_write_id_1_bucket_1"]

    # idempotent: a re-run leaves the same rows in Delta and in Mongo
    _materialize("final_recommendations", day, resources)
    again = lake.read_day("final_recommendations", day).to_pandas()
    key = ["user_id", "rank"]
    pd.testing.assert_frame_equal(
        recs.sort_values(key)[["user_id", "episode_id", "rank"]].reset_index(drop=True),
        again.sort_values(key)[["user_id", "episode_id", "rank"]].reset_index(drop=True),
    )
    served = pd.DataFrame(mongo.served_rows("final_recommendations", day))
    pd.testing.assert_frame_equal(
        served.sort_values(key)[["user_id", "episode_id", "rank"]].reset_index(drop=True),
        again.sort_values(key)[["user_id", "episode_id", "rank"]].reset_index(drop=True),
        check_dtype=False,
    )
    assert len(served) == len(again) and served["run_id"].nunique() == 1


def test_recommendation_metrics_judges_yesterdays_lists(inputs, resources, podrec_env):
    lake = resources["lake"]
    rec_day, day = DAYS[2], DAYS[3]
    _materialize("final_recommendations", rec_day, resources)
    meta = _materialize("recommendation_metrics", day, resources)
    scores = lake.read_day("recommendation_metrics", day).to_pandas().set_index(["model", "metric"])["value"]
    k = podrec_env.metrics_k
    assert {m for m, _ in scores.index} == {"popularity", "als", "content", "hybrid"}
    for metric in (f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}", "coverage", "novelty", "diversity"):
        for model in ("popularity", "als", "content", "hybrid"):
            assert 0.0 <= scores[(model, metric)] <= (20 if metric == "novelty" else 1.0)
    # users listen to yesterday's new episodes of their topic: content ranks them, ALS (old random episodes) cannot
    assert scores[("content", f"ndcg@{k}")] > 0.3
    assert scores[("als", f"ndcg@{k}")] < scores[("content", f"ndcg@{k}")]
    assert scores[("hybrid", f"ndcg@{k}")] >= scores[("content", f"ndcg@{k}")] - 1e-9
    assert scores[("content", f"ndcg@{k}/new")] > scores[("als", f"ndcg@{k}/new")]
    assert "plot" in meta and meta["metrics"].value.startswith("| metric")
    # re-running replaces the partition
    _materialize("recommendation_metrics", day, resources)
    assert lake.read_day("recommendation_metrics", day).num_rows == len(scores)


def test_recommendation_metrics_on_a_sample_judges_only_those_listeners(inputs, resources, podrec_env, monkeypatch):
    """PODREC_METRICS_USERS bounds the evaluation: a stable sample of the listeners with lists, every model judged
    on it, said in the metadata."""
    rec_day, day = DAYS[2], DAYS[3]
    _materialize("final_recommendations", rec_day, resources)
    everyone = _materialize("recommendation_metrics", day, resources)
    monkeypatch.setenv("PODREC_METRICS_USERS", "12")
    get_settings.cache_clear()
    try:
        sampled = _materialize("recommendation_metrics", day, resources)
        again = _materialize("recommendation_metrics", day, resources)
    finally:
        monkeypatch.delenv("PODREC_METRICS_USERS")
        get_settings.cache_clear()
    assert everyone["listeners_judged_sample"].value == everyone["listeners_with_lists"].value == 41
    assert sampled["listeners_judged_sample"].value == 12 and sampled["listeners_with_lists"].value == 41
    assert 0 < sampled["users_evaluated"].value <= 12 < everyone["users_evaluated"].value
    assert sampled["metrics"].value == again["metrics"].value  # the same sample each time


def test_recommendation_metrics_without_lists_writes_an_empty_partition(inputs, resources, podrec_env):
    meta = _materialize("recommendation_metrics", DAYS[0], resources)
    assert meta["rows"].value == 0
    assert resources["lake"].read_day("recommendation_metrics", DAYS[0]).num_rows == 0
