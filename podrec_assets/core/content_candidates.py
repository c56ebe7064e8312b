"""Content candidates: the catalog episodes closest to each user's listening history, and what explains each.

The content score of (user, c) is the max over the user's history h of cos(c, h); the argmax h is the "because you
listened to h" explanation. Two ways to find each user's best c:

- **neighbours** (``neighbours=K``; PODREC_CONTENT_NEIGHBOURS, default 30): each catalog episode's K nearest
  episodes are computed once (``ContentIndex.neighbours``, catalog x catalog, independent of the number of users),
  and a user's content candidates are the neighbours of their history: a user costs history x K, whatever the
  catalog's size. A pair outside every one of the user's history episodes' K nearest is not seen (its cosine is
  below each of those episodes' K-th neighbour, so it would rarely make the user's top ``content_candidates``).
  ALS candidates still get their exact content score (``_als_content``), so scores compare as in the exact way.
  bench/content_candidates.py measures the quality against the exact way.
- **exact** (``neighbours=0``): every history episode against the whole catalog, a user costs history x catalog.

The neighbours are recomputed from the day's vectors rather than taken from the ``similarities`` asset, whose
rows for an old episode never list the episodes published after it (new episodes must reach listeners through
content). Kept apart from ``fusion`` because it is the one heavy matrix step of a day's lists.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podrec_assets.core.arrays import position_in_runs

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

    def neighbours(self, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(positions, cosines), each (n, min(k, n - 1)): every episode's nearest other episodes, computed once per
        index and k. Blocked catalog x catalog products, so memory is ~4 bytes x block x n."""
        cached = getattr(self, "_neighbours", {})
        if k not in cached:
            n = len(self)
            width = max(0, min(k, n - 1))
            positions = np.zeros((n, width), dtype=np.int32)
            cosines = np.zeros((n, width), dtype=np.float32)
            for b0 in range(0, n if width else 0, block):
                b1 = min(n, b0 + block)
                sims = self.matrix[b0:b1] @ self.matrix.T
                sims[np.arange(b1 - b0), np.arange(b0, b1)] = -np.inf  # never itself
                top = np.argpartition(sims, n - width, axis=1)[:, n - width :]
                positions[b0:b1] = top
                cosines[b0:b1] = np.take_along_axis(sims, top, axis=1)
            cached[k] = (positions, cosines)
            self._neighbours = cached
        return cached[k]


