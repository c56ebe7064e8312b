"""core.fusion and core.evaluation on small hand-checked cases (no servers)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from podrec_assets.core import evaluation, fusion, metrics
from podrec_assets.core.arrays import position_in_runs
from podrec_assets.core.content_candidates import ContentIndex, user_content_candidates
from podrec_assets.core.metrics import ndcg_per_user

DAY = date(2026, 1, 10)


def unit(angle_deg: float) -> list[float]:
    a = math.radians(angle_deg)
    return [math.cos(a), math.sin(a)]


def scenario():
    """Topic A points near 0°, topic B near 90°. a3/b3 are published on DAY (new), the rest five days before."""
    old = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)
    new = datetime(2026, 1, 10, 6, tzinfo=timezone.utc)
    angles = {"a1": 0, "a2": 10, "a3": 5, "b1": 90, "b2": 80, "b3": 85, "c1": 45}
    published = {e: (new if e.endswith("3") else old) for e in angles}
    vectors = pd.DataFrame({"episode_id": list(angles), "vector": [unit(a) for a in angles.values()]})
    daily = pd.DataFrame(
        [
            # u1 loves topic A: completed a1 yesterday; skipped b2 today (not history, but seen)
            ("u1", "a1", 6.0, True, DAY - timedelta(days=1)),
            ("u1", "b2", 0.2, False, DAY),
            # u2 liked b1 three days ago; completed a2 long ago (outside the 7-day window)
            ("u2", "b1", 2.0, False, DAY - timedelta(days=3)),
            ("u2", "a2", 6.0, True, DAY - timedelta(days=20)),
            # popularity: b1 and a2 are popular recently
            ("u3", "b1", 3.0, False, DAY),
            ("u3", "a2", 3.0, False, DAY - timedelta(days=1)),
            ("u4", "b1", 3.0, False, DAY),
        ],
        columns=["user_id", "episode_id", "engagement", "completed", "date"],
    )
    als = pd.DataFrame(
        [
            ("u1", "b1", 1, 0.9),
            ("u1", "a2", 2, 0.5),
            ("u2", "a2", 1, 0.8),
            ("u2", "b2", 2, 0.4),
        ],
        columns=["user_id", "episode_id", "rank", "score"],
    )
    return vectors, daily, als, pd.Series(published)


def day_inputs(**overrides) -> fusion.FusionInputs:
    vectors, daily, als, published = scenario()
    kwargs = dict(
        day=DAY,
        als=als,
        daily=daily,
        vectors=vectors,
        published=published,
        history_days=7,
        min_engagement=2.0,
        popularity_half_life_days=2.0,
        content_candidates=20,
    )
    kwargs.update(overrides)
    return fusion.FusionInputs(**kwargs)


def prepared_day(**overrides) -> fusion.PreparedDay:
    return fusion.prepare_day(day_inputs(**overrides))


def test_alpha_curve_is_linear_in_age():
    curve = fusion.AlphaCurve(alpha=0.7, alpha_new=0.1, ramp_days=3)
    assert curve.at([0, 1, 3, 10]).tolist() == pytest.approx([0.1, 0.3, 0.7, 0.7])
    with pytest.raises(ValueError):
        fusion.AlphaCurve(alpha=1.5, alpha_new=0.1, ramp_days=3)


def test_fusion_arithmetic_by_hand():
    candidates = pd.DataFrame(
        {
            "user_id": ["u", "u", "u"],
            "episode_id": ["x", "y", "z"],
            "als_score": [2.0, 1.0, np.nan],
            "content_score": [0.2, 0.6, 0.4],
            "because_episode_id": ["h", "h", "h"],
            "in_als": [True, True, False],
            "in_content": [False, True, True],
        }
    )
    normalised = fusion.normalise_candidates(candidates)
    # ALS min-max over x,y: x=1, y=0, z (no ALS score)=0; content min-max over 0.2..0.6: x=0, y=1, z=0.5
    assert normalised["als_norm"].tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert normalised["content_norm"].tolist() == pytest.approx([0.0, 1.0, 0.5])
    ages = pd.Series({"x": 10, "y": 10, "z": 0})
    out = fusion.fuse(normalised, ages, fusion.AlphaCurve(0.7, 0.1, 3), top_n=3).set_index("episode_id")
    assert out.loc["x", "final_score"] == pytest.approx(0.7 * 1.0 + 0.3 * 0.0)
    assert out.loc["y", "final_score"] == pytest.approx(0.7 * 0.0 + 0.3 * 1.0)
    assert out.loc["z", "final_score"] == pytest.approx(0.1 * 0.0 + 0.9 * 0.5)
    assert out.loc["z", "alpha"] == pytest.approx(0.1)
    assert out["rank"].to_dict() == {"x": 1, "z": 2, "y": 3}
    assert out["reason"].to_dict() == {"x": "als", "y": "hybrid", "z": "content"}


def test_content_scores_are_max_cosine_and_explanations_point_into_history():
    prepared = prepared_day()
    recs = fusion.recommend(prepared, fusion.AlphaCurve(0.7, 0.1, 3), top_n=4)
    history = set(map(tuple, prepared.history[["user_id", "episode_id"]].to_numpy()))
    explained = recs[recs["because_episode_id"].notna()]
    assert len(explained) > 0
    for user, because in zip(explained["user_id"], explained["because_episode_id"]):
        assert (user, because) in history
    u1 = recs[recs["user_id"] == "u1"].set_index("episode_id")
    # u1's only history is a1 (0°): a3 at 5° has cosine cos(5°)
    assert u1.loc["a3", "content_score"] == pytest.approx(math.cos(math.radians(5)), abs=1e-6)
    assert u1.loc["a3", "because_episode_id"] == "a1"


def test_new_episode_without_behaviour_is_recommended_through_content():
    recs = fusion.recommend(prepared_day(), fusion.AlphaCurve(0.7, 0.1, 3), top_n=3)
    u1 = recs[recs["user_id"] == "u1"]
    # a3 was published today, nobody touched it and ALS never proposed it: content puts it first for an A-lover
    assert u1.iloc[0]["episode_id"] == "a3"
    assert u1.iloc[0]["reason"] == "content"


def test_completed_and_seen_episodes_are_never_recommended():
    recs = fusion.recommend(prepared_day(), fusion.AlphaCurve(0.7, 0.1, 3), top_n=10)
    u1 = set(recs[recs["user_id"] == "u1"]["episode_id"])
    u2 = set(recs[recs["user_id"] == "u2"]["episode_id"])
    assert "a1" not in u1 and "b2" not in u1  # completed yesterday / skipped today
    assert "a2" not in u2  # completed 20 days ago, though ALS ranks it first
    assert "b1" not in u2
    assert "b2" in u2  # ALS candidate never seen: allowed


def test_cold_start_user_gets_recent_popular_episodes():
    vectors, daily, als, published = scenario()
    # u9 listened 30 days ago only: no history in the window, no ALS list
    daily = pd.concat(
        [daily, pd.DataFrame([("u9", "c1", 1.0, False, DAY - timedelta(days=30))], columns=daily.columns)],
        ignore_index=True,
    )
    prepared = prepared_day(daily=daily)
    recs = fusion.recommend(prepared, fusion.AlphaCurve(0.7, 0.1, 3), top_n=2)
    u9 = recs[recs["user_id"] == "u9"]
    assert u9["reason"].tolist() == ["popular", "popular"]
    # b1: 2 positive users today (1 each) + one 3 days ago (0.5^1.5) = 2.35; a1 and a2: one yesterday (0.5)
    # each, tie broken by id
    assert u9["episode_id"].tolist() == ["b1", "a1"]
    assert u9["because_episode_id"].isna().all()
    assert u9["rank"].tolist() == [1, 2]


def test_every_user_gets_top_n_with_ordered_ranks():
    recs = fusion.recommend(prepared_day(), fusion.AlphaCurve(0.7, 0.1, 3), top_n=4)
    for _, rows in recs.groupby("user_id"):
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
        assert rows["final_score"].is_monotonic_decreasing
        assert rows["episode_id"].is_unique


def test_relevant_pairs_drop_seen_and_weak_engagement():
    seen = pd.DataFrame({"user_id": ["u1"], "episode_id": ["a1"]})
    day = pd.DataFrame(
        [("u1", "a1", 5.0, True), ("u1", "a2", 0.5, False), ("u1", "a3", 1.0, True), ("u2", "b1", 2.0, False)],
        columns=["user_id", "episode_id", "engagement", "completed"],
    )
    truth = evaluation.relevant_pairs(day, 2.0, seen)
    assert sorted(map(tuple, truth.to_numpy())) == [("u1", "a3"), ("u2", "b1")]


def test_coverage_novelty_diversity_by_hand():
    recs = pd.DataFrame({"user_id": ["u", "u", "v", "v"], "episode_id": ["a", "b", "a", "c"], "rank": [1, 2, 1, 2]})
    assert evaluation.catalog_coverage(recs, catalog_size=6, k=2) == pytest.approx(3 / 6)
    assert evaluation.catalog_coverage(recs, catalog_size=6, k=1) == pytest.approx(1 / 6)
    # 4 users; a engaged by 2 (p twice), b by 1, c by none (counts as 1)
    inter = pd.DataFrame({"user_id": ["p", "q", "p", "q", "r", "s"], "episode_id": ["a", "a", "a", "b", "x", "x"]})
    expected = np.mean([-math.log2(2 / 4), -math.log2(1 / 4), -math.log2(2 / 4), -math.log2(1 / 4)])
    assert evaluation.novelty(recs, inter, k=2) == pytest.approx(expected)
    index = ContentIndex(["a", "b", "c"], np.array([unit(0), unit(90), unit(60)]))
    expected_div = np.mean([1 - 0.0, 1 - math.cos(math.radians(60))])
    assert evaluation.intra_list_diversity(recs, index, k=2) == pytest.approx(expected_div)


def test_taste_match_by_hand():
    recs = pd.DataFrame({"user_id": ["u", "u", "v"], "episode_id": ["a", "b", "b"], "rank": [1, 2, 1]})
    tastes = pd.DataFrame({"user_id": ["u", "u", "v"], "topic": ["A", "B", "A"], "weight": [0.8, 0.2, 1.0]})
    cats = pd.Series({"a": ["A"], "b": ["B", "X"]})
    value, users = evaluation.taste_match(recs, tastes, cats, k=2)
    # u: (0.8/0.8 + 0.2/0.8)/2 = 0.625; v: 0/1 = 0
    assert users == 2
    assert value == pytest.approx((0.625 + 0.0) / 2)


def test_evaluate_models_scores_every_model_on_the_same_users():
    truth = pd.DataFrame({"user_id": ["u", "v", "w"], "episode_id": ["a", "c", "z"]})
    lists = {
        "good": pd.DataFrame(
            {"user_id": ["u", "u", "v", "v"], "episode_id": ["a", "b", "c", "d"], "rank": [1, 2, 1, 2]}
        ),
        "late": pd.DataFrame(
            {"user_id": ["u", "u", "v", "v", "w"], "episode_id": ["b", "a", "d", "e", "z"], "rank": [1, 2, 1, 2, 1]}
        ),
    }
    index = ContentIndex(["a", "b"], np.array([unit(0), unit(90)]))
    scores = evaluation.evaluate_models(lists, truth, truth.iloc[:0], 2, 10, truth, index).set_index(
        ["model", "metric"]
    )
    # w has no "good" list, so nobody is judged on w: both models on u and v only
    assert scores.loc[("good", "ndcg@2"), "users_evaluated"] == 2
    assert scores.loc[("good", "ndcg@2"), "value"] == pytest.approx(1.0)
    assert scores.loc[("late", "ndcg@2"), "value"] == pytest.approx((1 / math.log2(3)) / 2)
    assert scores.loc[("late", "recall@2"), "value"] == pytest.approx(0.5)


def test_select_alpha_picks_content_when_content_predicts_the_next_day():
    prepared = prepared_day()
    # next day u1 completes the new A episode and u2 the content neighbour of b1 (b3): ALS lists miss both
    truth = pd.DataFrame({"user_id": ["u1", "u2"], "episode_id": ["a3", "b3"]})
    settings_curve = fusion.AlphaCurve(1.0, 1.0, 3)  # ALS only: misses both
    chosen, evidence, why = evaluation.select_alpha(
        [(prepared, truth)], top_n=3, k=3, default=settings_curve, min_users=1
    )
    grid = (
        len(evaluation.DEFAULT_ALPHA_GRID) * len(evaluation.DEFAULT_ALPHA_NEW_GRID) * len(evaluation.DEFAULT_RAMP_GRID)
    )
    assert len(evidence) == grid + 1  # the grid and the settings' curve
    best = evidence["ndcg@3"].max()
    assert best == pytest.approx(1.0)
    assert evidence.iloc[0]["ndcg@3"] == best and why.startswith("chose")
    assert chosen.alpha_new < 1.0 and chosen != settings_curve
    assert evidence.iloc[0]["gain_vs_settings"] > 2 * evidence.iloc[0]["gain_stderr"]
    # with too few users the settings are kept
    kept, _, why_kept = evaluation.select_alpha([(prepared, truth)], 3, 3, settings_curve, min_users=5)
    assert kept == settings_curve and "kept" in why_kept


def test_select_alpha_keeps_the_settings_when_the_gain_is_within_noise():
    prepared = prepared_day()
    settings_curve = fusion.AlphaCurve(1.0, 1.0, 3)
    # u1's next-day episode is what content ranks first, u2's what ALS ranks first: any curve wins one and loses
    # the other, so no curve beats the settings by more than a standard error
    content_first = fusion.recommend(prepared, fusion.AlphaCurve(0.0, 0.0, 3), 1)
    als_first = fusion.recommend(prepared, settings_curve, 1)
    truth = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "episode_id": [
                content_first.set_index("user_id").loc["u1", "episode_id"],
                als_first.set_index("user_id").loc["u2", "episode_id"],
            ],
        }
    )
    kept, evidence, why = evaluation.select_alpha([(prepared, truth)], 3, 3, settings_curve, min_users=1)
    assert kept == settings_curve and "within 2 standard errors" in why
    assert (evidence["gain_vs_settings"] <= evidence["gain_stderr"].fillna(0.0)).all()


def test_select_alpha_pools_validation_days_by_user():
    prepared = prepared_day()
    hit = pd.DataFrame({"user_id": ["u1", "u2"], "episode_id": ["a3", "b3"]})
    miss = pd.DataFrame({"user_id": ["u1", "u2"], "episode_id": ["zz", "zz"]})  # nothing any list can hit
    settings_curve = fusion.AlphaCurve(1.0, 1.0, 3)
    _, once, _ = evaluation.select_alpha([(prepared, hit)], 3, 3, settings_curve, min_users=1)
    # a second day where nobody is found: each user averages their two days, users are counted once
    _, pooled, why = evaluation.select_alpha([(prepared, hit), (prepared, miss)], 3, 3, settings_curve, min_users=1)
    assert (pooled["users"] == 2).all() and (once["users"] == 2).all()
    by_curve = lambda e: e.set_index(["alpha", "alpha_new", "ramp_days"])["ndcg@3"]  # noqa: E731
    assert by_curve(pooled).sort_index().tolist() == pytest.approx((by_curve(once).sort_index() / 2).tolist())
    assert f"days {DAY.isoformat()}, {DAY.isoformat()}" in why


# --- the blocked candidate search against the exact one-user-at-a-time definition -----------------------

USER, ITEM = fusion.USER, fusion.ITEM


def exact_candidates_one_user_at_a_time(
    history: pd.DataFrame, als: pd.DataFrame, index: ContentIndex, excluded: pd.DataFrame, content_candidates: int
) -> pd.DataFrame:
    """The candidates spelled out user by user (what fusion computed before its blocked matrix version).

    ``history``: user_id, episode_id (positive history); ``als``: user_id, episode_id, score (ALS top-N);
    ``excluded``: user_id, episode_id never to recommend (seen in the window, completed ever).
    Returns user_id, episode_id, als_score (NaN if not an ALS candidate), content_score (NaN if unknown),
    because_episode_id, in_als, in_content. Only users with history or ALS candidates appear.
    """
    excluded_by_user = excluded.groupby(USER)[ITEM].apply(set).to_dict() if not excluded.empty else {}
    hist_by_user = history.groupby(USER)[ITEM].apply(list).to_dict() if not history.empty else {}
    als_by_user = {u: g for u, g in als.groupby(USER)} if not als.empty else {}
    users = sorted(set(hist_by_user) | set(als_by_user))
    out_users, out_items, out_als, out_content, out_because, out_in_als, out_in_content = [], [], [], [], [], [], []
    catalog = index.matrix
    for user in users:
        blocked = excluded_by_user.get(user, set())
        history_ids = [h for h in dict.fromkeys(hist_by_user.get(user, [])) if h in index.position]
        best = best_arg = None
        if history_ids and len(index):
            sims = index.vectors_of(history_ids) @ catalog.T  # (h, n)
            arg = sims.argmax(axis=0)
            best = sims[arg, np.arange(sims.shape[1])]
            best_arg = np.asarray(history_ids, dtype=object)[arg]
        rows: dict[str, list] = {}
        if best is not None:
            order = np.argsort(-best, kind="stable")
            taken = 0
            for pos in order:
                eid = index.ids[pos]
                if eid in blocked:
                    continue
                rows[eid] = [np.nan, float(best[pos]), best_arg[pos], False, True]
                taken += 1
                if taken >= content_candidates:
                    break
        for eid, score in zip(als_by_user[user][ITEM], als_by_user[user]["score"]) if user in als_by_user else ():
            if eid in blocked:
                continue
            if eid in rows:
                rows[eid][0], rows[eid][3] = float(score), True
            else:
                pos = index.position.get(eid)
                content = float(best[pos]) if best is not None and pos is not None else np.nan
                because = best_arg[pos] if best is not None and pos is not None else None
                rows[eid] = [float(score), content, because, True, False]
        for eid, (a, c, b, ia, ic) in rows.items():
            out_users.append(user)
            out_items.append(eid)
            out_als.append(a)
            out_content.append(c)
            out_because.append(b)
            out_in_als.append(ia)
            out_in_content.append(ic)
    return pd.DataFrame(
        {
            USER: pd.Series(out_users, dtype=object),
            ITEM: pd.Series(out_items, dtype=object),
            "als_score": pd.Series(out_als, dtype=float),
            "content_score": pd.Series(out_content, dtype=float),
            "because_episode_id": pd.Series(out_because, dtype=object),
            "in_als": pd.Series(out_in_als, dtype=bool),
            "in_content": pd.Series(out_in_content, dtype=bool),
        }
    )


def _random_day(seed: int, duplicate_vectors: bool, users: int = 300, episodes: int = 120):
    rng = np.random.default_rng(seed)
    ids = [f"e{i:04d}" for i in range(episodes)]
    vectors = rng.normal(size=(episodes, 16)).astype(np.float32)
    if duplicate_vectors:
        vectors[1::3] = vectors[0::3][: len(vectors[1::3])]  # exact ties between episodes
    index = ContentIndex(ids[:-5], vectors[:-5])  # five episodes have no vector yet

    def pairs(n, user_range):
        return pd.DataFrame(
            {
                USER: [f"u{x:04d}" for x in rng.integers(0, user_range, n)],
                ITEM: [ids[x] for x in rng.integers(0, episodes, n)],
            }
        )

    history = pairs(users * 4, users)
    als = pairs(users * 5, users + 20).assign(score=rng.random(users * 5))  # some ALS users have no history
    excluded = pd.concat([pairs(users * 3, users), history]).drop_duplicates()  # history is seen, so excluded
    return history, als, index, excluded


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("candidates", [5, 200])
@pytest.mark.parametrize("way", ["exact", "neighbours"])
def test_blocked_candidates_equal_the_exact_per_user_search(seed, candidates, way, monkeypatch):
    """Both ways in blocks of users against the one-user-at-a-time exact search. The neighbour way with K >= catalog
    - 1 sees every pair, so it must find exactly the same: candidates, scores, explanations (the earliest history
    episode on a tie) and ALS rows."""
    from podrec_assets.core import content_candidates as module

    monkeypatch.setattr(module, "NEIGHBOUR_BLOCK_USERS", 37)  # several blocks of users even on small data
    history, als, index, excluded = _random_day(seed, duplicate_vectors=False)
    exact = exact_candidates_one_user_at_a_time(history, als, index, excluded, candidates)
    neighbours = len(index) if way == "neighbours" else 0
    blocked = user_content_candidates(history, als, index, excluded, candidates, block_users=37, neighbours=neighbours)
    key = [USER, ITEM]
    exact, blocked = (f.sort_values(key).reset_index(drop=True) for f in (exact, blocked))
    assert len(exact) > 1000 and exact[key].equals(blocked[key])
    for column in ("als_score", "content_score"):
        np.testing.assert_allclose(blocked[column], exact[column], atol=1e-6)
    for column in ("because_episode_id", "in_als", "in_content"):
        assert blocked[column].equals(exact[column]), column


@pytest.mark.parametrize("seed", range(3))
def test_als_content_scores_are_the_max_over_the_history_with_the_earliest_on_a_tie(seed, monkeypatch):
    """The one-pass scoring of ALS rows (catalog row blocks, a running maximum, chunks of pairs) against each row's
    own max over its user's history, with exact ties between episodes; blocks and chunks much smaller than the
    data so that a row's best can come from any block and be beaten or tied by a later one."""
    from podrec_assets.core import content_candidates as module

    monkeypatch.setattr(module, "ALS_CONTENT_PAIRS", 13)
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    vectors[1::3] = vectors[0::3][: len(vectors[1::3])]
    index = ContentIndex([f"e{i}" for i in range(40)], vectors)
    h_user = np.sort(rng.integers(0, 30, 150))
    h_pos = rng.integers(0, 40, 150)
    a_user = rng.integers(0, 35, 200)  # users 30-34 have no history
    a_pos = np.where(rng.random(200) < 0.1, -1, rng.integers(0, 40, 200))  # some without a vector
    content, because = module._als_content(index, h_user, h_pos, a_user, a_pos, block=7)
    cosines = np.vstack([index.matrix[b : b + 7] @ index.matrix.T for b in range(0, 40, 7)])  # the same arithmetic
    ties = 0
    for row, (user, item) in enumerate(zip(a_user, a_pos)):
        history = h_pos[h_user == user]
        if item < 0 or not len(history):
            assert np.isnan(content[row]) and because[row] == -1
            continue
        scores = cosines[history, item]
        ties += int((scores == scores.max()).sum() > 1)
        assert content[row] == scores.max() and because[row] == history[np.argmax(scores)]
    assert ties > 5  # the tie-break was exercised


