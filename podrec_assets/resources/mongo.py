"""MongoDB serving copy: collections replaced one day partition at a time, swapped in atomically.

Writing day D inserts the new documents under a fresh ``write_id``, then swaps D's pointer in
``serving_days`` (one document per collection and day: the write readers see, its run, row and document
counts) in one single-document update, then deletes D's documents of any other write. Only the newest
``keep_days`` days stay (Delta keeps every day). Readers follow the pointers (``served_filter``, ``list_of``), so a
failure or a kill at any point leaves them the old day or the new one, never both or a part; a re-run replaces
whatever an interrupted write left behind.

Ranked lists (``LIST_COLLECTIONS``) are stored a bucket of users per document: a user's bucket is
crc32(user id) mod the day's bucket count (recorded in the pointer), about ``list_bucket_users`` users each,
their rows as columns. Measured on SecantusDB (bench/serving_store.py, 20k listeners): one document per user with
its indexes writes ~3.7k users/s, buckets of 100 ~15k users/s, so a day of 1M listeners is about a minute instead of
four and a half. A reader of one user reads one document by (date, write, bucket): ~3 ms instead of ~0.7 ms.
"""

from __future__ import annotations

import bisect
import functools
import math
import time
import uuid
import zlib
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
from dagster import ConfigurableResource
from pydantic import PrivateAttr

from podrec_assets.core.registry import TABLES
from podrec_assets.resources.unavailable import server_unavailable

SERVING_DAYS = "serving_days"

# Serving indexes (the lookups the Dash app makes), created before every write (create_index is a no-op when present).
SERVING_INDEXES: dict[str, tuple[dict[str, Any], ...]] = {name: t.indexes for name, t in TABLES.items() if t.serving}

# Ranked lists served a bucket of owners per document: {bucket, user_id: [owners], starts: [first row of each],
# columns: [names], <name>: [value of each row], date, ...} (see the module docstring).
LIST_COLLECTIONS: dict[str, str] = {name: t.list_owner for name, t in TABLES.items() if t.list_owner}
LIST_FIELDS = ("bucket", "starts", "columns")


def list_bucket(owner: Any, buckets: int) -> int:
    """The bucket of ``owner`` in a day of ``buckets`` buckets (stable across processes and machines)."""
    return zlib.crc32(str(owner).encode("utf-8")) % buckets


