"""Hybrid fusion: one ranked list per user and day from ALS candidates and content neighbours of their history.

Pure pandas/numpy, no I/O, so the daily asset, the evaluation and the online service run one code path. A user's
list for day D:

1. **History**: the user's positive engagements (completed, or engagement >= a threshold) in the last
   ``history_days`` days ending D; skips and short plays are not listening history.
2. **Content score** of a catalog episode: its best cosine to any history episode, which also names the "because
   you listened to" episode (``content_candidates``).
3. **Candidates**: the user's ALS top-N ∪ their ``content_candidates`` best content-scored episodes, minus the
   episodes they engaged with in the window or ever completed.
4. **Comparable scores**: per user, each component is min-max normalised over that user's candidates that have it
   (best -> 1, worst -> 0, all equal -> 1); a candidate outside the ALS top-N gets ALS 0 (it ranked below the N-th).
5. ``final = α(age)·als + (1−α(age))·content``, α rising linearly from ``alpha_new`` (published on D) to ``alpha``
   (``ramp_days`` old or more): new episodes have no behaviour yet, so content carries them.
6. Top-N by final score; short lists (cold start included) are filled with recently popular episodes the user has
   not engaged with, then the rest of the catalog, newest first (``popularity``).

``reason``: ``hybrid`` when a candidate is in both the ALS top-N and the user's content candidates, ``als`` or
``content`` when it came from one only, ``popular`` for the fill.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd

from podrec_assets.core.arrays import position_in_runs
from podrec_assets.core.content_candidates import ContentIndex, user_content_candidates
from podrec_assets.core.popularity import fill_with_popular, popular_episodes, positive_mask

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

    @classmethod
    def from_model_version(cls, version: str) -> "AlphaCurve":
        """The curve named in a ``model_version`` string (the inverse of ``label``); ValueError if none is."""
        match = re.search(r"a=([0-9.eE+-]+),a_new=([0-9.eE+-]+),ramp=(\d+)d", version or "")
        if match is None:
            raise ValueError(f"no alpha curve in model version {version!r}")
        return cls(float(match.group(1)), float(match.group(2)), int(match.group(3)))


def _minmax_per_user(users, values: pd.Series) -> pd.Series:
    """Per-user min-max to [0, 1] over the non-missing values; missing -> 0; all-equal -> 1."""
    grouped = values.groupby(users)
    lo, hi = grouped.transform("min"), grouped.transform("max")
    span = hi - lo
    scaled = np.where(span > 0, (values - lo) / span.where(span > 0, 1.0), 1.0)
    return pd.Series(np.where(values.isna(), 0.0, scaled), index=values.index)


def normalise_candidates(candidates: pd.DataFrame) -> pd.DataFrame:
    """Add als_norm and content_norm (see the module docstring, step 4)."""
    out = candidates.copy()
    users = pd.factorize(out[USER])[0] if len(out) else out[USER]  # integer codes group much faster than strings
    out["als_norm"] = _minmax_per_user(users, out["als_score"]) if len(out) else pd.Series(dtype=float)
    out["content_norm"] = _minmax_per_user(users, out["content_score"]) if len(out) else pd.Series(dtype=float)
    return out


def fuse(normalised: pd.DataFrame, age_days: pd.Series, curve: AlphaCurve, top_n: int) -> pd.DataFrame:
    """Score normalised candidates with the age-dependent α and keep the top-N per user.

    ``age_days``: age per episode_id (index) on the recommendation day; unknown ages count as old.
    Returns user_id, episode_id, rank, final_score, als_score, content_score, alpha, reason, because_episode_id.
    The ranking is array work on every candidate; the output frame is built for the kept rows only.
    """
    if normalised.empty:
        return empty_recommendations()
    ages = normalised[ITEM].map(age_days).astype(float).fillna(float(curve.ramp_days))
    alpha = curve.at(ages.to_numpy())
    final = alpha * normalised["als_norm"].to_numpy(dtype=float) + (1 - alpha) * normalised["content_norm"].to_numpy(
        dtype=float
    )
    # order by user, final score descending, episode id (ties); lexsort on codes is much faster than sort_values
    user_codes, _ = pd.factorize(normalised[USER], sort=True)
    item_codes, _ = pd.factorize(normalised[ITEM], sort=True)
    order = np.lexsort((item_codes, -final, user_codes))
    rank = position_in_runs(user_codes[order]) + 1
    kept = rank <= top_n
    rows = order[kept]
    top = normalised.iloc[rows]
    in_als, in_content = top["in_als"].to_numpy(dtype=bool), top["in_content"].to_numpy(dtype=bool)
    return pd.DataFrame(
        {
            "user_id": top[USER].to_numpy(),
            "episode_id": top[ITEM].to_numpy(),
            "rank": rank[kept].astype(np.int64),
            "final_score": final[rows],
            "als_score": top["als_score"].to_numpy(dtype=float),
            "content_score": top["content_score"].to_numpy(dtype=float),
            "alpha": alpha[rows],
            "reason": np.select([in_als & in_content, in_als], ["hybrid", "als"], default="content").astype(object),
            "because_episode_id": top["because_episode_id"].to_numpy(),
        }
    )


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
    content_neighbours: int = 0  # > 0: candidates among each history episode's nearest episodes; 0: exact search
    # built once and shared when many small fusions run on one day's model (the online service); None: from the frames
    index: ContentIndex | None = None
    popular: pd.DataFrame | None = None


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


def _history(inputs: FusionInputs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(user_episode_daily up to the day, its last ``history_days`` days)."""
    day = inputs.day
    daily = inputs.daily
    if daily.empty:
        daily = pd.DataFrame({USER: [], ITEM: [], "engagement": [], "completed": [], "date": []})
    daily = daily.assign(date=pd.to_datetime(daily["date"]))
    start = pd.Timestamp(day) - pd.Timedelta(days=inputs.history_days - 1)
    daily = daily[daily["date"] <= pd.Timestamp(day)]
    return daily, daily[daily["date"] >= start]