def test_few_neighbours_give_true_cosines_of_real_neighbours_and_exact_als_rows(monkeypatch):
    """With K well below the catalog, each content candidate is one of its explanation's K nearest, scored with
    their true cosine (never above the exact max over the history); nothing excluded; ALS rows all kept, with the
    exact content score and explanation (scored in several chunks of pairs here)."""
    from podrec_assets.core import content_candidates as module

    monkeypatch.setattr(module, "ALS_CONTENT_PAIRS", 50)
    history, als, index, excluded = _random_day(3, duplicate_vectors=False)
    k = 8
    positions, cosines = index.neighbours(k)
    brute = index.matrix @ index.matrix.T
    np.fill_diagonal(brute, -np.inf)
    np.testing.assert_allclose(np.sort(cosines, axis=1), np.sort(brute, axis=1)[:, -k:], atol=1e-6)
    nearest = user_content_candidates(history, als, index, excluded, 5, neighbours=k)
    exact = exact_candidates_one_user_at_a_time(history, als, index, excluded, 5)
    assert not nearest.merge(excluded, on=[USER, ITEM]).shape[0]
    content = nearest[nearest["in_content"] & ~nearest["in_als"]]
    assert len(content) > 500 and (nearest[nearest["in_content"]].groupby(USER).size() <= 5).all()
    pos = index.position
    for row in content.itertuples():
        h, c = pos[row.because_episode_id], pos[row.episode_id]
        assert c in set(positions[h]) and row.content_score == pytest.approx(float(brute[h, c]), abs=1e-6)
    best = exact.set_index(key := [USER, ITEM])["content_score"]
    found = content.set_index(key)["content_score"]
    shared = found.index.intersection(best.index)
    assert (found[shared] <= best[shared] + 1e-6).all()
    from_als = [f[f["in_als"]].sort_values(key).reset_index(drop=True) for f in (nearest, exact)]
    assert len(from_als[0]) > 500 and from_als[0][key].equals(from_als[1][key])
    np.testing.assert_allclose(from_als[0]["content_score"], from_als[1]["content_score"], atol=1e-6)
    assert from_als[0]["because_episode_id"].equals(from_als[1]["because_episode_id"])


