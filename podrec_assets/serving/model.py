"""The model `podrec serve` answers with: the newest day of `final_recommendations` and what made it, from the lake.

A served model is one day D: the ALS episode factors of `als_factors[D]`, the content index and popular list the
batch fused D with (``DayData``, the batch's own reader), the α curve named in D's model version, and the catalog
(titles, categories, publication times) for filters and explanations. The day's lists and each listener's rows of
``user_episode_daily`` (``core.online.state_rows``) are handed to the store once, when a replica first loads D.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from podrec_assets.core import fusion, online
from podrec_assets.defs.hybrid.day_data import DayData, frame_of
from podrec_assets.resources.lake import LakeResource
from podrec_assets.settings import Settings

LISTS_TABLE = "final_recommendations"
UNKNOWN_EPISODE = {"title": None, "podcast_title": None, "categories": [], "published_at": None}


class NoModel(RuntimeError):
    """The lake holds no day podrec serve could answer with yet."""


class LakeDay(NamedTuple):
    """The newest day of final_recommendations and a hash of that day's data files (changes when D is rewritten)."""

    day: date
    files: str

    @property
    def version(self) -> str:
        """The store's key for the model of this day: "<day>@<files hash>"."""
        return f"{self.day.isoformat()}@{self.files}"


def lake_fingerprint(lake: LakeResource) -> LakeDay | None:
    """The lake's newest day of lists (from the Delta log: no data file is read); None when there is none."""
    if not lake.exists(LISTS_TABLE):
        return None
    import pyarrow as pa

    actions = pa.table(lake.table(LISTS_TABLE).get_add_actions(flatten=True))
    if actions.num_rows == 0 or "partition.date" not in actions.column_names:
        return None
    days = actions.column("partition.date").to_pylist()
    newest = max(d for d in days if d is not None)
    paths = sorted(p for p, d in zip(actions.column("path").to_pylist(), days) if d == newest)
    return LakeDay(newest, hashlib.sha1("\n".join(paths).encode()).hexdigest()[:10])


@dataclass
class ServedModel:
    """One day's model in memory (read-only once built; a reload builds a new one and swaps the reference)."""

    version: str  # the store's key for this model: "<day>@<files hash>"
    served: online.ServedDay
    catalog: pd.DataFrame  # by episode_id: episode_title, podcast_title, categories (tuple), published_at
    popular_ids: list[str]
    latest_ids: list[str]
    loaded_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    load_seconds: float = 0.0
    meta: dict = field(
        init=False
    )  # episode_id -> the episode's fields in API answers (built once: no pandas per request)
    category_keys: dict = field(init=False)  # episode_id -> its categories, lower case
    popular_score: dict = field(init=False)  # episode_id -> the score a popular fill gets (as core.fusion gives it)

    def __post_init__(self) -> None:
        c = self.catalog
        self.meta = {
            eid: {
                "title": title,
                "podcast_title": podcast if isinstance(podcast, str) else None,
                "categories": list(cats),
                "published_at": when.isoformat() if pd.notna(when) else None,
            }
            for eid, title, podcast, cats, when in zip(
                c.index, c["episode_title"], c["podcast_title"], c["categories"], c["published_at"]
            )
        }
        self.category_keys = dict(zip(c.index, c["category_keys"]))
        popular = self.served.popular
        top = float(popular["popularity"].max()) if len(popular) else 1.0
        self.popular_score = {
            eid: float(value) / (top or 1.0) - 1.0 for eid, value in zip(popular["episode_id"], popular["popularity"])
        }

    @property
    def day(self) -> date:
        return self.served.day

    def title(self, episode_id: str | None) -> str | None:
        meta = self.meta.get(episode_id) if episode_id is not None else None
        return meta["title"] if meta else None

    def knows(self, episode_id: str) -> bool:
        return episode_id in self.meta

    def in_category(self, episode_id: str, category: str | None) -> bool:
        """``category`` matches one of the episode's categories, case-insensitively (None: every episode)."""
        return category is None or category.lower() in self.category_keys.get(episode_id, ())

    def item(self, episode_id: str, **fields) -> dict:
        """An episode as the API shows it: id, title, podcast, categories, published_at, then ``fields``."""
        meta = self.meta.get(episode_id) or {
            "title": None,
            "podcast_title": None,
            "categories": [],
            "published_at": None,
        }
        return {"episode_id": episode_id, **meta, **fields}


