"""The recommendation API of `podrec serve` (FastAPI): live lists, neighbours, popular and latest, event intake.

Requests read only memory (the served model) and Redis (one pipelined round trip for a listener's list and live
seen set); the model watcher and the event folder (``serving.live``) keep both current in background threads.
Every answer is JSON; a bad request gets a 4xx with the reason, an unavailable server a 503 that names it.
"""

import hmac
import json
import logging
import threading
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import orjson
from fastapi import Body, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from podrec_assets.core.events import InvalidEvent, format_ts, parse_event
from podrec_assets.core.registry import USER_EVENTS_TOPIC
from podrec_assets.serving import store as keys
from podrec_assets.serving.live import EventFolder, ModelHolder, ModelWatcher
from podrec_assets.serving.metrics import Metrics, MetricsMiddleware
from podrec_assets.serving.model import ServedModel
from podrec_assets.serving.schemas import (
    ERRORS,
    EVENTS_BODY,
    MAX_EVENTS,
    Category,
    EpisodeId,
    EpisodeList,
    ErrorBody,
    EventsAccepted,
    EventsRejected,
    K,
    Recommendations,
    Similar,
    UserId,
)
from podrec_assets.serving.store import ServingStore, StoreUnavailable
from podrec_assets.settings import Settings

log = logging.getLogger("podrec.serve")