def test_blocked_candidates_with_tied_scores_pick_as_good_ones():
    """Duplicate vectors tie exactly; which of two equal candidates is kept may differ by float rounding, but
    every user gets as many, equally scored, and none of them excluded."""
    history, als, index, excluded = _random_day(7, duplicate_vectors=True)
    exact = exact_candidates_one_user_at_a_time(history, als, index, excluded, 5)
    blocked = user_content_candidates(history, als, index, excluded, 5, block_users=50)
    for frame in (exact, blocked):
        assert not frame.merge(excluded, on=[USER, ITEM]).shape[0]

    def scores(frame):
        content = frame[frame["in_content"]]
        return content.groupby(USER)["content_score"].apply(lambda s: np.sort(s.to_numpy())).to_dict()

    # equal within float32 rounding (rounding to a fixed number of decimals can split two equal values at a boundary)
    exact_scores, blocked_scores = scores(exact), scores(blocked)
    assert exact_scores.keys() == blocked_scores.keys()
    for user, values in exact_scores.items():
        np.testing.assert_allclose(blocked_scores[user], values, rtol=0, atol=1e-6, err_msg=user)


def test_the_fill_reaches_episodes_nobody_liked_yet_newest_first():
    """A listener who heard every popular episode still gets the rest of the catalog (popularity 0, newest first)."""
    day = date(2026, 3, 3)
    daily = pd.DataFrame(
        {
            USER: ["u1", "u2", "u2"],
            ITEM: ["a", "a", "b"],
            "engagement": [6.0, 6.0, 0.2],  # u2 only skipped b: b has no positive listener
            "completed": [True, True, False],
            "date": [day, day, day],
        }
    )
    published = pd.Series(
        pd.to_datetime(["2026-03-01", "2026-03-02", "2026-03-03"], utc=True).to_numpy(), index=["a", "b", "c"]
    )
    inputs = fusion.FusionInputs(
        day=day,
        als=pd.DataFrame({USER: [], ITEM: [], "score": []}),
        daily=daily,
        vectors=pd.DataFrame({ITEM: [], "vector": []}),
        published=published,
        history_days=7,
        min_engagement=1.0,
        popularity_half_life_days=7.0,
        content_candidates=5,
    )
    prepared = fusion.prepare_day(inputs)
    assert prepared.popular[ITEM].tolist() == ["a", "c", "b"]  # popular, then the newest unliked first
    recs = fusion.recommend(prepared, fusion.AlphaCurve(0.7, 0.2, 3), top_n=5)
    assert recs[recs[USER] == "u1"][ITEM].tolist() == ["c", "b"]  # a is completed
    assert recs[recs[USER] == "u2"][ITEM].tolist() == ["c"]  # a completed, b touched in the window
    assert set(recs["reason"]) == {"popular"}