def _catalog(data: DayData, day: date) -> pd.DataFrame:
    episodes = data.episodes_through(day)
    categories = [tuple(c) if c is not None else () for c in episodes["categories"]]
    catalog = pd.DataFrame(
        {
            "episode_title": episodes["episode_title"].to_numpy(),
            "podcast_title": episodes["podcast_title"].to_numpy(),
            "categories": categories,
            "category_keys": [frozenset(c.lower() for c in cats) for cats in categories],
            "published_at": pd.to_datetime(episodes["published_at"], utc=True).to_numpy(),
        },
        index=pd.Index(episodes["episode_id"].to_numpy(), name="episode_id"),
    )
    catalog["published_at"] = pd.to_datetime(catalog["published_at"], utc=True)
    return catalog


def load_model(
    lake: LakeResource, settings: Settings, fingerprint: LakeDay | None = None
) -> tuple[ServedModel, DayData, "pa.Table"]:
    """The newest day's model (``fingerprint``: that day, when the caller has read it), the batch reader it came
    from, and that day's lists (Arrow, sorted by user_id); NoModel when there is none."""
    started = time.perf_counter()
    fingerprint = fingerprint or lake_fingerprint(lake)
    if fingerprint is None:
        raise NoModel(
            f"no day of {LISTS_TABLE} in the lake at {lake.root}: materialize the graph first "
            "(`podrec demo`, or final_recommendations in the Dagster UI)"
        )
    day, files = fingerprint
    lists = lake.read_day(LISTS_TABLE, day).sort_by([("user_id", "ascending"), ("rank", "ascending")])
    if lists.num_rows == 0:
        raise NoModel(f"{LISTS_TABLE} for {day} is empty: nothing to serve")
    model_version = str(lists.column("model_version")[0].as_py())
    curve = fusion.AlphaCurve.from_model_version(model_version)
    factors = frame_of(lake.read_day("als_factors", day, columns=["kind", "id", "vector", "model_version"]))
    episodes_f = factors[factors["kind"] == "episode"] if len(factors) else factors
    if episodes_f is None or not len(episodes_f):
        raise NoModel(f"als_factors holds no episode factors for {day}: materialize als_top_n for {day}")
    items = online.ItemFactors(
        episodes_f["id"].to_numpy(),
        np.stack([np.asarray(v, dtype=np.float32) for v in episodes_f["vector"]]),
        settings.als_regularization,
        settings.als_confidence_alpha,
        scale_regularization=str(episodes_f["model_version"].iloc[0]).startswith("als-spark-"),
    )
    data = DayData(lake, settings, day)
    inputs = data.inputs(day, with_als=False)
    index, popular = inputs.index, inputs.popular  # built once with the day's inputs
    served = online.ServedDay(
        day=day,
        model_version=model_version,
        items=items,
        index=index,
        published=inputs.published,
        popular=popular,
        curve=curve,
        top_n=settings.top_n,
        als_window_days=settings.als_window_days,
        history_days=settings.history_days,
        min_engagement=settings.positive_engagement,
        popularity_half_life_days=settings.popularity_half_life_days,
        content_candidates=settings.content_candidates,
        content_neighbours=settings.content_neighbours,
    )
    catalog = _catalog(data, day)
    latest = catalog.sort_values(["published_at"], ascending=False, kind="mergesort").index.tolist()
    model = ServedModel(
        version=fingerprint.version,
        served=served,
        catalog=catalog,
        popular_ids=popular["episode_id"].tolist(),
        latest_ids=latest,
        load_seconds=time.perf_counter() - started,
    )
    return model, data, lists
