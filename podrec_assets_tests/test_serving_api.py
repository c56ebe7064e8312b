"""`podrec serve` as a real process against its own real Kafka, MongoDB and Redis, on a lake the real assets wrote.

The lake: the synthetic two-topic catalog and listeners of test_hybrid_assets, then `als_top_n` (real implicit ALS,
with its factors) and `final_recommendations` materialized through Dagster for one day. The service answers with
that day's model; events posted to it reach Kafka, come back through its consumer and change lists live.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from podrec_assets.commands.serve import serve_process, serve_url, start_serve
from podrec_assets.core import online
from podrec_assets.local.processes import free_port
from podrec_assets.local.services import LocalStack
from podrec_assets.resources import build_resources
from podrec_assets.settings import get_settings, load_settings
from podrec_assets_tests.conftest import make_env
from podrec_assets_tests.test_hybrid_assets import DAYS, write_inputs

API_KEY = "test-key-123"
MODEL_DAY = DAYS[-2]


def _materialize(resources, day):
    from podrec_assets.defs.collaborative.assets import als_top_n
    from podrec_assets.defs.hybrid.assets import final_recommendations

    for asset in (als_top_n, final_recommendations):
        result = dg.materialize(
            [asset],
            partition_key=day.isoformat(),
            resources={"lake": resources["lake"], "mongo": resources["mongo"], "spark": resources["spark"]},
        )
        assert result.success


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve-home")
    env = make_env(
        home,
        PODREC_START_DATE=DAYS[0].isoformat(),
        PODREC_SERVE_PORT=str(free_port()),
        PODREC_SERVE_API_KEY=API_KEY,
        PODREC_SERVE_RELOAD_S="1",
        PODREC_MONGO_DB="serve_test",
    )
    settings = load_settings(env)
    stack = LocalStack(settings)
    stack.start()
    process = None
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        try:
            resources = build_resources(settings)
            inputs = write_inputs(resources["lake"])
            _materialize(resources, MODEL_DAY)
            process = start_serve(settings, extra_env=env)
            yield {"settings": settings, "env": env, "resources": resources, "inputs": inputs, "stack": stack}
            process = None  # a test may have restarted it: stopped by its pid file below
        finally:
            if process is not None:
                process.stop()
            serve_process(settings).stop()
            stack.stop()
            get_settings.cache_clear()


def call(world, method: str, path: str, body=None, headers=None, timeout: float = 10.0):
    """(status, JSON body) of one request to the service."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(serve_url(world["settings"]) + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw and raw[:1] in b"{[" else raw.decode()
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw[:1] in b"{[" else raw.decode()


def batch_lists(world, day) -> pd.DataFrame:
    return world["resources"]["lake"].read_day("final_recommendations", day).to_pandas()


def event(user: str, episode: str, kind: str, ts: datetime, played: float = 1.0) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "user_id": user,
        "episode_id": episode,
        "event": kind,
        "device": "ios",
        "rating": None,
        "position_sec": 60.0 * played,
        "from_sec": 0.0,
        "to_sec": 60.0 * played,
        "played_pct": played,
    }


def wait_for(predicate, timeout_s: float = 20.0, step_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    return None


def now_ts() -> datetime:
    """Events are sent as they happen: today (after every model day of the lake), not ahead of now."""
    return datetime.now(timezone.utc) - timedelta(seconds=1)


def test_listener_without_new_events_gets_the_batch_list(world):
    recs = batch_lists(world, MODEL_DAY)
    for user in ["user000", "user001", "user017", "lurker"]:
        status, body = call(world, "GET", f"/recommend/{user}?k=10")
        assert status == 200, body
        expected = recs[recs["user_id"] == user].sort_values("rank")
        assert [i["episode_id"] for i in body["items"]] == expected["episode_id"].tolist()
        assert [i["reason"] for i in body["items"]] == expected["reason"].tolist()
        np.testing.assert_allclose([i["score"] for i in body["items"]], expected["final_score"], rtol=1e-9)
        assert body["live"] is False and body["model_day"] == MODEL_DAY.isoformat()
        assert body["model_version"] == expected["model_version"].iloc[0]
        for item in body["items"]:
            if item["reason"] in ("content", "hybrid"):
                assert item["because_episode_id"] and item["because_episode_title"]
        # a known listener is cold-start exactly when the batch could only fill their list with popular episodes
        assert body["cold_start"] is (set(expected["reason"]) == {"popular"})


def test_live_path_with_the_batch_vectors_reproduces_final_recommendations(world):
    """One fusion code path: core.online.live_lists over the lake's rows and the batch's own user factors gives
    every listener exactly the list final_recommendations stored."""
    from podrec_assets.serving.model import load_model

    model, data, lists = load_model(world["resources"]["lake"], world["settings"])
    factors = world["resources"]["lake"].read_day("als_factors", MODEL_DAY).to_pandas()
    users = factors[factors["kind"] == "user"]
    vectors = {u: np.asarray(v, dtype=np.float32) for u, v in zip(users["id"], users["vector"])}
    live = online.live_lists(model.served, data.daily, MODEL_DAY, user_vectors=vectors)
    batch = lists.to_pandas().sort_values(["user_id", "rank"]).reset_index(drop=True)
    live = live.sort_values(["user_id", "rank"]).reset_index(drop=True)
    assert len(batch) == len(live) > 0
    assert live["episode_id"].tolist() == batch["episode_id"].tolist()
    assert live["reason"].tolist() == batch["reason"].tolist()
    np.testing.assert_allclose(live["final_score"], batch["final_score"], rtol=1e-6, atol=1e-9)


def test_unknown_listener_gets_the_flagged_popular_list(world):
    status, body = call(world, "GET", "/recommend/never-seen-before?k=5")
    assert status == 200
    assert body["cold_start"] is True and len(body["items"]) == 5
    assert {i["reason"] for i in body["items"]} == {"popular"}
    _, popular = call(world, "GET", "/popular?k=5")
    assert [i["episode_id"] for i in body["items"]] == [i["episode_id"] for i in popular["items"]]


def test_filters_similar_popular_latest(world):
    status, body = call(world, "GET", "/recommend/user000?k=6&category=SPORT")
    assert status == 200 and len(body["items"]) == 6
    assert all("sport" in i["categories"] for i in body["items"])
    assert [i["rank"] for i in body["items"]] == list(range(1, 7))

    catalog = world["inputs"]["catalog"]
    science = [e for e, t, d in catalog if t == "science" and d <= MODEL_DAY]
    status, body = call(world, "GET", f"/similar/{science[0]}?k=4")
    assert status == 200 and len(body["items"]) == 4
    assert science[0] not in [i["episode_id"] for i in body["items"]]
    # the synthetic topics are near-orthogonal axes: an episode's nearest neighbours share its topic
    assert all("science" in i["categories"] for i in body["items"])
    sims = [i["similarity"] for i in body["items"]]
    assert sims == sorted(sims, reverse=True)

    status, body = call(world, "GET", "/latest?k=3&category=science")
    assert status == 200
    newest = sorted((d, e) for e, t, d in catalog if t == "science" and d <= MODEL_DAY)[-1][0]
    assert body["items"][0]["published_at"].startswith(newest.isoformat())
    status, body = call(world, "GET", "/popular?k=3&category=nothing-like-this")
    assert status == 200 and body["items"] == []


@pytest.mark.parametrize(
    "path, status",
    [
        ("/recommend/user000?k=0", 422),
        ("/recommend/user000?k=101", 422),
        ("/recommend/user000?k=abc", 422),
        ("/recommend/user000?exclude_seen=maybe", 422),
        ("/recommend/bad%20id", 422),
        ("/recommend/%00", 422),
        ("/recommend/" + "u" * 200, 422),
        ("/similar/not-an-episode", 404),
        ("/similar/0201-science-0?k=-1", 422),
        ("/popular?k=1000", 422),
        ("/latest?category=", 422),
        ("/nowhere", 404),
    ],
)
def test_bad_requests_get_a_4xx_with_a_reason(world, path, status):
    got, body = call(world, "GET", path)
    assert got == status, body
    assert isinstance(body, dict) and body["error"] and body.get("detail")


def test_post_events_validates_everything_and_publishes_nothing_on_error(world):
    kafka = world["resources"]["kafka"]
    before = sum(kafka.end_offsets("user-events").values())
    good = event("user000", "0201-science-0", "play", now_ts(), 0.5)
    bad = [
        dict(good, played_pct=1.5),
        {k: v for k, v in good.items() if k != "ts"},
        dict(good, event="teleport"),
        dict(good, episode_id="no-such-episode"),
        dict(good, ts="yesterday"),
        "not an object",
        dict(good, ts=(now_ts() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")),
        dict(good, ts=(now_ts() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")),
        dict(good, ts="2300-01-01T00:00:00Z"),
        good,  # its event_id is the first one's
    ]
    status, body = call(world, "POST", "/events", [good, *bad], headers={"X-API-Key": API_KEY})
    assert status == 422, body
    assert body["published"] == 0
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert set(reasons) == set(range(1, 11))
    assert reasons[6].startswith("invalid_json: expected an object")
    assert reasons[7].startswith("future_timestamp") and reasons[9].startswith("future_timestamp")
    assert reasons[8].startswith("timestamp_mismatch")
    assert reasons[10].startswith("duplicate_event_id")
    assert reasons[1].startswith("invalid_value: played_pct")
    assert reasons[2] == "missing_field: ts"
    assert reasons[4].startswith("unknown_episode")
    assert sum(kafka.end_offsets("user-events").values()) == before

    status, body = call(world, "POST", "/events", [good])
    assert status == 401 and body["error"] == "unauthorized"
    status, body = call(world, "POST", "/events", [good], headers={"X-API-Key": "wrong"})
    assert status == 401
    status, body = call(world, "POST", "/events", [], headers={"X-API-Key": API_KEY})
    assert status == 422
    assert sum(kafka.end_offsets("user-events").values()) == before


def test_events_change_the_list_live(world):
    """A listener completes their top pick and listens to the other topic: the list reflects it, live."""
    user = "user002"
    _, before = call(world, "GET", f"/recommend/{user}?exclude_seen=false")
    top = before["items"][0]["episode_id"]
    catalog = world["inputs"]["catalog"]
    taste = world["inputs"]["taste"][user]
    other = [e for e, t, d in catalog if t != taste and d <= MODEL_DAY][:3]
    ts = now_ts()
    events = [event(user, top, "complete", ts)] + [event(user, e, "complete", ts) for e in other]
    status, body = call(world, "POST", "/events", events, headers={"X-API-Key": API_KEY})
    assert status == 202 and body["published"] == 4

    def changed():
        _, now = call(world, "GET", f"/recommend/{user}?exclude_seen=false")
        return now if now["live"] else None

    after = wait_for(changed, timeout_s=15)
    assert after is not None, "the list did not become live within 15 s"
    ids = [i["episode_id"] for i in after["items"]]
    assert top not in ids and not set(other) & set(ids)
    assert ids != [i["episode_id"] for i in before["items"]]
    # the other topic is now part of the history: content candidates of it appear, explained by those episodes
    because = {i["because_episode_id"] for i in after["items"] if i["reason"] in ("content", "hybrid")}
    assert because & set(other), after["items"]


def test_an_event_delivered_twice_is_folded_once(world):
    """A client retry publishes the same event_id again: the listener's live state counts it once."""
    from podrec_assets.serving.store import ServingStore, state_frame, state_key

    user, episode = "user006", "0202-sport-1"
    again = event(user, episode, "like", now_ts())
    for _ in range(2):
        assert call(world, "POST", "/events", [again], headers={"X-API-Key": API_KEY})[0] == 202
    follow = event(user, "0202-sport-2", "like", now_ts())  # folded after both copies were consumed
    assert call(world, "POST", "/events", [follow], headers={"X-API-Key": API_KEY})[0] == 202
    version = call(world, "GET", "/health/ready")[1]["checks"]["model"]["version"]
    store = ServingStore(world["settings"].redis_server_url, 3600)

    def folded():
        rows, ids = state_frame({user: store.client.get(state_key(version, user))})
        return (rows, ids[user]) if follow["event_id"] in ids[user] else None

    rows, ids = wait_for(folded)
    store.close()
    assert again["event_id"] in ids
    today = rows[(rows["episode_id"] == episode) & (rows["date"] == now_ts().date())]
    assert today["engagement"].tolist() == [world["settings"].weight_like]


def test_a_restarted_service_folds_nothing_twice(world):
    """Stop podrec serve and start it again: it resumes from the offsets in Redis; listeners' state is unchanged."""
    from podrec_assets.serving.store import ServingStore, state_frame, state_key

    version = call(world, "GET", "/health/ready")[1]["checks"]["model"]["version"]
    store = ServingStore(world["settings"].redis_server_url, 3600)
    users = ["user002", "user006"]
    before = {u: store.client.get(state_key(version, u)) for u in users}
    assert all(before.values())
    serve_process(world["settings"]).stop()
    start_serve(world["settings"], extra_env=world["env"])
    marker = event("user007", "0202-sport-0", "like", now_ts())  # folded after the restart's catch-up
    assert call(world, "POST", "/events", [marker], headers={"X-API-Key": API_KEY})[0] == 202
    folded = lambda: marker["event_id"] in state_frame({"u": store.client.get(state_key(version, "user007"))})[1]["u"]  # noqa: E731
    assert wait_for(folded)
    assert {u: store.client.get(state_key(version, u)) for u in users} == before
    store.close()


def test_exclude_seen_hides_at_once_and_can_be_turned_off(world):
    user = "user004"
    _, before = call(world, "GET", f"/recommend/{user}")
    second = before["items"][1]["episode_id"]
    status, _ = call(
        world, "POST", "/events", [event(user, second, "skip", now_ts(), 0.05)], headers={"X-API-Key": API_KEY}
    )
    assert status == 202
    hidden = wait_for(
        lambda: second not in [i["episode_id"] for i in call(world, "GET", f"/recommend/{user}")[1]["items"]]
    )
    assert hidden


def test_a_new_listener_becomes_personal_after_positive_events(world):
    user = "newcomer-1"
    _, cold = call(world, "GET", f"/recommend/{user}")
    assert cold["cold_start"] is True
    catalog = world["inputs"]["catalog"]
    sport = [e for e, t, d in catalog if t == "sport" and d <= MODEL_DAY][:3]
    events = [event(user, e, "complete", now_ts()) for e in sport]
    assert call(world, "POST", "/events", events, headers={"X-API-Key": API_KEY})[0] == 202
    personal = wait_for(lambda: (b := call(world, "GET", f"/recommend/{user}")[1])["live"] and b)
    assert personal and personal["cold_start"] is False
    reasons = {i["reason"] for i in personal["items"]}
    assert reasons & {"als", "content", "hybrid"}
    top = personal["items"][0]
    assert "sport" in top["categories"], personal["items"]


def test_health_and_metrics(world):
    status, body = call(world, "GET", "/health/live")
    assert status == 200 and body["status"] == "ok"
    status, body = call(world, "GET", "/health/ready")
    assert status == 200, body
    assert body["checks"]["model"]["day"] == MODEL_DAY.isoformat()
    assert body["checks"]["kafka"]["consumer_lag"] is not None
    status, text = call(world, "GET", "/metrics")
    assert status == 200
    assert 'podrec_http_requests_total{method="GET",route="/recommend/{user_id}",status="200"}' in text
    assert "podrec_http_request_seconds_bucket" in text and "podrec_consumer_lag" in text
    folded = [line for line in text.splitlines() if line.startswith("podrec_folded_events_total")]
    assert folded and float(folded[0].split()[-1]) > 0
    status, docs = call(world, "GET", "/openapi.json")
    assert status == 200 and "/recommend/{user_id}" in docs["paths"] and "/events" in docs["paths"]


def test_dash_shows_the_live_list_and_the_category_mix(world):
    """The Recommendations page's live card reads the running API; with the API gone it says how to start it."""
    from dataclasses import replace

    from dash_app.live import live_list
    from dash_app.pages.recommendations import category_mix_view, live_view

    settings = world["settings"]
    live = live_list(settings, "user002")  # live since test_events_change_the_list_live
    assert live.error is None and live.body["user_id"] == "user002"
    rendered = str(live_view(live))
    assert "recomputed from their events" in rendered and live.body["items"][0]["episode_id"] in rendered

    catalog = {e: [t] for e, t, d in world["inputs"]["catalog"]}
    daily = world["resources"]["lake"].read_day("user_episode_daily", MODEL_DAY).to_pandas()
    history = daily[daily["user_id"] == "user002"]
    recs = batch_lists(world, MODEL_DAY)
    graph = category_mix_view(catalog, history, recs[recs["user_id"] == "user002"], live)
    names = [trace["name"] for trace in graph.figure["data"]]
    assert names == ["listened", "recommended (batch)", "recommended (live)"]
    listened = dict(zip(graph.figure["data"][0]["x"], graph.figure["data"][0]["y"]))
    taste = world["inputs"]["taste"]["user002"]
    assert listened[taste] == 1.0 and sum(listened.values()) == 1.0  # they heard only their topic that day

    gone = live_list(replace(settings, serve_port=free_port()), "user002", timeout_s=0.5)
    assert gone.body is None and "podrec serve" in gone.error
    assert "live-unavailable" in str(live_view(gone))


def test_fuzzing_the_openapi_schema_finds_no_server_error(world, tmp_path):
    """schemathesis generates requests from the schema (valid and not): none may get a 5xx."""
    schemathesis = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    result = subprocess.run(
        [
            schemathesis,
            "run",
            serve_url(world["settings"]) + "/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--header",
            f"X-API-Key: {API_KEY}",
            "--exclude-path",
            "/metrics",
            "--seed",
            "7",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_a_new_day_swaps_in_atomically(world):
    """Materializing the next day makes the service load it; readers see the old day's list or the new one."""
    import threading

    old = batch_lists(world, MODEL_DAY)
    seen_days, mismatches, stop = set(), [], threading.Event()

    def reader():
        while not stop.is_set():
            status, body = call(world, "GET", "/recommend/user010")
            if status != 200:
                mismatches.append((status, body))
                continue
            seen_days.add(body["model_day"])
            if body["model_day"] == MODEL_DAY.isoformat():
                expected = old[old["user_id"] == "user010"].sort_values("rank")["episode_id"].tolist()
                if [i["episode_id"] for i in body["items"]] != expected:
                    mismatches.append(body)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        _materialize(world["resources"], DAYS[-1])
        swapped = wait_for(
            lambda: call(world, "GET", "/health/ready")[1]["checks"]["model"]["day"] == DAYS[-1].isoformat(), 60
        )
    finally:
        stop.set()
        thread.join()
    assert swapped
    new = batch_lists(world, DAYS[-1])
    _, body = call(world, "GET", "/recommend/user010")
    assert body["model_day"] == DAYS[-1].isoformat() and body["live"] is False
    assert [i["episode_id"] for i in body["items"]] == new[new["user_id"] == "user010"].sort_values("rank")[
        "episode_id"
    ].tolist()
    assert not mismatches, mismatches[:3]
    assert MODEL_DAY.isoformat() in seen_days


def test_redis_down_is_a_503_that_says_how_to_start_it_and_recovers(world):
    stack = world["stack"]
    stack.redis.stop()
    try:
        status, body = call(world, "GET", "/recommend/user000")
        assert status == 503 and body["error"] == "store_unavailable"
        assert "Redis" in body["detail"] and "podrec services start" in body["detail"]
        status, ready = call(world, "GET", "/health/ready")
        assert status == 503 and ready["checks"]["store"]["ok"] is False
    finally:
        stack.start_redis()
    # the restarted Redis is empty: the watcher notices and writes the model's lists again, and the consumer,
    # which kept retrying, is ready and folding again
    back = wait_for(lambda: call(world, "GET", "/recommend/user000")[1].get("cold_start") is False, 60, 0.5)
    assert back
    assert wait_for(lambda: call(world, "GET", "/health/ready")[0] == 200, 30, 0.5)
    user = "after-redis-restart"
    sport = [e for e, t, d in world["inputs"]["catalog"] if t == "sport" and d <= DAYS[-1]][:2]
    events = [event(user, e, "complete", now_ts()) for e in sport]
    assert call(world, "POST", "/events", events, headers={"X-API-Key": API_KEY})[0] == 202
    live = wait_for(lambda: call(world, "GET", f"/recommend/{user}")[1]["live"], 20)
    assert live


def test_kafka_down_keeps_reads_up_and_refuses_events_with_a_503(world):
    stack = world["stack"]
    stack.kafka.stop(timeout_s=60)
    try:
        status, body = call(world, "GET", "/recommend/user000")
        assert status == 200 and body["items"]  # reads come from Redis and memory
        not_ready = wait_for(lambda: call(world, "GET", "/health/ready")[0] == 503, 30, 0.5)
        assert not_ready
        checks = call(world, "GET", "/health/ready")[1]["checks"]
        assert checks["kafka"]["ok"] is False and checks["kafka"]["error"]
        good = event("user000", "0201-science-0", "play", now_ts(), 0.5)
        status, body = call(world, "POST", "/events", [good], headers={"X-API-Key": API_KEY}, timeout=30)
        assert status == 503 and body["error"] == "kafka_unavailable"
        assert world["settings"].kafka_servers in body["detail"]
    finally:
        stack.start_kafka()
    assert wait_for(lambda: call(world, "GET", "/health/ready")[0] == 200, 60, 0.5)
    good = event("user000", "0201-science-0", "play", now_ts(), 0.5)
    status, body = call(world, "POST", "/events", [good], headers={"X-API-Key": API_KEY}, timeout=30)
    assert status == 202 and body["published"] == 1
