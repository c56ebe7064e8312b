"""Content candidates: the catalog episodes closest to each user's listening history, and what explains each.

The content score of (user, c) is the max over the user's history h of cos(c, h), computed exactly from the unit
vectors rather than from the precomputed top-K ``similarities``, which would miss pairs outside each episode's K. The
argmax h is the "because you listened to h" explanation. Kept apart from ``fusion`` because it is the one heavy
matrix step of a day's lists.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

USER, ITEM = "user_id", "episode_id"


class ContentIndex:
    """Unit vectors of the catalog, addressable by episode id."""

    def __init__(self, episode_ids, vectors: np.ndarray):
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(episode_ids):
            raise ValueError(f"vectors must be (n, d) with n = {len(episode_ids)}, got {matrix.shape}")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        self.matrix = matrix / norms
        self.ids = np.asarray(list(episode_ids), dtype=object)
        self.position = {eid: i for i, eid in enumerate(self.ids)}

    @classmethod
    def from_frame(cls, vectors: pd.DataFrame) -> "ContentIndex":
        """From rows episode_id, vector (the latest row per episode wins)."""
        vectors = vectors.drop_duplicates(ITEM, keep="last")
        if vectors.empty:
            return cls([], np.zeros((0, 1), dtype=np.float32))
        return cls(vectors[ITEM].tolist(), np.stack([np.asarray(v, dtype=np.float32) for v in vectors["vector"]]))

    def __len__(self) -> int:
        return len(self.ids)

    def vectors_of(self, episode_ids) -> np.ndarray:
        return self.matrix[[self.position[e] for e in episode_ids]]


def user_content_candidates(
    history: pd.DataFrame,
    als: pd.DataFrame,
    index: ContentIndex,
    excluded: pd.DataFrame,
    content_candidates: int,
    block_users: int = 1024,
) -> pd.DataFrame:
    """Candidate rows per user with content score, explanation and ALS score.

    ``history``: user_id, episode_id (positive history); ``als``: user_id, episode_id, score (ALS top-N);
    ``excluded``: user_id, episode_id never to recommend (seen in the window, completed ever).
    Returns user_id, episode_id, als_score (NaN if not an ALS candidate), content_score (NaN if unknown),
    because_episode_id, in_als, in_content. Only users with history or ALS candidates appear.

    Matrix work in blocks of ``block_users`` users (memory ~ 20 bytes x block x catalog), no loop per user: the
    content score of (user, c) is the max over the user's history h of cos(h, c), built one history position at
    a time for every user of the block (the earliest h wins a tie, as ``argmax`` would); the top
    ``content_candidates`` per user are taken by score, ties by catalog order.
    """
    history = history[history[USER].notna()] if len(history) else history
    als = als[als[USER].notna()] if len(als) else als
    users = sorted(set(history[USER]) | set(als[USER])) if len(history) or len(als) else []
    if not users:
        return _candidate_frame([], [], [], [], [], [], [])
    user_code = pd.Series(np.arange(len(users)), index=pd.Index(users, dtype=object))
    position = pd.Series(index.position, dtype=np.int64)  # the index's own lookup (its last id wins)
    hist = history[history[ITEM].isin(position.index)].drop_duplicates([USER, ITEM]) if len(history) else history
    h_user = user_code.reindex(hist[USER]).to_numpy() if len(hist) else np.zeros(0, np.int64)
    h_pos = position.reindex(hist[ITEM]).to_numpy() if len(hist) else np.zeros(0, np.int64)
    h_order = np.argsort(h_user, kind="stable")  # per user, in the history's order
    h_user, h_pos = h_user[h_order], h_pos[h_order]
    h_rank = np.arange(len(h_user)) - np.searchsorted(h_user, h_user, side="left")
    ex_in = (
        excluded[excluded[USER].isin(user_code.index) & excluded[ITEM].isin(position.index)]
        if len(excluded)
        else excluded
    )
    ex_user = user_code.reindex(ex_in[USER]).to_numpy() if len(ex_in) else np.zeros(0, np.int64)
    ex_pos = position.reindex(ex_in[ITEM]).to_numpy() if len(ex_in) else np.zeros(0, np.int64)
    als_rows = als.drop_duplicates([USER, ITEM], keep="last") if len(als) else als
    if len(als_rows) and len(excluded):  # never an excluded episode, whether the catalog has its vector or not
        flagged = als_rows.merge(excluded[[USER, ITEM]].drop_duplicates(), on=[USER, ITEM], how="left", indicator=True)
        als_rows = als_rows[(flagged["_merge"] == "left_only").to_numpy()]
    a_user = user_code.reindex(als_rows[USER]).to_numpy() if len(als_rows) else np.zeros(0, np.int64)
    a_pos = position.reindex(als_rows[ITEM]).to_numpy() if len(als_rows) else np.zeros(0)
    a_pos = np.where(np.isnan(a_pos.astype(float)), -1, a_pos).astype(np.int64)
    a_item = als_rows[ITEM].to_numpy(dtype=object) if len(als_rows) else np.zeros(0, object)
    a_score = als_rows["score"].to_numpy(dtype=float) if len(als_rows) else np.zeros(0)

    catalog, n = index.matrix, len(index)
    parts = []
    for b0 in range(0, len(users), block_users):
        b1 = min(b0 + block_users, len(users))
        best = np.full((b1 - b0, n), -np.inf, dtype=np.float32)
        best_arg = np.full((b1 - b0, n), -1, dtype=np.int32)
        lo, hi = np.searchsorted(h_user, [b0, b1])  # the block's history rows (sorted by user)
        b_user, b_pos, b_rank = h_user[lo:hi] - b0, h_pos[lo:hi], h_rank[lo:hi]
        for rank in range(int(b_rank.max()) + 1 if hi > lo else 0):
            sel = b_rank == rank
            rows, items = b_user[sel], b_pos[sel]
            sims = catalog[items] @ catalog.T
            better = sims > best[rows]
            best[rows] = np.where(better, sims, best[rows])
            best_arg[rows] = np.where(better, items[:, None].astype(np.int32), best_arg[rows])
        # the user's content candidates: best scores, blocked episodes left out, ties by catalog position; masking
        # in place is safe: nothing reads an excluded cell again (ALS rows of excluded episodes are gone)
        masked = best
        ex_sel = (ex_user >= b0) & (ex_user < b1)
        masked[ex_user[ex_sel] - b0, ex_pos[ex_sel]] = -np.inf
        take = min(content_candidates, n)
        c_rows = c_pos = np.zeros(0, np.int64)
        if take > 0 and n:
            kth = np.partition(masked, n - take, axis=1)[:, n - take][:, None]
            above, equal = masked > kth, masked == kth
            need = take - above.sum(axis=1, keepdims=True)
            chosen = (above | (equal & (np.cumsum(equal, axis=1, dtype=np.int32) <= need))) & np.isfinite(masked)
            c_rows, c_pos = np.nonzero(chosen)
        a_sel = (a_user >= b0) & (a_user < b1)
        ab_rows, ab_pos = a_user[a_sel] - b0, a_pos[a_sel]
        known = ab_pos >= 0
        a_content = np.full(len(ab_rows), np.nan)
        a_because = np.full(len(ab_rows), -1, dtype=np.int64)
        a_content[known] = best[ab_rows[known], ab_pos[known]]
        a_because[known] = best_arg[ab_rows[known], ab_pos[known]]
        a_content[~np.isfinite(a_content)] = np.nan
        parts.append(
            (
                b0,
                c_rows,
                c_pos,
                best[c_rows, c_pos],
                best_arg[c_rows, c_pos],
                ab_rows,
                a_item[a_sel],
                a_score[a_sel],
                a_content,
                a_because,
            )
        )

    ids = index.ids
    out: list[list] = [[], [], [], [], [], [], []]
    for b0, c_rows, c_pos, c_score, c_arg, ab_rows, ab_item, ab_score, ab_content, ab_because in parts:
        content = pd.DataFrame(
            {
                "u": c_rows + b0,
                ITEM: ids[c_pos] if len(c_pos) else np.zeros(0, object),
                "content_score": c_score.astype(float),
                "because": c_arg,
            }
        )
        from_als = pd.DataFrame(
            {
                "u": ab_rows + b0,
                ITEM: ab_item,
                "als_score": ab_score,
                "als_content": ab_content,
                "als_because": ab_because,
            }
        )
        merged = content.merge(from_als, on=["u", ITEM], how="outer", indicator=True)
        in_content = merged["_merge"].isin(["left_only", "both"]).to_numpy()
        in_als = merged["_merge"].isin(["right_only", "both"]).to_numpy()
        score = np.where(in_content, merged["content_score"], merged["als_content"])
        because = np.where(in_content, merged["because"], merged["als_because"]).astype(float)
        because_ids = np.full(len(merged), None, dtype=object)
        has = ~np.isnan(because) & (because >= 0)
        because_ids[has] = ids[because[has].astype(np.int64)]
        out[0].append(np.asarray(users, dtype=object)[merged["u"].to_numpy(dtype=np.int64)])
        out[1].append(merged[ITEM].to_numpy(dtype=object))
        out[2].append(merged["als_score"].to_numpy(dtype=float))
        out[3].append(score.astype(float))
        out[4].append(because_ids)
        out[5].append(in_als)
        out[6].append(in_content)
    return _candidate_frame(*(np.concatenate(column) if column else [] for column in out))


def _candidate_frame(users, items, als_score, content_score, because, in_als, in_content) -> pd.DataFrame:
    return pd.DataFrame(
        {
            USER: pd.Series(users, dtype=object),
            ITEM: pd.Series(items, dtype=object),
            "als_score": pd.Series(als_score, dtype=float),
            "content_score": pd.Series(content_score, dtype=float),
            "because_episode_id": pd.Series(because, dtype=object),
            "in_als": pd.Series(in_als, dtype=bool),
            "in_content": pd.Series(in_content, dtype=bool),
        }
    )
