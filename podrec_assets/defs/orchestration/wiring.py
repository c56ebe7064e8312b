"""Orchestration applied to whatever assets the areas define: sensors, automation, freshness, generic checks.

``definitions.py`` merges the areas and hands the result to ``apply_orchestration``; nothing here names
an asset that must exist, so each piece switches on when its asset lands.

Automation choice: every downstream daily asset is *eager* over the last few day partitions
(``PODREC_AUTOMATION_LOOKBACK_DAYS``): the Kafka sensors refresh a day whenever its messages arrive,
and each asset follows as soon as all its inputs for that day are present and none is running. The
models (ALS, fusion, metrics) are eager too by default, because training on the demo's window takes
seconds and a recommendation that lags its inputs by a cron period is what users notice; a deployment
with expensive training sets ``PODREC_MODEL_CRON`` (e.g. ``0 3 * * *``) and they run once a day after
their inputs updated. A failed blocking check upstream (the ALS nDCG gate) holds automation back.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from podrec_assets.defs.checks import build_checks
from podrec_assets.defs.orchestration.sensors import build_topic_sensor
from podrec_assets.defs.orchestration.topics import TOPICS, topic_asset_key
from podrec_assets.defs.policies import HEAVY_TAG
from podrec_assets.settings import Settings

MODEL_ASSETS = {"als_top_n", "final_recommendations", "recommendation_metrics"}


def _asset_defs(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    return [a for a in (defs.assets or []) if isinstance(a, dg.AssetsDefinition)]


def topic_consumers(defs: dg.Definitions) -> dict[str, list[dg.AssetKey]]:
    """Per topic, every key of the asset definitions that read it (a multi_asset is requested whole)."""
    consumers: dict[str, list[dg.AssetKey]] = {t: [] for t in TOPICS}
    for assets_def in _asset_defs(defs):
        upstream = {dep.asset_key for spec in assets_def.specs for dep in spec.deps}
        for topic in TOPICS:
            if topic_asset_key(topic) in upstream:
                consumers[topic] += [k for k in assets_def.keys if k not in consumers[topic]]
    return consumers


def declared_keys(defs: dg.Definitions) -> set[dg.AssetKey]:
    keys: set[dg.AssetKey] = set()
    for item in defs.assets or []:
        if isinstance(item, dg.AssetsDefinition):
            keys |= set(item.keys)
        elif isinstance(item, dg.AssetSpec):
            keys.add(item.key)
    return keys


def heavy_kind(assets_def: dg.AssetsDefinition, settings: Settings) -> str | None:
    """The heavy kind an area declared on the asset (``defs/policies.heavy``), else spark for assets that use
    the Spark resource when engine=spark (a setting, so only known here)."""
    declared = {spec.tags[HEAVY_TAG] for spec in assets_def.specs if HEAVY_TAG in spec.tags}
    if declared:
        return sorted(declared)[0]
    if "spark" in assets_def.required_resource_keys and settings.engine == "spark":
        return "spark"
    return None


def downstream_condition(
    key: dg.AssetKey, settings: Settings, gated: frozenset[dg.AssetKey] = frozenset()
) -> dg.AutomationCondition:
    """Eager over the last few days, held back by a failed blocking check of a dep. ``gated``: the assets that have
    blocking checks; only those deps are judged by the gate (a dep whose mapped days all lie before the first
    partition, like listener_history's day before the window, maps no partition and would otherwise never pass)."""
    window = dg.AutomationCondition.in_latest_time_window(timedelta(days=settings.automation_lookback_days))
    # A dep counts as missing only inside the window: windowed inputs (all days through D, the last W
    # days) reach back to days before the data began, which are never materialized and must not block.
    recent_deps_missing = dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.missing() & ~dg.AutomationCondition.will_be_requested() & window
    ).with_label("any_recent_deps_missing")
    if key.to_user_string() in MODEL_ASSETS and settings.model_cron:
        base = dg.AutomationCondition.on_cron(settings.model_cron).replace("in_latest_time_window", window)
        base = base & ~recent_deps_missing
    else:
        base = (
            dg.AutomationCondition.eager()
            .replace("in_latest_time_window", window)
            .replace("any_deps_missing", recent_deps_missing)
        )
    # a dep partition holds the asset back if a blocking check of it failed (the ALS nDCG gate); missing or
    # old dep partitions are judged by the clause above, not here
    if not gated:
        return base.with_label(f"{base.get_label() or 'eager'} (last {settings.automation_lookback_days} days)")
    deps_gates_passed = (
        dg.AutomationCondition.all_deps_match(
            dg.AutomationCondition.all_checks_match(
                dg.AutomationCondition.check_passed() | dg.AutomationCondition.will_be_requested(),
                blocking_only=True,
            )
            | dg.AutomationCondition.missing()
            | ~window
        )
        .allow(dg.AssetSelection.assets(*sorted(gated, key=lambda k: k.to_user_string())))
        .with_label("all_recent_deps_blocking_checks_passed")
    )
    return (base & deps_gates_passed).with_label(
        f"{base.get_label() or 'eager'} (last {settings.automation_lookback_days} days), blocking checks passed"
    )


