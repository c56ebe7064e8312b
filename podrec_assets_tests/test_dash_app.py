"""The Dash app against real servers: synthetic tables in a temp Delta lake and the session's MongoDB, the
app served by `podrec dash` in its own process, driven by headless Chromium through Selenium."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from dash_app import data
from dash_app.app import create_app, render
from dash_app.sample_data import SampleSpec, build_metrics, write_sample
from podrec_assets.commands.dash import dash_url, start_dash
from podrec_assets.local.processes import free_port
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets.settings import load_settings

DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(3)]
SPEC = SampleSpec(days=DAYS, users=120, episodes_per_day=10, mongo_users=60)
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def dash_env(stack_env, stack_settings, resources, tmp_path_factory) -> dict[str, str]:
    """PODREC_* of an app reading a temp lake and its own Mongo database on the session's real server."""
    lake_root = str(tmp_path_factory.mktemp("dash-lake") / "lake")
    env = {
        **stack_env,
        "PODREC_LAKE_URI": lake_root,
        "PODREC_MONGO_DB": "podrec_dash_test",
        "PODREC_DASH_PORT": str(free_port()),
        "PODREC_DAGSTER_PORT": str(free_port()),
    }
    settings = load_settings(env)
    mongo = MongoResource(uri=settings.mongo_url, database=settings.mongo_db)
    mongo.client().drop_database(settings.mongo_db)
    write_sample(LakeResource(root=lake_root), mongo, SPEC)
    mongo.client().close()
    return env


@pytest.fixture(scope="module")
def access(dash_env):
    access = data.DataAccess(load_settings(dash_env), version_check_s=0.0)
    yield access
    access.close()


# ---------------------------------------------------------------------------------------- data access
def test_user_prefix_search_is_sorted_bounded_and_exact(access):
    assert access.user_count() == SPEC.users
    found = access.search_users("u0001", limit=5)
    assert found == ["u00010", "u00011", "u00012", "u00013", "u00014"]
    assert access.search_users("u0011") == [f"u0011{i}" for i in range(10)]
    assert access.search_users("x") == [] and access.search_users("") == []
    assert access.user_exists("u00119") and not access.user_exists("u00120")


def test_recommendations_come_from_mongo_with_titles_and_reasons(access):
    recs = access.recommendations("u00003")
    assert recs.source == "mongo" and recs.mongo_error is None
    assert recs.latest_date == DAYS[-1].isoformat()
    latest = recs.latest()
    assert list(latest["rank"]) == list(range(1, 11))
    assert set(recs.rows["date"]) == {d.isoformat() for d in DAYS}
    assert latest["episode_title"].str.contains("talk #").all()
    explained = latest[latest["reason"].isin(["hybrid", "content"])]
    assert not explained.empty and explained["because_episode_title"].str.contains("talk #").all()


def test_unknown_user_and_episode_get_friendly_messages(access):
    # u00100 has lists only in Delta (mongo_users=60): MongoDB serves, so the page says there is no list yet
    assert access.recommendations("u00100").rows.empty and access.user_exists("u00100")
    create_app(access.settings)
    try:
        _, content, _ = render("/", "?user=u00100")
        assert "No recommendations for this user yet" in str(content) and "Listening history" in str(content)
        _, content, _ = render("/", "?user=nobody-here")
        assert "No user named" in str(content)
        _, content, _ = render("/episodes", "?episode=ep99999")
        assert "No episode" in str(content)
    finally:
        data.current().close()


def test_mongo_down_reads_the_same_lists_from_delta(dash_env, access):
    down = load_settings({**dash_env, "PODREC_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"})
    fallback = data.DataAccess(down, mongo_timeout_ms=300)
    try:
        assert "not reachable" in fallback.mongo_error()
        from_delta = fallback.recommendations("u00003")
        assert from_delta.source == "delta"
        served = access.recommendations("u00003").latest()
        assert list(from_delta.latest()["episode_id"]) == list(served["episode_id"])
        # pages that only need Delta still work
        assert not fallback.engagement("all")["mix"].empty
        assert fallback.episode("ep00001")["episode_title"]
    finally:
        fallback.close()


def test_transcript_says_where_its_text_came_from(access):
    from dash_app.pages import episodes

    day0 = [f"ep{j:05d}" for j in range(SPEC.episodes_per_day)]
    published, unparsable, plain = (access.transcript(day0[1]), access.transcript(day0[2]), access.transcript(day0[0]))
    assert published["text_source"] == "published" and published["transcript_format"] == "html"
    assert published["segments"] == [{"start": None, "end": None, "text": published["text"]}]  # untimed: one block
    shown = str(episodes.transcript_view(published, day0[1]))
    assert "publisher's html transcript" in shown and "00:00" not in shown and "Segment 0" in shown
    assert "speech recognition ran: unparsable: https://cdn.example/t.vtt" in str(
        episodes.transcript_view(unparsable, day0[2])
    )
    shown = str(episodes.transcript_view(plain, day0[0]))
    assert "tiny.en · language en (0.98)" in shown and "speech recognition ran" not in shown and "00:06–00:11" in shown


