"""`final_recommendations` and `recommendation_metrics`: thin wrappers over core.fusion / core.evaluation.

Inputs are read from the lake by table name (``day_data.DayData``). Content scores need the vectors of every
episode published up to D, read from the first partition to D (ALL_DAYS_THROUGH_D). "Never recommend a completed
episode" and "every listener ever seen gets a list" need all listening history: ``listener_history`` of the day
before a bounded window holds it, and the window's days of `user_episode_daily` are read one by one; lineage says so.
"""

import json

import dagster as dg
import pandas as pd

from podrec_assets.core import evaluation, fusion, metrics
from podrec_assets.core.day_frames import CurveChoice, choose_curve
from podrec_assets.core.registry import TASTES_TABLE
from podrec_assets.core.schemas import FINAL_RECOMMENDATIONS, RECOMMENDATION_METRICS, frame_to_table, to_table
from podrec_assets.defs.hybrid.day_data import ALS_DAYS, DayData, frame_of, read_frame
from podrec_assets.defs.partitions import PREVIOUS_DAY, THROUGH_D, daily_partitions, partition_day, trailing_days
from podrec_assets.defs.state import LISTENING_BEFORE, RECENT_LISTENING
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets.settings import get_settings

ALL_DAYS_THROUGH_D = THROUGH_D.mapping  # every earlier day: the catalog's vectors and metadata
VALIDATION_DAYS_AND_SAME_DAY = ALS_DAYS.mapping


