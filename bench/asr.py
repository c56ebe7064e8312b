"""ASR benchmark, three cases (all by default; ``--cases`` picks):

- ``short``: real-time factor and WER of tiny.en and base on one espeak-ng clip, the transcripts asset's
  pipeline (fetch + windowed decode + transcribe) against a plain ``WhisperModel.transcribe`` call on the same
  file; calls alternate (plain, pipeline) and the median is kept.
- ``long``: a 30-minute episode (bench/support/long_episode.py: demo-corpus text spoken by espeak-ng, pauses,
  dead air, music beds, MP3) through the plain sequential faster-whisper call, the asset's pipeline (windows of
  600 s, batched) and faster-whisper's batched pipeline on the whole file; each in its own process, so its peak
  RSS is its own. Prints wall time, real-time factor, throughput against the plain call, WER and peak RSS.
- ``published``: a day of N episodes that all publish transcripts (an hour of speech each, SRT/WebVTT/JSON/HTML/
  text in turn, served over HTTP on 127.0.0.1) through the real ``transcripts`` asset: seconds per episode.

    .venv/bin/python bench/asr.py [--cases short long published] [--minutes 30] [--episodes 40] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "support"))

from podrec_assets.core.asr import DECODING, load_whisper, transcribe_audio, word_error_rate  # noqa: E402
from podrec_assets.core.audio import FetchLimits, fetched_file  # noqa: E402
from podrec_assets.core.episodes import transcribe_episodes  # noqa: E402
from podrec_assets.sources.demo_catalog import wav_seconds  # noqa: E402

print = functools.partial(print, flush=True)  # noqa: A001 - progress shows while models run


# Written for this benchmark: plain sentences, so WER measures the model rather than the corpus's acronyms.
PASSAGE = (
    "Welcome back to the show. This week we are talking about how people choose what to listen to on a long "
    "drive or a quiet evening at home. Most listeners start with a friend's suggestion, a short clip shared "
    "online, or a list of popular programs. After a few weeks, their habits become clear. Some people finish "
    "every episode of one series before they try another. Others jump between science, sports and history, "
    "and they rarely listen to the end. A good recommendation system has to notice both kinds of behaviour. "
    "It should learn from what a person plays, skips and likes, and it should also understand what each "
    "episode is about, so that a brand new program can reach the right audience on its first day. "
    "Our guest today built such a system for a small radio station. She explained that the hardest part was "
    "not the model but the data: missing dates, broken audio links and duplicate episodes appeared every "
    "single morning. Her team wrote simple checks for each problem and kept every rejected message, so that "
    "nothing was lost without a reason. Later in the program we will hear how they measured success, why "
    "they compared their model with a simple list of the most popular episodes, and what surprised them "
    "when they looked at the results day by day. Stay with us after the short break."
)


def make_clip(folder: Path, min_seconds: float) -> tuple[Path, str]:
    """Speak the passage (repeated as needed) until the clip lasts at least ``min_seconds``."""
    path = folder / "clip.wav"
    text = PASSAGE
    while True:
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True, capture_output=True
        )
        if wav_seconds(path) >= min_seconds:
            return path, text
        text = f"{text} {PASSAGE}"


def run_short(args) -> None:
    with tempfile.TemporaryDirectory(prefix="podrec-bench-asr-") as tmp:
        clip, reference = make_clip(Path(tmp), max(60.0, args.seconds))
        audio_seconds = wav_seconds(clip)
        print(
            f"clip: {audio_seconds:.1f} s of espeak-ng speech, {len(reference.split())} words, {args.threads} threads, "
            f"{args.repeats} alternating runs (median)"
        )
        header = (
            f"{'model':8} {'plain s':>8} {'pipe s':>8} {'RTF plain':>9} {'RTF pipe':>9} {'WER plain':>9} "
            f"{'WER pipe':>9} {'pipe/plain':>10}"
        )
        print(header)
        print("-" * len(header))
        for name in args.models:
            whisper = load_whisper(name, args.models_dir, cpu_threads=args.threads)
            plain_times, pipe_times = [], []
            plain_text = pipe_text = ""
            for _ in range(args.repeats):
                started = time.perf_counter()
                segments, _info = whisper.model.transcribe(str(clip), beam_size=5, **DECODING)
                plain_text = " ".join(s.text.strip() for s in segments)
                plain_times.append(time.perf_counter() - started)

                started = time.perf_counter()
                rows = transcribe_episodes(
                    [{"episode_id": "bench", "audio_url": clip.as_uri(), "language": "en"}],
                    transcribe=lambda path, progress=None, w=whisper: transcribe_audio(
                        w, path, ["en"], progress=progress
                    ),
                    fetch=lambda url: fetched_file(url, FetchLimits()),
                    model_name=name,
                    languages=["en"],
                    progress=lambda message: None,
                )
                pipe_times.append(time.perf_counter() - started)
                assert rows[0]["status"] == "ok", rows[0]["error"]
                pipe_text = rows[0]["text"]
            plain, pipe = statistics.median(plain_times), statistics.median(pipe_times)
            print(
                f"{name:8} {plain:8.2f} {pipe:8.2f} {plain / audio_seconds:9.4f} {pipe / audio_seconds:9.4f} "
                f"{word_error_rate(reference, plain_text):9.3f} {word_error_rate(reference, pipe_text):9.3f} "
                f"{pipe / plain:9.3f}x"
            )
        print(
            "RTF = wall seconds / audio seconds (lower is faster; 1/RTF = times real time). "
            "The pipeline should cost <= 1.1x the plain call."
        )


# --- long: one 30-minute episode, three ways, one process each ------------------------------------------

LONG_WAYS = ("plain", "pipeline", "batched")


def transcribe_one_way(way: str, audio: Path, model: str, threads: int, batch_size: int, models_dir: str) -> dict:
    """Run in a child process: transcribe ``audio`` one way; wall seconds, text and this process's peak RSS."""
    whisper = load_whisper(model, models_dir, cpu_threads=threads)
    started = time.perf_counter()
    if way == "plain":
        segments, _ = whisper.model.transcribe(str(audio), beam_size=5, **DECODING)
        text = " ".join(s.text.strip() for s in segments)
    elif way == "batched":
        from faster_whisper import BatchedInferencePipeline

        from podrec_assets.core.asr import BATCHED_DECODING

        segments, _ = BatchedInferencePipeline(whisper.model).transcribe(
            str(audio), beam_size=5, batch_size=batch_size, **BATCHED_DECODING
        )
        text = " ".join(s.text.strip() for s in segments)
    else:
        from podrec_assets.resources.asr import AsrResource

        asr = AsrResource(model=model, threads=threads, batch_size=batch_size, languages="en", models_dir=models_dir)
        asr._loaded = whisper
        lines: list[str] = []
        rows = transcribe_episodes(
            [{"episode_id": "long", "audio_url": audio.as_uri(), "language": "en"}],
            transcribe=asr.transcribe,
            fetch=asr.fetch,
            model_name=model,
            languages=["en"],
            progress=lines.append,
        )
        assert rows[0]["status"] == "ok", rows[0]["error"]
        text = rows[0]["text"]
        print("\n".join(f"    {line}" for line in lines))
    wall = time.perf_counter() - started
    return {
        "way": way,
        "wall_s": wall,
        "text": text,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_long(args) -> dict:
    from long_episode import build

    from podrec_assets.core.asr import audio_duration

    with tempfile.TemporaryDirectory(prefix="podrec-bench-asr-long-") as tmp:
        audio = Path(tmp) / "episode.mp3"
        reference = build(audio, args.minutes)
        seconds = audio_duration(audio) or 0.0
        print(
            f"long: {seconds / 60:.1f} min episode (MP3, {audio.stat().st_size / 1e6:.0f} MB), "
            f"{len(reference.split())} spoken words, {args.model}, {args.threads} threads, batch {args.batch_size}"
        )
        results = {}
        for way in LONG_WAYS:
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one-way",
                    way,
                    "--audio",
                    str(audio),
                    "--model",
                    args.model,
                    "--threads",
                    str(args.threads),
                    "--batch-size",
                    str(args.batch_size),
                    "--models-dir",
                    args.models_dir,
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise SystemExit(f"{way} failed:\n{done.stderr[-3000:]}")
            *progress, last = done.stdout.rstrip().splitlines()
            if progress:
                print("\n".join(progress[:3] + (["    ..."] if len(progress) > 4 else []) + progress[-1:]))
            result = json.loads(last)
            result["wer"] = word_error_rate(reference, result.pop("text"))
            results[way] = result
            print(f"  {way:9} done in {result['wall_s']:.0f}s")
    plain = results["plain"]
    header = (
        f"{'way':9} {'wall s':>7} {'RTF':>7} {'x real time':>11} {'speed/plain':>11} {'WER':>6} "
        f"{'WER/plain':>9} {'peak RSS MB':>11}"
    )
    print(header)
    print("-" * len(header))
    for way, r in results.items():
        print(
            f"{way:9} {r['wall_s']:7.1f} {r['wall_s'] / seconds:7.4f} {seconds / r['wall_s']:11.1f} "
            f"{plain['wall_s'] / r['wall_s']:10.2f}x {r['wer']:6.3f} {r['wer'] / plain['wer']:9.2f} "
            f"{r['peak_rss_mb']:11.0f}"
        )
    pipe = results["pipeline"]
    print(
        f"targets: pipeline throughput >= 2x plain: {plain['wall_s'] / pipe['wall_s']:.2f}x; "
        f"WER <= 1.1x plain: {pipe['wer'] / plain['wer']:.2f}x; peak RSS <= 1.5 GB: {pipe['peak_rss_mb'] / 1024:.2f} GB"
    )
    return {"audio_seconds": seconds, "words": len(reference.split()), **results}


# --- published: a day whose episodes all publish transcripts ---------------------------------------------


def run_published(args) -> dict:
    import threading
    from datetime import date, datetime, timezone
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    import dagster as dg

    from podrec_assets.core.schemas import EPISODES, to_table
    from podrec_assets.defs.ingest.assets import transcripts
    from podrec_assets.resources import AsrResource, LakeResource
    from podrec_assets.sources.demo_corpus import load_demo_documents

    day = date(2026, 6, 1)
    documents = load_demo_documents(min_words=200)
    formats = ("srt", "vtt", "json", "html", "text")
    with tempfile.TemporaryDirectory(prefix="podrec-bench-published-") as tmp:
        folder = Path(tmp) / "transcripts"
        folder.mkdir()
        words_per_episode, total_bytes, episodes = 0, 0, []
        for n in range(args.episodes):
            words, position = [], n * 7
            while len(words) < args.words:  # an hour of speech at 150 words a minute
                words += documents[position % len(documents)].text.split()
                position += 1
            words = words[: args.words]
            words_per_episode = len(words)
            fmt = formats[n % len(formats)]
            body = transcript_file(fmt, words)
            total_bytes += len(body)
            (folder / f"ep{n}.{fmt}").write_bytes(body)
            mime = {
                "srt": "application/x-subrip",
                "vtt": "text/vtt",
                "json": "application/json",
                "html": "text/html",
                "text": "text/plain",
            }[fmt]
            episodes.append(
                {
                    "episode_id": f"pub-{n:04d}",
                    "podcast_id": "bench",
                    "podcast_title": "Bench",
                    "episode_title": f"Episode {n}",
                    "description": "",
                    "audio_url": "file:///nonexistent.mp3",
                    "language": "en",
                    "published_at": datetime(2026, 6, 1, 8, tzinfo=timezone.utc),
                    "duration_sec": 3600.0,
                    "categories": ["bench"],
                    "source": "rss",
                    "transcripts": [{"url": "", "type": mime, "language": "en", "rel": ""}],
                    "fmt": fmt,
                }
            )

        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        handler = partial(Quiet, directory=str(folder))
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        for n, episode in enumerate(episodes):
            episode["transcripts"][0]["url"] = f"{base}/ep{n}.{episode.pop('fmt')}"
        lake = LakeResource(root=str(Path(tmp) / "lake"))
        rows = [{**e, "kafka_partition": 0, "kafka_offset": n} for n, e in enumerate(episodes)]
        lake.write_partition("episodes", day, to_table(rows, EPISODES), "bench")
        asr = AsrResource(model=args.model, threads=args.threads, languages="en", models_dir=args.models_dir)
        started = time.perf_counter()
        result = dg.materialize(
            [transcripts],
            partition_key=day.isoformat(),
            resources={"lake": lake, "asr": asr},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        wall = time.perf_counter() - started
        httpd.shutdown()
        httpd.server_close()
        written = lake.read_day("transcripts", day, columns=["text_source", "transcript_format"]).to_pylist()
    assert result.success and len(written) == args.episodes
    published = sum(1 for row in written if row["text_source"] == "published")
    print(
        f"published: {args.episodes} episodes of {words_per_episode} words ({total_bytes / args.episodes / 1e3:.0f} kB "
        f"each, formats {', '.join(formats)} in turn), fetched over HTTP from 127.0.0.1"
    )
    print(
        f"  transcripts asset (materialize, lake write included): {wall:.2f}s = {wall / args.episodes:.3f} s per "
        "episode; "
        f"{published}/{args.episodes} used the publisher's text, the ASR model was "
        f"{'never loaded' if asr._loaded is None else 'loaded'}"
    )
    print(f"  target < 1 s per episode: {'met' if wall / args.episodes < 1 else 'missed'}")
    return {"episodes": args.episodes, "wall_s": wall, "s_per_episode": wall / args.episodes, "published": published}


def transcript_file(fmt: str, words: list[str]) -> bytes:
    """A publisher's transcript of ``words`` at 150 words a minute, in sentences of 12 words."""
    sentences = [" ".join(words[i : i + 12]) + "." for i in range(0, len(words), 12)]
    times = [(i * 4.8, i * 4.8 + 4.8) for i in range(len(sentences))]

    def clock(t: float, sep: str) -> str:
        return f"{int(t // 3600):02d}:{int(t % 3600 // 60):02d}:{int(t % 60):02d}{sep}{int(t * 1000) % 1000:03d}"

    if fmt == "srt":
        return "\n\n".join(
            f"{n}\n{clock(a, ',')} --> {clock(b, ',')}\n{t}" for n, ((a, b), t) in enumerate(zip(times, sentences), 1)
        ).encode()
    if fmt == "vtt":
        return (
            "WEBVTT\n\n"
            + "\n\n".join(f"{clock(a, '.')} --> {clock(b, '.')}\n<v Host>{t}" for (a, b), t in zip(times, sentences))
        ).encode()
    if fmt == "json":
        return json.dumps(
            {
                "version": "1.0.0",
                "segments": [
                    {"speaker": "Host", "startTime": a, "endTime": b, "body": t} for (a, b), t in zip(times, sentences)
                ],
            }
        ).encode()
    if fmt == "html":
        return (
            "<html><body>"
            + "".join(
                f"<cite>Host:</cite><time>{clock(a, ',')}</time><p>{t}</p>" for (a, _), t in zip(times, sentences)
            )
            + "</body></html>"
        ).encode()
    return " ".join(sentences).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cases", nargs="+", default=["short", "long", "published"], choices=["short", "long", "published"]
    )
    parser.add_argument("--seconds", type=float, default=75.0, help="short: minimum clip length (>= 60)")
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"], help="short: models compared")
    parser.add_argument("--repeats", type=int, default=3, help="short: alternating plain/pipeline pairs per model")
    parser.add_argument("--minutes", type=float, default=30.0, help="long: episode length")
    parser.add_argument("--model", default="tiny.en", help="long, published: the model")
    parser.add_argument("--batch-size", type=int, default=8, help="long: the asset's and the batched pipeline's batch")
    parser.add_argument("--episodes", type=int, default=40, help="published: episodes in the day")
    parser.add_argument("--words", type=int, default=9000, help="published: words per transcript (an hour)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per transcription")
    parser.add_argument("--models-dir", default=".podrec/models", help="where base is assembled")
    parser.add_argument("--json", action="store_true", help="print the long and published figures as JSON at the end")
    parser.add_argument("--one-way", choices=LONG_WAYS, help=argparse.SUPPRESS)  # the child process of the long case
    parser.add_argument("--audio", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_way:
        print(
            json.dumps(
                transcribe_one_way(args.one_way, args.audio, args.model, args.threads, args.batch_size, args.models_dir)
            )
        )
        return 0
    figures = {}
    if "short" in args.cases:
        run_short(args)
    if "long" in args.cases:
        figures["long"] = run_long(args)
    if "published" in args.cases:
        figures["published"] = run_published(args)
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