def _popular(inputs: FusionInputs, window: pd.DataFrame, index: ContentIndex) -> pd.DataFrame:
    """Popular episodes first; then the rest of the catalog (popularity 0), newest first: a listener who heard every
    popular episode still gets a list while any episode is left (on a young or tiny catalog that happens)."""
    catalog = pd.Series(list(set(index.ids) | set(inputs.published.index)))
    popular = popular_episodes(window, inputs.day, inputs.min_engagement, inputs.popularity_half_life_days, catalog)
    rest = catalog[~catalog.isin(set(popular[ITEM]))]
    if rest.empty:
        return popular
    published = pd.to_datetime(inputs.published, utc=True)
    published = published[~published.index.duplicated(keep="last")]
    when = published.reindex(rest.to_numpy()).to_numpy()
    tail = pd.DataFrame({ITEM: rest.to_numpy(), "published": when}).sort_values(
        ["published", ITEM], ascending=[False, True], na_position="last", kind="mergesort"
    )
    tail = pd.DataFrame({ITEM: tail[ITEM].to_numpy(), "popularity": 0.0})
    return pd.concat([popular, tail], ignore_index=True) if len(popular) else tail


def day_popular(inputs: FusionInputs, index: ContentIndex) -> pd.DataFrame:
    """The day's popular list (the cold-start list and the fill) exactly as ``prepare_day`` builds it."""
    return _popular(inputs, _history(inputs)[1], index)