def test_validation_sample_is_bounded_stable_and_whole_when_small():
    users = [f"u{n:05d}" for n in range(5000)]
    sample = metrics.validation_sample(users, 300)
    assert len(sample) == 300 and sample <= set(users)
    assert metrics.validation_sample(reversed(users), 300) == sample  # the ids decide, not their order
    assert metrics.validation_sample(users + users[:10], 300) == sample  # repeats count once
    assert sample & set(users[:2500]) and sample & set(users[2500:])  # spread over the ids, not a prefix
    assert metrics.validation_sample(users[:200], 300) == set(users[:200])
    assert metrics.validation_sample(users, 0) == set(users)


def test_preparing_a_sample_of_users_gives_exactly_their_rows_of_the_whole_day():
    """The α validation prepares only the sampled listeners: their candidates, scores and exclusions are those of
    the whole day's preparation, and the popular list still counts every listener."""
    whole = prepared_day()
    sample = {"u1", "u3"}
    part = fusion.prepare_for_users(day_inputs(), sample)

    def rows(frame):
        mine = frame[frame["user_id"].isin(sample)]
        return mine.sort_values(list(mine.columns)).reset_index(drop=True)

    pd.testing.assert_frame_equal(rows(part.normalised), rows(whole.normalised))
    pd.testing.assert_frame_equal(rows(part.excluded), rows(whole.excluded))
    pd.testing.assert_frame_equal(part.popular, whole.popular)
    assert part.users == [u for u in whole.users if u in sample]
    curve = fusion.AlphaCurve(0.5, 0.2, 3)
    pd.testing.assert_frame_equal(
        rows(fusion.recommend(part, curve, 3)), rows(fusion.recommend(whole, curve, 3)), check_dtype=False
    )