def test_queries_are_parameterised(access):
    assert access.search_episodes("%' OR 1=1 --").empty
    assert access.search_episodes("100%").empty
    assert not access.search_episodes("SPACE hour").empty  # case-insensitive show match
    assert access.episode("x' OR '1'='1") is None


def _eventually(read, expected, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while (value := read()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}, expected {expected!r}"
        time.sleep(0.1)
    return value


def test_cached_results_follow_the_delta_version(tmp_path):
    lake = LakeResource(root=str(tmp_path / "lake"))
    settings = load_settings({"PODREC_HOME": str(tmp_path), "PODREC_LAKE_URI": lake.root})
    spec = SampleSpec(days=DAYS[:2], users=10, episodes_per_day=4)
    access = data.DataAccess(settings, lake=lake, version_check_s=0.0)
    days_shown = lambda: set(access.metrics()["date"].astype(str))  # noqa: E731
    try:
        assert access.metrics().empty and access.table_is_empty("recommendation_metrics")
        lake.write_partition("recommendation_metrics", DAYS[1], build_metrics(spec, 1), "r1")
        # a new version is copied in the background while the previous answer is still served
        _eventually(days_shown, {DAYS[1].isoformat()})
        first = access.metrics()
        assert access.metrics() is first  # memoised while the version stands
        lake.write_partition("recommendation_metrics", DAYS[2], build_metrics(spec, 2), "r2")
        _eventually(days_shown, {DAYS[1].isoformat(), DAYS[2].isoformat()})
        assert access.mirror.loaded["recommendation_metrics"] == lake.version("recommendation_metrics")
    finally:
        access.close()


def test_quality_chart_draws_standard_errors_as_error_bars():
    import pandas as pd

    from dash_app.pages import quality

    metrics = pd.DataFrame(
        {
            "date": [date(2026, 3, 2)] * 4 + [date(2026, 3, 3)] * 2,
            "model": ["als", "hybrid"] * 3,
            "metric": ["ndcg@10", "ndcg@10", "ndcg@10_stderr", "ndcg@10_stderr", "ndcg@10", "ndcg@10"],
            "k": 10,
            "value": [0.2, 0.3, 0.01, 0.02, 0.25, 0.35],
            "users_evaluated": 100,
        }
    )
    assert quality._plotted_metrics(metrics) == ["ndcg@10"]  # the error is not a metric of its own
    view = quality.metric_view(metrics, "ndcg@10")
    graph = [c for c in _walk(view) if getattr(c, "figure", None)][0]
    traces = {t["name"]: t for t in graph.figure["data"]}
    assert traces["als"]["error_y"]["array"] == [0.01, None] and traces["hybrid"]["error_y"]["array"] == [0.02, None]
    plain = quality.metric_view(metrics[metrics["metric"] == "ndcg@10"], "ndcg@10")
    assert all("error_y" not in t for t in [c for c in _walk(plain) if getattr(c, "figure", None)][0].figure["data"])


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children] if children is not None else []:
        if hasattr(child, "children") or hasattr(child, "figure"):
            yield from _walk(child)


def test_empty_lake_pages_show_empty_states(tmp_path):
    settings = load_settings(
        {"PODREC_HOME": str(tmp_path), "PODREC_MONGO_PORT": str(free_port()), "PODREC_DAGSTER_PORT": str(free_port())}
    )
    create_app(settings, mongo_timeout_ms=300)
    try:
        expected = {
            "/": "No users yet",
            "/engagement": "No listening events yet",
            "/quality": "No evaluation yet",
            "/health": "Dagster is not reachable",
        }
        for path, text in expected.items():
            banner, content, _ = render(path, "")
            assert text in str(content), path
            assert "Serving database unavailable" in str(banner)
        _, content, _ = render("/episodes", "")
        assert "episode-search" in str(content)
    finally:
        data.current().close()


# ---------------------------------------------------------------------------------------- browser
def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1400,1600",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("headless browser tests need Debian's chromium and chromium-driver (make system-packages)")
    driver = _chromium()
    yield driver
    driver.quit()


def _serve(env: dict[str, str]):
    settings = load_settings(env)
    process = start_dash(settings, timeout_s=90, extra_env=env)
    return settings, process


@pytest.fixture(scope="module")
def server(dash_env):
    settings, process = _serve(dash_env)
    yield dash_url(settings).rstrip("/")
    process.stop()


def _wait(driver, css: str, text: str | None = None, timeout: float = 30.0):
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        elements = driver.find_elements(By.CSS_SELECTOR, css)
        for element in elements:
            try:
                if element.is_displayed() and (text is None or text.lower() in element.text.lower()):
                    return element
            except Exception as exc:  # stale element while Dash re-renders: look again
                last = exc
        time.sleep(0.15)
    raise AssertionError(
        f"nothing matching {css!r}"
        + (f" with text {text!r}" if text else "")
        + f" within {timeout}s; page text: {driver.find_element('tag name', 'body').text[:600]!r} {last or ''}"
    )


