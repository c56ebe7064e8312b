"""Speech recognition settings, the lazily loaded faster-whisper model, and fetching audio and transcripts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from dagster import ConfigurableResource
from pydantic import PrivateAttr


class AsrResource(ConfigurableResource):
    """Which Whisper model to run and how; the model loads on first use, once per process."""

    model: str = "tiny.en"
    threads: int = 2
    workers: int = 1
    batch_size: int = 8
    languages: str = "en"
    models_dir: str = ".podrec/models"
    audio_max_mb: int = 200
    audio_timeout_s: int = 120
    audio_retries: int = 3
    transcript_max_mb: int = 20
    transcript_timeout_s: int = 30
    user_agent: str = "podrec/0.1"
    download_dir: str = ""

    _loaded: Any = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings, **overrides: Any) -> "AsrResource":
        """The resource the settings describe (``overrides`` win: e.g. the transcribe command's flags)."""
        fields = dict(
            model=settings.asr_model,
            threads=settings.asr_threads,
            workers=settings.asr_workers,
            batch_size=settings.asr_batch_size,
            languages=settings.languages,
            models_dir=str(settings.home_path / "models"),
            audio_max_mb=settings.audio_max_mb,
            audio_timeout_s=settings.audio_timeout_s,
            audio_retries=settings.audio_retries,
            transcript_max_mb=settings.transcript_max_mb,
            transcript_timeout_s=settings.transcript_timeout_s,
            user_agent=settings.user_agent,
            download_dir=str(settings.home_path / "downloads"),
        )
        return cls(**{**fields, **{k: v for k, v in overrides.items() if v is not None}})

    def whisper(self):
        if self._loaded is None:
            from podrec_assets.core.asr import load_whisper

            self._loaded = load_whisper(
                self.model, self.models_dir, cpu_threads=self.threads, num_workers=max(1, self.workers)
            )
        return self._loaded

    @property
    def language_list(self) -> list[str]:
        return [lang.strip().lower() for lang in self.languages.split(",") if lang.strip()]

    def fetch(self, url: str):
        """Context manager yielding a local path with the audio of ``url`` (limits from settings)."""
        from podrec_assets.core.audio import FetchLimits, fetched_file

        limits = FetchLimits(
            max_bytes=self.audio_max_mb * 1024 * 1024,
            timeout_s=self.audio_timeout_s,
            retries=self.audio_retries,
            user_agent=self.user_agent,
        )
        return fetched_file(url, limits, self.download_dir or None)

    def fetch_transcript(self, url: str) -> bytes:
        """The bytes of a publisher's transcript (its own size and time limits; retries as for audio)."""
        from podrec_assets.core.audio import FetchLimits, fetched_file

        limits = FetchLimits(
            max_bytes=self.transcript_max_mb * 1024 * 1024,
            timeout_s=self.transcript_timeout_s,
            retries=self.audio_retries,
            user_agent=self.user_agent,
        )
        with fetched_file(url, limits, self.download_dir or None) as path:
            return path.read_bytes()

    def transcribe(self, path: str | Path, progress: Callable[[float, float | None], None] | None = None):
        """Transcribe one local audio file (an ``asr.Transcription``); the asset and `podrec transcribe` share it."""
        from podrec_assets.core.asr import transcribe_audio

        return transcribe_audio(self.whisper(), path, self.language_list, batch_size=self.batch_size, progress=progress)
