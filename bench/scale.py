"""Scale benchmark: a synthetic platform of a given size through the real daily graph, day after day.

For each size (``--users``, one or more): a fresh home on free ports with its own Apache Kafka and MongoDB;
a catalog of ``--episodes`` episodes spread over ``--days`` days, each with its publisher's transcript (text of
the demo corpus, so no speech recognition runs and neighbours are topical); ``--events-per-user-day`` listening
events per listener-day produced into Kafka by the simulator; then the whole asset graph (checks included)
materialized through Dagster for each day in order, as `podrec demo` does. Printed per day: each asset's wall
time and the peak RSS of the process tree while it ran, events/s into and out of Kafka, the serving store's
write rate; at the end the growth ratios: cost(last day) / cost(base day) (history) and, with several sizes,
cost(largest) / cost(smallest) on the last day (listeners). ``--json`` prints everything as JSON at the end.

Days run in this one process by default, so a step's peak RSS is the process's high-water mark (the simulator's
leftovers and earlier steps included); ``--step-processes`` runs each step in a fresh process instead, as Dagster's
multiprocess executor does, for each step's own peak.

    .venv/bin/python bench/scale.py --users 20000 --episodes 1000 --days 4
    .venv/bin/python bench/scale.py --users 100000 1000000 --episodes 5000 --days 8 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _say(message: str) -> None:
    print(message, flush=True)


class RssSampler:
    """Samples the RSS of this process and its children (Spark's JVM, say) every ``interval_s``; the servers
    (``exclude``: the Kafka broker and MongoDB, started by this process too) are not the batch's memory."""

    def __init__(self, exclude: set[int], interval_s: float = 0.2):
        import psutil

        self._exclude = exclude
        self._process = psutil.Process()
        self._samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _tree_rss(self) -> int:
        import psutil

        total, skipped = 0, set(self._exclude)
        for process in [self._process, *self._process.children(recursive=True)]:
            try:
                if process.pid in skipped or process.ppid() in skipped:
                    skipped.add(process.pid)
                    continue
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self._samples.append((time.time(), self._tree_rss()))
            self._stop.wait(interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self, start: float, end: float) -> float:
        inside = [rss for at, rss in self._samples if start - 0.2 <= at <= end + 0.2]
        return round(max(inside, default=0) / 2**20, 1)


def plan_days(count: int) -> list[date]:
    """``count`` days ending yesterday (UTC), like the demo's history."""
    today = datetime.now(timezone.utc).date()
    return [today - timedelta(days=n) for n in range(count, 0, -1)]


def build_catalog(folder: Path, days: list[date], episodes: int, back_catalog: float = 0.0) -> list[dict]:
    """Episodes, each with a plain-text publisher transcript in ``folder``: a ``back_catalog`` share published on
    the first day (a platform's existing catalogue), the rest spread evenly over ``days`` (new episodes)."""
    from podrec_assets.sources.demo_corpus import load_demo_documents

    documents = load_demo_documents(min_words=80, max_words=400)
    folder.mkdir(parents=True, exist_ok=True)
    catalog = []
    back = int(episodes * back_catalog)
    for n in range(episodes):
        day = days[0] if n < back else days[(n - back) * len(days) // max(1, episodes - back)]
        doc = documents[n % len(documents)]
        path = folder / f"sc-{n:06d}.txt"
        path.write_text(doc.text)
        published = datetime(day.year, day.month, day.day, 6, tzinfo=timezone.utc) + timedelta(seconds=n % 50_000)
        catalog.append(
            {
                "episode_id": f"sc-{n:06d}",
                "podcast_id": f"show-{doc.topic}",
                "podcast_title": f"The {doc.topic} show",
                "episode_title": doc.title,
                "description": "",
                "audio_url": f"file:///nonexistent/sc-{n:06d}.mp3",  # never fetched: the transcript is published
                "language": "en",
                "published_at": published.isoformat(),
                "duration_sec": 1800.0,
                "categories": [doc.topic],
                "source": "rss",
                "transcripts": [{"url": path.as_uri(), "type": "text/plain", "language": "en"}],
            }
        )
    return catalog


def _metadata_value(event, name: str):
    value = event.materialization.metadata.get(name)
    return None if value is None else value.value


def run_day(job, instance, day: date, sampler: RssSampler, selection: list[str] | None = None) -> dict:
    """Materialize every asset of ``day`` (or the ``selection`` of asset keys, with their checks); per step wall
    seconds and peak RSS, Kafka and serving-store rates."""
    import dagster as dg

    started = time.time()
    result = job.execute_in_process(
        partition_key=day.isoformat(),
        instance=instance,
        asset_selection=[dg.AssetKey.from_user_string(key) for key in selection] if selection else None,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        tags={"podrec/source": "bench-scale"},
    )
    wall = time.time() - started
    asset_steps = {event.step_key for event in result.get_asset_materialization_events()}
    steps = {}
    for stats in instance.get_run_step_stats(result.run_id):
        if stats.start_time and stats.end_time:
            steps[stats.step_key] = {
                "seconds": round(stats.end_time - stats.start_time, 2),
                "peak_rss_mb": sampler.peak_mb(stats.start_time, stats.end_time),
                "status": str(stats.status.value if stats.status else ""),
                "kind": "asset" if stats.step_key in asset_steps else "check",
            }
    kafka_out = serving_docs = serving_rows = serving_seconds = 0.0
    for event in result.get_asset_materialization_events():
        key = event.materialization.asset_key.to_user_string()
        if key == "user_events":
            read = _metadata_value(event, "offsets_read") or 0
            read_s = _metadata_value(event, "read_seconds") or _metadata_value(event, "seconds") or 0
            kafka_out = read / read_s if read_s else 0.0
        inserted, seconds = _metadata_value(event, "mongo_inserted"), _metadata_value(event, "mongo_seconds")
        if inserted and seconds:
            serving_docs += inserted
            serving_rows += _metadata_value(event, "mongo_rows") or inserted
            serving_seconds += seconds
    failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return {
        "day": day.isoformat(),
        "success": result.success,
        "failed_steps": failed,
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": sampler.peak_mb(started, time.time()),
        "steps": steps,
        "kafka_read_events_per_s": round(kafka_out),
        "serving_documents": int(serving_docs),
        "serving_documents_per_s": round(serving_docs / serving_seconds) if serving_seconds else 0,
        "serving_rows": int(serving_rows),
        "serving_seconds": round(serving_seconds, 1),
        "serving_rows_per_s": round(serving_rows / serving_seconds) if serving_seconds else 0,
    }


# the outputs compared across engines: every column but those that say when or by which run a row was written
COMPARED = {
    "user_events": ["event_id", "user_id", "episode_id", "event", "played_pct", "kafka_partition", "kafka_offset"],
    "user_episode_daily": ["user_id", "episode_id", "engagement", "event_count", "max_played_pct", "completed"],
}


def day_outputs(home: Path, day: date, top_k: int = 10) -> dict:
    """What the engines must agree on for ``day``: a digest of each COMPARED table (sorted rows) and the ALS
    top-``top_k`` pairs (solvers differ, so only their overlap is reported)."""
    import pandas as pd

    from podrec_assets.resources.lake import LakeResource
    from podrec_assets.settings import load_settings

    lake = LakeResource(root=load_settings({"PODREC_HOME": str(home)}).lake_root)
    outputs = {}
    for table, columns in COMPARED.items():
        frame = lake.read_day(table, day, columns=columns).to_pandas().sort_values(columns[:3]).reset_index(drop=True)
        frame = frame.round(9)  # sums in another order (DuckDB, Spark) may differ in the last bit of a float
        outputs[table] = {"rows": len(frame), "digest": f"{pd.util.hash_pandas_object(frame, index=False).sum():x}"}
    als = lake.read_day("als_top_n", day, columns=["user_id", "episode_id", "rank"]).to_pandas()
    outputs["als_pairs"] = set(zip(*[als.loc[als["rank"] <= top_k, c] for c in ("user_id", "episode_id")]))
    return outputs


def run_size(users: int, engine: str, args: argparse.Namespace) -> dict:
    from podrec_assets.commands.demo import graph_job
    from podrec_assets.defs.orchestration.wiring import MODEL_ASSETS
    from podrec_assets.local.processes import free_port
    from podrec_assets.local.services import LocalStack
    from podrec_assets.resources import build_resources
    from podrec_assets.settings import get_settings, load_settings
    from podrec_assets.sources.publisher import publish_episodes
    from podrec_assets.sources.simulator import simulate_history

    days = plan_days(args.days)
    home = Path(tempfile.mkdtemp(prefix=f"podrec-bench-scale-{users}-", dir=args.work_dir))
    env = {
        "PODREC_HOME": str(home),
        "PODREC_KAFKA_PORT": str(free_port()),
        "PODREC_KAFKA_CONTROLLER_PORT": str(free_port()),
        "PODREC_MONGO_PORT": str(free_port()),
        "PODREC_REDIS_PORT": str(free_port()),
        "PODREC_START_DATE": days[0].isoformat(),
        "PODREC_ENGINE": engine,
    }
    os.environ.update(env)  # the definitions read the process-wide settings
    get_settings.cache_clear()
    settings = load_settings(env)
    stack = LocalStack(settings)
    _say(
        f"== {users:,} listeners, {args.episodes:,} episodes ({args.back_catalog:.0%} on day 1), "
        f"{args.events_per_user_day} events per listener-day, "
        f"{len(days)} days ({days[0]} .. {days[-1]}), engine={engine}, home {home}"
    )
    try:
        servers = set()
        for status in stack.start():
            _say("  " + status.line())
            servers |= {status.pid} if status.pid else set()
        catalog = build_catalog(home / "transcripts", days, args.episodes, args.back_catalog)
        published = publish_episodes(build_resources(settings)["kafka"], catalog)
        _say(f"  catalog: {published}")
        simulated = simulate_history(settings, days, users, args.events_per_user_day, settings.seed)
        produced, seconds = simulated["messages"], simulated["seconds"]
        kafka_in = round(produced / seconds) if seconds else 0
        _say(
            f"  simulated: {simulated['valid_events']:,} valid events ({produced:,} messages with malformed and "
            f"late ones) in {seconds:.0f} s: {kafka_in:,} messages/s into Kafka"
        )

        job, instance = graph_job(settings)
        results = []
        with RssSampler(exclude=servers) as sampler:
            for n, day in enumerate(days, 1):
                steps = step_selections(job, skip=MODEL_ASSETS if n <= args.warm_days else set())
                if args.step_processes:
                    day_result = run_day_in_processes(day, steps)
                else:
                    day_result = run_day(job, instance, day, sampler, [key for step in steps for key in step])
                day_result["warm_up"] = n <= args.warm_days
                results.append(day_result)
                print_day(n, day_result)
        return {
            "outputs": day_outputs(home, days[-1]),
            "users": users,
            "episodes": args.episodes,
            "events_per_user_day": args.events_per_user_day,
            "engine": engine,
            "events_produced": produced,
            "kafka_write_events_per_s": kafka_in,
            "days": results,
        }
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def step_selections(job, skip: set[str] = frozenset()) -> list[list[str]]:
    """The day's steps in the order the graph runs them, each as the asset keys it materializes together (those in
    ``skip`` left out)."""
    graph = job.asset_layer.asset_graph
    steps: dict[str, list[str]] = {}
    for key in graph.toposorted_asset_keys:
        if graph.get(key).is_materializable and key.to_user_string() not in skip:
            steps.setdefault(graph.get(key).assets_def.node_def.name, []).append(key.to_user_string())
    return list(steps.values())


def run_day_in_processes(day: date, steps: list[list[str]]) -> dict:
    """``day`` as Dagster's multiprocess executor runs it: each step (an asset with its checks) in a fresh process,
    one after the other, so each step's peak RSS is its own, not the high-water mark of one long process that also
    simulated the events. The day's wall time is the sum of the steps' runs (process start-up is reported apart)."""
    import subprocess

    parts, started = [], time.time()
    for selection in steps:
        child = subprocess.run(
            [sys.executable, __file__, "--run-step", day.isoformat(), ",".join(selection)],
            capture_output=True,
            text=True,
        )
        line = next((ln for ln in child.stdout.splitlines() if ln.startswith(STEP_RESULT)), None)
        if line is None:  # killed (for memory, say): the day ends there and says which step failed and why
            _say(f"    {day} {'+'.join(selection)}: FAILED, rc {child.returncode}: {child.stderr[-1500:]}")
            parts.append(
                {
                    "success": False,
                    "failed_steps": selection,
                    "wall_seconds": 0.0,
                    "peak_rss_mb": 0.0,
                    "steps": {
                        key: {
                            "seconds": 0.0,
                            "peak_rss_mb": 0.0,
                            "status": f"KILLED rc {child.returncode}",
                            "kind": "asset",
                        }
                        for key in selection
                    },
                    "serving_documents": 0,
                    "serving_rows": 0,
                    "serving_seconds": 0.0,
                    "kafka_read_events_per_s": 0,
                }
            )
            break  # the later steps would read what it did not write
        parts.append(json.loads(line[len(STEP_RESULT) :]))
        _say(f"    {day} {'+'.join(selection)}: {parts[-1]['wall_seconds']:.1f} s, {parts[-1]['peak_rss_mb']:,.0f} MB")
    wall = sum(part["wall_seconds"] for part in parts)
    merged = {
        "day": day.isoformat(),
        "success": all(part["success"] for part in parts),
        "failed_steps": [step for part in parts for step in part["failed_steps"]],
        "wall_seconds": round(wall, 1),
        "process_startup_seconds": round(time.time() - started - wall, 1),
        "peak_rss_mb": max(part["peak_rss_mb"] for part in parts),
        "steps": {k: v for part in parts for k, v in part["steps"].items()},
    }
    for name in ("serving_documents", "serving_rows", "serving_seconds"):
        merged[name] = sum(part[name] for part in parts)
    merged["serving_rows_per_s"] = (
        round(merged["serving_rows"] / merged["serving_seconds"]) if merged["serving_seconds"] else 0
    )
    merged["kafka_read_events_per_s"] = max(part["kafka_read_events_per_s"] for part in parts)
    return merged


def run_step(day: str, selection: str) -> None:
    """The child of ``run_day_in_processes``: one step of ``day`` in this process, its figures as one JSON line."""
    from podrec_assets.commands.demo import graph_job
    from podrec_assets.settings import get_settings

    job, instance = graph_job(get_settings())
    with RssSampler(exclude=set()) as sampler:
        result = run_day(job, instance, date.fromisoformat(day), sampler, selection.split(","))
    print(STEP_RESULT + json.dumps(result), flush=True)


STEP_RESULT = "STEP-RESULT "


def print_day(n: int, result: dict) -> None:
    status = "ok" if result["success"] else f"FAILED: {', '.join(result['failed_steps'])}"
    status += "; warm-up: the models did not run" if result.get("warm_up") else ""
    _say(
        f"  day {n} {result['day']}: {result['wall_seconds']:.1f} s, peak RSS {result['peak_rss_mb']:,.0f} MB, "
        f"Kafka read {result['kafka_read_events_per_s']:,} events/s, serving store "
        f"{result['serving_documents']:,} documents holding {result['serving_rows']:,} rows in "
        f"{result['serving_seconds']:.1f} s ({result['serving_rows_per_s']:,} rows/s) ({status})"
        + (
            f", {result['process_startup_seconds']:.0f} s starting step processes"
            if "process_startup_seconds" in result
            else ""
        )
    )
    assets = sorted(
        ((k, v) for k, v in result["steps"].items() if v["kind"] == "asset"), key=lambda kv: -kv[1]["seconds"]
    )
    for step, stats in assets:
        _say(f"      {step:<28} {stats['seconds']:8.2f} s {stats['peak_rss_mb']:9,.0f} MB")
    checks = [v for v in result["steps"].values() if v["kind"] == "check"]
    if checks:
        _say(
            f"      {len(checks)} checks{'':<19} {sum(v['seconds'] for v in checks):8.2f} s "
            f"{max(v['peak_rss_mb'] for v in checks):9,.0f} MB"
        )


def compare_engines(runs: list[dict], days: int) -> dict:
    """Per size: each engine's last-day cost beside the first engine's, and whether their outputs agree."""
    ratios = {}
    for users in sorted({run["users"] for run in runs}):
        first, *others = [run for run in runs if run["users"] == users]
        for other in others:
            ratio = other["days"][-1]["wall_seconds"] / first["days"][-1]["wall_seconds"]
            ratios[f"engine_{other['engine']}_{first['engine']}_{users}"] = round(ratio, 3)
            _say(
                f"engines at {users:,} listeners, day {days}: {other['engine']} "
                f"{other['days'][-1]['wall_seconds']:.1f} s vs {first['engine']} "
                f"{first['days'][-1]['wall_seconds']:.1f} s (x{ratio:.2f})"
            )
            for table in COMPARED:
                a, b = first["outputs"][table], other["outputs"][table]
                same = "identical" if a == b else "DIFFER"
                _say(f"  {table}: {a['rows']:,} vs {b['rows']:,} rows, {same}")
                ratios[f"engine_same_{table}_{users}"] = a == b
            pairs_a, pairs_b = first["outputs"]["als_pairs"], other["outputs"]["als_pairs"]
            overlap = len(pairs_a & pairs_b) / max(1, len(pairs_a))
            ratios[f"engine_als_top10_overlap_{users}"] = round(overlap, 3)
            _say(f"  als_top_n top-10 pairs in common: {overlap:.1%} (different solvers, same confidence)")
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[20_000], help="listeners; several sizes are compared")
    parser.add_argument("--episodes", type=int, default=1_000, help="episodes in the catalog, spread over the days")
    parser.add_argument(
        "--back-catalog",
        type=float,
        default=0.0,
        help="share of the episodes published on the first day (an existing catalogue); the rest spread over the "
        "days. With 0 the catalog grows with every day, so a day's cost grows with it as well as with history",
    )
    parser.add_argument("--events-per-user-day", type=float, default=6.0, help="mean events per listener-day")
    parser.add_argument("--days", type=int, default=4, help="days of history, each materialized in turn")
    parser.add_argument(
        "--base-day",
        type=int,
        default=None,
        help="the day the last day's cost is compared with (default: 7 when there are 14+ days, else 2)",
    )
    parser.add_argument(
        "--engine",
        choices=["local", "spark"],
        nargs="+",
        default=["local"],
        help="batch engine(s); with both, each size runs under each and the engines' times and outputs are compared",
    )
    parser.add_argument(
        "--warm-days",
        type=int,
        default=0,
        help="the first N days run every step but the models' (als_top_n, final_recommendations, "
        "recommendation_metrics): listening history and state fill the windows in less time, so a day with full "
        "windows is reached sooner. Those days are warm-up, not compared; the ratios start after them",
    )
    parser.add_argument("--work-dir", default=None, help="where the temporary homes go (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep each size's home (lake, Dagster runs) after the run")
    parser.add_argument(
        "--step-processes",
        action="store_true",
        help="run each step (an asset with its checks) in a fresh process, as Dagster's multiprocess executor does: "
        "the peak RSS is then each step's own, not the high-water mark of this one long process (which also "
        "simulated the events); a day's time is the sum of its steps' runs",
    )
    parser.add_argument("--json", action="store_true", help="print all figures as JSON at the end")
    parser.add_argument("--run-step", nargs=2, metavar=("DAY", "KEYS"), help=argparse.SUPPRESS)  # the child's side
    args = parser.parse_args()
    if args.run_step:
        run_step(*args.run_step)
        return 0
    if args.days < 2:
        parser.error("--days must be at least 2 (the first day has no previous list to judge)")
    if not 0 <= args.warm_days <= args.days - 2:
        parser.error("--warm-days must leave at least 2 days with the models (the first has no list to judge)")
    # after a warm-up, the base day and the day before it (the three-day median's first) must both have run the models
    first_comparable = args.warm_days + 2 if args.warm_days else 1
    base_day = args.base_day or max(7 if args.days >= 14 else 2 if args.days >= 3 else 1, first_comparable)
    if base_day < first_comparable:
        parser.error(f"--base-day must be at least {first_comparable}: costs are compared after --warm-days")
    if not 1 <= base_day <= args.days:
        parser.error(f"--base-day must be one of the {args.days} days")
    runs = [run_size(users, engine, args) for users in sorted(args.users) for engine in args.engine]

    _say("\nday cost (whole graph, seconds):")
    _say("  " + " ".join(f"{'day ' + str(n):>9}" for n in range(1, args.days + 1)) + "   listeners")
    for run in runs:
        _say(
            "  "
            + " ".join(f"{d['wall_seconds']:8.1f}{'w' if d['warm_up'] else ' '}" for d in run["days"])
            + f"   {run['users']:,} ({run['engine']})"
        )
    if args.warm_days:
        _say(f"  (w: a warm-up day without the models, --warm-days {args.warm_days})")
    ratios = {}
    for run in runs:
        last, base = run["days"][-1]["wall_seconds"], run["days"][base_day - 1]["wall_seconds"]
        ratios[f"history_{run['users']}_{run['engine']}"] = round(last / base, 3)
        _say(
            f"history: cost(day {args.days}) / cost(day {base_day}) at {run['users']:,} listeners "
            f"({run['engine']}) = {last / base:.2f}"
        )
        if base_day >= 2 and args.days >= base_day + 4:  # medians of three days, the windows apart: one noisy day
            around = [d["wall_seconds"] for d in run["days"][base_day - 2 : base_day + 1]]
            tail = [d["wall_seconds"] for d in run["days"][-3:]]
            smooth = statistics.median(tail) / statistics.median(around)
            ratios[f"history_median3_{run['users']}_{run['engine']}"] = round(smooth, 3)
            _say(
                f"  median of days {args.days - 2}-{args.days} / median of days {base_day - 1}-{base_day + 1}"
                f" = {smooth:.2f}"
            )
    if len(args.engine) > 1:
        ratios.update(compare_engines(runs, args.days))
    local = [run for run in runs if run["engine"] == args.engine[0]]
    if len(local) > 1:
        small, large = local[0], local[-1]
        ratio = large["days"][-1]["wall_seconds"] / small["days"][-1]["wall_seconds"]
        ratios["listeners"] = round(ratio, 3)
        _say(
            f"listeners: cost({large['users']:,}) / cost({small['users']:,}) on day {args.days} = {ratio:.2f} "
            f"(listeners x{large['users'] / small['users']:.0f})"
        )
    peak = max(d["peak_rss_mb"] for run in runs for d in run["days"])
    _say(f"peak RSS of the process tree over every day: {peak:,.0f} MB")
    if args.json:
        for run in runs:
            run.pop("outputs")
        print(json.dumps({"runs": runs, "ratios": ratios, "peak_rss_mb": peak}))
    return 0 if all(d["success"] for run in runs for d in run["days"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