def freshness_policies(settings: Settings) -> tuple[dg.FreshnessPolicy, dg.FreshnessPolicy]:
    default = dg.FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=settings.freshness_fail_minutes),
        warn_window=timedelta(minutes=settings.freshness_warn_minutes),
    )
    live = dg.FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=settings.freshness_live_fail_minutes),
        warn_window=timedelta(minutes=settings.freshness_live_warn_minutes),
    )
    return default, live


def apply_orchestration(defs: dg.Definitions, settings: Settings) -> dg.Definitions:
    consumers = topic_consumers(defs)
    kafka_fed = {k for keys in consumers.values() for k in keys}
    topic_keys = {topic_asset_key(t) for t in TOPICS}
    default_policy, live_policy = freshness_policies(settings)

    check_defs = [*(defs.asset_checks or []), *(a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition))]
    gated = frozenset(spec.asset_key for item in check_defs for spec in item.check_specs if spec.blocking)
    heavy: dict[dg.AssetKey, str] = {}
    assets: list = []
    for item in defs.assets or []:
        if isinstance(item, dg.AssetsDefinition) and item.is_executable:
            kind = heavy_kind(item, settings)  # backfill policies stay the owner's (defs/<area>/assets.py)
            for key in item.keys:
                if kind:
                    heavy[key] = kind
        assets.append(item)
    mapped = dg.Definitions(
        assets=assets,
        asset_checks=defs.asset_checks,
        sensors=defs.sensors,
        jobs=defs.jobs,
        schedules=defs.schedules,
        resources=defs.resources,
        executor=defs.executor,
        loggers=defs.loggers,
        metadata=defs.metadata,
    )

    def set_policies(spec: dg.AssetSpec) -> dg.AssetSpec:
        live = spec.key in kafka_fed or spec.key in topic_keys
        changes: dict = {}
        if spec.freshness_policy is None:
            changes["freshness_policy"] = live_policy if live else default_policy
        executable = spec.key not in topic_keys and not live and spec.partitions_def is not None
        if executable and spec.automation_condition is None:
            changes["automation_condition"] = downstream_condition(spec.key, settings, gated)
        if spec.key in heavy:
            changes["tags"] = {**spec.tags, HEAVY_TAG: heavy[spec.key]}
        return spec.replace_attributes(**changes) if changes else spec

    mapped = mapped.map_asset_specs(func=set_policies)
    existing = declared_keys(mapped)  # not the keys areas only depend on (their owners have not landed yet)

    sensors = [
        build_topic_sensor(topic, consumers[topic], settings.sensor_interval_s, settings.sensor_scan_limit)
        for topic in TOPICS
    ]
    automated = sorted(
        (
            spec.key
            for spec in mapped.resolve_all_asset_specs()
            if spec.automation_condition is not None and spec.key in existing
        ),
        key=lambda k: k.to_user_string(),
    )
    by_kind: dict[str | None, list[dg.AssetKey]] = {}
    for key in automated:
        by_kind.setdefault(heavy.get(key), []).append(key)
    for kind, keys in sorted(by_kind.items(), key=lambda kv: kv[0] or ""):
        name = f"podrec_automation_{kind}" if kind else "podrec_automation"
        sensors.append(
            dg.AutomationConditionSensorDefinition(
                name,
                target=keys,
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=settings.sensor_interval_s,
                run_tags={HEAVY_TAG: kind} if kind else None,
                description="Declarative automation of "
                + (
                    f"the {kind} assets (runs tagged {HEAVY_TAG}={kind}, limited to one at a time)"
                    if kind
                    else "the downstream daily assets"
                ),
            )
        )
    checks = build_checks(existing, sorted(kafka_fed, key=lambda k: k.to_user_string()), settings)
    executor = defs.executor or dg.in_process_executor  # 2 cores: one process per run, not one per step
    return dg.Definitions.merge(
        dg.Definitions(
            assets=mapped.assets,
            asset_checks=mapped.asset_checks,
            jobs=mapped.jobs,
            schedules=mapped.schedules,
            resources=mapped.resources,
            loggers=mapped.loggers,
            metadata=mapped.metadata,
            executor=executor,
        ),
        dg.Definitions(sensors=list(mapped.sensors or []) + sensors, asset_checks=checks),
    )