def _fill_one_user_at_a_time(recommendations, users, popular, excluded, top_n):
    """The definition of the popular fill, one user at a time (the array version must equal it)."""
    counts = recommendations.groupby("user_id").size().to_dict() if len(recommendations) else {}
    score = dict(zip(popular["episode_id"], popular["popularity"]))
    top = max(score.values(), default=1.0) or 1.0
    fills = []
    for user in users:
        have = counts.get(user, 0)
        skip = set(recommendations[recommendations["user_id"] == user]["episode_id"]) | set(
            excluded[excluded["user_id"] == user]["episode_id"]
        )
        for eid in popular["episode_id"]:
            if have >= top_n:
                break
            if eid not in skip:
                have += 1
                fills.append((user, eid, have, score[eid] / top - 1.0))
    frame = pd.DataFrame(fills, columns=["user_id", "episode_id", "rank", "final_score"])
    return (
        pd.concat([recommendations[["user_id", "episode_id", "rank", "final_score"]], frame], ignore_index=True)
        .sort_values(["user_id", "rank"], kind="mergesort")
        .reset_index(drop=True)
    )


@pytest.mark.parametrize("seed", range(8))
def test_popular_fill_in_arrays_equals_the_one_user_at_a_time_definition(seed, monkeypatch):
    from podrec_assets.core import popularity

    monkeypatch.setattr(popularity, "FILL_BLOCK_USERS", 7)  # several blocks even on small data
    rng = np.random.default_rng(seed)
    items = [f"e{n:02d}" for n in range(int(rng.integers(1, 30)))]
    users = [f"u{n:03d}" for n in range(int(rng.integers(1, 40)))]
    top_n = int(rng.integers(1, 8))
    popular = pd.DataFrame({"episode_id": items, "popularity": np.sort(rng.random(len(items)))[::-1]})
    fused = [
        (u, e, r + 1, 1.0 - r / 10)
        for u in users
        if rng.random() < 0.5
        for r, e in enumerate(rng.choice(items, size=min(len(items), int(rng.integers(0, top_n + 2))), replace=False))
    ]
    recommendations = pd.DataFrame(fused, columns=["user_id", "episode_id", "rank", "final_score"])
    excluded = pd.DataFrame(
        [(u, e) for u in users for e in items if rng.random() < 0.3] + [("u999", "e00")],  # a user without a list
        columns=["user_id", "episode_id"],
    )
    got = popularity.fill_with_popular(recommendations, users, popular, excluded, top_n)
    expected = _fill_one_user_at_a_time(recommendations, users, popular, excluded, top_n)
    pd.testing.assert_frame_equal(
        got[["user_id", "episode_id", "rank", "final_score"]].reset_index(drop=True),
        expected,
        check_dtype=False,
    )
    assert (got[got["reason"] == "popular"]["final_score"] <= 0).all()  # fills rank below every fused score


