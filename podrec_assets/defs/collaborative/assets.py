"""`als_top_n[D]`: ALS trained on the W days of `user_episode_daily` ending on D; thin wrapper over core.als."""

import math
from dataclasses import replace

import dagster as dg
import pandas as pd

from podrec_assets.core import als, schemas
from podrec_assets.defs.partitions import PREVIOUS_DAY, daily_partitions, partition_day, trailing_days
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets.resources.spark import SparkResource
from podrec_assets.settings import Settings, get_settings

GROUP = "collaborative"
SOURCE = "user_episode_daily"
READ_COLUMNS = ["user_id", "episode_id", "engagement", "date"]


def window_mapping(window_days: int) -> dg.TimeWindowPartitionMapping:
    """D depends on D-(W-1) .. D (the first days of the product train on a shorter window)."""
    return trailing_days(window_days).mapping


ALS_WINDOW = trailing_days(get_settings().als_window_days)


def params_from(settings: Settings) -> als.AlsParams:
    return als.AlsParams(
        factors=settings.als_factors,
        regularization=settings.als_regularization,
        iterations=settings.als_iterations,
        alpha=settings.als_confidence_alpha,
        seed=settings.als_seed,
        threads=settings.als_threads,
    )


def backend_for(engine: str) -> str:
    return "spark" if engine == "spark" else "implicit"


