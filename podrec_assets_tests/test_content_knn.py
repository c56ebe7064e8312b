"""Blocked exact KNN against the full-matrix numpy reference."""

import numpy as np
import pytest

from podrec_assets.core.knn import (
    normalize_rows,
    similarity_rows,
    top_k_cosine,
    top_k_cosine_reference,
)


def random_unit(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    return normalize_rows(np.random.default_rng(seed).normal(size=(n, dim)))


@pytest.mark.parametrize("catalog_block,query_block", [(1, 1), (7, 3), (64, 16), (500, 500), (4096, 1024)])
@pytest.mark.parametrize("k", [1, 5, 12])
def test_blocked_equals_reference(catalog_block, query_block, k):
    catalog = random_unit(300, seed=k)
    queries_at = np.arange(250, 300)  # the newest day's episodes are queries and catalog rows
    fast = top_k_cosine(
        catalog[queries_at], catalog, k, self_index=queries_at, catalog_block=catalog_block, query_block=query_block
    )
    slow = top_k_cosine_reference(catalog[queries_at], catalog, k, self_index=queries_at)
    np.testing.assert_array_equal(fast.indices, slow.indices)
    np.testing.assert_allclose(fast.scores, slow.scores, atol=1e-6)
    assert (np.diff(fast.scores, axis=1) <= 0).all()  # best first


def test_self_is_never_a_neighbour_even_as_an_exact_duplicate():
    catalog = random_unit(50, seed=3)
    catalog[10] = catalog[20]  # a duplicate elsewhere is a legitimate neighbour with cosine 1
    queries_at = np.arange(50)
    result = top_k_cosine(catalog, catalog, 5, self_index=queries_at, catalog_block=8)
    assert not (result.indices == queries_at[:, None]).any()
    assert result.indices[10, 0] == 20 and result.indices[20, 0] == 10
    assert result.scores[10, 0] == pytest.approx(1.0, abs=1e-6)


def test_history_only_and_within_day_neighbours():
    # day 1: rows 0-3, day 2: rows 4-7. Day 1's KNN sees only rows 0-3; day 2's sees all 8.
    rng = np.random.default_rng(5)
    base = normalize_rows(rng.normal(size=(2, 16)))
    noise = lambda: rng.normal(scale=0.05, size=16)  # noqa: E731
    rows = [
        base[0] + noise(),
        base[1] + noise(),
        base[0] + noise(),
        base[1] + noise(),
        base[0] + noise(),
        None,
        base[1] + noise(),
        base[1] + noise(),
    ]
    rows[5] = rows[4] + rng.normal(scale=0.001, size=16)  # a near copy published the same day
    catalog = normalize_rows(np.array(rows))
    day1 = top_k_cosine(catalog[:4], catalog[:4], 3, self_index=np.arange(4))
    assert day1.indices.max() <= 3  # nothing from the future
    assert day1.indices[0, 0] == 2 and day1.indices[1, 0] == 3  # same-topic neighbour within day 1
    day2 = top_k_cosine(catalog[4:], catalog, 7, self_index=np.arange(4, 8))
    assert day2.indices[0, 0] == 5  # within-day neighbour allowed (4 and 5 share a topic)
    assert set(day2.indices[0, :3]) == {0, 2, 5}  # and history neighbours of the same topic follow
    assert (day2.indices != np.arange(4, 8)[:, None]).all()


def test_fewer_candidates_than_k_pads_and_rows_stop():
    catalog = random_unit(3)
    result = top_k_cosine(catalog, catalog, 10, self_index=np.arange(3))
    assert (result.indices[:, 2:] == -1).all() and np.isinf(result.scores[:, 2:]).all()
    rows = similarity_rows(["a", "b", "c"], ["a", "b", "c"], result, "m")
    assert len(rows) == 6
    first = [r for r in rows if r["new_episode_id"] == "a"]
    assert [r["rank"] for r in first] == [1, 2]
    assert {r["historical_episode_id"] for r in first} == {"b", "c"}
    for r in rows:
        assert r["distance"] == pytest.approx(1 - r["cosine_similarity"])


def test_single_episode_has_no_neighbours_and_empty_inputs_work():
    one = random_unit(1)
    assert (top_k_cosine(one, one, 5, self_index=[0]).indices == -1).all()
    empty = top_k_cosine(np.zeros((0, 32), np.float32), random_unit(5), 3)
    assert empty.indices.shape == (0, 3)


def test_queries_outside_the_catalog_keep_every_candidate():
    catalog = random_unit(40, seed=9)
    queries = random_unit(6, seed=10)
    fast = top_k_cosine(queries, catalog, 4, catalog_block=6, query_block=4)
    slow = top_k_cosine_reference(queries, catalog, 4)
    np.testing.assert_array_equal(fast.indices, slow.indices)


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="equal widths"):
        top_k_cosine(random_unit(2, dim=4), random_unit(3, dim=5), 1)
    with pytest.raises(ValueError, match="k must be positive"):
        top_k_cosine(random_unit(2), random_unit(3), 0)
