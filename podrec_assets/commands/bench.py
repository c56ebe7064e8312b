"""`podrec bench movielens`: our ALS on Microsoft Recommenders' MovieLens-100k protocol, beside published figures."""

from __future__ import annotations

import argparse
import json
import sys

from podrec_assets.settings import get_settings


def _spark_session():
    from podrec_assets.resources.spark import spark_resource

    session = spark_resource(get_settings()).spark_session
    session.sparkContext.setLogLevel("ERROR")
    return session


def _movielens(args: argparse.Namespace) -> int:
    from podrec_assets.core import movielens
    from podrec_assets.core.als import AlsParams

    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    spark = _spark_session() if args.backend == "spark" else None
    try:
        params = None
        if args.no_tune:
            s = get_settings()
            params = AlsParams(
                factors=args.factors or s.als_factors,
                regularization=args.regularization or s.als_regularization,
                iterations=s.als_iterations,
                alpha=args.alpha or s.als_confidence_alpha,
                seed=args.seed,
            )
        if not args.json:
            print(
                f"MovieLens-100k (from {movielens.ratings_path()}), split stratified by item 75/25, seed {args.seed}, "
                f"backend {args.backend}"
            )
            if not args.no_tune:
                print("choosing hyperparameters on a validation split of train (75/25 of train, never test):")
        result = movielens.run_benchmark(
            args.backend, args.seed, spark=spark, tune=not args.no_tune, params=params, log=log
        )
    finally:
        if spark is not None:
            spark.stop()
    if args.json:
        keys = ("backend", "seed", "map", "ndcg@10", "precision@10", "recall@10", "fit_seconds", "params")
        print(json.dumps({key: result[key] for key in keys}))
        return 0
    print(f"chosen: {result['params']}")
    print(f"train {result['train_rows']} ratings, test {result['test_rows']}, users evaluated {result['users']}\n")
    print(f"{'model':<28}{'MAP':>9}{'nDCG@10':>10}{'P@10':>9}{'R@10':>9}{'fit s':>9}")
    print(
        f"{'podrec ALS (' + args.backend + ')':<28}{result['map']:>9.4f}{result['ndcg@10']:>10.4f}"
        f"{result['precision@10']:>9.4f}{result['recall@10']:>9.4f}{result['fit_seconds']:>9.2f}"
    )
    for name, ndcg in movielens.PUBLISHED_NDCG10.items():
        print(f"{name + ' (published)':<28}{'':>9}{ndcg:>10.4f}{'':>9}{'':>9}{'':>9}")
    print(
        "\nMAP is Spark-style (normalised by all relevant items); published figures: Recommenders' "
        "examples/06_benchmarks/movielens notebook."
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks against published tables (MovieLens-100k)",
        description="Reproducible benchmarks of the project's models against published figures.",
    )
    kinds = parser.add_subparsers(dest="bench", metavar="BENCH")
    kinds.required = True
    ml = kinds.add_parser(
        "movielens",
        help="ALS on MovieLens-100k with Microsoft Recommenders' protocol",
        description="Full ML-100k ratings read from the installed recbole wheel; python_stratified_split-equivalent "
        "split (75%% of each item's ratings to train); hyperparameters chosen on a validation split carved from "
        "train; top-10 with seen items removed, every test rating relevant; MAP (Spark-style), nDCG@10, "
        "Precision@10, Recall@10 printed next to published results.",
    )
    ml.add_argument(
        "--backend", choices=["implicit", "spark"], default="implicit", help="ALS backend (default implicit)"
    )
    ml.add_argument("--seed", type=int, default=42, help="split and model seed (default 42, as Recommenders)")
    ml.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ml.add_argument("--no-tune", action="store_true", help="skip the validation grid; use settings or the flags below")
    ml.add_argument("--factors", type=int, help="with --no-tune: latent factors")
    ml.add_argument("--regularization", type=float, help="with --no-tune: regularisation")
    ml.add_argument("--alpha", type=float, help="with --no-tune: confidence alpha")
    ml.set_defaults(handler=_movielens)
