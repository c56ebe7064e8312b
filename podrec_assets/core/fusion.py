"""Hybrid fusion: ALS candidates + content neighbours of a user's history, one ranked list per user.

How a user's list for day D is built (all pure pandas/numpy, no I/O):

1. **History** = the user's positive engagements (completed, or engagement >= a threshold) in the last
   ``history_days`` days ending D. Skips and short plays are not "listening history".
2. **Content score** of a catalog episode c = max over history episodes h of cos(c, h), computed exactly from
   the unit vectors (not from the precomputed top-K ``similarities``, which would miss pairs outside each
   episode's K). The argmax h is kept: it is the "because you listened to h" explanation.
3. **Candidates** = the user's ALS top-N ∪ the ``content_candidates`` catalog episodes with the highest
   content score. Episodes the user already engaged with in the window, and episodes the user ever completed,
   are removed.
4. **Comparable scores**: per user, each component is min-max normalised over that user's candidates that
   have it (the user's best ALS candidate -> 1, worst -> 0; same for content). A candidate outside the ALS
   top-N has no ALS score and gets 0 (it ranked below the N-th). If all of a user's values are equal they
   normalise to 1.
5. ``final = α(age)·als + (1−α(age))·content`` where α rises linearly from ``alpha_new`` (published on D) to
   ``alpha`` (``ramp_days`` old or more): new episodes have no behaviour yet, so content carries them.
6. Top-N by final score; users with fewer than N candidates (or no history at all: cold start) are filled
   with recently popular episodes they have not engaged with (reason ``popular``).

``reason``: ``hybrid`` when a candidate is in both the ALS top-N and the user's content candidates, ``als`` or
``content`` when it came from one only, ``popular`` for the fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

USER, ITEM = "user_id", "episode_id"


@dataclass(frozen=True)
class AlphaCurve:
    """α as a function of an episode's age in days: linear from ``alpha_new`` at age 0 to ``alpha`` at ``ramp_days``."""

    alpha: float
    alpha_new: float
    ramp_days: int

    def __post_init__(self) -> None:
        for name in ("alpha", "alpha_new"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {value}")
        if self.ramp_days < 0:
            raise ValueError(f"ramp_days must be >= 0, not {self.ramp_days}")

    def at(self, age_days) -> np.ndarray:
        age = np.clip(np.asarray(age_days, dtype=float), 0.0, None)
        if self.ramp_days == 0:  # no ramp: age does not matter
            return np.full_like(age, self.alpha)
        share = np.minimum(age / self.ramp_days, 1.0)
        return self.alpha_new + (self.alpha - self.alpha_new) * share

    def label(self) -> str:
        return f"a={self.alpha:g},a_new={self.alpha_new:g},ramp={self.ramp_days}d"


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
    history: pd.DataFrame, als: pd.DataFrame, index: ContentIndex, excluded: pd.DataFrame, content_candidates: int
) -> pd.DataFrame:
    """Candidate rows per user with content score, explanation and ALS score.

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


def _minmax_per_user(users: pd.Series, values: pd.Series) -> pd.Series:
    """Per-user min-max to [0, 1] over the non-missing values; missing -> 0; all-equal -> 1."""
    grouped = values.groupby(users)
    lo, hi = grouped.transform("min"), grouped.transform("max")
    span = hi - lo
    scaled = np.where(span > 0, (values - lo) / span.where(span > 0, 1.0), 1.0)
    return pd.Series(np.where(values.isna(), 0.0, scaled), index=values.index)


def normalise_candidates(candidates: pd.DataFrame) -> pd.DataFrame:
    """Add als_norm and content_norm (see the module docstring, step 4)."""
    out = candidates.copy()
    out["als_norm"] = _minmax_per_user(out[USER], out["als_score"]) if len(out) else pd.Series(dtype=float)
    out["content_norm"] = _minmax_per_user(out[USER], out["content_score"]) if len(out) else pd.Series(dtype=float)
    return out


def fuse(normalised: pd.DataFrame, age_days: pd.Series, curve: AlphaCurve, top_n: int) -> pd.DataFrame:
    """Score normalised candidates with the age-dependent α and keep the top-N per user.

    ``age_days``: age per episode_id (index) on the recommendation day; unknown ages count as old.
    Returns user_id, episode_id, rank, final_score, als_score, content_score, alpha, reason, because_episode_id.
    """
    if normalised.empty:
        return empty_recommendations()
    ages = normalised[ITEM].map(age_days).astype(float).fillna(float(curve.ramp_days))
    alpha = curve.at(ages.to_numpy())
    scored = normalised.assign(
        alpha=alpha, final_score=alpha * normalised["als_norm"] + (1 - alpha) * normalised["content_norm"]
    )
    scored["reason"] = np.select(
        [scored["in_als"] & scored["in_content"], scored["in_als"]], ["hybrid", "als"], default="content"
    )
    # order by user, final score descending, episode id (ties); lexsort on codes is much faster than sort_values
    user_codes, _ = pd.factorize(scored[USER], sort=True)
    item_codes, _ = pd.factorize(scored[ITEM], sort=True)
    order = np.lexsort((item_codes, -scored["final_score"].to_numpy(), user_codes))
    ordered = scored.iloc[order]
    sorted_users = user_codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    rank = np.arange(len(ordered)) - np.repeat(starts, np.diff(np.r_[starts, len(ordered)])) + 1
    ordered = ordered.assign(rank=rank)
    top = ordered[ordered["rank"] <= top_n]
    return top[list(RECOMMENDATION_COLUMNS)].reset_index(drop=True)


RECOMMENDATION_COLUMNS = (
    "user_id",
    "episode_id",
    "rank",
    "final_score",
    "als_score",
    "content_score",
    "alpha",
    "reason",
    "because_episode_id",
)


def empty_recommendations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Series(dtype=object),
            "episode_id": pd.Series(dtype=object),
            "rank": pd.Series(dtype="int64"),
            "final_score": pd.Series(dtype=float),
            "als_score": pd.Series(dtype=float),
            "content_score": pd.Series(dtype=float),
            "alpha": pd.Series(dtype=float),
            "reason": pd.Series(dtype=object),
            "because_episode_id": pd.Series(dtype=object),
        }
    )


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


@dataclass
class FusionInputs:
    """Everything a day's fusion needs, as frames (the asset reads them from the lake)."""

    day: date
    als: pd.DataFrame  # user_id, episode_id, score   (als_top_n of the day)
    daily: pd.DataFrame  # user_episode_daily up to the day: user_id, episode_id, engagement, completed, date
    vectors: pd.DataFrame  # episode_vectors up to the day: episode_id, vector
    published: pd.Series  # published_at (UTC timestamps) by episode_id
    history_days: int
    min_engagement: float
    popularity_half_life_days: float
    content_candidates: int