def _diversity_one_user_at_a_time(recommended, index, k):
    top = evaluation.top_k(recommended, k)
    values = []
    for _, items in top.groupby("user_id")["episode_id"]:
        known = [e for e in items if e in index.position]
        if len(known) < 2:
            continue
        vecs = index.vectors_of(known)
        i, j = np.triu_indices(len(known), k=1)
        values.append(float(np.mean(1.0 - (vecs @ vecs.T)[i, j])))
    return float(np.mean(values)) if values else 0.0


def _taste_match_one_row_at_a_time(recommended, tastes, categories, k):
    top = evaluation.top_k(recommended, k)
    weight = {(u, t): w for u, t, w in zip(tastes["user_id"], tastes["topic"], tastes["weight"])}
    best = tastes.groupby("user_id")["weight"].max().to_dict()
    per_user: dict = {}
    for user, eid in zip(top["user_id"], top["episode_id"]):
        if best.get(user, 0) <= 0:
            continue
        topics = categories.get(eid)
        topics = [] if topics is None else list(topics)
        w = max((weight.get((user, t), 0.0) for t in topics), default=0.0)
        per_user.setdefault(user, []).append(w / best[user])
    if not per_user:
        return 0.0, 0
    return float(np.mean([np.mean(v) for v in per_user.values()])), len(per_user)


