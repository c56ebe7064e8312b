"""End to end on a running Dagster: real Kafka + MongoDB, webserver + daemon on free ports.

Three days of history are published to Kafka (the topic sensors ingest them) and built by a three-day
backfill of the whole graph launched through GraphQL: every partition materialized, every check passed.
Then a new day arrives (yesterday's date: the simulator never stamps events in the future, so today is
still mostly empty at test time): the sensors ingest it and declarative automation must build every
asset of that day by itself. A second backfill is cancelled (earlier partitions stay); lineage,
partitions, freshness and the Kafka lag observation are read back through GraphQL. Data is tiny so the
file runs in minutes on 2 cores.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from podrec_assets.local.dagster import start_dagster, stop_dagster, webserver_url
from podrec_assets.local.processes import free_port
from podrec_assets.local.services import LocalStack
from podrec_assets.settings import load_settings
from podrec_assets_tests.conftest import make_env

TODAY = datetime.now(timezone.utc).date()
NEW_DAY = TODAY - timedelta(days=1)
HISTORY = [TODAY - timedelta(days=n) for n in (4, 3, 2)]
USERS, EVENTS_PER_USER_DAY, EPISODES_PER_DAY, SEED = 16, 4.0, 2, 11

ASSETS = [
    "episodes",
    "dead_letters/episode_metadata",
    "transcripts",
    "episode_vectors",
    "similarities",
    "user_events",
    "dead_letters/user_events",
    "user_episode_daily",
    "listener_history",
    "als_top_n",
    "final_recommendations",
    "recommendation_metrics",
]
TOPICS = ["kafka/episode_metadata", "kafka/episode_ids", "kafka/user_events"]
EDGES = [  # the lineage the README's graph draws
    ("kafka/episode_metadata", "episodes"),
    ("episodes", "transcripts"),
    ("transcripts", "episode_vectors"),
    ("episode_vectors", "similarities"),
    ("similarities", "final_recommendations"),
    ("kafka/user_events", "user_events"),
    ("user_events", "user_episode_daily"),
    ("user_episode_daily", "als_top_n"),
    ("user_episode_daily", "listener_history"),
    ("listener_history", "listener_history"),
    ("listener_history", "final_recommendations"),
    ("user_episode_daily", "final_recommendations"),
    ("als_top_n", "final_recommendations"),
    ("final_recommendations", "recommendation_metrics"),
    ("kafka/episode_metadata", "dead_letters/episode_metadata"),
    ("kafka/user_events", "dead_letters/user_events"),
]
NEW_DAY_TIMEOUT_S = 900
BACKFILL_TIMEOUT_S = 900


def key(s: str) -> dg.AssetKey:
    return dg.AssetKey.from_user_string(s)


class Dagster:
    """The running webserver (GraphQL) and its instance (read directly for run events)."""

    def __init__(self, settings):
        self.settings = settings
        self.url = webserver_url(settings) + "/graphql"
        self.instance = dg.DagsterInstance.from_config(str(settings.dagster_home))

    def gql(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"GraphQL {exc.code}: {exc.read().decode()[:2000]}") from None
        assert "errors" not in payload, payload["errors"]
        return payload["data"]

    def materialized(self, asset: str) -> set[str]:
        return self.instance.get_materialized_partitions(key(asset))

    def asset_nodes(self) -> dict[str, dict]:
        data = self.gql("""{ assetNodes { assetKey { path } dependencyKeys { path } isMaterializable
            partitionDefinition { type name } freshnessStatusInfo { freshnessStatus } } }""")
        return {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}

    def launch_backfill(self, days: list[date], assets: list[str]) -> str:
        data = self.gql(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
              __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            # per asset: with partitionNames, Dagster would extend the backfill through the
            # partition mappings (a 3-day ALS window reaches 2 days further)
            params={
                "partitionsByAssets": [
                    {
                        "assetKey": {"path": key(a).path},
                        "partitions": {"range": {"start": min(days).isoformat(), "end": max(days).isoformat()}},
                    }
                    for a in assets
                ],
                "fromFailure": False,
            },
        )
        result = data["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        return result["backfillId"]

    def backfill_status(self, backfill_id: str) -> str:
        data = self.gql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
              ... on PartitionBackfill { status } } }""",
            id=backfill_id,
        )
        return data["partitionBackfillOrError"]["status"]

    def backfill_runs(self, backfill_id: str) -> list:
        return self.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))


