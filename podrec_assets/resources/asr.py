"""Speech recognition settings, the lazily loaded faster-whisper model, and audio fetching limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr


class AsrResource(ConfigurableResource):
    """Which Whisper model to run and how; the model loads on first use, once per process."""

    model: str = "tiny.en"
    threads: int = 2
    workers: int = 1
    languages: str = "en"
    models_dir: str = ".podrec/models"
    audio_max_mb: int = 200
    audio_timeout_s: int = 120
    audio_retries: int = 3
    user_agent: str = "podrec/0.1"
    download_dir: str = ""

    _loaded: Any = PrivateAttr(default=None)

    def whisper(self):
        if self._loaded is None:
            from podrec_assets.core.asr import load_whisper

            self._loaded = load_whisper(self.model, self.models_dir, cpu_threads=self.threads,
                                        num_workers=max(1, self.workers))
        return self._loaded

    @property
    def language_list(self) -> list[str]:
        return [lang.strip().lower() for lang in self.languages.split(",") if lang.strip()]

    def fetch(self, url: str):
        """Context manager yielding a local path with the audio of ``url`` (limits from settings)."""
        from podrec_assets.core.audio import FetchLimits, fetched_audio

        limits = FetchLimits(max_bytes=self.audio_max_mb * 1024 * 1024, timeout_s=self.audio_timeout_s,
                             retries=self.audio_retries, user_agent=self.user_agent)
        return fetched_audio(url, limits, self.download_dir or None)

    def transcribe(self, path: str | Path):
        """Transcribe one local audio file (an ``asr.Transcription``); the asset and `podrec transcribe` share it."""
        from podrec_assets.core.asr import transcribe_audio

        return transcribe_audio(self.whisper(), path, self.language_list)
