"""A long synthetic episode for the ASR benchmark: real text spoken by espeak-ng, with what real episodes have
between the words (pauses, a long silence, music beds), encoded as MP3 like a feed's enclosure.

Text: posts of the demo corpus (20 Newsgroups, cleaned for speech) in corpus order, so the reference is fixed.
Music: chords of harmonic tones with a beat, synthesised here (no third-party audio); VAD should skip it.

    .venv/bin/python bench/support/long_episode.py OUT.mp3 [--minutes 30]   # prints the reference text's word count
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from podrec_assets.sources.demo_catalog import VOICES, WORDS_PER_MINUTE  # noqa: E402
from podrec_assets.sources.demo_corpus import load_demo_documents  # noqa: E402

RATE = 22050  # espeak-ng's own rate


def _speak(text: str, voice: str, folder: Path) -> np.ndarray:
    path = folder / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(WORDS_PER_MINUTE), "-w", str(path), text],
        check=True,
        capture_output=True,
        timeout=600,
    )
    with wave.open(str(path), "rb") as source:
        assert source.getframerate() == RATE and source.getsampwidth() == 2
        return np.frombuffer(source.readframes(source.getnframes()), np.int16).astype(np.float32) / 32768.0


def music(seconds: float, seed: int) -> np.ndarray:
    """A music bed: a chord progression of harmonic tones, a kick drum on each beat, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    out = np.zeros_like(t)
    roots = [220.0, 246.9, 196.0, 174.6]
    for bar, start in enumerate(np.arange(0, seconds, 2.0)):
        span = (t >= start) & (t < start + 2.0)
        for ratio in (1.0, 1.26, 1.5):
            for harmonic, weight in ((1, 1.0), (2, 0.4), (3, 0.2)):
                out[span] += weight * np.sin(2 * np.pi * roots[bar % 4] * ratio * harmonic * t[span])
    beat = (t % 0.5) < 0.08
    out += beat * np.sin(2 * np.pi * 60 * t) * np.exp(-((t % 0.5) * 40)) * 3
    out += rng.normal(0, 0.05, len(t))
    return (0.12 * out / np.abs(out).max()).astype(np.float32)


def build(target: Path, minutes: float) -> str:
    """Write the episode to ``target`` (MP3, 64 kb/s mono); returns the spoken reference text."""
    import av

    documents = [d for d in load_demo_documents(min_words=120, max_words=260)]
    pieces, spoken, seconds = [music(12.0, 0)], [], 12.0
    with tempfile.TemporaryDirectory(prefix="podrec-long-episode-") as tmp:
        index = 0
        while seconds < minutes * 60:
            doc = documents[index]
            speech = _speak(doc.text, VOICES[index % len(VOICES)], Path(tmp))
            pieces.append(speech)
            spoken.append(doc.text)
            seconds += len(speech) / RATE
            pause = 1.0 + (index % 4)
            if index % 6 == 5:
                pieces.append(music(20.0, index))  # a music break every few minutes
                pause = 20.0
            elif index % 11 == 7:
                pieces.append(np.zeros(30 * RATE, np.float32))  # half a minute of dead air
                pause = 30.0
            else:
                pieces.append(np.zeros(int(pause * RATE), np.float32))
            seconds += pause
            index += 1
    samples = (np.clip(np.concatenate(pieces), -1, 1) * 32767).astype(np.int16)
    with av.open(str(target), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=RATE, layout="mono")
        stream.bit_rate = 64000
        for start in range(0, len(samples), RATE * 10):
            frame = av.AudioFrame.from_ndarray(
                samples[start : start + RATE * 10].reshape(1, -1), format="s16", layout="mono"
            )
            frame.rate = RATE
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return " ".join(spoken)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--minutes", type=float, default=30.0)
    args = parser.parse_args()
    reference = build(args.out, args.minutes)
    args.out.with_suffix(".txt").write_text(reference)
    print(f"{args.out}: {len(reference.split())} words; reference text in {args.out.with_suffix('.txt')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
