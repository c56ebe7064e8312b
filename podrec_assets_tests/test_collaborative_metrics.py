"""Ranking metrics against hand-computed values and a deliberately naive loop-based reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from podrec_assets.core import metrics


def _recs(rows):
    return pd.DataFrame(rows, columns=["user_id", "episode_id", "rank"])


def _truth(rows):
    return pd.DataFrame(rows, columns=["user_id", "episode_id"])


RECOMMENDED = _recs(
    [
        ("u1", "a", 1),
        ("u1", "b", 2),
        ("u1", "c", 3),
        ("u1", "d", 4),
        ("u1", "e", 5),
        ("u2", "x", 1),
        ("u2", "y", 2),
        ("u3", "a", 1),  # no ground truth: not counted
    ]
)
RELEVANT = _truth(
    [
        ("u1", "a"),
        ("u1", "c"),
        ("u1", "x"),
        ("u2", "z"),
        ("u4", "a"),  # u4 never recommended
        ("u1", "a"),
    ]
)  # duplicate ignored


def test_hand_computed_k5():
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    ndcg_u1 = (1 + 1 / math.log2(4)) / idcg3
    got = metrics.ranking_metrics(RECOMMENDED, RELEVANT, 5)
    assert got["users"] == 2
    assert got["precision@5"] == pytest.approx((2 / 5 + 0) / 2)
    assert got["recall@5"] == pytest.approx((2 / 3 + 0) / 2)
    assert got["ndcg@5"] == pytest.approx(ndcg_u1 / 2)
    # per-user nDCG is (ndcg_u1, 0): sample std ndcg_u1/sqrt(2), standard error of the mean ndcg_u1/2
    assert got["ndcg@5_stderr"] == pytest.approx(ndcg_u1 / 2)
    assert got["map@5"] == pytest.approx(((1 + 2 / 3) / 3) / 2)
    assert metrics.map_spark(RECOMMENDED, RELEVANT, 5) == pytest.approx(((1 + 2 / 3) / 3) / 2)


def test_hand_computed_k2_map_normalisations_differ():
    # u1's top-2 = a (hit), b; |relevant| = 3 so map_at_k divides by min(3, 2) = 2 and Spark-style MAP by 3.
    assert metrics.map_at_k(RECOMMENDED, RELEVANT, 2) == pytest.approx((1 / 2) / 2)
    assert metrics.map_spark(RECOMMENDED, RELEVANT, 2) == pytest.approx((1 / 3) / 2)
    assert metrics.ndcg_at_k(RECOMMENDED, RELEVANT, 2) == pytest.approx((1 / (1 + 1 / math.log2(3))) / 2)
    assert metrics.precision_at_k(RECOMMENDED, RELEVANT, 2) == pytest.approx((1 / 2) / 2)
    assert metrics.recall_at_k(RECOMMENDED, RELEVANT, 2) == pytest.approx((1 / 3) / 2)


def test_perfect_ranking_scores_one_and_rank_order_not_row_order_counts():
    recs = _recs([("u", "b", 2), ("u", "a", 1), ("u", "z", 3)])  # rows shuffled; ranks decide
    truth = _truth([("u", "a"), ("u", "b")])
    got = metrics.ranking_metrics(recs, truth, 2)
    assert math.isnan(got.pop("ndcg@2_stderr"))  # one user: no spread to measure
    assert got == {"precision@2": 1.0, "recall@2": 1.0, "ndcg@2": 1.0, "map@2": 1.0, "users": 1}
    # the same hit at position 2 instead of 1 scores lower nDCG
    worse = metrics.ndcg_at_k(_recs([("u", "z", 1), ("u", "a", 2)]), _truth([("u", "a")]), 2)
    assert worse == pytest.approx(1 / math.log2(3))


def test_paired_change_uses_users_both_lists_and_the_truth_share():
    truth = _truth([("u1", "a"), ("u2", "b"), ("u3", "c")])
    new = _recs([("u1", "a", 1), ("u2", "x", 1), ("u2", "b", 2), ("u3", "c", 1)])
    old = _recs([("u1", "x", 1), ("u1", "a", 2), ("u2", "b", 1)])  # u3 has no old list: not paired
    got = metrics.paired_ndcg_change(new, old, truth, 10)
    changes = [1 - 1 / math.log2(3), 1 / math.log2(3) - 1]  # u1 gains what u2 loses
    assert got["users"] == 2
    assert got["new"] == pytest.approx((1 + 1 / math.log2(3)) / 2) and got["old"] == pytest.approx(got["new"])
    assert got["change"] == pytest.approx(0.0, abs=1e-12)
    assert got["change_stderr"] == pytest.approx(np.std(changes, ddof=1) / math.sqrt(2))


def test_no_common_users_gives_zeros():
    got = metrics.ranking_metrics(_recs([("u1", "a", 1)]), _truth([("u2", "a")]), 10)
    assert math.isnan(got.pop("ndcg@10_stderr"))
    assert got == {"precision@10": 0.0, "recall@10": 0.0, "ndcg@10": 0.0, "map@10": 0.0, "users": 0}


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="rank"):
        metrics.ranking_metrics(pd.DataFrame({"user_id": [], "episode_id": []}), _truth([]), 10)
    with pytest.raises(ValueError, match="k must be"):
        metrics.ranking_metrics(RECOMMENDED, RELEVANT, 0)


# --- naive reference: one user at a time, plain Python lists -----------------------------------------
def naive(recommended: pd.DataFrame, relevant: pd.DataFrame, k: int) -> dict[str, float]:
    truth: dict[str, set] = {}
    for u, i in zip(relevant["user_id"], relevant["episode_id"]):
        truth.setdefault(u, set()).add(i)
    lists: dict[str, list] = {}
    for u, i, _rank in sorted(
        zip(recommended["user_id"], recommended["episode_id"], recommended["rank"]), key=lambda t: (t[0], t[2])
    ):
        if i not in lists.setdefault(u, []):
            lists[u].append(i)
    users = [u for u in lists if u in truth]
    totals = dict(p=0.0, r=0.0, n=0.0, m=0.0, s=0.0)
    for u in users:
        top = lists[u][:k]
        rel = truth[u]
        hits = [1 if i in rel else 0 for i in top]
        totals["p"] += sum(hits) / k
        totals["r"] += sum(hits) / len(rel)
        dcg = sum(h / math.log2(pos + 2) for pos, h in enumerate(hits))
        idcg = sum(1 / math.log2(pos + 2) for pos in range(min(len(rel), k)))
        totals["n"] += dcg / idcg
        ap, seen = 0.0, 0
        for pos, h in enumerate(hits):
            if h:
                seen += 1
                ap += seen / (pos + 1)
        totals["m"] += ap / min(len(rel), k)
        totals["s"] += ap / len(rel)
    n = max(len(users), 1)
    return {
        f"precision@{k}": totals["p"] / n,
        f"recall@{k}": totals["r"] / n,
        f"ndcg@{k}": totals["n"] / n,
        f"map@{k}": totals["m"] / n,
        "map_spark": totals["s"] / n,
        "users": len(users),
    }


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_matches_naive_reference_on_random_data(seed, k):
    rng = np.random.default_rng(seed)
    items = [f"e{i}" for i in range(40)]
    rec_rows, truth_rows = [], []
    for u in range(60):
        user = f"u{u}"
        if rng.random() < 0.9:
            n = int(rng.integers(1, 15))
            chosen = rng.choice(items, size=n, replace=False)
            ranks = rng.permutation(np.arange(1, n + 1) * 3)  # gappy ranks in random row order
            rec_rows += [(user, e, int(r)) for e, r in zip(chosen, ranks)]
        if rng.random() < 0.85:
            m = int(rng.integers(1, 20))
            truth_rows += [(user, e) for e in rng.choice(items, size=m, replace=True)]
    recs, truth = _recs(rec_rows), _truth(truth_rows)
    want = naive(recs, truth, k)
    got = metrics.ranking_metrics(recs, truth, k)
    assert got["users"] == want["users"] > 0
    for key in (f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert metrics.precision_at_k(recs, truth, k) == pytest.approx(want[f"precision@{k}"])
    assert metrics.recall_at_k(recs, truth, k) == pytest.approx(want[f"recall@{k}"])
    assert metrics.ndcg_at_k(recs, truth, k) == pytest.approx(want[f"ndcg@{k}"])
    assert metrics.map_at_k(recs, truth, k) == pytest.approx(want[f"map@{k}"])
    assert metrics.map_spark(recs, truth, k) == pytest.approx(want["map_spark"])


def test_top_k_from_scores_ranks_by_score_then_id():
    scored = pd.DataFrame(
        {"user_id": ["u", "u", "u", "v"], "episode_id": ["b", "a", "c", "a"], "score": [0.5, 0.5, 0.9, 0.1]}
    )
    top = metrics.top_k_from_scores(scored, 2)
    assert list(zip(top["user_id"], top["episode_id"], top["rank"])) == [("u", "c", 1), ("u", "a", 2), ("v", "a", 1)]
