"""The API's request parameters and answers as types: what FastAPI validates and the OpenAPI schema shows."""

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, Field

from podrec_assets.core.events import EVENT_TYPES, REQUIRED_FIELDS

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}$"
MAX_K = 100
MAX_EVENTS = 1000


UserId = Annotated[str, Path(pattern=ID_PATTERN, description="the listener's id (user-events user_id)")]
EpisodeId = Annotated[str, Path(pattern=ID_PATTERN, description="an episode id of the catalog")]
K = Annotated[int, Query(ge=1, le=MAX_K, description=f"how many episodes (1-{MAX_K})")]
Category = Annotated[
    str | None, Query(min_length=1, max_length=64, description="only episodes of this category (any case)")
]


# answers are built as plain dicts for speed; these models document them
class Episode(BaseModel):
    episode_id: str
    title: str | None
    podcast_title: str | None
    categories: list[str]
    published_at: str | None = Field(description="ISO-8601 UTC")


class RecommendedEpisode(Episode):
    rank: int
    score: float = Field(description="fused score in [0, 1]; popular fills score below 0")
    reason: str = Field(description="hybrid | als | content | popular")
    because_episode_id: str | None = Field(description="the listened episode a content match is closest to")
    because_episode_title: str | None
    als_score: float | None
    content_score: float | None


class Recommendations(BaseModel):
    user_id: str
    model_version: str = Field(description="the fused model (ALS version, embedding model, alpha curve)")
    model_day: str = Field(description="the batch day the model was trained on")
    live: bool = Field(description="true when the list was recomputed from events after the batch")
    cold_start: bool = Field(description="true when the listener is unknown or has no personal candidates")
    computed_at: str | None
    items: list[RecommendedEpisode]


class SimilarEpisode(Episode):
    similarity: float


class Similar(BaseModel):
    episode_id: str
    model_day: str
    items: list[SimilarEpisode]


class RankedEpisode(Episode):
    rank: int
    score: float | None


class EpisodeList(BaseModel):
    model_day: str
    items: list[RankedEpisode]


class EventsAccepted(BaseModel):
    published: int = Field(description="events published to the user-events topic (acknowledged by Kafka)")


class Rejected(BaseModel):
    index: int
    reason: str


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class EventsRejected(ErrorBody):
    rejected: list[Rejected] = []
    published: int = 0


# The user-events contract as JSON Schema, for the docs and for clients; core.events.parse_event is what checks it.
USER_EVENT_SCHEMA = {
    "type": "object",
    "required": list(REQUIRED_FIELDS),
    "properties": {
        "event_id": {"type": "string", "minLength": 1, "description": "a uuid"},
        "ts": {"type": "string", "format": "date-time", "description": "ISO-8601 with a zone (UTC)"},
        "user_id": {"type": "string", "minLength": 1},
        "episode_id": {"type": "string", "minLength": 1, "description": "an episode of the catalog"},
        "event": {"type": "string", "enum": list(EVENT_TYPES)},
        "device": {"type": "string", "minLength": 1},
        "rating": {"type": ["integer", "null"], "minimum": 1, "maximum": 5, "description": "only on rate"},
        "position_sec": {"type": "number", "minimum": 0},
        "from_sec": {"type": "number", "minimum": 0},
        "to_sec": {"type": "number", "minimum": 0, "description": "at least from_sec"},
        "played_pct": {"type": "number", "minimum": 0, "maximum": 1},
    },
}
EVENTS_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "array", "minItems": 1, "maxItems": MAX_EVENTS, "items": USER_EVENT_SCHEMA}
        }
    },
}

ERRORS = {422: {"model": ErrorBody, "description": "invalid request"}, 503: {"model": ErrorBody}}
