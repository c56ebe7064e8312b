"""Speech recognition settings and the lazily loaded faster-whisper model."""

from __future__ import annotations

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

    _loaded: Any = PrivateAttr(default=None)

    def whisper(self):
        if self._loaded is None:
            from podrec_assets.core.asr import load_whisper

            self._loaded = load_whisper(self.model, self.models_dir, cpu_threads=self.threads)
        return self._loaded
