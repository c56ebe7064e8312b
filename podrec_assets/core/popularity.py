"""Recent popularity: the cold-start list, and the fill for users with fewer than N fused candidates.

A user with no history, or too few candidates, still gets N episodes: the most recently popular ones they have
not engaged with. ``positive_mask`` lives here too: it defines the positive engagement that popularity, listening
history and the evaluation's truth all count.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from podrec_assets.core.arrays import position_in_runs

USER, ITEM = "user_id", "episode_id"


def positive_mask(daily: pd.DataFrame, min_engagement: float) -> pd.Series:
    """Rows of ``user_episode_daily`` that are a positive engagement: completed, or engagement >= threshold."""
    return daily["completed"].fillna(False).astype(bool) | (daily["engagement"].fillna(0.0) >= min_engagement)


def popular_episodes(
    daily: pd.DataFrame, day: date, min_engagement: float, half_life_days: float, episodes: pd.Series | None = None
) -> pd.DataFrame:
    """Episodes ranked by recent popularity: positive users per episode, each day weighted 0.5^(age/half-life).

    ``daily`` needs user_id, episode_id, engagement, completed, date; ``episodes`` optionally restricts to a catalog.
    Returns episode_id, popularity (descending; ties by episode_id).
    """
    if daily.empty:
        return pd.DataFrame({ITEM: pd.Series(dtype=str), "popularity": pd.Series(dtype=float)})
    pos = daily[positive_mask(daily, min_engagement)]
    age = (pd.Timestamp(day) - pd.to_datetime(pos["date"])).dt.days.clip(lower=0)
    weight = np.power(0.5, age / half_life_days) if half_life_days > 0 else np.ones(len(pos))
    pop = pd.DataFrame({ITEM: pos[ITEM].to_numpy(), "popularity": np.asarray(weight, dtype=float)})
    pop = pop.groupby(ITEM, as_index=False)["popularity"].sum()
    if episodes is not None:
        pop = pop[pop[ITEM].isin(set(episodes))]
    return pop.sort_values(["popularity", ITEM], ascending=[False, True], kind="mergesort").reset_index(drop=True)


FILL_BLOCK_USERS = 100_000


def fill_with_popular(
    recommendations: pd.DataFrame, users, popular: pd.DataFrame, excluded: pd.DataFrame, top_n: int
) -> pd.DataFrame:
    """Give every user in ``users`` N rows: their fused list, then popular episodes they may still see.

    Popular rows get reason ``popular``, a final score below every fused score (so ranks stay ordered), and no
    explanation. Users with no fused rows at all are the cold-start users. Array work over blocks of users (no loop
    per user): each short user is paired with a prefix of the popular list, pairs they must skip are removed, and
    the first ones left fill the list; a prefix that runs short is doubled for the users it failed.
    """
    popular = popular.drop_duplicates(ITEM, keep="first")
    counts = recommendations.groupby(USER).size() if len(recommendations) else pd.Series(dtype="int64")
    all_users = pd.unique(pd.Series(list(users), dtype=object))
    have = counts.reindex(all_users).fillna(0).to_numpy(dtype=np.int64)
    short_mask = have < top_n
    popular_ids = popular[ITEM].to_numpy(dtype=object)
    if not short_mask.any() or len(popular_ids) == 0:
        return recommendations.reset_index(drop=True)
    short, have = all_users[short_mask], have[short_mask]
    position = pd.Index(popular_ids)
    skip = (
        pd.concat([f[[USER, ITEM]] for f in (recommendations, excluded) if len(f)], ignore_index=True)
        if (len(recommendations) or len(excluded))
        else pd.DataFrame({USER: [], ITEM: []})
    )
    user_codes = pd.Index(short)
    skip_user = user_codes.get_indexer(skip[USER]) if len(skip) else np.array([], dtype=np.int64)
    skip_item = position.get_indexer(skip[ITEM]) if len(skip) else np.array([], dtype=np.int64)
    keep = (skip_user >= 0) & (skip_item >= 0)
    n_items = len(popular_ids)
    skip_keys = np.unique(skip_user[keep].astype(np.int64) * n_items + skip_item[keep])

    filled_user, filled_item, filled_rank = [], [], []
    for start in range(0, len(short), FILL_BLOCK_USERS):
        block = np.arange(start, min(start + FILL_BLOCK_USERS, len(short)))
        need = top_n - have[block]
        lo, hi = np.searchsorted(skip_keys, [block[0] * n_items, (block[-1] + 1) * n_items])
        block_skip = skip_keys[lo:hi]  # only this block's users' pairs (keys are user-major and sorted)
        prefix = min(n_items, 2 * top_n)
        pending = np.ones(len(block), dtype=bool)
        while pending.any():
            rows = block[pending]
            u = np.repeat(rows, prefix)
            i = np.tile(np.arange(prefix), len(rows))
            free = ~np.isin(u.astype(np.int64) * n_items + i, block_skip)
            u, i = u[free], i[free]
            # i-th free episode of each user (rows come user by user, items in popular order)
            nth = position_in_runs(u)
            need_of = need[np.searchsorted(block, u)]
            take = nth < need_of
            got = np.bincount(np.searchsorted(rows, u[take]), minlength=len(rows))
            done = (got >= need[pending]) | (prefix >= n_items)
            finished = np.isin(u, rows[done]) & take
            filled_user.append(u[finished])
            filled_item.append(i[finished])
            filled_rank.append(have[u[finished]] + nth[finished] + 1)
            still = np.flatnonzero(pending)
            pending[still[done]] = False
            prefix = min(n_items, prefix * 2)
    u = np.concatenate(filled_user)
    if not len(u):
        return recommendations.reset_index(drop=True)
    i = np.concatenate(filled_item)
    score = popular["popularity"].to_numpy(dtype=float)
    top_popularity = float(score.max()) if len(score) and score.max() else 1.0
    fills = pd.DataFrame(
        {
            USER: short[u],
            ITEM: popular_ids[i],
            "rank": np.concatenate(filled_rank).astype(np.int64),
            # below 0: fused scores are in [0, 1], popular fills come after them, ordered by popularity
            "final_score": score[i] / top_popularity - 1.0,
            "als_score": np.nan,
            "content_score": np.nan,
            "alpha": np.nan,
            "reason": "popular",
            "because_episode_id": None,
        }
    )
    combined = pd.concat([recommendations, fills], ignore_index=True) if len(recommendations) else fills
    user_codes, _ = pd.factorize(combined[USER], sort=True)  # by user, then rank: codes sort faster than strings
    return combined.iloc[np.lexsort((combined["rank"].to_numpy(), user_codes))].reset_index(drop=True)
