"""The lake rows a day's fusion and evaluation read (final_recommendations, recommendation_metrics, podrec serve).

Content scores need the vectors of every episode published up to D (a user's history can be any of them), so the
catalog is read from the first partition to D. Listening is read as ``listener_history`` of the day before a bounded
window (who was ever seen, what was ever completed; not what was only heard, which no list depends on) plus the
window's days of `user_episode_daily`: what all history says to fusion, without reading every day since the first.
"""

from datetime import date
from functools import cached_property

import pandas as pd

from podrec_assets.core import evaluation, fusion
from podrec_assets.core.popularity import positive_mask
from podrec_assets.defs.partitions import THROUGH_D, DayWindow
from podrec_assets.defs.state import listening_through
from podrec_assets.resources.lake import LakeResource
from podrec_assets.settings import Settings, get_settings

# als_top_n of D and of the days before it that the alpha curve is validated on (lineage: final_recommendations)
ALS_DAYS = DayWindow(-get_settings().fusion_validation_days)


def frame_of(table) -> pd.DataFrame:
    """An Arrow table as pandas (an empty frame for the column-less table of a missing Delta table)."""
    return table.to_pandas() if table.num_columns else pd.DataFrame()


def read_frame(lake: LakeResource, name: str, start: date, end: date, columns: list[str]) -> pd.DataFrame:
    frame = frame_of(lake.read_days(name, start, end, columns=columns))
    return frame if not frame.empty else pd.DataFrame({c: [] for c in columns})


def _as_days(frame: pd.DataFrame) -> pd.DataFrame:
    frame["date"] = pd.to_datetime(frame["date"]).dt.date if len(frame) else frame["date"]
    return frame


class DayData:
    """The lake rows one fusion/evaluation run needs, read once and cut per day."""

    def __init__(self, lake: LakeResource, settings: Settings, last_day: date):
        first, _ = THROUGH_D.days(last_day, first=settings.start_day)
        self.settings = settings
        self.daily = frame_of(listening_through(lake, last_day, settings, heard=False))
        self.vectors = read_frame(lake, "episode_vectors", first, last_day, ["episode_id", "vector", "model", "date"])
        self.episodes = read_frame(
            lake,
            "episodes",
            first,
            last_day,
            ["episode_id", "published_at", "categories", "episode_title", "podcast_title", "date"],
        )
        for frame in (self.daily, self.vectors, self.episodes):
            _as_days(frame)
        self._lake, self._last_day = lake, last_day

    @cached_property
    def als(self) -> pd.DataFrame:
        """als_top_n of the day and the validation days before it (read when first asked: serving never does)."""
        frame = read_frame(
            self._lake,
            "als_top_n",
            *ALS_DAYS.days(self._last_day),
            ["user_id", "episode_id", "rank", "score", "model_version", "date"],
        )
        return _as_days(frame)

    def published(self, day: date) -> pd.Series:
        catalog = self.episodes[self.episodes["date"] <= day].drop_duplicates("episode_id", keep="last")
        return pd.Series(pd.to_datetime(catalog["published_at"], utc=True).to_numpy(), index=catalog["episode_id"])

    def als_of(self, day: date) -> pd.DataFrame:
        return self.als[self.als["date"] == day]

    def vectors_of(self, day: date) -> pd.DataFrame:
        """Vectors published by ``day``, of the model the latest day used (models are never mixed)."""
        vectors = self.vectors[self.vectors["date"] <= day]
        if vectors.empty:
            return vectors
        latest_model = vectors.sort_values("date")["model"].iloc[-1]
        return vectors[vectors["model"] == latest_model]

    def inputs(self, day: date, with_als: bool = True) -> fusion.FusionInputs:
        """What fusing ``day`` reads: als_top_n of the day (unless not ``with_als``: podrec serve makes its own),
        user_episode_daily to the day, the catalog's vectors."""
        s = self.settings
        no_als = pd.DataFrame({"user_id": [], "episode_id": [], "score": []})
        return fusion.FusionInputs(
            day=day,
            als=self.als_of(day) if with_als else no_als,
            daily=self.daily[self.daily["date"] <= day],
            vectors=self.vectors_of(day),
            published=self.published(day),
            history_days=s.history_days,
            min_engagement=s.positive_engagement,
            popularity_half_life_days=s.popularity_half_life_days,
            content_candidates=s.content_candidates,
            content_neighbours=s.content_neighbours,
        )

    def prepare(self, day: date, users: set | None = None) -> fusion.PreparedDay:
        """Steps 1-4 of fusion for ``day``; for ``users`` only when given (the α validation sample): their rows are
        exactly what the whole day's preparation holds for them, the popular list still counts every listener."""
        inputs = self.inputs(day)
        return fusion.prepare_day(inputs) if users is None else fusion.prepare_for_users(inputs, users)

    def recommend(self, day: date, curve: fusion.AlphaCurve) -> pd.DataFrame:
        """The day's lists for every listener (``fusion.recommend_day``: blocks of listeners, bounded memory)."""
        return fusion.recommend_day(self.inputs(day), curve, self.settings.top_n)

    def engaged_on(self, day: date) -> set:
        """Users with a positive engagement on ``day`` (the only ones a list for the day before can be judged on)."""
        rows = self.daily[self.daily["date"] == day]
        return set(rows[positive_mask(rows, self.settings.positive_engagement)]["user_id"]) if len(rows) else set()

    def relevant(self, prepared: fusion.PreparedDay, truth_day: date) -> pd.DataFrame:
        return evaluation.relevant_pairs(
            self.daily[self.daily["date"] == truth_day], self.settings.positive_engagement, prepared.excluded
        )