@pytest.mark.parametrize("seed", range(6))
def test_list_metrics_in_arrays_equal_their_one_user_at_a_time_definitions(seed, monkeypatch):
    monkeypatch.setattr(evaluation, "DIVERSITY_BLOCK_USERS", 7)  # several blocks of users even on small data
    rng = np.random.default_rng(seed)
    items = [f"e{n:02d}" for n in range(25)]
    embedded = items[: int(rng.integers(0, 25))]  # some recommended episodes have no vector
    matrix = rng.normal(size=(len(embedded), 4))
    matrix[: min(1, len(embedded))] = 0.0  # and a vector of zeros stays zero (not unit length)
    index = ContentIndex(embedded, matrix)
    users = [f"u{n:02d}" for n in range(30)]
    rows = [
        (u, e, r + 1)
        for u in users
        for r, e in enumerate(rng.choice(items, size=int(rng.integers(0, 8)), replace=False))
    ]
    recommended = pd.DataFrame(rows, columns=["user_id", "episode_id", "rank"])
    topics = ["news", "sport", "tech", "music"]
    categories = pd.Series(
        {e: list(rng.choice(topics, size=int(rng.integers(0, 3)), replace=False)) for e in items[:20]}
    )
    tastes = pd.DataFrame(
        [(u, t, float(rng.choice([0.4, 0.6, 1.0]))) for u in users[:25] for t in topics if rng.random() < 0.4],
        columns=["user_id", "topic", "weight"],
    )
    for k in (3, 5):
        assert evaluation.intra_list_diversity(recommended, index, k) == pytest.approx(
            _diversity_one_user_at_a_time(recommended, index, k), abs=1e-6
        )
        got = evaluation.taste_match(recommended, tastes, categories, k)
        expected = _taste_match_one_row_at_a_time(recommended, tastes, categories, k)
        assert got[1] == expected[1] and got[0] == pytest.approx(expected[0], abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_the_alpha_grid_in_arrays_equals_fusing_each_curve(seed):
    """ndcg_by_curve (the α validation's fast path) against its definition: recommend with each curve, then
    nDCG per user. Tied content vectors and α = 1 (every non-ALS candidate scores 0) exercise the tie-break;
    short lists exercise the popular fill, a user without candidates the cold start."""
    rng = np.random.default_rng(seed)
    history, als, index, excluded = _random_day(seed, duplicate_vectors=True, users=120, episodes=60)
    candidates = user_content_candidates(history, als, index, excluded, 4 + seed * 3)
    ids = sorted(set(index.ids) | set(als[ITEM]))
    ages = pd.Series(rng.integers(0, 6, len(ids)), index=ids)
    ages = ages.drop(ids[:3])  # unknown ages count as old
    users = sorted(set(als[USER]) | set(history[USER]) | {"u_cold"})
    popular = pd.DataFrame({ITEM: rng.permutation(ids), "popularity": 1.0})
    prepared = fusion.PreparedDay(
        DAY, fusion.normalise_candidates(candidates), ages, users, popular, excluded, history, index
    )
    picked = candidates.sample(frac=0.2, random_state=seed)[[USER, ITEM]]
    anything = pd.DataFrame({USER: rng.choice(users, 150), ITEM: rng.choice(ids, 150)})
    relevant = pd.concat([picked, anything], ignore_index=True)
    curves = [fusion.AlphaCurve(a, an, r) for a in (0.0, 0.4, 1.0) for an in (0.0, 0.5) for r in (0, 1, 3)]
    for top_n, k in ((5, 5), (8, 3), (3, 6)):
        fast = evaluation.ndcg_by_curve(prepared, relevant, curves, top_n, k)
        for curve in curves:
            slow = ndcg_per_user(fusion.recommend(prepared, curve, top_n), relevant, k)
            pd.testing.assert_series_equal(fast[curve].sort_index(), slow.sort_index(), check_names=False)
        assert len(fast[curves[0]]) > 50 and fast[curves[0]].max() > 0


def test_a_day_fused_in_blocks_of_listeners_equals_the_whole_day(monkeypatch):
    """recommend_day bounds memory with blocks of listeners; each list depends only on the listener's own rows,
    the popular list and the catalog, so the blocks give exactly the whole day's rows."""
    curve = fusion.AlphaCurve(0.6, 0.2, 3)
    whole = fusion.recommend(prepared_day(), curve, 3)
    monkeypatch.setattr(fusion, "FUSION_BLOCK_USERS", 1)
    blocked = fusion.recommend_day(day_inputs(), curve, 3)
    key = ["user_id", "rank"]
    assert whole["user_id"].nunique() > 2
    pd.testing.assert_frame_equal(
        blocked.sort_values(key).reset_index(drop=True),
        whole.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )


def test_descending_bits_order_scores_best_first_exactly():
    from podrec_assets.core.content_candidates import _descending_bits

    scores = np.array([0.5, -0.25, 1.0, -1.0, 0.0, 0.5000001, -0.2500001, 1e-30, -1e-30], dtype=np.float32)
    bits = _descending_bits(scores)
    assert (bits >= 0).all() and (bits < 2**32).all()
    assert np.argsort(bits, kind="stable").tolist() == np.argsort(-scores, kind="stable").tolist()


def test_day_frames_cut_any_day_from_rows_in_any_order():
    """Rows come from the lake in no promised order and with dates as objects or datetime64: each cut equals the
    plain filter on the date, and the α choice keeps the settings when no earlier day has ALS lists to judge."""
    from datetime import timedelta

    from podrec_assets.core.day_frames import DayFrames, FusionSettings, choose_curve

    rng = np.random.default_rng(5)
    days = [date(2026, 4, 1) + timedelta(days=int(d)) for d in rng.integers(0, 6, 400)]
    daily = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, 40, 400)],
            "episode_id": [f"e{i}" for i in rng.integers(0, 9, 400)],
            "engagement": rng.random(400) * 4,
            "completed": rng.random(400) < 0.3,
            "date": days,
        }
    )
    vectors = pd.DataFrame(
        {
            "episode_id": ["e1", "e2", "e1", "e3"],
            "vector": [unit(0), unit(10), unit(20), unit(30)],
            "model": ["m1", "m1", "m2", "m2"],
            "date": np.array(["2026-04-03", "2026-04-01", "2026-04-05", "2026-04-04"], dtype="datetime64[ns]"),
        }
    )
    episodes = pd.DataFrame(
        {
            "episode_id": ["e1", "e2", "e1"],
            "published_at": pd.to_datetime(["2026-04-01", "2026-04-01", "2026-04-02"], utc=True),
            "episode_title": ["old", "two", "new"],
            "date": [date(2026, 4, 2), date(2026, 4, 1), date(2026, 4, 1)],
        }
    )
    frames = DayFrames(daily, vectors, episodes, FusionSettings(5, 3, 2.0, 3.0, 4, 0))
    for day in sorted(set(days)):
        on = daily[[d == day for d in days]]
        assert sorted(frames.daily_on(day)["engagement"]) == sorted(on["engagement"])
        to = daily[[d <= day for d in days]]
        assert sorted(frames.inputs(day, with_als=False).daily["engagement"]) == sorted(to["engagement"])
    between = frames.daily_between(date(2026, 4, 2), date(2026, 4, 4))
    assert len(between) == sum(date(2026, 4, 2) <= d <= date(2026, 4, 4) for d in days)
    assert list(frames.vectors_of(date(2026, 4, 4))["episode_id"]) == ["e3"]  # the latest day's model only
    assert sorted(frames.vectors_of(date(2026, 4, 3))["episode_id"]) == ["e1", "e2"]
    assert frames.episodes_through(date(2026, 4, 2)).set_index("episode_id")["episode_title"].to_dict() == {
        "e1": "old",
        "e2": "two",
    }
    default = fusion.AlphaCurve(0.5, 0.2, 3)
    choice = choose_curve(frames, date(2026, 4, 6), default, validation_days=3, validation_users=0, k=5)
    assert choice.curve == default and choice.why.startswith("kept the settings: no earlier day")


def test_position_in_runs_is_the_count_of_earlier_equal_neighbours():
    """The rank-within-listener that fusion, ALS, content candidates and the popular fill share: each element's
    position in its run of equal consecutive keys, a run starting again wherever the key changes (even to a key seen
    before), equal to pandas' cumulative count over run ids."""
    rng = np.random.default_rng(7)
    for keys in (rng.integers(0, 5, 400), np.sort(rng.integers(0, 50, 400)).astype(np.uint32), np.array([3, 3, 1, 3])):
        runs = np.cumsum(np.r_[True, keys[1:] != keys[:-1]])
        expected = pd.Series(runs).groupby(runs).cumcount().to_numpy()
        assert np.array_equal(position_in_runs(keys), expected)
    assert position_in_runs(np.array([3, 3, 1, 3])).tolist() == [0, 1, 0, 0]
    assert position_in_runs(np.zeros(0, dtype=np.int32)).tolist() == []