FUTURE_TOLERANCE = timedelta(minutes=5)  # the batch's tolerance for a ts ahead of the record time


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: Any):
        self.status, self.error, self.detail = status, error, detail


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def create_app(settings: Settings, background: bool = True) -> FastAPI:
    """The API; ``background`` starts the model watcher and the event folder with it (off only in unit use)."""
    import redis.asyncio as aredis

    from podrec_assets.resources import build_resources

    holder = ModelHolder()
    metrics = Metrics()
    where = "PODREC_REDIS_URL" if settings.redis_external else settings.redis_server_url
    store = ServingStore(settings.redis_server_url, settings.serve_list_ttl_days * 86400, where=where)
    lake = build_resources(settings)["lake"]
    state: dict[str, Any] = {"producer": None}
    publish_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["redis"] = aredis.Redis.from_url(settings.redis_server_url, socket_timeout=2, socket_connect_timeout=2)
        watcher = ModelWatcher(settings, lake, store, holder, on_swap=lambda m: metrics.model_swaps.inc())
        folder = EventFolder(settings, store, holder, metrics)
        state["folder"] = folder
        if background:
            watcher.start()
            folder.start()
        yield
        if background:
            folder.stop()
            watcher.stop()
        if state["producer"] is not None:
            state["producer"].flush(10)
            state["producer"].close()
        await state["redis"].aclose()
        store.close()

    app = FastAPI(
        title="podrec recommendation API",
        version="1",
        description="Live podcast-episode recommendations: the day's hybrid lists (ALS + content), updated within "
        "a second of a listener's events. Lists, neighbours, popular and latest episodes; event intake to Kafka.",
        lifespan=lifespan,
    )
    app.state.holder, app.state.store, app.state.metrics, app.state.background = holder, store, metrics, state
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        if isinstance(exc.detail, dict):
            return _json({"error": exc.error, **exc.detail}, exc.status)
        return _json({"error": exc.error, "detail": exc.detail}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # loc/msg/type only: echoing the raw input could itself fail to encode (bytes, lone surrogates)
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return _json({"error": "invalid_request", "detail": errors}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _json({"error": "http_error", "detail": exc.detail}, exc.status_code)

    @app.exception_handler(StoreUnavailable)
    async def _store(request: Request, exc: StoreUnavailable):
        return _json({"error": "store_unavailable", "detail": str(exc)}, 503)

    def model_or_503() -> ServedModel:
        model = holder.model
        if model is None:
            raise ApiError(
                503, "no_model", holder.error or "the first model is still loading from the lake; retry shortly"
            )
        return model

    async def redis_call(pipe):
        import redis

        try:
            return await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise store.unavailable(exc) from None

    def fill_popular(model: ServedModel, items: list, skip: set, k: int, category: str | None) -> None:
        have = {item["episode_id"] for item in items}
        for eid in model.popular_ids:
            if len(items) >= k:
                return
            if eid in have or eid in skip or not model.in_category(eid, category):
                continue
            items.append(
                {
                    "episode_id": eid,
                    "score": model.popular_score.get(eid, -1.0),
                    "reason": "popular",
                    "because_episode_id": None,
                    "als_score": None,
                    "content_score": None,
                }
            )

    @app.get("/recommend/{user_id}", response_model=Recommendations, responses=ERRORS, tags=["recommendations"])
    async def recommend(
        user_id: UserId,
        k: K = 10,
        category: Category = None,
        exclude_seen: Annotated[
            bool, Query(description="hide episodes the listener touched since the batch at once (before fold-in)")
        ] = True,
    ):
        """The listener's live hybrid list: the day's batch list, or the one recomputed from their events since.

        Unknown listeners get the day's popular list (`cold_start: true`). A list shorter than `k` (or thinned by
        `category`) is filled with popular episodes the listener has not touched.
        """
        model = model_or_503()
        pipe = state["redis"].pipeline(transaction=False)
        pipe.get(keys.list_key(model.version, user_id))
        pipe.smembers(keys.seen_key(model.version, user_id))
        raw, seen_raw = await redis_call(pipe)
        seen = {s.decode() for s in seen_raw} if exclude_seen else set()
        if raw is None:
            doc = {"items": [], "hide": [], "live": False, "cold_start": True, "computed_at": None}
        else:
            doc = orjson.loads(raw)
        hide = set(doc["hide"]) | seen
        items = [
            item
            for item in doc["items"]
            if item["episode_id"] not in seen and model.in_category(item["episode_id"], category)
        ][:k]
        if len(items) < k:
            fill_popular(model, items, hide, k, category)
        answer = [
            model.item(
                item["episode_id"],
                rank=rank,
                score=item["score"],
                reason=item["reason"],
                because_episode_id=item["because_episode_id"],
                because_episode_title=model.title(item["because_episode_id"]),
                als_score=item["als_score"],
                content_score=item["content_score"],
            )
            for rank, item in enumerate(items, start=1)
        ]
        return _json(
            {
                "user_id": user_id,
                "model_version": model.served.model_version,
                "model_day": model.day.isoformat(),
                "live": doc["live"],
                "cold_start": doc["cold_start"],
                "computed_at": doc["computed_at"],
                "items": answer,
            }
        )

    @app.get("/similar/{episode_id}", response_model=Similar, responses={404: {"model": ErrorBody}, **ERRORS})
    async def similar(episode_id: EpisodeId, k: K = 10):
        """The episode's nearest neighbours by content (cosine of transcript embeddings, exact over the catalog)."""
        import numpy as np

        model = model_or_503()
        index = model.served.index
        if episode_id not in index.position:
            reason = "has no content vector yet" if model.knows(episode_id) else "is not in the catalog"
            raise ApiError(404, "unknown_episode", f"episode {episode_id!r} {reason} (model day {model.day})")
        row = index.position[episode_id]
        sims = index.matrix @ index.matrix[row]
        sims[row] = -np.inf
        take = min(k, len(sims) - 1)
        top = np.argpartition(-sims, take - 1)[:take] if take > 0 else np.zeros(0, int)
        top = top[np.lexsort((top, -sims[top]))]
        items = [model.item(str(index.ids[i]), similarity=float(sims[i])) for i in top]
        return _json({"episode_id": episode_id, "model_day": model.day.isoformat(), "items": items})

    def ranked(model: ServedModel, ids: list[str], k: int, category: str | None, score) -> Response:
        chosen = [eid for eid in ids if model.in_category(eid, category)][:k]
        items = [model.item(eid, rank=r, score=score(eid)) for r, eid in enumerate(chosen, start=1)]
        return _json({"model_day": model.day.isoformat(), "items": items})

    @app.get("/popular", response_model=EpisodeList, responses=ERRORS, tags=["lists"])
    async def popular(k: K = 10, category: Category = None):
        """Recently popular episodes (positive listeners, each day weighted by its age's half-life), as in fusion."""
        model = model_or_503()
        return ranked(model, model.popular_ids, k, category, lambda e: model.popular_score.get(e))

    @app.get("/latest", response_model=EpisodeList, responses=ERRORS, tags=["lists"])
    async def latest(k: K = 10, category: Category = None):
        """The newest episodes of the catalog, newest first (score: none)."""
        model = model_or_503()
        return ranked(model, model.latest_ids, k, category, lambda e: None)

    @app.post(
        "/events",
        status_code=202,
        response_model=EventsAccepted,
        responses={401: {"model": ErrorBody}, 422: {"model": EventsRejected}, 503: {"model": ErrorBody}},
        tags=["events"],
        openapi_extra={"requestBody": EVENTS_BODY},
    )
    async def post_events(
        events: Annotated[
            list[Any],
            Body(
                min_length=1,
                max_length=MAX_EVENTS,
                description="listening events in the user-events contract (event_id, ts, user_id, episode_id, "
                "event, device, rating, position_sec, from_sec, to_sec, played_pct)",
            ),
        ],
        x_api_key: Annotated[str | None, Header(description="required when PODREC_SERVE_API_KEY is set")] = None,
    ):
        """Validate listening events and publish them to Kafka (any bad event: 422 and none is sent).

        The record time is the time of sending, as for any producer; an event's `ts` must be on today's UTC day and
        not ahead of now (the batch's `timestamp_mismatch` / `future_timestamp` rules). Delivery is at least once:
        a retried request may publish an event twice, and both the batch and the live fold-in keep one per
        `event_id`.
        """
        from starlette.concurrency import run_in_threadpool

        if settings.serve_api_key and not hmac.compare_digest(
            (x_api_key or "").encode(), settings.serve_api_key.encode()
        ):
            raise ApiError(401, "unauthorized", "POST /events needs the X-API-Key header (PODREC_SERVE_API_KEY)")
        model = holder.model
        now = datetime.now(timezone.utc)
        parsed, rejected, ids = [], [], set()
        for i, event in enumerate(events):
            try:
                payload = json.dumps(event, ensure_ascii=True, allow_nan=True)
                checked = parse_event(payload.encode())
            except InvalidEvent as exc:
                rejected.append({"index": i, "reason": str(exc)})
                continue
            except (TypeError, ValueError, OverflowError) as exc:
                rejected.append({"index": i, "reason": f"invalid_json: {exc}"})
                continue
            reason = None
            if checked["ts"] > now + FUTURE_TOLERANCE:
                reason = f"future_timestamp: ts {format_ts(checked['ts'])} is after now {format_ts(now)}"
            elif checked["ts"].date() != now.date():
                reason = f"timestamp_mismatch: ts {format_ts(checked['ts'])} is not on today's day {now.date()}"
            elif model is not None and not model.knows(checked["episode_id"]):
                reason = f"unknown_episode: {checked['episode_id']!r:.60}"
            elif checked["event_id"] in ids:
                reason = f"duplicate_event_id: {checked['event_id']!r:.60} appears twice in the request"
            if reason:
                rejected.append({"index": i, "reason": reason})
                continue
            ids.add(checked["event_id"])
            parsed.append((checked, payload))
        if rejected:
            metrics.rejected.inc(len(rejected))
            detail = f"{len(rejected)} of {len(events)} events break the user-events contract; none was published"
            raise ApiError(422, "invalid_events", {"detail": detail, "rejected": rejected[:100], "published": 0})

        def publish() -> int:
            # one request at a time on the shared producer: its failure count is then this request's
            with publish_lock:
                if state["producer"] is None:
                    from podrec_assets.resources.kafka import Producer

                    state["producer"] = Producer(settings.kafka_servers, {"linger.ms": 1}, delivery_timeout_s=10)
                producer = state["producer"]
                try:
                    for checked, payload in parsed:
                        producer.send(USER_EVENTS_TOPIC, payload.encode(), key=checked["user_id"].encode())
                    producer.flush(10)
                except Exception:
                    state["producer"] = None  # it counts its failures for good: the next request gets a fresh one
                    producer.close()
                    raise
            return len(parsed)

        try:
            published = await run_in_threadpool(publish)
        except Exception as exc:  # librdkafka's errors, a broker that does not acknowledge
            raise ApiError(503, "kafka_unavailable", f"Kafka at {settings.kafka_servers}: {exc}") from None
        metrics.published.inc(published)
        if model is not None:  # hide them now, before the fold-in recomputes the lists (exclude_seen)
            pipe = state["redis"].pipeline(transaction=False)
            for checked, _ in parsed:
                pipe.sadd(keys.seen_key(model.version, checked["user_id"]), checked["episode_id"])
                pipe.expire(keys.seen_key(model.version, checked["user_id"]), store.ttl_s)
            try:
                await pipe.execute()
            except Exception as exc:  # published all the same: the fold-in hides them a moment later
                log.warning("could not mark posted events as seen: %s", exc)
        return _json({"published": published}, 202)

    @app.get("/health/live", tags=["health"])
    async def live():
        """The process answers."""
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"], responses={503: {"description": "a part is not ready"}})
    async def ready():
        """Ready when a model is loaded, Redis answers and the user-events consumer reaches Kafka (with its lag)."""
        import redis

        model, folder = holder.model, state.get("folder")
        try:
            redis_ok = bool(await state["redis"].ping())
        except (redis.RedisError, OSError):
            redis_ok = False
        consumer_ok = folder is not None and folder.thread.is_alive() and folder.last_error is None
        checks = {
            "model": {
                "ok": model is not None,
                "version": model.version if model else None,
                "model_version": model.served.model_version if model else None,
                "day": model.day.isoformat() if model else None,
                "loaded_at": model.loaded_at.isoformat() if model else None,
                "error": holder.error,
            },
            "store": {"ok": redis_ok, "url": store.where},
            "kafka": {
                "ok": consumer_ok,
                "bootstrap": settings.kafka_servers,
                "consumer_lag": folder.lag if folder else None,
                "folded_events": folder.folded_events if folder else 0,
                "error": folder.last_error if folder else "consumer not started",
            },
        }
        ok = all(part["ok"] for part in checks.values())
        return _json({"status": "ready" if ok else "not_ready", "checks": checks}, 200 if ok else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def prometheus():
        """Prometheus text format: requests and latency per route, fold-ins, consumer lag, events in."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