def _preview(top_n: pd.DataFrame, users: int = 10) -> str:
    head = top_n[top_n["user_id"].isin(top_n["user_id"].drop_duplicates().head(users)) & (top_n["rank"] <= 3)]
    lines = [f"| {r.user_id} | {r.rank} | {r.episode_id} | {r.score:.4f} |" for r in head.itertuples()]
    return "| user | rank | episode | score |\n|---|---|---|---|\n" + "\n".join(lines)


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    deps=[dg.AssetDep(SOURCE, partition_mapping=ALS_WINDOW.mapping)],
    kinds={"python", "delta", "mongodb"},
)
def als_top_n(
    context: dg.AssetExecutionContext, lake: LakeResource, mongo: MongoResource, spark: SparkResource
) -> dg.MaterializeResult:
    """Top-N unseen episodes per user from implicit-feedback ALS on the window D-(W-1)..D of user_episode_daily.

    Engine local trains with `implicit`, engine spark with Spark ML (same confidence, see core/als.py). Before the
    final fit, a model trained without the window's last day is scored on it (`validation_ndcg@k`, k =
    `PODREC_METRICS_K`), and so is the previous day's served list, paired per user (`ndcg_change_vs_previous`,
    read by the blocking check). Writes Delta `als_top_n` and `als_factors` (day D replaced) and Mongo `als_top_n`.
    """
    settings = get_settings()
    day = partition_day(context)
    window = settings.als_window_days
    start, _ = ALS_WINDOW.days(day)
    if not lake.exists(SOURCE):
        raise dg.Failure(f"Delta table {SOURCE!r} does not exist under {lake.root}: materialize {SOURCE} first")
    version = lake.version(SOURCE)
    frame = lake.read_days(SOURCE, start, day, columns=READ_COLUMNS, version=version).to_pandas()
    if frame.empty:
        raise dg.Failure(
            f"no interactions in {SOURCE} from {start} to {day} (window of {window} days, Delta version {version}): "
            f"materialize {SOURCE} for those days or widen PODREC_ALS_WINDOW_DAYS"
        )
    days_read = sorted({pd.Timestamp(d).date() for d in frame["date"].unique()})
    backend = backend_for(settings.engine)
    session = spark.spark_session if backend == "spark" else None
    k = settings.metrics_k

    try:
        data = als.Interactions.from_frame(frame)
    except ValueError as exc:
        raise dg.Failure(f"cannot train ALS on {SOURCE} {start}..{day}: {exc}") from exc
    params = params_from(settings)
    params = replace(params, factors=als.capped_factors(params.factors, data.n_items))
    if params.factors < settings.als_factors:
        context.log.info(
            f"{data.n_items} episodes in the window: training {params.factors} factors "
            f"instead of PODREC_ALS_FACTORS={settings.als_factors}"
        )
    if session is not None and session.sparkContext.getCheckpointDir() is None:
        session.sparkContext.setCheckpointDir(str(settings.home_path / "spark-checkpoints"))
    previous = (
        lake.read_day("als_top_n", PREVIOUS_DAY.days(day)[0], columns=["user_id", "episode_id", "rank"]).to_pandas()
        if lake.exists("als_top_n")
        else None
    )
    validation = als.validate(
        frame,
        day,
        params,
        backend=backend,
        spark=session,
        k=k,
        previous_top_n=previous,
        max_users=settings.als_validation_users,
    )
    data_version = f"{SOURCE}@v{version}[{start}..{day}]"
    result = als.fit_recommend(
        data,
        params,
        settings.top_n,
        backend=backend,
        spark=session,
        data_version=data_version,
        checkpoint_dir=str(settings.home_path / "spark-checkpoints"),
    )

    top_n = result.top_n.assign(model_version=result.model_version)
    run_id = context.run.run_id
    written = lake.write_partition("als_top_n", day, schemas.frame_to_table(top_n, schemas.ALS_TOP_N), run_id)
    factors = als.factors_frame(result).assign(model_version=result.model_version)
    factors_table = schemas.frame_to_table(factors, schemas.ALS_FACTORS)
    factors_written = lake.write_partition("als_factors", day, factors_table, run_id)
    served = mongo.replace_day(
        "als_top_n",
        day,
        top_n[["user_id", "episode_id", "rank", "score"]],
        run_id,
        model_version=result.model_version,
        delta_version=written["delta_version"],
    )

    ndcg = validation["ndcg"]
    return dg.MaterializeResult(
        metadata={
            f"validation_ndcg@{k}": dg.MetadataValue.float(float(ndcg)),
            f"validation_ndcg@{k}_stderr": dg.MetadataValue.float(float(validation["ndcg_stderr"])),
            "paired_ndcg_this_model": dg.MetadataValue.float(float(validation["paired_ndcg"])),
            "paired_ndcg_previous_model": dg.MetadataValue.float(float(validation["previous_ndcg"])),
            "ndcg_change_vs_previous": dg.MetadataValue.float(float(validation["change"])),
            "ndcg_change_stderr": dg.MetadataValue.float(float(validation["change_stderr"])),
            "paired_users": int(validation["paired_users"]),
            "paired_k": int(validation["paired_k"]),
            "validation_method": validation["method"],
            "validation_users": int(validation["users"]),
            "validation_judged_sample": int(validation["judged_users"]),
            "validation": dg.MetadataValue.json(
                {key: (None if isinstance(v, float) and math.isnan(v) else v) for key, v in validation.items()}
            ),
            "model_version": result.model_version,
            "backend": backend,
            "params": dg.MetadataValue.json({**params.as_dict(), "top_n": settings.top_n, "window_days": window}),
            "window": f"{start}..{day}",
            "days_read": dg.MetadataValue.json([d.isoformat() for d in days_read]),
            "days_read_count": len(days_read),
            "delta_versions_read": dg.MetadataValue.json({SOURCE: version}),
            "rows_read": len(frame),
            "users": data.n_users,
            "episodes": data.n_items,
            "positive_pairs": data.nnz,
            "fit_seconds": round(result.fit_seconds, 3),
            "recommend_seconds": round(result.recommend_seconds, 3),
            "rows": written["rows"],
            "delta_version": written["delta_version"],
            "factors_delta_version": factors_written["delta_version"],
            "mongo_inserted": served["inserted"],
            "mongo_rows": served["rows"],
            "mongo_deleted": served["deleted"],
            "mongo_seconds": served["seconds"],
            "preview": dg.MetadataValue.md(_preview(result.top_n)),
        }
    )
