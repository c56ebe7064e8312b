"""Exact cosine k-nearest neighbours, computed in blocks so memory stays bounded as the catalog grows.

A full query x catalog score matrix is ``4·Q·N`` bytes (100k x 100k episodes: 40 GB). ``top_k_cosine``
scores one (query block x catalog block) tile at a time and keeps a running top-k per query, so the
working memory is ``O(query_block · (catalog_block + k))`` whatever the catalog size; the result is the
same exact top-k. ``top_k_cosine_reference`` is the obvious full-matrix version the tests compare with.

Both take unit vectors (see ``normalize_rows``); cosine = dot product. ``self_index[i]`` is the catalog
row of query ``i`` (-1 when the query is not in the catalog); that row is never its own neighbour.
Results are padded with index -1 / score -inf when a query has fewer than k candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Neighbours:
    indices: np.ndarray  # (queries, k) int64 catalog rows, best first; -1 = no neighbour
    scores: np.ndarray  # (queries, k) float32 cosine similarities; -inf where indices == -1


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit length (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


def _check(queries: np.ndarray, catalog: np.ndarray, k: int, self_index) -> np.ndarray:
    if queries.ndim != 2 or catalog.ndim != 2 or queries.shape[1] != catalog.shape[1]:
        raise ValueError(f"queries {queries.shape} and catalog {catalog.shape} must be 2-D with equal widths")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    if self_index is None:
        return np.full(queries.shape[0], -1, dtype=np.int64)
    self_index = np.asarray(self_index, dtype=np.int64)
    if self_index.shape != (queries.shape[0],):
        raise ValueError("self_index needs one entry per query")
    return self_index


def _sort_top(indices: np.ndarray, scores: np.ndarray, k: int) -> Neighbours:
    """Best k per row, ordered by score descending then catalog row ascending (deterministic ties)."""
    out_idx = np.full((indices.shape[0], k), -1, dtype=np.int64)
    out_sc = np.full((indices.shape[0], k), -np.inf, dtype=np.float32)
    for row in range(indices.shape[0]):
        order = np.lexsort((indices[row], -scores[row].astype(np.float64)))[:k]
        out_idx[row, : len(order)] = indices[row, order]
        out_sc[row, : len(order)] = scores[row, order]
    out_idx[~np.isfinite(out_sc)] = -1
    return Neighbours(out_idx, out_sc)


def top_k_cosine(
    queries: np.ndarray,
    catalog: np.ndarray,
    k: int,
    self_index=None,
    catalog_block: int = 4096,
    query_block: int = 1024,
) -> Neighbours:
    """Exact top-k catalog rows by cosine for each query, tile by tile (bounded memory)."""
    queries = np.asarray(queries, dtype=np.float32)
    catalog = np.asarray(catalog, dtype=np.float32)
    self_index = _check(queries, catalog, k, self_index)
    n_q, n_c = queries.shape[0], catalog.shape[0]
    all_idx = np.full((n_q, k), -1, dtype=np.int64)
    all_sc = np.full((n_q, k), -np.inf, dtype=np.float32)
    catalog_block, query_block = max(1, catalog_block), max(1, query_block)
    for q0 in range(0, n_q, query_block):
        q1 = min(n_q, q0 + query_block)
        best_idx = all_idx[q0:q1].copy()
        best_sc = all_sc[q0:q1].copy()
        own = self_index[q0:q1]
        rows = np.arange(q1 - q0)
        for c0 in range(0, n_c, catalog_block):
            c1 = min(n_c, c0 + catalog_block)
            tile = queries[q0:q1] @ catalog[c0:c1].T  # (qb, cb) float32
            inside = (own >= c0) & (own < c1)
            tile[rows[inside], own[inside] - c0] = -np.inf  # never your own neighbour
            take = min(k, c1 - c0)
            if take < c1 - c0:
                width = c1 - c0  # the largest `take` sit at the end after partitioning (no negated copy)
                part = np.argpartition(tile, width - take, axis=1)[:, width - take :]
            else:
                part = np.broadcast_to(np.arange(c1 - c0), (q1 - q0, c1 - c0))
            cand_sc = np.concatenate([best_sc, np.take_along_axis(tile, part, axis=1)], axis=1)
            cand_idx = np.concatenate([best_idx, part + c0], axis=1)
            keep = (
                np.argpartition(-cand_sc, k - 1, axis=1)[:, :k]
                if cand_sc.shape[1] > k
                else np.broadcast_to(np.arange(cand_sc.shape[1]), cand_sc.shape)
            )
            best_sc = np.take_along_axis(cand_sc, keep, axis=1)
            best_idx = np.take_along_axis(cand_idx, keep, axis=1)
        sorted_block = _sort_top(best_idx, best_sc, k)
        all_idx[q0:q1], all_sc[q0:q1] = sorted_block.indices, sorted_block.scores
    return Neighbours(all_idx, all_sc)


def top_k_cosine_reference(queries: np.ndarray, catalog: np.ndarray, k: int, self_index=None) -> Neighbours:
    """The obvious version: the whole score matrix in memory, a full sort per row (tests and benchmarks)."""
    queries = np.asarray(queries, dtype=np.float32)
    catalog = np.asarray(catalog, dtype=np.float32)
    self_index = _check(queries, catalog, k, self_index)
    scores = queries @ catalog.T
    for q, own in enumerate(self_index):
        if own >= 0:
            scores[q, own] = -np.inf
    indices = np.broadcast_to(np.arange(catalog.shape[0]), scores.shape)
    return _sort_top(indices, scores, k)


def similarity_rows(query_ids: list[str], catalog_ids: list[str], neighbours: Neighbours, model: str) -> list[dict]:
    """Rows of the ``similarities`` table (schemas.SIMILARITIES): one per (new episode, neighbour)."""
    rows = []
    for q, new_id in enumerate(query_ids):
        rank = 0
        for idx, score in zip(neighbours.indices[q], neighbours.scores[q]):
            if idx < 0:
                break
            rank += 1
            cosine = float(score)
            rows.append(
                {
                    "new_episode_id": new_id,
                    "historical_episode_id": catalog_ids[idx],
                    "rank": rank,
                    "cosine_similarity": cosine,
                    "distance": 1.0 - cosine,
                    "model": model,
                }
            )
    return rows