def _markdown(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    lines = [header, rule]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(format(v, floatfmt) if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


@dg.asset(
    partitions_def=daily_partitions,
    group_name="hybrid",
    kinds={"python", "delta", "mongodb"},
    deps=[
        dg.AssetDep("als_top_n", partition_mapping=VALIDATION_DAYS_AND_SAME_DAY),
        dg.AssetDep("similarities"),
        dg.AssetDep("episode_vectors", partition_mapping=ALL_DAYS_THROUGH_D),
        dg.AssetDep("episodes", partition_mapping=ALL_DAYS_THROUGH_D),
        dg.AssetDep("user_episode_daily", partition_mapping=RECENT_LISTENING.mapping),
        dg.AssetDep("listener_history", partition_mapping=LISTENING_BEFORE.mapping),
    ],
)
def final_recommendations(
    context: dg.AssetExecutionContext, lake: LakeResource, mongo: MongoResource
) -> dg.MaterializeResult:
    """Top-N episodes per user for day D: ALS fused with content, age-dependent α, explanations, cold start."""
    settings = get_settings()
    day = partition_day(context)
    data = DayData(lake, settings, day)
    default_curve = fusion.AlphaCurve(settings.fusion_alpha, settings.fusion_alpha_new, settings.fusion_alpha_ramp_days)
    if settings.fusion_alpha_select == "validate":
        choice = choose_curve(
            data,
            day,
            default_curve,
            settings.fusion_validation_days,
            settings.fusion_validation_users,
            settings.metrics_k,
        )
        if choice.judged:
            context.log.info(
                f"chose the alpha curve on {len(choice.judged)} validation day(s), {choice.judged} sampled listeners "
                f"(PODREC_FUSION_VALIDATION_USERS={settings.fusion_validation_users}): {choice.why}"
            )
    elif settings.fusion_alpha_select == "fixed":
        choice = CurveChoice(default_curve, "fixed by settings (PODREC_FUSION_ALPHA_SELECT=fixed)")
    else:
        raise ValueError(
            f"PODREC_FUSION_ALPHA_SELECT must be 'validate' or 'fixed', not {settings.fusion_alpha_select!r}"
        )
    curve = choice.curve

    recs = data.recommend(day, curve)
    version = fusion.model_version(data.als_of(day)["model_version"], data.vectors_of(day)["model"], curve)
    titles = data.episodes_through(day).set_index("episode_id")["episode_title"]
    catalog_episodes = int(data.vectors_of(day)["episode_id"].nunique())
    del data  # the window's listening rows: gigabytes at a million listeners, no longer needed while the lists go out

    recs["model_version"] = version
    written = lake.write_partition(
        "final_recommendations", day, frame_to_table(recs, FINAL_RECOMMENDATIONS), context.run_id
    )
    # MongoDB stamps the version on each bucket document; its rows carry the titles instead (columns added in
    # place: a copy of ten million rows is what a write must not cost)
    del recs["model_version"]
    recs["episode_title"] = recs["episode_id"].map(titles)
    recs["because_episode_title"] = recs["because_episode_id"].map(titles)
    served = mongo.replace_day(
        "final_recommendations",
        day,
        recs,
        context.run_id,
        model_version=version,
        delta_version=written["delta_version"],
    )

    users = recs["user_id"].nunique() if len(recs) else 0
    cold_users = int((recs["reason"] == "popular").groupby(recs["user_id"]).all().sum()) if len(recs) else 0
    reasons = recs["reason"].value_counts().to_dict() if len(recs) else {}
    metadata = {
        "rows": written["rows"],
        "users": users,
        "cold_start_users": cold_users,
        "reasons": dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
        "alpha": curve.alpha,
        "alpha_new": curve.alpha_new,
        "alpha_ramp_days": curve.ramp_days,
        "alpha_choice": choice.why,
        "model_version": version,
        "delta_version": written["delta_version"],
        "mongo_inserted": served["inserted"],
        "mongo_rows": served["rows"],
        "mongo_deleted": served["deleted"],
        "mongo_seconds": served["seconds"],
        "catalog_episodes": catalog_episodes,
    }
    if not choice.evidence.empty:
        metadata["alpha_validation"] = dg.MetadataValue.md(_markdown(choice.evidence.head(10)))
        metadata["alpha_validation_listeners"] = dg.MetadataValue.json(choice.judged)
    if len(recs):
        metadata["preview"] = dg.MetadataValue.md(
            _markdown(recs.head(10).fillna({"because_episode_id": "", "because_episode_title": ""}))
        )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    partitions_def=daily_partitions,
    group_name="hybrid",
    kinds={"python", "delta", "plotly"},
    deps=[
        dg.AssetDep("final_recommendations", partition_mapping=PREVIOUS_DAY.mapping),
        dg.AssetDep("als_top_n", partition_mapping=PREVIOUS_DAY.mapping),
        dg.AssetDep("user_episode_daily", partition_mapping=RECENT_LISTENING.mapping),
        dg.AssetDep("listener_history", partition_mapping=LISTENING_BEFORE.mapping),
        dg.AssetDep("episode_vectors", partition_mapping=ALL_DAYS_THROUGH_D),
        dg.AssetDep("episodes", partition_mapping=ALL_DAYS_THROUGH_D),
    ],
)
def recommendation_metrics(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Lists made for D-1 (popularity, ALS, content, hybrid) judged against positive engagement on D."""
    settings = get_settings()
    day = partition_day(context)
    rec_day, _ = PREVIOUS_DAY.days(day)
    k = settings.metrics_k
    data = DayData(lake, settings, day)
    hybrid = read_frame(lake, "final_recommendations", rec_day, rec_day, ["user_id", "episode_id", "rank"])
    if hybrid.empty:
        written = lake.write_partition(
            "recommendation_metrics", day, to_table([], RECOMMENDATION_METRICS), context.run_id
        )
        return dg.MaterializeResult(
            metadata={
                "rows": 0,
                "note": f"nothing to evaluate: no final_recommendations for {rec_day}",
                "delta_version": written["delta_version"],
            }
        )

    # a stable sample of at most PODREC_METRICS_USERS listeners (all of them on smaller platforms): every model is
    # judged on the same ones, so the cost stays bounded at any number of listeners
    listed = pd.unique(hybrid["user_id"])
    sample = metrics.validation_sample(listed, settings.metrics_users)
    sampled = len(sample) < len(listed)
    hybrid = hybrid[hybrid["user_id"].isin(sample)] if sampled else hybrid
    prepared = data.prepare(rec_day, users=sample if sampled else None)
    relevant = data.relevant(prepared, day)
    relevant = relevant[relevant["user_id"].isin(sample)] if sampled else relevant
    published = data.published(rec_day)
    new_ids = set(published[published.dt.floor("D") == pd.Timestamp(rec_day, tz="UTC")].index)
    relevant_new = relevant[relevant["episode_id"].isin(new_ids)]
    users = sorted(set(hybrid["user_id"]))
    lists = {
        "popularity": evaluation.popularity_lists(prepared, users, k),
        "als": data.als_of(rec_day).loc[lambda f: f["user_id"].isin(sample), ["user_id", "episode_id", "rank"]],
        "content": evaluation.content_lists(prepared, k),
        "hybrid": hybrid,
    }
    missing = [model for model, recs in lists.items() if recs.empty]
    lists = {model: recs for model, recs in lists.items() if not recs.empty}  # e.g. no ALS model that day
    window_start, _ = trailing_days(settings.history_days).days(rec_day)
    interactions = data.daily_between(window_start, rec_day)
    tastes = (
        frame_of(lake.read_all(TASTES_TABLE, columns=["user_id", "topic", "weight"]))
        if lake.exists(TASTES_TABLE)
        else pd.DataFrame()
    )
    if not tastes.empty:
        tastes = tastes[tastes["user_id"].isin(sample)].drop_duplicates(["user_id", "topic"], keep="last")
    categories = data.episodes_through(day).set_index("episode_id")["categories"]
    catalog_size = len(set(prepared.index.ids) | set(published.index))
    scores = evaluation.evaluate_models(
        lists, relevant, relevant_new, k, catalog_size, interactions, prepared.index, tastes, categories
    )
    written = lake.write_partition(
        "recommendation_metrics", day, to_table(scores.to_dict("records"), RECOMMENDATION_METRICS), context.run_id
    )

    wide = scores.pivot(index="metric", columns="model", values="value").reindex(columns=list(lists)).reset_index()
    value = scores.set_index(["model", "metric"])["value"]
    metadata = {
        "rows": written["rows"],
        "delta_version": written["delta_version"],
        "recommended_for": rec_day.isoformat(),
        "listeners_with_lists": len(listed),
        "listeners_judged_sample": len(sample),
        "users_evaluated": int(scores[scores["metric"] == f"ndcg@{k}"]["users_evaluated"].max()),
        "relevant_pairs": len(relevant),
        "relevant_new_episode_pairs": len(relevant_new),
        "metrics": dg.MetadataValue.md(_markdown(wide)),
        "plot": dg.MetadataValue.json(_plot(scores, k)),
        "positive_engagement": f"completed or engagement >= {settings.positive_engagement}",
        "models_without_lists": ", ".join(missing) or "none",
    }
    for model in lists:
        metadata[f"{model}_ndcg@{k}"] = float(value[(model, f"ndcg@{k}")])
    return dg.MaterializeResult(metadata=metadata)


def _plot(scores: pd.DataFrame, k: int) -> dict:
    """A plotly figure (as JSON) of the ranking metrics per model, for the metadata and the Dash app."""
    import plotly.graph_objects as go

    shown = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}", f"ndcg@{k}/new", f"taste_match@{k}"]
    fig = go.Figure()
    for model, rows in scores[scores["metric"].isin(shown)].groupby("model", sort=False):
        fig.add_bar(name=model, x=rows["metric"].tolist(), y=rows["value"].tolist())
    fig.update_layout(barmode="group", title="Lists for D-1 judged on D", yaxis_title="value")
    return json.loads(fig.to_json())