def user_content_candidates(
    history: pd.DataFrame,
    als: pd.DataFrame,
    index: ContentIndex,
    excluded: pd.DataFrame,
    content_candidates: int,
    block_users: int = 1024,
    neighbours: int = 0,
) -> pd.DataFrame:
    """Candidate rows per user with content score, explanation and ALS score.

    ``history``: user_id, episode_id (positive history); ``als``: user_id, episode_id, score (ALS top-N);
    ``excluded``: user_id, episode_id never to recommend (seen in the window, completed ever).
    Returns user_id, episode_id, als_score (NaN if not an ALS candidate), content_score (NaN if unknown),
    because_episode_id, in_als, in_content. Only users with history or ALS candidates appear.

    ``neighbours`` > 0: candidates among the K nearest episodes of each history episode (``_neighbour_block``);
    0: exact. Exact matrix work in blocks of ``block_users`` users (memory ~ 20 bytes x block x catalog), no loop
    per user: the content score of (user, c) is the max over the user's history h of cos(h, c), built one history
    position at a time for every user of the block (the earliest h wins a tie, as ``argmax`` would); the top
    ``content_candidates`` per user are taken by score, ties by catalog order (both ways).
    """
    history = history[history[USER].notna()] if len(history) else history
    als = als[als[USER].notna()] if len(als) else als
    users = sorted(set(history[USER]) | set(als[USER])) if len(history) or len(als) else []
    if not users:
        return _candidate_frame([], [], [], [], [], [], [])
    # every pair as integer codes (user's place in ``users``, episode's in the catalog): no string joins below
    user_code = pd.Index(users, dtype=object)
    position = pd.Index(index.ids, dtype=object)
    if not position.is_unique:  # the index's own lookup: its last id wins
        position = pd.Index(list(index.position), dtype=object)
        catalog_position = np.fromiter(index.position.values(), dtype=np.int64, count=len(position))
    else:
        catalog_position = np.arange(len(position), dtype=np.int64)
    h_user, h_pos = _codes(history, user_code, position, catalog_position)
    known = h_pos >= 0
    h_user, h_pos = h_user[known], h_pos[known]
    _, first = np.unique(h_user * max(len(index), 1) + h_pos, return_index=True)  # one row per pair, first kept
    first.sort()
    h_user, h_pos = h_user[first], h_pos[first]
    h_order = np.argsort(h_user, kind="stable")  # per user, in the history's order
    h_user, h_pos = h_user[h_order], h_pos[h_order]
    h_rank = np.arange(len(h_user)) - np.searchsorted(h_user, h_user, side="left")
    ex_user, ex_pos = _codes(excluded, user_code, position, catalog_position)
    in_catalog = (ex_user >= 0) & (ex_pos >= 0)
    ex_user, ex_pos = ex_user[in_catalog], ex_pos[in_catalog]
    a_user, a_pos, a_item, a_score = _als_rows(als, excluded, user_code, position, catalog_position)

    catalog, n = index.matrix, len(index)
    parts = []
    if neighbours > 0 and n:
        nearest = index.neighbours(neighbours)
        ex_keys = np.unique(ex_user.astype(np.int64) * n + ex_pos.astype(np.int64))
        a_content, a_because = _als_content(index, h_user, h_pos.astype(np.int64), a_user, a_pos)
        step = NEIGHBOUR_BLOCK_USERS
        for b0 in range(0, len(users), step):
            b1 = min(b0 + step, len(users))
            lo, hi = np.searchsorted(h_user, [b0, b1])
            ex_lo, ex_hi = np.searchsorted(ex_keys, [b0 * n, b1 * n])
            a_sel = (a_user >= b0) & (a_user < b1)
            content = _neighbour_block(
                h_user[lo:hi] - b0,
                h_pos[lo:hi].astype(np.int64),
                ex_keys[ex_lo:ex_hi] - b0 * n,
                nearest,
                n,
                min(content_candidates, n),
            )
            als_part = (
                a_user[a_sel] - b0,
                a_pos[a_sel],
                a_item[a_sel],
                a_score[a_sel],
                a_content[a_sel],
                a_because[a_sel],
            )
            parts.append((b0, *content, *als_part))
        return _assemble(parts, users, index.ids)
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
                ab_pos,
                a_item[a_sel],
                a_score[a_sel],
                a_content,
                a_because,
            )
        )

    return _assemble(parts, users, index.ids)


def _codes(pairs: pd.DataFrame, user_code: pd.Index, position: pd.Index, catalog_position: np.ndarray):
    """(user code, catalog position) per row of ``pairs``; -1 where the user is not listed or the episode has no
    vector."""
    if not len(pairs):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return user_code.get_indexer(pairs[USER]).astype(np.int64), _catalog_positions(
        pairs[ITEM], position, catalog_position
    )


def _catalog_positions(items, position: pd.Index, catalog_position: np.ndarray) -> np.ndarray:
    """Each episode's row of the catalog matrix; -1 without a vector."""
    if not len(position):
        return np.full(len(items), -1, dtype=np.int64)
    found = position.get_indexer(items)
    return np.where(found >= 0, catalog_position[found], -1)  # a -1 reads the last row, then is masked