def _settle(driver):
    """Wait until Dash has no callback in flight, then let plotly draw."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if driver.execute_script("return document.querySelectorAll('[data-dash-is-loading=\"true\"]').length") == 0:
            break
        time.sleep(0.1)
    time.sleep(0.6)


def _shot(driver, artifacts_dir: Path, name: str) -> Path:
    _settle(driver)
    height = driver.execute_script("return Math.max(document.body.scrollHeight, 900)")
    driver.set_window_size(1400, min(int(height) + 40, 4000))
    path = artifacts_dir / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1600)
    assert path.stat().st_size > 10_000
    return path


def test_browser_every_page_user_recommendations_and_episode(server, browser, artifacts_dir):
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(server + "/")
    _wait(driver, "#sample-0")
    # every page loads, reached through the navigation bar (client-side routing)
    pages = {
        "engagement": ("#events-over-time .main-svg", None),
        "model": ("#metric-chart", "ndcg@10"),
        "pipeline": ("#health-source", "Dagster is not reachable"),
        "episodes": ("#episode-results", "Latest episodes"),
    }
    for nav, (css, text) in pages.items():
        driver.find_element(By.ID, f"nav-{nav}").click()
        _wait(driver, css, text)
        if nav == "model":
            _wait(driver, "#alpha-chart .main-svg")
        if nav == "pipeline":
            _wait(driver, "#partition-grid .main-svg")
        _shot(driver, artifacts_dir, f"page_{nav}")

    # find a user by prefix and open their recommendations
    driver.find_element(By.ID, "nav-recommendations").click()
    _wait(driver, "#sample-0")
    _shot(driver, artifacts_dir, "page_recommendations_start")
    box = driver.find_element(By.ID, "user-search")
    box.send_keys("u0000")
    _wait(driver, "#user-matches a", "u00003").click()
    recs = _wait(driver, "#recs-card", "Top 10")
    assert "because you listened to" in recs.text.lower()
    rows = driver.find_elements(By.CSS_SELECTOR, "#recs-card tbody tr")
    assert len(rows) == 10
    assert any(r in recs.text.lower() for r in ("hybrid", "content"))
    _wait(driver, "#user-view .main-svg")
    _shot(driver, artifacts_dir, "page_recommendations_user")

    # the because-episode is a link to that episode, which shows its neighbours and transcript
    because = next(a for a in driver.find_elements(By.CSS_SELECTOR, "#recs-card a[id^='because-']"))
    because_title = because.find_element(By.CSS_SELECTOR, ".ep-title").text
    because.click()
    title = _wait(driver, "#episode-title")
    assert title.text == because_title
    neighbours = _wait(driver, "#neighbours-card", "Cosine")
    assert len(neighbours.find_elements(By.CSS_SELECTOR, ".neighbours-table tbody tr")) == SPEC.neighbours
    _wait(driver, ".segment", "Segment 0")
    _shot(driver, artifacts_dir, "page_episode")

    # transcript search keeps only matching segments, highlighted
    driver.find_element(By.ID, "transcript-filter").send_keys("Segment 3")
    _wait(driver, "#transcript-segments mark", "Segment 3")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#transcript-segments .segment")) == 1

    # a neighbour opens its own episode page
    first_neighbour = driver.find_element(By.CSS_SELECTOR, ".neighbours-table tbody tr a")
    neighbour_title = first_neighbour.find_element(By.CSS_SELECTOR, ".ep-title").text
    first_neighbour.click()
    _wait(driver, "#episode-title", neighbour_title)

    # episode search by show name
    driver.find_element(By.ID, "episode-search").send_keys("jazz")
    _wait(driver, "#episode-results", "The Jazz Hour")

    # engagement window switch
    driver.find_element(By.ID, "nav-engagement").click()
    _wait(driver, "#events-over-time .main-svg")
    driver.find_element(By.XPATH, "//label[contains(., '24 hours')]").click()
    _wait(driver, ".stat-hint", "buckets of 1 hour")
    assert not driver.find_elements(By.CSS_SELECTOR, "#mongo-banner")

    # unknown user (a typed link): a friendly message, not an error
    driver.get(server + "/?user=nobody")
    _wait(driver, "#unknown-user", "No user named")


def test_browser_mongo_down_banner_and_delta_pages(dash_env, browser, artifacts_dir):
    env = {
        **dash_env,
        "PODREC_DASH_PORT": str(free_port()),
        "PODREC_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
    }
    settings, process = _serve(env)
    try:
        driver = browser
        base = dash_url(settings).rstrip("/")
        driver.get(base + "/?user=u00003")
        _wait(driver, "#mongo-banner", "Serving database unavailable")
        _wait(driver, "#recs-card", "Top 10")
        assert "Delta lake (MongoDB unavailable)" in driver.find_element("id", "user-view").text
        _shot(driver, artifacts_dir, "mongo_down_recommendations")
        driver.get(base + "/engagement")
        _wait(driver, "#mongo-banner")
        _wait(driver, "#events-over-time .main-svg")
    finally:
        process.stop()
