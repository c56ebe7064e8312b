"""core.als with the implicit backend: taste neighbours, seen filtering, the numpy reference, versions."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from podrec_assets.core import als, als_result


def taste_groups(
    seed: int = 0, users_per_group: int = 30, items_per_group: int = 10, seen_per_user: int = 6
) -> pd.DataFrame:
    """Two disjoint tastes: group a listens only to a-episodes, group b only to b-episodes."""
    rng = np.random.default_rng(seed)
    rows = []
    for group in ("a", "b"):
        items = [f"{group}{i}" for i in range(items_per_group)]
        for u in range(users_per_group):
            for item in rng.choice(items, size=seen_per_user, replace=False):
                rows.append((f"user-{group}{u}", item, float(rng.integers(1, 6))))
    return pd.DataFrame(rows, columns=["user_id", "episode_id", "engagement"])


PARAMS = als.AlsParams(factors=8, regularization=5.0, iterations=15, alpha=5.0, seed=3, threads=2)


def test_recommends_unseen_episodes_of_the_users_own_taste():
    frame = taste_groups()
    result = als.fit_recommend(als.Interactions.from_frame(frame), PARAMS, n=4)
    seen = frame.groupby("user_id")["episode_id"].apply(set)
    top = result.top_n
    assert set(top["user_id"]) == set(frame["user_id"])
    for user, recs in top.groupby("user_id"):
        group = user.split("-")[1][0]
        # each user has exactly 4 unseen episodes of their own taste: those are the top 4
        assert all(e.startswith(group) for e in recs["episode_id"]), (user, list(recs["episode_id"]))
        assert not set(recs["episode_id"]) & seen[user]
        assert list(recs["rank"]) == [1, 2, 3, 4]
        assert recs["score"].is_monotonic_decreasing


def test_seen_items_never_recommended_even_without_positive_engagement():
    frame = taste_groups()
    # user-a0 skipped (engagement 0) and disliked (-2) two a-episodes: seen, so never recommended
    unseen = sorted(set(f"a{i}" for i in range(10)) - set(frame.loc[frame.user_id == "user-a0", "episode_id"]))
    extra = pd.DataFrame([("user-a0", unseen[0], 0.0), ("user-a0", unseen[1], -2.0)], columns=frame.columns)
    frame = pd.concat([frame, extra], ignore_index=True)
    data = als.Interactions.from_frame(frame)
    result = als.fit_recommend(data, PARAMS, n=20)
    seen_pairs = set(zip(frame["user_id"], frame["episode_id"]))
    assert not any(pair in seen_pairs for pair in zip(result.top_n["user_id"], result.top_n["episode_id"]))
    # and they are not positives: the engagement matrix has only the positive pairs
    assert data.nnz == int((frame.groupby(["user_id", "episode_id"])["engagement"].sum() > 0).sum())


def test_implicit_top_n_matches_the_numpy_reference_on_its_own_factors():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, 80, 1500)],
            "episode_id": [f"e{i}" for i in rng.zipf(1.6, 1500) % 120],
            "engagement": rng.uniform(0.2, 6, 1500),
        }
    )
    data = als.Interactions.from_frame(frame)
    result = als.fit_recommend(data, PARAMS, n=10)
    items, scores = als_result.recommend_reference(result.user_factors, result.item_factors, data.seen, 10)
    reference = als_result.top_n_frame(data.user_ids, data.item_ids, np.arange(data.n_users), items, scores)
    merged = result.top_n.merge(reference, on=["user_id", "rank"], suffixes=("", "_ref"))
    assert len(merged) == len(result.top_n) == len(reference)
    np.testing.assert_allclose(merged["score"], merged["score_ref"], rtol=1e-4, atol=1e-5)
    # same item at each rank except where two scores tie to float precision
    differ = merged[merged["episode_id"] != merged["episode_id_ref"]]
    assert len(differ) <= 0.01 * len(merged)


def test_confidence_and_aggregation_over_days():
    assert als.confidence([0.0, np.e - 1, -3.0], alpha=10).tolist() == pytest.approx([1.0, 11.0, 1.0])
    frame = pd.DataFrame({"user_id": ["u", "u", "v"], "episode_id": ["e", "e", "e"], "engagement": [1.0, 2.0, 0.5]})
    data = als.Interactions.from_frame(frame)  # the same pair on two days is summed
    assert data.engagement[list(data.user_ids).index("u"), 0] == pytest.approx(3.0)
    conf = data.confidence_matrix(alpha=2.0)
    assert conf[list(data.user_ids).index("u"), 0] == pytest.approx(1 + 2 * np.log1p(3.0))


def test_empty_or_all_negative_input_is_a_clear_error():
    with pytest.raises(ValueError, match="no interactions"):
        als.Interactions.from_frame(pd.DataFrame(columns=["user_id", "episode_id", "engagement"]))
    with pytest.raises(ValueError, match="no positive engagement"):
        als.Interactions.from_frame(pd.DataFrame({"user_id": ["u"], "episode_id": ["e"], "engagement": [0.0]}))
    with pytest.raises(ValueError, match="unknown ALS backend"):
        als.fit_recommend(als.Interactions.from_frame(taste_groups()), PARAMS, 5, backend="mahout")


def test_same_input_same_model_and_version():
    frame = taste_groups()
    one = als.fit_recommend(als.Interactions.from_frame(frame), PARAMS, 5, data_version="v1")
    two = als.fit_recommend(
        als.Interactions.from_frame(frame.sample(frac=1, random_state=1)), PARAMS, 5, data_version="v1"
    )
    pd.testing.assert_frame_equal(one.top_n, two.top_n)
    assert one.model_version == two.model_version
    assert one.model_version.startswith("als-implicit-")
    assert (
        als.fit_recommend(als.Interactions.from_frame(frame), PARAMS, 5, data_version="v2").model_version
        != one.model_version
    )
    other = als.AlsParams(**{**PARAMS.as_dict(), "factors": 9})
    assert als.model_version("implicit", other, "v1") != one.model_version
    # threads do not change the model, so not its version
    assert als.model_version("implicit", als.AlsParams(**{**PARAMS.as_dict(), "threads": 1}), "v1") == one.model_version


def test_last_day_holdout_keeps_only_new_positive_pairs():
    frame = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "u", "v"],
            "episode_id": ["a", "b", "a", "c", "d"],
            "engagement": [1.0, 1.0, 2.0, 0.0, 3.0],
            "date": [date(2026, 1, 1), date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 2), date(2026, 1, 2)],
        }
    )
    train, relevant = als.holdout_last_day(frame, date(2026, 1, 2))
    assert len(train) == 2
    # a was seen before, c has no positive engagement: only v's d is relevant
    assert list(zip(relevant["user_id"], relevant["episode_id"])) == [("v", "d")]


def test_validation_scores_a_learnable_last_day():
    frame = taste_groups(users_per_group=40, seen_per_user=7)
    rng = np.random.default_rng(1)
    frame["date"] = [date(2026, 1, 1) if rng.random() < 0.8 else date(2026, 1, 2) for _ in range(len(frame))]
    got = als.validate(frame, date(2026, 1, 2), PARAMS, k=10)
    assert got["method"] == "last_day_holdout"
    assert got["users"] > 20
    assert got["ndcg"] > 0.5  # tastes are disjoint: held-out episodes rank high among the 10 of the group
    single_day = frame.assign(date=date(2026, 1, 2))
    fallback = als.validate(single_day, date(2026, 1, 2), PARAMS, k=10)
    assert fallback["method"] == "random_20pct_holdout" and fallback["ndcg"] > 0.5
    assert fallback["paired_users"] == 0 and np.isnan(fallback["change"])  # no comparable previous model


def test_validation_on_a_sample_scores_exactly_those_users_as_the_full_run_does():
    """max_users bounds the gate's scoring: the same model lists only a stable sample of the judged users, and
    each of them gets the list the full scoring gives them."""
    frame = taste_groups(users_per_group=40, seen_per_user=7)
    rng = np.random.default_rng(1)
    frame["date"] = [date(2026, 1, 1) if rng.random() < 0.8 else date(2026, 1, 2) for _ in range(len(frame))]
    full = als.validate(frame, date(2026, 1, 2), PARAMS, k=10)
    sampled = als.validate(frame, date(2026, 1, 2), PARAMS, k=10, max_users=15)
    assert full["judged_users"] > 15 and sampled["judged_users"] == 15 and sampled["users"] <= 15
    assert als.validate(frame, date(2026, 1, 2), PARAMS, k=10, max_users=15)["ndcg"] == sampled["ndcg"]
    train, _ = als.holdout_last_day(frame, date(2026, 1, 2))
    data = als.Interactions.from_frame(train)
    everyone = als.fit_recommend(data, PARAMS, 10).top_n
    some = set(data.user_ids[::7])
    few = als.fit_recommend(data, PARAMS, 10, users=some).top_n
    assert set(few["user_id"]) == some
    pd.testing.assert_frame_equal(
        few.reset_index(drop=True), everyone[everyone["user_id"].isin(some)].reset_index(drop=True)
    )


def test_validation_pairs_the_previous_days_lists_on_the_same_held_out_day():
    frame = taste_groups(users_per_group=40, seen_per_user=7)
    rng = np.random.default_rng(1)
    frame["date"] = [date(2026, 1, 1) if rng.random() < 0.8 else date(2026, 1, 2) for _ in range(len(frame))]
    train, _ = als.holdout_last_day(frame, date(2026, 1, 2))
    good = als.fit_recommend(als.Interactions.from_frame(train), PARAMS, 10).top_n
    # a previous model as good as this one: no change; one that lists every user the same episodes: a clear drop
    same = als.validate(frame, date(2026, 1, 2), PARAMS, k=10, previous_top_n=good)
    assert same["paired_users"] > 20 and abs(same["change"]) < 1e-9 and same["paired_k"] == 10
    assert same["previous_ndcg"] == pytest.approx(same["paired_ndcg"]) == pytest.approx(same["ndcg"])
    items = sorted(frame["episode_id"].unique())[:10]
    users = good["user_id"].unique()
    constant = pd.DataFrame(
        [(u, e, r + 1) for u in users for r, e in enumerate(items)], columns=["user_id", "episode_id", "rank"]
    )
    better = als.validate(frame, date(2026, 1, 2), PARAMS, k=10, previous_top_n=constant)
    assert better["change"] > 4 * better["change_stderr"] > 0
    # served lists of 5 are compared at 5, not against this model's 10
    short = als.validate(frame, date(2026, 1, 2), PARAMS, k=10, previous_top_n=good[good["rank"] <= 5])
    assert short["paired_k"] == 5 and abs(short["change"]) < 1e-9


def test_factor_rank_is_capped_by_the_catalog():
    assert als.capped_factors(64, 56) == 7
    assert als.capped_factors(64, 10_000) == 64
    assert als.capped_factors(64, 5) == 2


def test_short_lists_never_repeat_or_recommend_seen_episodes():
    """Users who have seen most of a tiny catalog get fewer than N episodes, each unseen and listed once."""
    rng = np.random.default_rng(0)
    rows = [
        {
            "user_id": f"u{u}",
            "episode_id": f"e{e}",
            "engagement": float(rng.choice([0.2, 1.0, 3.0, 0.0])),
            "date": date(2026, 3, 1),
        }
        for u in range(30)
        for e in rng.choice(6, size=rng.integers(1, 6), replace=False)
    ]
    frame = pd.DataFrame(rows)
    data = als.Interactions.from_frame(frame)
    result = als.fit_recommend(data, als.AlsParams(factors=2, iterations=5), 10, backend="implicit")
    top = result.top_n
    assert len(top) > 0
    assert not top.duplicated(["user_id", "episode_id"]).any()
    seen = set(zip(frame.user_id, frame.episode_id))
    assert not any((u, e) in seen for u, e in zip(top.user_id, top.episode_id))
    assert (top.groupby("user_id")["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1)))).all()


def _noisy_window(seed: int) -> pd.DataFrame:
    """Rows of a window with repeated pairs, zero, negative and missing engagement, and missing ids."""
    rng = np.random.default_rng(seed)
    rows = 3000
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, 300, rows)],
            "episode_id": [f"e{i}" for i in rng.integers(0, 80, rows)],
            "engagement": rng.choice([-1.0, 0.0, 0.5, 1.0, 3.0, np.nan], rows),
            "date": [date(2026, 5, 1 + int(d)) for d in rng.integers(0, 4, rows)],
        }
    )
    frame.loc[rng.choice(rows, 20, replace=False), "user_id"] = None
    frame.loc[rng.choice(rows, 20, replace=False), "episode_id"] = None
    return frame


@pytest.mark.parametrize("seed", range(3))
def test_interactions_are_the_summed_pairs_of_the_window(seed):
    """The integer-coded indexing against a plain grouping of the ids: summed positive pairs, sorted ids of users and
    episodes with a positive pair, and every indexed pair (positive or not) seen; missing ids are no interaction."""
    frame = _noisy_window(seed)
    data = als.Interactions.from_frame(frame)
    summed = frame.groupby(["user_id", "episode_id"])["engagement"].sum().reset_index()
    positive = summed[summed["engagement"] > 0]
    assert list(data.user_ids) == sorted(positive["user_id"].unique())
    assert list(data.item_ids) == sorted(positive["episode_id"].unique())
    engagement = data.engagement.tocoo()
    got = {(data.user_ids[u], data.item_ids[i]): v for u, i, v in zip(engagement.row, engagement.col, engagement.data)}
    assert got == pytest.approx(dict(zip(zip(positive["user_id"], positive["episode_id"]), positive["engagement"])))
    indexed = summed[summed["user_id"].isin(data.user_ids) & summed["episode_id"].isin(data.item_ids)]
    seen = data.seen.tocoo()
    assert set(zip(data.user_ids[seen.row], data.item_ids[seen.col])) == set(
        zip(indexed["user_id"], indexed["episode_id"])
    )
    assert set(seen.data) == {1.0} and len(indexed) > len(positive) > 100


@pytest.mark.parametrize("seed", range(3))
def test_last_day_holdout_is_the_new_positive_pairs_in_first_seen_order(seed):
    frame = _noisy_window(seed)
    last_day = date(2026, 5, 4)
    train, relevant = als.holdout_last_day(frame, last_day)
    assert len(train) == int((frame["date"] < last_day).sum())
    last = frame[(frame["date"] == last_day) & frame["user_id"].notna() & frame["episode_id"].notna()]
    sums = last.groupby(["user_id", "episode_id"], sort=False)["engagement"].sum().reset_index()
    before = set(zip(train["user_id"], train["episode_id"]))
    expected = [
        (u, e)
        for u, e, v in zip(sums["user_id"], sums["episode_id"], sums["engagement"])
        if v > 0 and (u, e) not in before
    ]
    assert list(zip(relevant["user_id"], relevant["episode_id"])) == expected and len(expected) > 20