def _als_rows(als: pd.DataFrame, excluded: pd.DataFrame, user_code, position, catalog_position):
    """The ALS candidates as (user code, catalog position or -1, episode id, score): one row per pair (the last),
    never an excluded episode, whether the catalog has its vector or not."""
    if not len(als):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0)
    items = pd.Index(pd.unique(als[ITEM].to_numpy(dtype=object)))
    a_user = user_code.get_indexer(als[USER]).astype(np.int64)
    key = a_user * len(items) + items.get_indexer(als[ITEM])
    last = np.flatnonzero(~pd.Series(key).duplicated(keep="last").to_numpy())
    if len(excluded):
        ex_item = items.get_indexer(excluded[ITEM])
        ex_user = user_code.get_indexer(excluded[USER]).astype(np.int64)
        mine = (ex_item >= 0) & (ex_user >= 0)
        ex_key = np.unique(ex_user[mine] * len(items) + ex_item[mine])
        at = np.minimum(np.searchsorted(ex_key, key[last]), max(len(ex_key) - 1, 0))
        last = last[ex_key[at] != key[last]] if len(ex_key) else last
    a_pos = _catalog_positions(als[ITEM].iloc[last], position, catalog_position)
    return a_user[last], a_pos, als[ITEM].to_numpy(dtype=object)[last], als["score"].to_numpy(dtype=float)[last]


NEIGHBOUR_BLOCK_USERS = 16384


def _neighbour_block(h_user, h_pos, ex_keys, nearest, n, take):
    """One block of users by the neighbour way: (user, neighbour of a history episode) pairs, the best cosine per
    pair (the earliest history row on a tie, as the exact way), excluded pairs dropped, the top ``take`` per user by
    score then catalog position. Users and keys are local to the block (user * n + position).
    Returns (user, position, score, because position) of the chosen pairs."""
    positions, cosines = nearest
    width = positions.shape[1]
    user = np.repeat(h_user.astype(np.int64), width)
    because = np.repeat(h_pos, width)
    item = positions[h_pos].ravel().astype(np.int64)
    score = cosines[h_pos].ravel()
    key = user * n + item
    if len(key) and int(key.max()) < 2**31:  # one int64 sort key: (pair, best score first); stable keeps history order
        order = np.argsort((key << 32) | _descending_bits(score), kind="stable")
    else:
        order = np.lexsort((-score, key))
    key, score, because = key[order], score[order], because[order]
    first = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, dtype=bool)
    key, score, because = key[first], score[first], because[first]
    if len(ex_keys):
        at = np.minimum(np.searchsorted(ex_keys, key), len(ex_keys) - 1)
        kept = ex_keys[at] != key
        key, score, because = key[kept], score[kept], because[kept]
    user, item = key // n, key % n
    item_bits = max(1, int(n - 1).bit_length())
    if len(user) and int(user.max()).bit_length() + 32 + item_bits <= 63:  # unique keys: any sort will do
        order = np.argsort((user << (32 + item_bits)) | (_descending_bits(score) << item_bits) | item)
    else:
        order = np.lexsort((item, -score, user))
    user, item, score, because = user[order], item[order], score[order], because[order]
    chosen = position_in_runs(user) < take
    return user[chosen], item[chosen], score[chosen], because[chosen]


def _descending_bits(score: np.ndarray) -> np.ndarray:
    """float32 scores as int64 in [0, 2^32) that sort the other way round (best first), exactly: the IEEE bits made
    monotonic (negatives flipped), then reversed. Lets one integer sort replace a sort on several keys."""
    bits = np.asarray(score, dtype=np.float32).view(np.uint32).astype(np.int64)
    ascending = np.where(bits >> 31, bits ^ 0xFFFFFFFF, bits | 0x80000000)
    return 0xFFFFFFFF - ascending


ALS_CONTENT_PAIRS = 20_000_000