def prepare_day(inputs: FusionInputs) -> PreparedDay:
    """Steps 1-4 of the module docstring, independent of α (so α can be validated cheaply)."""
    day = inputs.day
    empty_pairs = pd.DataFrame({USER: pd.Series(dtype=object), ITEM: pd.Series(dtype=object)})
    daily, window = _history(inputs)
    history = (
        window[positive_mask(window, inputs.min_engagement)][[USER, ITEM]].drop_duplicates()
        if len(window)
        else empty_pairs
    )
    completed = daily[daily["completed"].fillna(False).astype(bool)][[USER, ITEM]] if len(daily) else empty_pairs
    seen = window[[USER, ITEM]] if len(window) else empty_pairs
    excluded = pd.concat([completed, seen], ignore_index=True).drop_duplicates()
    index = inputs.index if inputs.index is not None else ContentIndex.from_frame(inputs.vectors)
    candidates = user_content_candidates(
        history, inputs.als, index, excluded, inputs.content_candidates, neighbours=inputs.content_neighbours
    )
    normalised = normalise_candidates(candidates)
    published = pd.to_datetime(inputs.published, utc=True)
    age_days = (pd.Timestamp(day, tz="UTC") - published.dt.floor("D")).dt.days.clip(lower=0)
    # every user we know of gets a list: ALS users, users with history, users seen on any earlier day (cold start)
    users = sorted(set(inputs.als[USER]) | set(daily[USER]))
    popular = inputs.popular if inputs.popular is not None else _popular(inputs, window, index)
    return PreparedDay(day, normalised, age_days, users, popular, excluded, history, index)


def prepare_for_users(inputs: FusionInputs, users: set) -> PreparedDay:
    """``prepare_day`` for ``users`` only (the α validation sample): their rows are exactly what the whole day's
    preparation holds for them; the popular list still counts every listener."""
    index = inputs.index if inputs.index is not None else ContentIndex.from_frame(inputs.vectors)
    popular = inputs.popular if inputs.popular is not None else day_popular(inputs, index)
    mine = lambda frame: frame[frame[USER].isin(users)] if len(frame) else frame  # noqa: E731
    return prepare_day(replace(inputs, als=mine(inputs.als), daily=mine(inputs.daily), index=index, popular=popular))


def recommend(prepared: PreparedDay, curve: AlphaCurve, top_n: int) -> pd.DataFrame:
    """Steps 5-6: fused top-N per user with popular fill (the final recommendations of the day)."""
    fused = fuse(prepared.normalised, prepared.age_days, curve, top_n)
    return fill_with_popular(fused, prepared.users, prepared.popular, prepared.excluded, top_n)


FUSION_BLOCK_USERS = 100_000


def recommend_day(inputs: FusionInputs, curve: AlphaCurve, top_n: int) -> pd.DataFrame:
    """``recommend(prepare_day(inputs), ...)`` for every listener, FUSION_BLOCK_USERS listeners at a time.

    A listener's list depends only on their own rows, the day's popular list and the catalog, so the blocks give
    exactly the whole day's rows while memory holds one block's candidates, not a million listeners' at once. Each
    row's block is found once (a code per user id), so a block's rows are cut by an integer comparison rather than
    by looking every row's user up in the block's set."""
    index = inputs.index if inputs.index is not None else ContentIndex.from_frame(inputs.vectors)
    popular = inputs.popular if inputs.popular is not None else day_popular(inputs, index)
    inputs = replace(inputs, index=index, popular=popular)
    users = pd.Index(
        pd.unique(np.concatenate([inputs.als[USER].to_numpy(object), inputs.daily[USER].to_numpy(object)]))
    )
    if len(users) <= FUSION_BLOCK_USERS:
        return recommend(prepare_day(inputs), curve, top_n)
    users = users.sort_values()
    als_block = users.get_indexer(inputs.als[USER]) // FUSION_BLOCK_USERS
    daily_block = users.get_indexer(inputs.daily[USER]) // FUSION_BLOCK_USERS
    blocks = [
        recommend(
            prepare_day(replace(inputs, als=inputs.als[als_block == block], daily=inputs.daily[daily_block == block])),
            curve,
            top_n,
        )
        for block in range(-(-len(users) // FUSION_BLOCK_USERS))
    ]
    return pd.concat(blocks, ignore_index=True)


def model_version(als_versions, embed_models, curve: AlphaCurve) -> str:
    """One string naming what produced a list: ALS model version(s), embedding model(s), α curve."""
    als_part = "+".join(sorted({str(v) for v in als_versions if v})) or "no-als"
    content_part = "+".join(sorted({str(m) for m in embed_models if m})) or "no-content"
    return f"hybrid[{als_part}|{content_part}|{curve.label()}]"
