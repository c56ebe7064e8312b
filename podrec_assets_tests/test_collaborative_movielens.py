"""MovieLens-100k protocol: the data from the recbole wheel, the item-stratified split, and the benchmark figure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from podrec_assets.cli import main
from podrec_assets.core import movielens


@pytest.fixture(scope="module")
def ratings():
    return movielens.load_ml100k()


def test_full_ml100k_is_read_from_the_installed_wheel(ratings):
    assert "recbole" in str(movielens.ratings_path())
    assert len(ratings) == 100_000
    assert ratings["user_id"].nunique() == 943 and ratings["episode_id"].nunique() == 1682
    assert set(ratings["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_split_keeps_75_percent_of_each_item_and_is_seeded(ratings):
    train, test = movielens.stratified_split(ratings, 0.75, seed=42)
    assert len(train) + len(test) == len(ratings)
    assert not set(zip(train.user_id, train.episode_id)) & set(zip(test.user_id, test.episode_id))
    per_item = ratings.groupby("episode_id").size()
    in_train = train.groupby("episode_id").size().reindex(per_item.index, fill_value=0)
    assert (in_train == np.round(0.75 * per_item)).all()
    again, _ = movielens.stratified_split(ratings, 0.75, seed=42)
    assert again.equals(train)
    other, _ = movielens.stratified_split(ratings, 0.75, seed=7)
    assert not other.equals(train)
    by_user, _ = movielens.stratified_split(ratings, 0.75, seed=42, stratify_by="user")
    per_user = ratings.groupby("user_id").size()
    assert (by_user.groupby("user_id").size().reindex(per_user.index) == np.round(0.75 * per_user)).all()


def test_bench_command_reaches_the_target_with_the_validation_chosen_params(capsys):
    # the parameters `podrec bench movielens` picks on its validation split (the grid takes minutes; see report)
    code = main(
        ["bench", "movielens", "--no-tune", "--factors", "32", "--regularization", "20", "--alpha", "0.5", "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"backend", "seed", "map", "ndcg@10", "precision@10", "recall@10", "fit_seconds", "params"}
    assert out["backend"] == "implicit" and out["seed"] == 42
    assert out["ndcg@10"] >= 0.45
    assert 0 < out["map"] < out["precision@10"] < 1


def test_choose_params_picks_the_best_validation_trial(ratings):
    train, _ = movielens.stratified_split(ratings, 0.75, seed=42)
    grid = {"factors": [16], "regularization": [0.01, 20.0], "alpha": [1.0]}
    best, trials = movielens.choose_params(train, movielens.AlsParams(iterations=5), "implicit", grid=grid)
    assert len(trials) == 2
    assert best.regularization == max(trials, key=lambda t: t["ndcg@10"])["regularization"]