@dataclass
class PreparedDay:
    """A day's normalised candidates and the rest of what fusing with any α needs."""

    day: date
    normalised: pd.DataFrame
    age_days: pd.Series
    users: list
    popular: pd.DataFrame
    excluded: pd.DataFrame
    history: pd.DataFrame
    index: ContentIndex


def prepare_day(inputs: FusionInputs) -> PreparedDay:
    """Steps 1-4 of the module docstring, independent of α (so α can be validated cheaply)."""
    day = inputs.day
    empty_pairs = pd.DataFrame({USER: pd.Series(dtype=object), ITEM: pd.Series(dtype=object)})
    daily = inputs.daily
    if daily.empty:
        daily = pd.DataFrame({USER: [], ITEM: [], "engagement": [], "completed": [], "date": []})
    daily = daily.assign(date=pd.to_datetime(daily["date"]))
    start = pd.Timestamp(day) - pd.Timedelta(days=inputs.history_days - 1)
    daily = daily[daily["date"] <= pd.Timestamp(day)]
    window = daily[daily["date"] >= start]
    history = (
        window[positive_mask(window, inputs.min_engagement)][[USER, ITEM]].drop_duplicates()
        if len(window)
        else empty_pairs
    )
    completed = daily[daily["completed"].fillna(False).astype(bool)][[USER, ITEM]] if len(daily) else empty_pairs
    seen = window[[USER, ITEM]] if len(window) else empty_pairs
    excluded = pd.concat([completed, seen], ignore_index=True).drop_duplicates()
    index = ContentIndex.from_frame(inputs.vectors)
    candidates = user_content_candidates(history, inputs.als, index, excluded, inputs.content_candidates)
    normalised = normalise_candidates(candidates)
    published = pd.to_datetime(inputs.published, utc=True)
    age_days = (pd.Timestamp(day, tz="UTC") - published.dt.floor("D")).dt.days.clip(lower=0)
    # every user we know of gets a list: ALS users, users with history, users seen on any earlier day (cold start)
    users = sorted(set(inputs.als[USER]) | set(daily[USER]))
    catalog = pd.Series(list(set(index.ids) | set(published.index)))
    popular = popular_episodes(window, day, inputs.min_engagement, inputs.popularity_half_life_days, catalog)
    return PreparedDay(day, normalised, age_days, users, popular, excluded, history, index)


def recommend(prepared: PreparedDay, curve: AlphaCurve, top_n: int) -> pd.DataFrame:
    """Steps 5-6: fused top-N per user with popular fill (the final recommendations of the day)."""
    fused = fuse(prepared.normalised, prepared.age_days, curve, top_n)
    return fill_with_popular(fused, prepared.users, prepared.popular, prepared.excluded, top_n)


def model_version(als_versions, embed_models, curve: AlphaCurve) -> str:
    """One string naming what produced a list: ALS model version(s), embedding model(s), α curve."""
    als_part = "+".join(sorted({str(v) for v in als_versions if v})) or "no-als"
    content_part = "+".join(sorted({str(m) for m in embed_models if m})) or "no-content"
    return f"hybrid[{als_part}|{content_part}|{curve.label()}]"