def _als_content(index, h_user, h_pos, a_user, a_pos, block: int = 1024):
    """Each ALS row's exact content score, max over its user's history of cos(h, a), and the h that gives it (the
    earliest history row on a tie); NaN / -1 without history or vector.

    One pass over the catalog in row blocks: a block's products (block x catalog) score every (history row whose
    episode is in the block, ALS row of the same user) pair, ALS_CONTENT_PAIRS at a time, and a running maximum per
    ALS row keeps the best. The catalog x catalog products are computed once, however many pairs a day has."""
    content = np.full(len(a_user), np.nan)
    because = np.full(len(a_user), -1, dtype=np.int64)
    scored = np.flatnonzero(a_pos >= 0)
    if not len(scored) or not len(h_user) or not len(index):
        return content, because
    by_user = scored[np.argsort(a_user[scored], kind="stable")]  # ALS rows grouped by user
    first_als = np.searchsorted(a_user[by_user], h_user, side="left")  # each history row's user's ALS rows
    als_count = np.searchsorted(a_user[by_user], h_user, side="right") - first_als
    by_episode = np.argsort(h_pos, kind="stable")
    bounds = np.searchsorted(h_pos[by_episode], np.arange(0, len(index) + block, block))
    best = np.full(len(a_user), -np.inf, dtype=np.float32)
    none = np.iinfo(np.int64).max
    best_history = np.full(len(a_user), none, dtype=np.int64)
    for b0, lo, hi in zip(range(0, len(index), block), bounds[:-1], bounds[1:]):
        rows = by_episode[lo:hi][als_count[by_episode[lo:hi]] > 0]
        if not len(rows):
            continue
        products = index.matrix[b0 : b0 + block] @ index.matrix.T
        counts = als_count[rows]
        ends = np.cumsum(counts)
        start = 0
        while start < len(rows):
            stop = int(np.searchsorted(ends, ends[start] - counts[start] + ALS_CONTENT_PAIRS, side="right"))
            stop = max(stop, start + 1)
            part, per = rows[start:stop], counts[start:stop]
            history = np.repeat(part, per)
            offset = np.arange(len(history)) - np.repeat(np.cumsum(per) - per, per)
            als_row = by_user[np.repeat(first_als[part], per) + offset]
            cos = products[h_pos[history] - b0, a_pos[als_row]]
            before = best[als_row]
            np.maximum.at(best, als_row, cos)
            best_history[als_row[best[als_row] > before]] = none  # a better score: its earlier ties no longer count
            tie = cos == best[als_row]
            np.minimum.at(best_history, als_row[tie], history[tie])
            start = stop
    found = best_history != none
    content[found] = best[found]
    because[found] = h_pos[best_history[found]]
    return content, because


def _assemble(parts, users, ids) -> pd.DataFrame:
    """The candidate frame from every block's content picks and ALS rows, outer-joined per (user, episode) on
    integer pair keys (an ALS episode without a vector never meets a content pick)."""
    users, n = np.asarray(users, dtype=object), len(ids)
    out: list[list] = [[], [], [], [], [], [], []]
    for b0, c_rows, c_pos, c_score, c_arg, a_rows, a_pos, a_item, a_score, a_content, a_because in parts:
        c_key = c_rows.astype(np.int64) * n + c_pos
        a_key = np.where(a_pos >= 0, a_rows.astype(np.int64) * n + a_pos, -1 - np.arange(len(a_pos)))
        _, c_both, a_both = np.intersect1d(c_key, a_key, assume_unique=True, return_indices=True)
        als_only = np.ones(len(a_key), dtype=bool)
        als_only[a_both] = False
        # content picks: an ALS row's content score is exact in both ways, so it wins over a neighbour-found one
        als_score = np.full(len(c_key), np.nan)
        als_score[c_both] = a_score[a_both]
        score, because = c_score.astype(float), c_arg.astype(np.int64)
        exact = ~np.isnan(a_content[a_both])
        score[c_both[exact]] = a_content[a_both][exact]
        because[c_both[exact]] = a_because[a_both][exact]
        in_als = np.zeros(len(c_key), dtype=bool)
        in_als[c_both] = True
        rows = np.concatenate([c_rows, a_rows[als_only]]).astype(np.int64) + b0
        because = np.concatenate([because, a_because[als_only]])
        because_ids = np.full(len(because), None, dtype=object)
        because_ids[because >= 0] = ids[because[because >= 0]]
        out[0].append(users[rows])
        out[1].append(np.concatenate([ids[c_pos] if len(c_pos) else np.zeros(0, object), a_item[als_only]]))
        out[2].append(np.concatenate([als_score, a_score[als_only]]))
        out[3].append(np.concatenate([score, a_content[als_only].astype(float)]))
        out[4].append(because_ids)
        out[5].append(np.concatenate([in_als, np.ones(int(als_only.sum()), dtype=bool)]))
        out[6].append(np.concatenate([np.ones(len(c_key), dtype=bool), np.zeros(int(als_only.sum()), dtype=bool)]))
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