def wait_until(predicate, timeout_s: float, what: str, every_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """Stack + Dagster for this module, with three days of tiny demo history published to Kafka."""
    env = make_env(
        tmp_path_factory.mktemp("orchestration-e2e"),
        PODREC_START_DATE=HISTORY[0].isoformat(),
        PODREC_DAGSTER_PORT=str(free_port()),
        PODREC_SENSOR_INTERVAL_S="5",
        PODREC_AUTOMATION_LOOKBACK_DAYS="2",
        PODREC_FRESHNESS_LIVE_WARN_MINUTES="2",
        PODREC_KAFKA_LATENESS_MINUTES="1",
        PODREC_DEMO_SPEECH_SECONDS="8",
        PODREC_ALS_WINDOW_DAYS="3",
        PODREC_HISTORY_DAYS="3",
        PODREC_ALS_FACTORS="8",
        PODREC_ALS_ITERATIONS="5",
        PODREC_TOP_N="5",
        PODREC_SIMILARITY_K="3",
        PODREC_MALFORMED_SHARE="0.01",
        # tiny data makes validation nDCG noisy; the gate itself is tested in test_orchestration_checks
        PODREC_ALS_NDCG_TOLERANCE="1.0",
    )
    settings = load_settings(env)
    stack = LocalStack(settings)
    began = time.monotonic()
    try:
        stack.start()
        start_dagster(settings)
        print(f"dagster up in {time.monotonic() - began:.0f}s")
        publish_days(settings, HISTORY)
        yield Dagster(settings)
    finally:
        stop_dagster(settings)
        stack.stop()


def publish_days(settings, days: list[date]) -> None:
    """The demo catalog and simulated listening for ``days`` (tiny), published to Kafka."""
    from podrec_assets.sources.demo_catalog import publish_demo_catalog
    from podrec_assets.sources.simulator import simulate_history

    publish_demo_catalog(settings, days, EPISODES_PER_DAY, SEED)
    simulate_history(settings, days, USERS, EVENTS_PER_USER_DAY, SEED)


def test_sensors_observe_kafka_lag(running):
    """The topic sensors run by default and record the lag, per partition and total, on the topic assets."""

    def observed():
        nodes = running.gql("""{ assetNodes(assetKeys: [{path: ["kafka", "user_events"]}]) {
            assetObservations(limit: 5) { metadataEntries { label ... on IntMetadataEntry { intValue } } } } }""")[
            "assetNodes"
        ]
        for obs in nodes[0]["assetObservations"] if nodes else []:
            entries = {e["label"]: e.get("intValue") for e in obs["metadataEntries"]}
            if entries.get("lag_total"):
                return entries
        return None

    entries = wait_until(observed, 180, "a lag observation on kafka/user_events")
    assert {"lag/p0", "lag/p1", "lag/p2"} <= set(entries)
    assert entries["lag_total"] == sum(entries[f"lag/p{p}"] for p in range(3))
    sensors = running.gql("""{ sensorsOrError(repositorySelector: {repositoryLocationName: "podrec",
        repositoryName: "__repository__"}) { ... on Sensors { results { name sensorState { status } } } } }""")
    states = {s["name"]: s["sensorState"]["status"] for s in sensors["sensorsOrError"]["results"]}
    for name in (
        "kafka_episode_metadata_sensor",
        "kafka_episode_ids_sensor",
        "kafka_user_events_sensor",
        "podrec_automation",
    ):
        assert states.get(name) == "RUNNING", states


def test_three_day_backfill_materializes_every_partition_and_passes_every_check(running):
    began = time.monotonic()
    backfill_id = running.launch_backfill(HISTORY, ASSETS)
    status = wait_until(
        lambda: (s := running.backfill_status(backfill_id)) not in ("REQUESTED", "CANCELING", "FAILING") and s,
        BACKFILL_TIMEOUT_S,
        f"backfill {backfill_id}",
    )
    print(f"3-day backfill of {len(ASSETS)} assets: {status} in {time.monotonic() - began:.0f}s")
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status
    runs = running.backfill_runs(backfill_id)
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(r.run_id, r.status) for r in runs]
    done: dict[str, set[str]] = {}
    failed_checks = []
    for run in runs:
        for record in running.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            m = record.dagster_event.event_specific_data.materialization
            done.setdefault(m.asset_key.to_user_string(), set()).add(m.partition)
        for record in running.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = record.dagster_event.event_specific_data
            if not evaluation.passed:
                failed_checks.append(
                    (evaluation.asset_check_key.to_user_string(), evaluation.partition, evaluation.description)
                )
    expected = {d.isoformat() for d in HISTORY}
    assert {a: done.get(a, set()) for a in ASSETS} == {a: expected for a in ASSETS}
    assert not failed_checks, failed_checks
    checked = {
        (r.dagster_event.event_specific_data.asset_check_key.to_user_string())
        for run in runs
        for r in running.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    }
    for asset in ASSETS:
        assert f"{asset}:schema_matches_contract" in checked and f"{asset}:keys_unique" in checked, asset
    assert "als_top_n:validation_ndcg_not_worse" in checked


