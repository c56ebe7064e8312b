"""Sentence-embedding settings and the lazily loaded sentence-transformers model."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr


class EmbedderResource(ConfigurableResource):
    """Which sentence-transformers model embeds transcripts; loaded on first use, once per process."""

    model_path: str = ""
    chunk_overlap: int = 32
    batch_size: int = 32

    _loaded: Any = PrivateAttr(default=None)

    def model(self):
        if self._loaded is None:
            from podrec_assets.core.embedding import load_sentence_model

            self._loaded = load_sentence_model(self.model_path)
        return self._loaded
