"""One day's fusion and evaluation over frames read once: day slicing, the α curve's validation, the day's lists.

The frames (listening, the catalog's vectors and metadata, als_top_n) cover a run of days ending at the last day
any caller asks about; each method cuts the days it needs. Every frame is kept in date order with ``date`` as
datetime64, so "the rows to day D" or "the rows of day D" is a slice found by binary search: at a million
listeners the listening frame holds tens of millions of rows, and a per-day filter (or a date object per row)
would copy or allocate all of them on every call. No I/O here: ``defs/hybrid/day_data.py`` reads the lake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Callable

import pandas as pd

from podrec_assets.core import evaluation, fusion, metrics
from podrec_assets.core.content_candidates import ContentIndex
from podrec_assets.core.popularity import positive_mask


def in_date_order(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame`` with ``date`` as datetime64[ns] and its rows sorted by date (``columns``: those of an empty one)."""
    if frame.empty:
        frame = pd.DataFrame({c: [] for c in columns})
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
    if not frame["date"].is_monotonic_increasing:
        frame = frame.sort_values("date", kind="stable", ignore_index=True)
    return frame


def days_of(frame: pd.DataFrame, first: date | None, last: date) -> pd.DataFrame:
    """The rows of ``first``..``last`` (from the start when ``first`` is None): a slice of a date-ordered frame."""
    dates = frame["date"]
    lo = 0 if first is None else dates.searchsorted(pd.Timestamp(first), side="left")
    return frame.iloc[lo : dates.searchsorted(pd.Timestamp(last), side="right")]


@dataclass(frozen=True)
class FusionSettings:
    """What fusing and judging a day needs to know besides the data (from the settings module)."""

    top_n: int
    history_days: int
    min_engagement: float
    popularity_half_life_days: float
    content_candidates: int
    content_neighbours: int