def test_every_asset_of_the_new_day_materializes_by_itself(running):
    nodes = running.asset_nodes()
    missing = [a for a in ASSETS if a not in nodes]
    assert not missing, f"assets not defined yet: {missing}"
    publish_days(running.settings, [NEW_DAY])
    began = time.monotonic()

    def done():
        return all(NEW_DAY.isoformat() in running.materialized(a) for a in ASSETS)

    try:
        wait_until(done, NEW_DAY_TIMEOUT_S, f"every asset of {NEW_DAY} to materialize through sensors + automation", 10)
    finally:
        print({a: sorted(running.materialized(a)) for a in ASSETS})
    print(f"new day materialized by sensors + automation in {time.monotonic() - began:.0f}s")
    runs = running.instance.get_runs(filters=dg.RunsFilter(tags={"podrec/trigger": "kafka:user-events"}))
    assert any(r.tags.get("dagster/partition") == NEW_DAY.isoformat() for r in runs), "no sensor run for the new day"
    automated = running.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": NEW_DAY.isoformat()}))
    assert any(
        "dagster/auto_materialize" in r.tags
        or "dagster/from_automation_condition" in r.tags
        or r.tags.get("dagster/sensor_name", "").startswith("podrec_automation")
        for r in automated
    ), [r.tags for r in automated]
    failed = [(r.run_id, r.status) for r in automated if r.status == dg.DagsterRunStatus.FAILURE]
    assert not failed, failed


def test_cancelled_backfill_leaves_earlier_partitions_intact(running):
    lake = running.settings.lake_root
    from podrec_assets.resources.lake import LakeResource

    lake = LakeResource(root=lake)
    tables = [
        "episodes",
        "transcripts",
        "episode_vectors",
        "similarities",
        "user_events",
        "user_episode_daily",
        "als_top_n",
        "final_recommendations",
        "recommendation_metrics",
    ]
    before = {(t, d): lake.day_row_count(t, d) for t in tables for d in HISTORY}
    partitions_before = {a: running.materialized(a) for a in ASSETS}
    # built: every day of every asset materialized, every day of the inputs holds rows; a model's first day may hold
    # none (on the first day of a tiny catalog every listener ALS knows may have touched every episode)
    assert all({d.isoformat() for d in HISTORY} <= partitions_before[a] for a in ASSETS), partitions_before
    assert all(before[(t, d)] for t in tables[:6] for d in HISTORY), before
    assert all(before[(t, d)] for t in ("als_top_n", "final_recommendations") for d in HISTORY[1:]), before
    backfill_id = running.launch_backfill(HISTORY, ASSETS)
    wait_until(lambda: running.backfill_runs(backfill_id), 120, "the backfill's first run", 1)
    result = running.gql(
        """mutation($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }""", id=backfill_id
    )
    assert result["cancelPartitionBackfill"]["__typename"] == "CancelBackfillSuccess", result
    status = wait_until(
        lambda: (s := running.backfill_status(backfill_id)) in ("CANCELED", "COMPLETED_SUCCESS", "COMPLETED") and s,
        300,
        "the backfill to stop",
    )
    assert status == "CANCELED" or len(running.backfill_runs(backfill_id)) < len(HISTORY)
    for asset in ASSETS:
        assert partitions_before[asset] <= running.materialized(asset), asset
    # a cancelled run stops between day writes, never inside one: every table keeps every day, whole
    assert {(t, d): lake.day_row_count(t, d) for t in tables for d in HISTORY} == before
    unfinished = [r.run_id for r in running.backfill_runs(backfill_id) if not r.is_finished]
    assert not unfinished, f"runs of the cancelled backfill still going: {unfinished}"


def test_graphql_shows_lineage_daily_partitions_and_freshness(running):
    nodes = running.asset_nodes()
    edges = {("/".join(dep["path"]), name) for name, n in nodes.items() for dep in n["dependencyKeys"]}
    assert [e for e in EDGES if e not in edges] == []
    for asset in ASSETS:
        assert nodes[asset]["partitionDefinition"]["type"] == "TIME_WINDOW", asset
    for asset in ASSETS + TOPICS:
        assert nodes[asset]["freshnessStatusInfo"] is not None, asset

    # Kafka-fed assets and topics have a tight window here (2 minutes): with no new data they turn stale
    def stale():
        states = {
            a: n["freshnessStatusInfo"]["freshnessStatus"]
            for a, n in running.asset_nodes().items()
            if n["freshnessStatusInfo"]
        }
        return [a for a, s in states.items() if s in ("WARNING", "DEGRADED")]

    assert set(wait_until(stale, 300, "a stale Kafka-fed asset", 10)) & set(TOPICS + ["episodes", "user_events"])
    assert running.asset_nodes()["final_recommendations"]["freshnessStatusInfo"]["freshnessStatus"] == "HEALTHY"
