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
   with recently popular episodes they have not engaged with, then with the rest of the catalog, newest first
   (reason ``popular``).

``reason``: ``hybrid`` when a candidate is in both the ALS top-N and the user's content candidates, ``als`` or
``content`` when it came from one only, ``popular`` for the fill.
"""

from __future__ import annotations

import re
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

    @classmethod
    def from_model_version(cls, version: str) -> "AlphaCurve":
        """The curve named in a ``model_version`` string (the inverse of ``label``); ValueError if none is."""
        match = re.search(r"a=([0-9.eE+-]+),a_new=([0-9.eE+-]+),ramp=(\d+)d", version or "")
        if match is None:
            raise ValueError(f"no alpha curve in model version {version!r}")
        return cls(float(match.group(1)), float(match.group(2)), int(match.group(3)))


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
    candidates = user_content_candidates(history, inputs.als, index, excluded, inputs.content_candidates)
    normalised = normalise_candidates(candidates)
    published = pd.to_datetime(inputs.published, utc=True)
    age_days = (pd.Timestamp(day, tz="UTC") - published.dt.floor("D")).dt.days.clip(lower=0)
    # every user we know of gets a list: ALS users, users with history, users seen on any earlier day (cold start)
    users = sorted(set(inputs.als[USER]) | set(daily[USER]))
    popular = inputs.popular if inputs.popular is not None else _popular(inputs, window, index)
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
