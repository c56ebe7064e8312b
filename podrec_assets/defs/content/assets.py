"""Content model assets: transcript embeddings (`episode_vectors`) and nearest episodes (`similarities`)."""

import time
from datetime import date, datetime, timezone
from datetime import time as dtime

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from podrec_assets.core import schemas
from podrec_assets.core.embedding import empty_text_reason, vectors_matrix
from podrec_assets.core.knn import normalize_rows, similarity_rows, top_k_cosine
from podrec_assets.defs.partitions import THROUGH_D, daily_partitions, partition_day
from podrec_assets.resources.embedder import EmbedderResource
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.mongo import MongoResource
from podrec_assets.settings import get_settings

GROUP = "content"

ALL_DAYS_THROUGH_D = THROUGH_D.mapping  # see defs/partitions.py


def _day_start(day: date) -> datetime:
    return datetime.combine(day, dtime(0), tzinfo=timezone.utc)


def _last_by_episode(rows: list[dict]) -> list[dict]:
    """One row per episode_id, the last one wins (a re-published or re-transcribed episode)."""
    return list({row["episode_id"]: row for row in rows}.values())


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    deps=[dg.AssetDep("transcripts"), dg.AssetDep("episodes")],
    kinds={"python", "delta"},
)
def episode_vectors(
    context: dg.AssetExecutionContext, lake: LakeResource, embedder: EmbedderResource
) -> dg.MaterializeResult:
    """One unit vector per `ok` transcript of day D: token-window chunks, token-weighted mean, float32.

    Failed, skipped and empty transcripts are not embedded; each is listed with its reason in the metadata.
    """
    day = partition_day(context)
    if not lake.exists("transcripts"):
        raise dg.Failure(
            f"Delta table 'transcripts' does not exist under {lake.root}: materialize transcripts[{day}] first"
        )
    transcripts = _last_by_episode(
        lake.read_day("transcripts", day, columns=["episode_id", "status", "text"]).to_pylist()
    )
    published = (
        {
            r["episode_id"]: r["published_at"]
            for r in lake.read_day("episodes", day, columns=["episode_id", "published_at"]).to_pylist()
        }
        if lake.exists("episodes")
        else {}
    )

    skipped: dict[str, str] = {}
    todo = []
    for row in transcripts:
        reason = empty_text_reason(row["status"], row["text"])
        if reason:
            skipped[row["episode_id"]] = reason
        else:
            todo.append(row)
    params = embedder.params()
    started = time.perf_counter()
    embeddings = embedder.embed([r["text"] for r in todo], logger=context.log, skip_empty=True)
    seconds = time.perf_counter() - started

    rows, missing_published = [], 0
    for row, emb in zip(todo, embeddings):
        if emb is None:
            skipped[row["episode_id"]] = "transcript text has no tokens"
            continue
        published_at = published.get(row["episode_id"])
        if published_at is None:
            missing_published += 1
            published_at = _day_start(day)
        rows.append(
            {
                "episode_id": row["episode_id"],
                "published_at": published_at,
                "model": params["model"],
                "chunk_count": emb.chunk_count,
                "token_count": emb.token_count,
                "vector": emb.vector.tolist(),
            }
        )
    if transcripts and not rows:
        context.log.warning("no transcript of %s could be embedded: %s", day, skipped)
    written = lake.write_partition(
        "episode_vectors", day, schemas.to_table(rows, schemas.EPISODE_VECTORS), context.run.run_id
    )
    chunks = sum(r["chunk_count"] for r in rows)
    return dg.MaterializeResult(
        metadata={
            "rows": written["rows"],
            "delta_version": written["delta_version"],
            "transcripts_read": len(transcripts),
            "skipped": len(skipped),
            "skipped_reasons": dg.MetadataValue.json(skipped),
            "chunks": chunks,
            "tokens": sum(r["token_count"] for r in rows),
            "embed_seconds": round(seconds, 2),
            "chunks_per_second": round(chunks / seconds, 1) if seconds > 0 and chunks else 0.0,
            "published_at_missing": missing_published,
            **{f"param_{k}": v for k, v in params.items()},
        }
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    deps=[dg.AssetDep("episode_vectors", partition_mapping=ALL_DAYS_THROUGH_D)],
    kinds={"python", "delta", "mongodb"},
)
def similarities(context: dg.AssetExecutionContext, lake: LakeResource, mongo: MongoResource) -> dg.MaterializeResult:
    """Top-K most similar episodes (published on or before D) of each episode published on D.

    Exact cosine search in blocks (bounded memory); the episode itself is excluded, neighbours from the
    same day are allowed. Depends on every day of `episode_vectors` through D (see ALL_DAYS_THROUGH_D).
    Vectors of another model than D's are left out of the catalog (counted in the metadata).
    Written to Delta and to the Mongo `similarities` collection (day D replaced).
    """
    settings = get_settings()
    day = partition_day(context)
    k = settings.similarity_k
    first_day = daily_partitions.start.date()
    if not lake.exists("episode_vectors"):
        raise dg.Failure(f"Delta table 'episode_vectors' does not exist under {lake.root}: materialize it first")
    history = lake.read_days("episode_vectors", first_day, day, columns=["episode_id", "model", "vector", "date"])
    history = history.sort_by([("date", "ascending")])
    todays = history.filter(pc.equal(history["date"], pa.scalar(day, pa.date32())))
    models = sorted(set(todays["model"].to_pylist()))
    if len(models) > 1:
        raise dg.Failure(f"episode_vectors[{day}] mixes models {models}: re-materialize it")
    model = models[0] if models else ""
    same_model = history.filter(pc.equal(history["model"], model)) if model else history.slice(0, 0)
    other_model_rows = history.num_rows - same_model.num_rows

    # one catalog row per episode: its latest day wins (so an episode re-published on D is D's query)
    ids = same_model["episode_id"].to_pylist()
    latest = {episode_id: position for position, episode_id in enumerate(ids)}
    keep = sorted(latest.values())
    catalog_ids = [ids[i] for i in keep]
    catalog = (
        normalize_rows(vectors_matrix(same_model["vector"].take(pa.array(keep, pa.int64()))))
        if keep
        else np.zeros((0, 1), np.float32)
    )
    catalog_days = same_model["date"].take(pa.array(keep, pa.int64())).to_pylist() if keep else []
    position = {episode_id: i for i, episode_id in enumerate(catalog_ids)}
    query_ids = sorted({eid for eid, d in zip(catalog_ids, catalog_days) if d == day})
    self_index = np.asarray([position[q] for q in query_ids], dtype=np.int64)

    started = time.perf_counter()
    neighbours = top_k_cosine(
        catalog[self_index] if len(query_ids) else np.zeros((0, catalog.shape[1]), np.float32),
        catalog,
        k,
        self_index=self_index,
        catalog_block=settings.knn_block_size,
    )
    knn_seconds = time.perf_counter() - started
    rows = similarity_rows(query_ids, catalog_ids, neighbours, model)
    written = lake.write_partition(
        "similarities", day, schemas.to_table(rows, schemas.SIMILARITIES), context.run.run_id
    )
    served = mongo.replace_day(
        "similarities",
        day,
        rows,
        context.run.run_id,
        model_version=model or None,
        delta_version=written["delta_version"],
    )

    top1 = [r["cosine_similarity"] for r in rows if r["rank"] == 1]
    preview = "\n".join(
        f"| {r['new_episode_id']} | {r['rank']} | {r['historical_episode_id']} | {r['cosine_similarity']:.3f} |"
        for r in rows
        if r["rank"] <= 3
    )
    return dg.MaterializeResult(
        metadata={
            "rows": written["rows"],
            "delta_version": written["delta_version"],
            "mongo_inserted": served["inserted"],
            "mongo_rows": served["rows"],
            "mongo_deleted": served["deleted"],
            "mongo_seconds": served["seconds"],
            "episodes_queried": len(query_ids),
            "catalog_size": len(catalog_ids),
            "history_days_read": len(set(history["date"].to_pylist())),
            "other_model_rows_excluded": other_model_rows,
            "k": k,
            "model": model,
            "knn_seconds": round(knn_seconds, 3),
            "mean_top1_cosine": round(float(np.mean(top1)), 4) if top1 else 0.0,
            "preview": dg.MetadataValue.md(
                "| new episode | rank | neighbour | cosine |\n|---|---|---|---|\n" + preview[:20000]
            ),
        }
    )
