"""Prometheus metrics of `podrec serve`: requests and latency per route, fold-ins, consumer lag, events in."""

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("podrec_http_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "podrec_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.fold_ins = Counter("podrec_fold_in_users", "listeners whose list was recomputed live", registry=r)
        self.folded_events = Counter("podrec_folded_events", "user-events folded into live lists", registry=r)
        self.invalid_events = Counter(
            "podrec_consumed_invalid_events", "consumed events that broke the contract", registry=r
        )
        self.fold_seconds = Histogram(
            "podrec_fold_batch_seconds",
            "time to fold one consumed batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=r,
        )
        self.lag = Gauge("podrec_consumer_lag", "user-events records not yet folded (this replica)", registry=r)
        self.published = Counter("podrec_events_published", "events accepted by POST /events", registry=r)
        self.rejected = Counter("podrec_events_rejected", "events refused by POST /events", registry=r)
        self.model_swaps = Counter("podrec_model_swaps", "models loaded and swapped in", registry=r)

    def folded(self, events: int, users: int, invalid: int, seconds: float) -> None:
        self.folded_events.inc(events)
        self.fold_ins.inc(users)
        self.invalid_events.inc(invalid)
        self.fold_seconds.observe(seconds)


class MetricsMiddleware:
    """Counts and times every request by its route template (a raw ASGI middleware: a few µs per request)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
