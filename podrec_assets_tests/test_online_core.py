"""core.online: the fold-in against real implicit ALS fits, ALS candidates, and the serving documents' round trips."""

from __future__ import annotations

from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import pytest

from podrec_assets.core import als, fusion, online
from podrec_assets.serving import store
from podrec_assets.serving.fold import live_rows
from podrec_assets.settings import load_settings


def _interactions(seed: int = 0, users: int = 300, items: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        group = u % 3  # three tastes, so the factors have structure to find
        pool = [i for i in range(items) if i % 3 == group] if rng.random() < 0.8 else list(range(items))
        for i in rng.choice(pool, size=8, replace=False):
            rows.append((f"u{u:03d}", f"e{i:02d}", float(rng.choice([0.5, 1.0, 3.0, 6.0]))))
    return pd.DataFrame(rows, columns=["user_id", "episode_id", "engagement"])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


PARAMS = als.AlsParams(factors=8, iterations=20, threads=1)


def test_fold_in_of_a_new_listener_matches_a_full_refit_with_them():
    """Train with listener X included; folding X's rows into the refit's episode factors gives X's trained vector."""
    frame = _interactions()
    newcomer = pd.DataFrame(
        {
            "user_id": "zz-new",
            "episode_id": ["e00", "e03", "e06", "e09", "e12"],
            "engagement": [6.0, 3.0, 6.0, 1.0, 3.0],
        }
    )
    result = als.fit_recommend(als.Interactions.from_frame(pd.concat([frame, newcomer])), PARAMS, 10)
    items = online.ItemFactors(result.item_ids, result.item_factors, PARAMS.regularization, PARAMS.alpha)
    folded = online.fold_in(items, newcomer["episode_id"], newcomer["engagement"])
    trained = result.user_factors[list(result.user_ids).index("zz-new")]
    assert _cosine(folded, trained) > 0.995
    assert np.linalg.norm(folded - trained) / np.linalg.norm(trained) < 0.1
    # and the lists agree: the same top 5 unseen episodes
    seen = {"zz-new": set(newcomer["episode_id"])}
    from_fold = online.als_candidates(items, {"zz-new": folded}, seen, 5)["episode_id"].tolist()
    batch = result.top_n[result.top_n["user_id"] == "zz-new"].sort_values("rank")["episode_id"].tolist()[:5]
    assert len(set(from_fold) & set(batch)) >= 4


def test_fold_in_is_the_exact_least_squares_solution():
    """The folded vector zeroes the gradient of the one-user implicit ALS objective (so it is its minimum)."""
    frame = _interactions(seed=3)
    result = als.fit_recommend(als.Interactions.from_frame(frame), PARAMS, 10)
    items = online.ItemFactors(result.item_ids, result.item_factors, PARAMS.regularization, PARAMS.alpha)
    eids, values = ["e01", "e04", "e07"], np.array([6.0, 0.5, 3.0])
    x = online.fold_in(items, eids, values).astype(np.float64)
    y = items.factors.astype(np.float64)
    p = np.zeros(len(y))
    c = np.ones(len(y))
    for eid, value in zip(eids, values):
        p[items.position[eid]] = 1.0
        c[items.position[eid]] = als.confidence(np.array([value]), PARAMS.alpha)[0]
    gradient = y.T @ (c * (y @ x - p)) + PARAMS.regularization * x
    assert np.abs(gradient).max() < 1e-4 * max(1.0, np.abs(y.T @ (c * p)).max())


def test_fold_in_ignores_what_carries_no_preference():
    items = online.ItemFactors(np.array(["a", "b"]), np.eye(2, dtype=np.float32), 0.1, 10.0)
    assert not online.fold_in(items, ["a", "zzz"], [-2.0, 5.0]).any()  # a bad rating; an episode without a factor
    assert online.fold_in(items, ["b"], [3.0])[1] > 0


def test_als_candidates_rank_by_score_and_skip_seen():
    factors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    items = online.ItemFactors(np.array(["a", "b", "c", "d"]), factors, 0.1, 10.0)
    out = online.als_candidates(items, {"u": np.array([1.0, 0.0], np.float32)}, {"u": {"a"}}, 2)
    assert out["episode_id"].tolist() == ["b", "d"] and out["rank"].tolist() == [1, 2]
    assert online.als_candidates(items, {}, {}, 3).empty


def test_alpha_curve_round_trips_through_the_model_version():
    curve = fusion.AlphaCurve(0.7, 0.15, 4)
    version = fusion.model_version(["als-implicit-abc"], ["minilm"], curve)
    assert fusion.AlphaCurve.from_model_version(version) == curve
    with pytest.raises(ValueError, match="no alpha curve"):
        fusion.AlphaCurve.from_model_version("hybrid[x|y]")


def test_live_rows_use_the_batch_engagement_weights():
    settings = load_settings({})
    from podrec_assets.core.engagement import weights_from_settings

    ts = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
    base = {"user_id": "u", "rating": None, "ts": ts}
    events = [
        {**base, "episode_id": "a", "event": "complete", "played_pct": 1.0},
        {**base, "episode_id": "a", "event": "play", "played_pct": 0.9},
        {**base, "episode_id": "b", "event": "skip", "played_pct": 0.05},
        {**base, "episode_id": "c", "event": "rate", "rating": 1, "played_pct": 0.5},
        {
            **base,
            "episode_id": "c",
            "event": "play",
            "played_pct": 0.1,
            "ts": datetime(2026, 3, 3, tzinfo=timezone.utc),
        },
    ]
    rows = live_rows(events, weights_from_settings(settings)).set_index(["episode_id", "date"])
    assert rows.loc[("a", date(2026, 3, 2)), "engagement"] == settings.weight_complete + settings.weight_play_high
    assert bool(rows.loc[("a", date(2026, 3, 2)), "completed"]) is True
    assert rows.loc[("b", date(2026, 3, 2)), "engagement"] == settings.weight_skip
    assert rows.loc[("c", date(2026, 3, 2)), "engagement"] == -2.0
    assert rows.loc[("c", date(2026, 3, 3)), "engagement"] == settings.weight_play_low


def test_state_and_list_documents_round_trip():
    rows = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "episode_id": ["a", "b", "a"],
            "engagement": [3.0, -1.0, 0.5],
            "completed": [True, False, False],
            "date": [date(2026, 1, 1), date(2026, 1, 5), date(2026, 1, 5)],
        }
    )
    back, ids = store.state_frame(store.state_documents(rows, {"u1": ["ev-1"]}) | {"nobody": None})
    assert ids == {"u1": {"ev-1"}, "u2": set(), "nobody": set()}
    pd.testing.assert_frame_equal(
        back.sort_values(["user_id", "episode_id"]).reset_index(drop=True), rows, check_dtype=False
    )
    hide = store.hidden_episodes(rows, date(2026, 1, 5), history_days=2)
    assert hide == {"u1": {"a", "b"}, "u2": {"a"}}  # u1's "a" is old but completed
    recs = pd.DataFrame(
        {
            "user_id": ["u1", "u1"],
            "episode_id": ["c", "d"],
            "rank": [2, 1],
            "final_score": [0.5, 0.9],
            "als_score": [np.nan, 1.0],
            "content_score": [0.3, np.nan],
            "reason": ["content", "als"],
            "because_episode_id": ["a", None],
        }
    )
    import orjson

    doc = orjson.loads(store.list_documents(recs, hide, live=True)["u1"])
    assert [i["episode_id"] for i in doc["items"]] == ["d", "c"]
    assert doc["items"][0]["content_score"] is None and doc["items"][1]["because_episode_id"] == "a"
    assert doc["hide"] == ["a", "b"] and doc["live"] is True and doc["cold_start"] is False