def list_documents(rows, key: str, buckets: int, stamp: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The documents of a ranked-list day: ``rows`` (a frame, one row per owner and rank) grouped by bucket, owners
    sorted by id inside a bucket, each owner's rows by rank. Missing values become None."""
    if rows.empty:
        return
    owner_codes, owners = pd.factorize(rows[key], sort=True)
    owner_bucket = np.fromiter((list_bucket(o, buckets) for o in owners), dtype=np.int64, count=len(owners))
    row_bucket = owner_bucket[owner_codes]
    order = np.lexsort((rows["rank"].to_numpy(), owner_codes, row_bucket))
    columns = [c for c in rows.columns if c != key]
    # numbers stay numpy arrays and become Python values one bucket at a time (a million listeners' lists as boxed
    # objects all at once would be gigabytes); other columns (ids, text, times) as objects, missing ones None
    values = {
        c: rows[c].to_numpy()
        if isinstance(rows[c].dtype, np.dtype) and rows[c].dtype.kind in "biuf"  # not pandas' nullable ones
        else rows[c].astype(object).where(rows[c].notna(), None).to_numpy()
        for c in columns
    }
    owner_sorted, bucket_sorted = owner_codes[order], row_bucket[order]
    owner_starts = np.r_[0, np.flatnonzero(np.diff(owner_sorted)) + 1]
    bucket_starts = np.r_[0, np.flatnonzero(np.diff(bucket_sorted)) + 1, len(order)]
    for start, end in zip(bucket_starts[:-1], bucket_starts[1:]):
        first, last = np.searchsorted(owner_starts, [start, end])
        starts = owner_starts[first:last]
        yield {
            "bucket": int(bucket_sorted[start]),
            key: owners[owner_sorted[starts]].tolist(),
            "starts": (starts - start).tolist(),
            "columns": columns,
            **{c: _python_values(values[c][order[start:end]]) for c in columns},
            **stamp,
        }


def _python_values(array) -> list:
    """A column's values as Python ones for BSON: NaN becomes None."""
    values = array.tolist()
    if array.dtype.kind == "f":
        for at in np.flatnonzero(np.isnan(array)):
            values[at] = None
    return values


def rows_of_list_document(document: dict[str, Any], key: str, owner: Any = None) -> list[dict[str, Any]]:
    """The rows a bucket document holds (of ``owner`` only when given), each with the owner and the day's stamp."""
    owners, starts, columns = document[key], document["starts"], document["columns"]
    stamp = {k: v for k, v in document.items() if k not in (key, "_id", *LIST_FIELDS, *columns)}
    bounds = list(starts) + [len(document[columns[0]]) if columns else 0]
    picked = range(len(owners))
    if owner is not None:
        at = bisect.bisect_left(owners, owner)
        picked = range(at, at + 1) if at < len(owners) and owners[at] == owner else range(0)
    return [
        {key: owners[i], **{c: document[c][j] for c in columns}, **stamp}
        for i in picked
        for j in range(bounds[i], bounds[i + 1])
    ]


def _needs_server(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._answering():
            return method(self, *args, **kwargs)

    return wrapper


class MongoResource(ConfigurableResource):
    """The serving database; the client is created on first use and reused within a run."""

    uri: str
    database: str = "podrec"
    server_selection_timeout_ms: int = 5000
    keep_days: int = 0  # days of each served collection kept (the newest); 0 keeps every day
    list_bucket_users: int = 100  # owners per document of a ranked-list collection (about: buckets are by hash)

    _client: Any = PrivateAttr(default=None)

    def client(self):
        if self._client is None:
            from pymongo import MongoClient

            self._client = MongoClient(
                self.uri, serverSelectionTimeoutMS=self.server_selection_timeout_ms, tz_aware=True
            )
        return self._client

    def db(self):
        return self.client()[self.database]

    def where(self) -> str:
        """The servers of the URI, without credentials (safe to show)."""
        from pymongo.uri_parser import parse_uri

        try:
            return ",".join(f"{host}:{port}" for host, port in parse_uri(self.uri)["nodelist"]) or "?"
        except Exception:  # an unparsable URI: say so, never echo it (it may hold a password)
            return "an unparsable PODREC_MONGO_URI"

    @contextmanager
    def _answering(self):
        """Turn 'no server answers' into the project's message (which server, where, how to start it)."""
        from pymongo.errors import ConnectionFailure

        try:
            yield
        except ConnectionFailure as exc:
            raise server_unavailable("MongoDB", self.where(), "PODREC_MONGO_URI", exc) from exc

    def teardown_after_execution(self, context) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @_needs_server
    def ensure_indexes(self, collection: str) -> None:
        coll = self.db()[collection]
        for spec in SERVING_INDEXES.get(collection, []):
            coll.create_index(spec["keys"], unique=spec.get("unique", False))

    @_needs_server
    def replace_day(
        self,
        collection: str,
        day: date,
        documents: Iterable[dict[str, Any]],
        run_id: str,
        model_version: str | None = None,
        batch_size: int = 5000,
        delta_version: int | None = None,
    ) -> dict[str, Any]:
        """Make the documents of ``day`` exactly ``documents`` (each stamped with date, run_id, model_version),
        swapped in for readers in one step once every document is written.

        A ranked-list collection (``LIST_COLLECTIONS``; ``documents`` may be a frame) is written a bucket of users
        per document (``list_documents``), the bucket count recorded in the pointer. With ``keep_days``
        only the newest days stay: older ones leave MongoDB after the swap (Delta keeps them), and a day older
        than all of the kept ones is not written at all (``skipped``).
        """
        started = time.perf_counter()
        day_key = day.isoformat()
        if self.older_than_kept(collection, day_key):
            return {
                "inserted": 0,
                "rows": 0,
                "deleted": 0,
                "pruned_days": self._prune_old_days(collection),
                "skipped": True,
                "seconds": round(time.perf_counter() - started, 3),
            }
        self.ensure_indexes(collection)
        coll = self.db()[collection]
        write_id = uuid.uuid4().hex
        stamp = {"date": day_key, "run_id": run_id, "model_version": model_version, "write_id": write_id}
        key = LIST_COLLECTIONS.get(collection)
        rows, buckets = 0, None
        if key is not None:
            frame = documents if isinstance(documents, pd.DataFrame) else pd.DataFrame(list(documents))
            rows = len(frame)
            buckets = max(1, math.ceil(frame[key].nunique() / self.list_bucket_users)) if rows else 1
            documents = list_documents(frame, key, buckets, stamp)
        else:
            documents = ({**doc, **stamp} for doc in documents)
        batch: list[dict[str, Any]] = []
        inserted = 0
        for doc in documents:
            batch.append(doc)
            if len(batch) >= batch_size:
                inserted += len(coll.insert_many(batch, ordered=False).inserted_ids)
                batch = []
        if batch:
            inserted += len(coll.insert_many(batch, ordered=False).inserted_ids)
        rows = rows if key is not None else inserted
        self.db()[SERVING_DAYS].replace_one(
            {"_id": f"{collection}/{day_key}"},
            {
                "collection": collection,
                "date": day_key,
                "write_id": write_id,
                "run_id": run_id,
                "rows": rows,
                "documents": inserted,
                "buckets": buckets,
                "model_version": model_version,
                "delta_version": delta_version,
                "written_at": datetime.now(timezone.utc),
            },
            upsert=True,
        )
        deleted = coll.delete_many({"date": day_key, "write_id": {"$ne": write_id}}).deleted_count
        pruned = self._prune_old_days(collection)
        return {
            "inserted": inserted,
            "rows": rows,
            "deleted": deleted,
            "pruned_days": pruned,
            "skipped": False,
            "seconds": round(time.perf_counter() - started, 3),
        }

    def _keeps_days(self, collection: str) -> bool:
        """Only ranked lists are kept for a few days: a newer day replaces them (similarities are not)."""
        return self.keep_days > 0 and collection in LIST_COLLECTIONS

    @_needs_server
    def older_than_kept(self, collection: str, day_key: str) -> bool:
        """Whether ``day_key`` is older than every one of the newest ``keep_days`` served days."""
        if not self._keeps_days(collection):
            return False
        kept = sorted(self.served_days(collection), reverse=True)[: self.keep_days]
        return len(kept) >= self.keep_days and day_key < kept[-1]

    def _prune_old_days(self, collection: str) -> list[str]:
        """Remove the days beyond the newest ``keep_days``. The pointer goes to a write that holds nothing first,
        so readers see no part of a day while its documents are deleted; then the documents; then the pointer."""
        if not self._keeps_days(collection):
            return []
        days = sorted(self.served_days(collection), reverse=True)[self.keep_days :]
        for day_key in days:
            pointer = {"_id": f"{collection}/{day_key}"}
            self.db()[SERVING_DAYS].update_one(pointer, {"$set": {"write_id": f"pruned-{uuid.uuid4().hex}"}})
            self.db()[collection].delete_many({"date": day_key})
            self.db()[SERVING_DAYS].delete_one(pointer)
        return days

    @_needs_server
    def served_days(self, collection: str) -> dict[str, dict[str, Any]]:
        """Per day (ISO date) of ``collection``, the pointer to the write readers see."""
        return {doc["date"]: doc for doc in self.db()[SERVING_DAYS].find({"collection": collection})}

    @_needs_server
    def list_of(self, collection: str, owner: Any, days: int | None = None) -> list[dict[str, Any]]:
        """``owner``'s rows in the served days of a ranked-list collection (the newest ``days``; all when None),
        newest day first, by rank: one indexed read per day."""
        key = LIST_COLLECTIONS[collection]
        pointers = sorted(self.served_days(collection).values(), key=lambda p: p["date"], reverse=True)
        rows: list[dict[str, Any]] = []
        for pointer in pointers[:days]:
            if not pointer.get("buckets"):  # pruned, or written before buckets: nothing a reader can use
                continue
            where = {"date": pointer["date"], "write_id": pointer["write_id"]}
            document = self.db()[collection].find_one({**where, "bucket": list_bucket(owner, pointer["buckets"])})
            rows.extend(rows_of_list_document(document, key, owner) if document else [])
        return rows

    @_needs_server
    def served_rows(self, collection: str, day: date) -> list[dict[str, Any]]:
        """Every row readers see for ``day`` (the swapped-in write; ranked lists unpacked to one row each)."""
        pointer = self.served_days(collection).get(day.isoformat())
        if pointer is None:
            return []
        found = self.db()[collection].find({"date": pointer["date"], "write_id": pointer["write_id"]})
        key = LIST_COLLECTIONS.get(collection)
        if key is None:
            return [{k: v for k, v in doc.items() if k != "_id"} for doc in found]
        return [row for doc in found for row in rows_of_list_document(doc, key)]

    @_needs_server
    def count_day_write(self, collection: str, day: date, write_id: str) -> int:
        """How many documents of ``day`` the write ``write_id`` holds (per-user lists count one each)."""
        return self.db()[collection].count_documents({"date": day.isoformat(), "write_id": write_id})

    @_needs_server
    def served_filter(self, collection: str) -> dict[str, Any]:
        """The filter that keeps a reader on the swapped-in writes of ``collection`` (never a half-written or
        doubled day). Days written before the pointers existed are served as they are."""
        days = self.served_days(collection)
        current = [doc["write_id"] for doc in days.values()]
        return {"$or": [{"write_id": {"$in": current}}, {"date": {"$nin": list(days)}}]}

    @_needs_server
    def delete_day_except(self, collection: str, day: date, key_field: str, keep: Iterable[Any]) -> int:
        """Delete the documents stamped with ``day`` whose ``key_field`` is not in ``keep``.

        For upserted collections (the catalog): what the lake no longer holds leaves the serving store too;
        documents that another day re-stamped are not touched.
        """
        self.ensure_indexes(collection)
        coll, day_key, keep = self.db()[collection], day.isoformat(), set(keep)
        # the day's keys come back and the difference is taken here: a `$nin` of the whole catalog costs the
        # server catalog x day comparisons (12 s for 4,000 episodes, ~280 s for 20,000), this costs one indexed read
        stamped = coll.find({"date": day_key}, {key_field: 1, "_id": 0})
        gone = list({doc.get(key_field) for doc in stamped} - keep)  # None: a document without the key, which goes too
        deleted = 0
        for start in range(0, len(gone), 1000):
            deleted += coll.delete_many({"date": day_key, key_field: {"$in": gone[start : start + 1000]}}).deleted_count
        return deleted

    @_needs_server
    def upsert_many(
        self, collection: str, key_fields: Sequence[str], documents: Iterable[dict[str, Any]], batch_size: int = 5000
    ) -> int:
        """Bulk upsert by key (the catalog: an episode keeps one document whatever day re-publishes it)."""
        from pymongo import ReplaceOne

        self.ensure_indexes(collection)
        coll = self.db()[collection]
        ops, count = [], 0
        for doc in documents:
            ops.append(ReplaceOne({k: doc[k] for k in key_fields}, doc, upsert=True))
            if len(ops) >= batch_size:
                coll.bulk_write(ops, ordered=False)
                count += len(ops)
                ops = []
        if ops:
            coll.bulk_write(ops, ordered=False)
            count += len(ops)
        return count