class DayFrames:
    """The rows a run of days' fusion and evaluation read, in date order, cut per day.

    ``daily``: user_episode_daily (user_id, episode_id, engagement, completed, date), or what stands for all its
    earlier days; ``vectors``: episode_id, vector, model, date; ``episodes``: episode_id, published_at, ... date;
    ``read_als(day)``: als_top_n rows of one day (user_id, episode_id, rank, score, model_version, date), read when
    first asked and kept until another day is (serving never asks; the α validation needs a sample of each earlier
    day, fusion the whole of D: at a million listeners each day is ten million rows)."""

    def __init__(
        self,
        daily: pd.DataFrame,
        vectors: pd.DataFrame,
        episodes: pd.DataFrame,
        settings: FusionSettings,
        read_als: Callable[[date], pd.DataFrame] = lambda day: pd.DataFrame(),
    ):
        self.daily = in_date_order(daily, ["user_id", "episode_id", "engagement", "completed", "date"])
        self.vectors = in_date_order(vectors, ["episode_id", "vector", "model", "date"])
        self.episodes = in_date_order(episodes, ["episode_id", "published_at", "episode_title", "date"])
        self.settings = settings
        self._read_als = read_als
        self._als: tuple[date, pd.DataFrame] | None = None
        self._day_model: tuple[date, ContentIndex, pd.DataFrame] | None = None  # the last day's index, popular list

    def als_of(self, day: date) -> pd.DataFrame:
        if self._als is None or self._als[0] != day:
            self._als = None  # the previous day's rows go before the next day's come
            columns = ["user_id", "episode_id", "rank", "score", "model_version", "date"]
            self._als = (day, in_date_order(self._read_als(day), columns))
        return self._als[1]

    def daily_on(self, day: date) -> pd.DataFrame:
        """user_episode_daily of ``day``."""
        return days_of(self.daily, day, day)

    def daily_between(self, first: date, last: date) -> pd.DataFrame:
        return days_of(self.daily, first, last)

    def episodes_through(self, day: date) -> pd.DataFrame:
        """The catalog published by ``day``, one row per episode (its latest)."""
        return days_of(self.episodes, None, day).drop_duplicates("episode_id", keep="last")

    def published(self, day: date) -> pd.Series:
        catalog = self.episodes_through(day)
        return pd.Series(pd.to_datetime(catalog["published_at"], utc=True).to_numpy(), index=catalog["episode_id"])

    def vectors_of(self, day: date) -> pd.DataFrame:
        """Vectors published by ``day``, of the model the latest day used (models are never mixed)."""
        vectors = days_of(self.vectors, None, day)
        return vectors[vectors["model"] == vectors["model"].iloc[-1]] if len(vectors) else vectors

    def inputs(self, day: date, with_als: bool = True) -> fusion.FusionInputs:
        """What fusing ``day`` reads: als_top_n of the day (unless not ``with_als``: podrec serve makes its own),
        user_episode_daily to the day, the catalog's vectors; the day's content index and popular list, built once
        however often the day is fused (until another day is)."""
        s = self.settings
        inputs = fusion.FusionInputs(
            day=day,
            als=self.als_of(day) if with_als else pd.DataFrame({"user_id": [], "episode_id": [], "score": []}),
            daily=days_of(self.daily, None, day),
            vectors=self.vectors_of(day),
            published=self.published(day),
            history_days=s.history_days,
            min_engagement=s.min_engagement,
            popularity_half_life_days=s.popularity_half_life_days,
            content_candidates=s.content_candidates,
            content_neighbours=s.content_neighbours,
        )
        if self._day_model is None or self._day_model[0] != day:
            self._day_model = None  # the previous day's go before the next day's are built
            index = ContentIndex.from_frame(inputs.vectors)
            self._day_model = (day, index, fusion.day_popular(inputs, index))
        _, inputs.index, inputs.popular = self._day_model
        return inputs

    def prepare(self, day: date, users: set | None = None) -> fusion.PreparedDay:
        """Steps 1-4 of fusion for ``day``; for ``users`` only when given (a sample to judge): their rows are
        exactly what the whole day's preparation holds for them, the popular list still counts every listener."""
        inputs = self.inputs(day)
        return fusion.prepare_day(inputs) if users is None else fusion.prepare_for_users(inputs, users)

    def recommend(self, day: date, curve: fusion.AlphaCurve) -> pd.DataFrame:
        """The day's lists for every listener (``fusion.recommend_day``: blocks of listeners, bounded memory)."""
        return fusion.recommend_day(self.inputs(day), curve, self.settings.top_n)

    def engaged_on(self, day: date) -> set:
        """Users with a positive engagement on ``day`` (the only ones a list for the day before can be judged on)."""
        rows = self.daily_on(day)
        return set(rows[positive_mask(rows, self.settings.min_engagement)]["user_id"]) if len(rows) else set()

    def relevant(self, prepared: fusion.PreparedDay, truth_day: date) -> pd.DataFrame:
        return evaluation.relevant_pairs(self.daily_on(truth_day), self.settings.min_engagement, prepared.excluded)


@dataclass
class CurveChoice:
    """The α curve a day is fused with, and the evidence for it."""

    curve: fusion.AlphaCurve
    why: str
    evidence: pd.DataFrame = field(default_factory=pd.DataFrame)
    judged: list[int] = field(default_factory=list)  # listeners judged per validation day


def choose_curve(
    frames: DayFrames, day: date, default: fusion.AlphaCurve, validation_days: int, validation_users: int, k: int
) -> CurveChoice:
    """The α curve for ``day``, validated on the ``validation_days`` days V before it (lists for V judged against
    V+1; never D itself, whose lists recommendation_metrics judges on D+1), a stable sample of at most
    ``validation_users`` listeners each (``metrics.validation_sample``), by ``evaluation.select_alpha``."""
    pairs, judged = [], []
    for back in range(1, validation_days + 1):
        validation_day = day - timedelta(days=back)
        truth_day = validation_day + timedelta(days=1)
        if frames.als_of(validation_day).empty or frames.daily_on(truth_day).empty:
            continue
        sample = metrics.validation_sample(frames.engaged_on(truth_day), validation_users)
        prepared = frames.prepare(validation_day, users=sample)
        relevant = frames.relevant(prepared, truth_day)
        pairs.append((prepared, relevant[relevant["user_id"].isin(sample)]))
        judged.append(int(pairs[-1][1]["user_id"].nunique()))
    if not pairs:
        return CurveChoice(default, "kept the settings: no earlier day with als_top_n and a next day to validate on")
    curve, evidence, why = evaluation.select_alpha(pairs, frames.settings.top_n, k, default)
    return CurveChoice(curve, why, evidence, judged)
