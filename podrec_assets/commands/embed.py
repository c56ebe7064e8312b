"""`podrec embed`: embed arbitrary documents with the same code path as the `episode_vectors` asset."""

import argparse
import json
import logging
import sys

from podrec_assets.settings import get_settings


def _read_documents(stream) -> list[dict]:
    documents = []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.msg})") from exc
        if not isinstance(doc, dict) or "id" not in doc or not isinstance(doc.get("text"), str):
            raise ValueError(f'line {number}: expected an object {{"id": ..., "text": "..."}}')
        documents.append(doc)
    return documents


def _run(args: argparse.Namespace) -> int:
    from podrec_assets.core.embedding import empty_text_reason
    from podrec_assets.resources import build_resources

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.input == "-":
        documents = _read_documents(sys.stdin)
    else:
        with open(args.input, encoding="utf-8") as handle:
            documents = _read_documents(handle)
    embedder = build_resources(get_settings())["embedder"]
    params = embedder.params()
    todo = [d for d in documents if empty_text_reason("ok", d["text"]) is None]
    vectors = dict(zip((id(d) for d in todo), embedder.embed([d["text"] for d in todo], skip_empty=True)))
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    embedded = 0
    try:
        for doc in documents:
            emb = vectors.get(id(doc))
            if emb is None:
                record = {"id": doc["id"], "skipped": "empty text"}
            else:
                embedded += 1
                record = {
                    "id": doc["id"],
                    "model": params["model"],
                    "chunk_count": emb.chunk_count,
                    "token_count": emb.token_count,
                    "vector": [round(float(x), 7) for x in emb.vector],
                }
            out.write(json.dumps(record) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    print(
        f"embedded {embedded} of {len(documents)} documents with {params['model']} "
        f"(chunks of <= {params['max_chunk_tokens']} tokens, overlap {params['chunk_overlap']})",
        file=sys.stderr,
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed documents (JSON lines with id and text) like the episode_vectors asset does",
        description='Read JSON lines {"id": ..., "text": "..."} and write one line per document with its '
        'unit vector, model, chunk and token counts (or "skipped" for an empty text). Uses PODREC_EMBED_MODEL, '
        "PODREC_EMBED_CHUNK_OVERLAP and PODREC_EMBED_BATCH_SIZE, exactly as the asset does.",
    )
    parser.add_argument("--input", default="-", help="JSON-lines file to read (default: standard input)")
    parser.add_argument("--output", default="-", help="JSON-lines file to write (default: standard output)")
    parser.set_defaults(handler=_run)
