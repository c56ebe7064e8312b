"""The lake rows a day's fusion and evaluation read (final_recommendations, recommendation_metrics, podrec serve).

Content scores need the vectors of every episode published up to D (a user's history can be any of them), so the
catalog is read from the first partition to D. Listening is read as ``listener_history`` of the day before a bounded
window (who was ever seen, what was ever completed; not what was only heard, which no list depends on) plus the
window's days of `user_episode_daily`: what all history says to fusion, without reading every day since the first.
What is done with the rows is ``core.day_frames``.
"""

from datetime import date

import pandas as pd

from podrec_assets.core.day_frames import DayFrames, FusionSettings
from podrec_assets.defs.partitions import THROUGH_D, DayWindow
from podrec_assets.defs.state import listening_through
from podrec_assets.resources.lake import LakeResource
from podrec_assets.settings import Settings, get_settings

# als_top_n of D and of the days before it that the alpha curve is validated on (lineage: final_recommendations)
ALS_DAYS = DayWindow(-get_settings().fusion_validation_days)


def frame_of(table, dates_as_objects: bool = True) -> pd.DataFrame:
    """An Arrow table as pandas (an empty frame for the column-less table of a missing Delta table)."""
    return table.to_pandas(date_as_object=dates_as_objects) if table.num_columns else pd.DataFrame()


def read_frame(lake: LakeResource, name: str, start: date, end: date, columns: list[str]) -> pd.DataFrame:
    frame = frame_of(lake.read_days(name, start, end, columns=columns))
    return frame if not frame.empty else pd.DataFrame({c: [] for c in columns})


def fusion_settings(settings: Settings) -> FusionSettings:
    return FusionSettings(
        top_n=settings.top_n,
        history_days=settings.history_days,
        min_engagement=settings.positive_engagement,
        popularity_half_life_days=settings.popularity_half_life_days,
        content_candidates=settings.content_candidates,
        content_neighbours=settings.content_neighbours,
    )


class DayData(DayFrames):
    """``DayFrames`` read from the lake for the days through ``last_day`` (als_top_n on first use)."""

    def __init__(self, lake: LakeResource, settings: Settings, last_day: date):
        first, _ = THROUGH_D.days(last_day, first=settings.start_day)
        episode_columns = ["episode_id", "published_at", "categories", "episode_title", "podcast_title", "date"]
        als_columns = ["user_id", "episode_id", "rank", "score", "model_version", "date"]
        super().__init__(
            daily=frame_of(listening_through(lake, last_day, settings, heard=False), dates_as_objects=False),
            vectors=read_frame(lake, "episode_vectors", first, last_day, ["episode_id", "vector", "model", "date"]),
            episodes=read_frame(lake, "episodes", first, last_day, episode_columns),
            settings=fusion_settings(settings),
            read_als=lambda day: frame_of(lake.read_day("als_top_n", day, columns=als_columns), dates_as_objects=False),
        )
