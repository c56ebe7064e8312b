"""ASR benchmark: real-time factor and WER of tiny.en and base on one espeak-ng clip, and the cost of
the transcripts asset's pipeline (fetch + windowed decode + transcribe) against a plain
``WhisperModel.transcribe`` call on the same file. Calls alternate (plain, pipeline) and the median is kept.

    .venv/bin/python bench/asr.py [--seconds 75] [--models tiny.en base] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True, capture_output=True)
        if wav_seconds(path) >= min_seconds:
            return path, text
        text = f"{text} {PASSAGE}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=75.0, help="minimum clip length (>= 60)")
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--repeats", type=int, default=3, help="alternating plain/pipeline pairs per model")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per transcription")
    parser.add_argument("--models-dir", default=".podrec/models", help="where base is assembled")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="podrec-bench-asr-") as tmp:
        clip, reference = make_clip(Path(tmp), max(60.0, args.seconds))
        audio_seconds = wav_seconds(clip)
        print(f"clip: {audio_seconds:.1f} s of espeak-ng speech, {len(reference.split())} words, {args.threads} threads, "
              f"{args.repeats} alternating runs (median)")
        header = f"{'model':8} {'plain s':>8} {'pipe s':>8} {'RTF plain':>9} {'RTF pipe':>9} {'WER plain':>9} {'WER pipe':>9} {'pipe/plain':>10}"
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
                    transcribe=lambda path: transcribe_audio(whisper, path, ["en"]),
                    fetch=lambda url: fetched_file(url, FetchLimits()), model_name=name, languages=["en"],
                    progress=lambda message: None,
                )
                pipe_times.append(time.perf_counter() - started)
                assert rows[0]["status"] == "ok", rows[0]["error"]
                pipe_text = rows[0]["text"]
            plain, pipe = statistics.median(plain_times), statistics.median(pipe_times)
            print(f"{name:8} {plain:8.2f} {pipe:8.2f} {plain / audio_seconds:9.4f} {pipe / audio_seconds:9.4f} "
                  f"{word_error_rate(reference, plain_text):9.3f} {word_error_rate(reference, pipe_text):9.3f} "
                  f"{pipe / plain:9.3f}x")
        print("RTF = wall seconds / audio seconds (lower is faster; 1/RTF = times real time). "
              "The pipeline should cost <= 1.1x the plain call.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
