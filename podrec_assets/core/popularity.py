"""Recent popularity: the cold-start list, and the fill for users with fewer than N fused candidates.

A user with no history, or too few candidates, still gets N episodes: the most recently popular ones they have
not engaged with. ``positive_mask`` lives here too: it defines the positive engagement that popularity, listening
history and the evaluation's truth all count.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

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


def fill_with_popular(
    recommendations: pd.DataFrame, users, popular: pd.DataFrame, excluded: pd.DataFrame, top_n: int
) -> pd.DataFrame:
    """Give every user in ``users`` N rows: their fused list, then popular episodes they may still see.

    Popular rows get reason ``popular``, a final score below every fused score (so ranks stay ordered), and no
    explanation. Users with no fused rows at all are the cold-start users.
    """
    counts = recommendations.groupby(USER).size().to_dict() if len(recommendations) else {}
    short = [user for user in users if counts.get(user, 0) < top_n]
    if not short:
        return recommendations.reset_index(drop=True)
    short_set = set(short)
    skip_by_user: dict = {user: set() for user in short}
    for frame in (recommendations, excluded):
        if len(frame):
            rows = frame[frame[USER].isin(short_set)]
            for user, eid in zip(rows[USER], rows[ITEM]):
                skip_by_user[user].add(eid)
    popular_ids = popular[ITEM].tolist()
    popular_score = dict(zip(popular[ITEM], popular["popularity"]))
    top_popularity = max(popular_score.values(), default=1.0) or 1.0
    fills = []
    for user in short:
        missing = top_n - counts.get(user, 0)
        skip = skip_by_user[user]
        rank = counts.get(user, 0)
        for eid in popular_ids:
            if missing == 0:
                break
            if eid in skip:
                continue
            rank += 1
            missing -= 1
            # below 0: fused scores are in [0, 1], popular fills come after them, ordered by popularity
            fills.append(
                {
                    USER: user,
                    ITEM: eid,
                    "rank": rank,
                    "final_score": popular_score[eid] / top_popularity - 1.0,
                    "als_score": np.nan,
                    "content_score": np.nan,
                    "alpha": np.nan,
                    "reason": "popular",
                    "because_episode_id": None,
                }
            )
    if not fills:
        return recommendations.reset_index(drop=True)
    combined = pd.concat([recommendations, pd.DataFrame(fills)], ignore_index=True)
    return combined.sort_values([USER, "rank"], kind="mergesort").reset_index(drop=True)
